"""Hostile strings in every string field of a spec never reach the host (issue 7).

For each string field of a complete example spec (every field the validator knows; the
test fails when the validator grows a field this walk does not cover), each payload of
tests/lib/hostile.py (newline + fstab line or command, CR LF, $(...), backticks, quotes,
'#', space, tab, NUL, NEL, U+2028, a trailing newline...) is appended to the field's
valid value (and the command ones also replace it). Then `containerfs validate` and
`render`; what the validator refuses must be refused cleanly (exit 2, no traceback); what
renders is run (`run` of a probe that reads and writes where a hostile mount would put a
host file), and the host must show nothing: no canary file, the host's /etc files, a
sentinel tree and the rootfs unchanged, both mount tables unchanged, no mount(8) parse
error in a successful run.

process.args and process.env may hold any such text: it must reach the container
verbatim (or be refused), never run on the host.
"""
import json
import os

import pytest

from tests.lib import hostile
from tests.lib import oci_fixtures as fx

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import defaults as _spec

# Fields a user may not supply; tested on their own below.
INTERNAL_FIELDS = {"rootfs.image.resolved"}
# An explicit mounts list replaces the defaults: the example keeps /proc and /dev of them
# (what masked paths and devices need; a short spec keeps YAML parsing fast), and the two
# entries after them carry the hostile strings.
BASE_MOUNTS = [m for m in _spec.RUNC_DEFAULT_MOUNTS if m["target"] in ("/proc", "/dev")]
DEFAULT_MOUNTS = len(BASE_MOUNTS)


@pytest.fixture(scope="module")
def env(tmp_path_factory, busybox_rootfs):
    return hostile.HostEnv(str(tmp_path_factory.mktemp("hostile-spec")), busybox_rootfs)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """A one-layer OCI layout; returns (path, manifest digest)."""
    top = tmp_path_factory.mktemp("layout")
    tree = fx.busybox_tree(str(top / "tree"))
    desc = fx.oci_layout(str(top / "oci"), [fx.tar_of_dir(tree)], tag="latest")
    return str(top / "oci"), desc["digest"]


def example_spec(env, case_dir):
    """A spec that sets every field the validator knows (one value each)."""
    for d in ("volsrc", "bindsrc"):
        os.makedirs(os.path.join(case_dir, d), exist_ok=True)
    mounts = [dict(m, options=list(m["options"])) for m in BASE_MOUNTS]
    mounts += [
        {"target": "/srv", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]},
        {"target": "/opt", "type": "bind", "source": os.path.join(case_dir, "bindsrc"),
         "options": ["rbind", "ro"]},
    ]
    return {
        "version": 1,
        "name": "hostile",
        "hostname": "hostile",
        "rootfs": {"path": env.rootfs, "overlay": False, "readonly": True, "propagation": "rprivate"},
        "namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "uts"}, {"type": "ipc"},
                       {"type": "net", "path": "/proc/self/ns/net"}],
        "mounts": mounts,
        "volumes": [
            {"type": "bind", "source": os.path.join(case_dir, "volsrc"), "target": "/vol",
             "readonly": False, "recursive": True, "propagation": "rprivate", "options": ["nosuid"],
             "create": False},
            {"type": "tmpfs", "target": "/data", "options": ["nodev"], "size": "1m", "mode": "0755"},
        ],
        "devices": [{"path": "/dev/hostile-null", "type": "c", "major": 1, "minor": 3,
                     "mode": "0666", "uid": 0, "gid": 0}],
        "etc": {"hosts": True, "hostname": True, "resolv_conf": True,
                "extra_hosts": [{"address": "10.1.2.3", "names": ["db"]}]},
        "dns": {"nameservers": ["10.0.0.1"], "search": ["example.com"], "options": ["ndots:1"]},
        "masked_paths": ["/proc/kcore"],
        "add_masked_paths": ["/proc/keys"],
        "readonly_paths": ["/proc/sys"],
        "add_readonly_paths": ["/proc/bus"],
        "process": {"args": ["/bin/sh"], "env": ["PATH=/bin", "A=b"], "cwd": "/", "user": "0:0"},
        "state_dir": os.path.join(case_dir, "state"),
        "run_dir": os.path.join(case_dir, "run"),
    }


def image_example_spec(env, case_dir, layout):
    spec = example_spec(env, case_dir)
    spec["rootfs"] = {"image": {"source": layout[0], "format": "oci", "tag": "latest",
                                "digest": layout[1], "platform": "linux/amd64",
                                "store": os.path.join(case_dir, "store")},
                      "overlay": True, "readonly": True, "propagation": "rprivate"}
    return spec


def all_keys(value, path="", out=None):
    """Every mapping key of `value` as a schema path (list indexes written [])."""
    out = set() if out is None else out
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(_join(path, key))
            all_keys(item, _join(path, key), out)
    elif isinstance(value, list):
        for item in value:
            all_keys(item, path + "[]", out)
    return out


def _internal(field):
    return any(field == f or field.startswith(f + ".") for f in INTERNAL_FIELDS)


def _join(path, key):
    return "%s.%s" % (path, key) if path else str(key)


# Which example section each field table of the validator describes.
FIELD_TABLES = {
    "TOP_FIELDS": "", "ROOTFS_FIELDS": "rootfs", "IMAGE_FIELDS": "rootfs.image",
    "MOUNT_FIELDS": "mounts[]", "VOLUME_FIELDS": "volumes[]", "DEVICE_FIELDS": "devices[]",
    "ETC_FIELDS": "etc", "DNS_FIELDS": "dns", "PROCESS_FIELDS": "process",
    "NAMESPACE_FIELDS": "namespaces[]", "EXTRA_HOST_FIELDS": "etc.extra_hosts[]",
    # internal: what the project records of a read image (see INTERNAL_FIELDS)
    "RESOLVED_FIELDS": "rootfs.image.resolved", "LAYER_FIELDS": "rootfs.image.resolved.layers[]",
}


def test_the_walk_covers_every_field_the_validator_knows(tmp_path):
    env_stub = type("Env", (), {"rootfs": "/r"})()
    keys = all_keys(example_spec(env_stub, str(tmp_path)))
    keys |= all_keys(image_example_spec(env_stub, str(tmp_path), ("/l", "sha256:0")))
    keys |= INTERNAL_FIELDS
    tables = [name for name in dir(_spec) if name.endswith("_FIELDS") and isinstance(getattr(_spec, name), tuple)]
    unknown = [name for name in tables if name not in FIELD_TABLES]
    assert not unknown, "new field tables in _spec: add them to the example spec and FIELD_TABLES: %s" % unknown
    missing = []
    for name in tables:
        section = FIELD_TABLES[name]
        missing += [_join(section, field) for field in getattr(_spec, name)
                    if _join(section, field) not in keys and not _internal(_join(section, field))]
    assert not missing, "fields the hostile walk does not set: %s" % missing


def hostile_fields():
    """The injected fields: every string leaf of the example, but the default mounts."""
    env_stub = type("Env", (), {"rootfs": "/r"})()
    spec = image_example_spec(env_stub, "/c", ("/l", "sha256:0"))
    plain = example_spec(env_stub, "/c")
    fields = [p for p, _keys in hostile.string_fields(plain)]
    fields += [p for p, _keys in hostile.string_fields(spec) if p.startswith("rootfs.image.")]
    return [f for f in fields if not any(f.startswith("mounts[%d]" % i) for i in range(DEFAULT_MOUNTS))
            and not f.startswith("process.args") and not f.startswith("process.env")]


def write_spec(case_dir, spec):
    path = os.path.join(case_dir, "spec.json")
    text = json.dumps(spec)
    with open(path, "w") as f:
        f.write(text)
    return path


def materialise(env, field, value):
    """Make a hostile host path exist, so the script gets past its own existence checks."""
    if "\x00" in value or not os.path.isabs(value):
        return  # never a path relative to the test's working directory
    try:
        if field == "rootfs.path":
            os.makedirs(os.path.dirname(value), exist_ok=True)
            if not os.path.lexists(value):
                os.symlink(env.rootfs, value)
        elif field in ("volumes[0].source", "mounts[%d].source" % (DEFAULT_MOUNTS + 1)):
            os.makedirs(value, exist_ok=True)
    except OSError:
        pass


def run_matrix(env, make_spec, field):
    """Every payload in `field`: validated, rendered, run; returns the problems as text."""
    cases, values = [], {}
    for label, (whole, suffix) in sorted(hostile.payload_cases(env).items()):
        case_dir = hostile.new_case_dir(env, "%s-%s" % (field, label))
        spec = make_spec(case_dir)
        whole, suffix = hostile.payload_cases(env, hostile.canary_of(case_dir))[label]
        value = whole if whole is not None else hostile.field_value(spec, field) + suffix
        hostile.set_field(spec, field, value)
        values[label] = value
        cases.append(hostile.Case(label, case_dir, [write_spec(case_dir, spec)], [field.split(".")[0].split("[")[0]],
                                  hostile.probe_command(), before_run=lambda f=field, v=value: materialise(env, f, v)))
    return hostile.report(hostile.run_cases(env, cases), lambda case: values[case.label])


def test_example_spec_runs_and_the_probe_sees_nothing(env):
    case_dir = hostile.new_case_dir(env, "baseline")
    before = env.snapshot()
    spec = example_spec(env, case_dir)
    script = os.path.join(case_dir, "container.sh")
    rendered = hostile.cli("render", write_spec(case_dir, spec), "-o", script)
    assert rendered.rc == 0, rendered
    result = hostile.run_script(script, ["run"] + hostile.probe_command(), env, case_dir)
    assert result.rc == 0, result
    assert env.check(before, result) == []


@pytest.mark.parametrize("field", hostile_fields())
def test_hostile_string_in_field(env, layout, field):
    if field.startswith("rootfs.image."):
        def make_spec(case_dir):
            return image_example_spec(env, case_dir, layout)
    else:
        def make_spec(case_dir):
            return example_spec(env, case_dir)
    problems = run_matrix(env, make_spec, field)
    assert not problems, problems


def verbatim_cases(env):
    cases = dict(hostile.payloads(env), **hostile.whole_values(env))
    cases["plain"] = ""
    return sorted(cases.items())


@pytest.mark.parametrize("where", ["args", "env"])
def test_process_args_and_env_arrive_verbatim(env, where):
    """process.args and env values may hold any text: verbatim inside, or refused."""
    problems = []
    for label, payload in verbatim_cases(env):
        value = "v" + payload
        case_dir = hostile.new_case_dir(env, "%s-%s" % (where, label))
        spec = example_spec(env, case_dir)
        printer = 'printf "[%s]" "$1"'
        if where == "args":
            spec["process"]["args"] = ["/bin/sh", "-c", printer, "sh", value]
            run_args = []
        else:
            spec["process"]["env"] = ["PATH=/bin", "HOSTILE=" + value]
            run_args = ["/bin/sh", "-c", 'printf "[%s]" "$HOSTILE"']
        problems += hostile.verbatim_or_refused(env, label, value, case_dir,
                                                [write_spec(case_dir, spec)], run_args)
    assert not problems, "\n\n".join(problems)


def test_internal_resolved_image_field_is_not_taken_from_users(env, layout):
    """rootfs.image.resolved is the project's own record of a read image: a user's copy
    (an unquoted compression command, an unquoted size) must be refused or ignored, and
    nothing of it may run, neither at render nor at `check` / `run`."""
    case_dir = hostile.new_case_dir(env, "resolved")
    spec = image_example_spec(env, case_dir, layout)
    touch = "touch %s" % env.canary
    spec["rootfs"]["image"]["resolved"] = {
        "format": "oci", "manifest_digest": layout[1], "config_digest": layout[1], "rootfs": None,
        "layers": [{"digest": layout[1], "size": "1; %s" % touch, "diff_id": layout[1],
                    "compression": "%s;gzip" % touch, "path": "blobs/sha256/" + layout[1][7:],
                    "media_type": "application/vnd.oci.image.layer.v1.tar+gzip"}],
    }
    before = env.snapshot()
    spec_file = write_spec(case_dir, spec)
    result = hostile.cli("render", spec_file, "-o", os.path.join(case_dir, "container.sh"),
                         subprocess_timeout=30)
    if result.rc == 0:
        with open(os.path.join(case_dir, "container.sh")) as f:
            assert touch not in f.read(), "the user's resolved layers reached the script"
        checked = hostile.run_script(os.path.join(case_dir, "container.sh"), ["check"], env, case_dir)
        assert env.check(before, checked) == []
    else:
        assert hostile.refused_cleanly(result), result
        assert "resolved" in result.stderr, result
    assert env.check(before) == []
