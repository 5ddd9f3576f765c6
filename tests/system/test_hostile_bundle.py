"""Hostile strings in an OCI bundle's config.json never reach the host (issue 7).

The same matrix as test_hostile_spec.py, through `containerfs validate|render --bundle DIR`
and `containerfs import`: every string field of a complete config.json (root.path,
hostname, mounts[].destination/type/source/options[], process.args/env/cwd,
linux.namespaces[].type/path, maskedPaths, readonlyPaths, linux.devices[].path/type,
linux.rootfsPropagation, our annotation's name) gets each hostile payload; what is refused
must be refused cleanly (and by `import` alike); what renders is run with the probe and
the host must show nothing. A process.user.uid given as a string is refused.
"""
import json
import os

import pytest

from tests.lib import hostile

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import defaults as _spec

ANNOTATION = "fromscratch.containerfs.spec"
BASE_MOUNTS = [m for m in _spec.RUNC_DEFAULT_MOUNTS if m["target"] in ("/proc", "/dev")]
DEFAULT_MOUNTS = len(BASE_MOUNTS)


@pytest.fixture(scope="module")
def env(tmp_path_factory, busybox_rootfs):
    return hostile.HostEnv(str(tmp_path_factory.mktemp("hostile-bundle")), busybox_rootfs)


def example_config(env, case_dir):
    """A config.json that sets every field containerfs reads."""
    for d in ("bindsrc", "volsrc"):
        os.makedirs(os.path.join(case_dir, d), exist_ok=True)
    mounts = [{"destination": m["target"], "type": m["type"], "source": m["source"],
               "options": list(m["options"])} for m in BASE_MOUNTS]
    mounts += [
        {"destination": "/srv", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]},
        {"destination": "/opt", "type": "bind", "source": os.path.join(case_dir, "bindsrc"),
         "options": ["rbind", "ro"]},
        # the shape of a volume: imported as one (bind source and all)
        {"destination": "/vol", "type": "bind", "source": os.path.join(case_dir, "volsrc"),
         "options": ["rbind", "rprivate"]},
    ]
    ours = {"name": "hostile", "state_dir": os.path.join(case_dir, "state"),
            "run_dir": os.path.join(case_dir, "run")}
    return {
        "ociVersion": "1.0.2",
        "root": {"path": env.rootfs, "readonly": True},
        "hostname": "hostile",
        "mounts": mounts,
        "process": {"terminal": False, "args": ["/bin/sh"], "env": ["PATH=/bin", "A=b"], "cwd": "/",
                    "user": {"uid": 0, "gid": 0}},
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                           {"type": "network", "path": "/proc/self/ns/net"}],
            "devices": [{"path": "/dev/hostile-null", "type": "c", "major": 1, "minor": 3,
                         "fileMode": 438, "uid": 0, "gid": 0}],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "rootfsPropagation": "rprivate",
        },
        "annotations": {ANNOTATION: json.dumps(ours)},
    }


def write_bundle(case_dir, config):
    bundle = os.path.join(case_dir, "bundle")
    os.makedirs(bundle, exist_ok=True)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def hostile_fields():
    stub = type("Env", (), {"rootfs": "/r"})()
    fields = [p for p, _keys in hostile.string_fields(example_config(stub, "/nonexistent-case"))
              if not p.startswith("annotations")]
    fields = [f for f in fields if not any(f.startswith("mounts[%d]" % i) for i in range(DEFAULT_MOUNTS))
              and not f.startswith(("process.args", "process.env"))]
    return fields + ["annotation.name", "process.user.uid"]


def set_config_field(config, field, value):
    if field == "annotation.name":
        ours = json.loads(config["annotations"][ANNOTATION])
        ours["name"] = value
        config["annotations"][ANNOTATION] = json.dumps(ours)
    elif field == "process.user.uid":
        config["process"]["user"]["uid"] = value
    else:
        hostile.set_field(config, field, value)


def config_value(config, field):
    if field == "annotation.name":
        return json.loads(config["annotations"][ANNOTATION])["name"]
    if field == "process.user.uid":
        return str(config["process"]["user"]["uid"])
    return hostile.field_value(config, field)


# A refusal may name a config.json field by its own name or by the spec field it becomes.
SPEC_NAMES = {"root": "rootfs", "maskedPaths": "masked_paths", "readonlyPaths": "readonly_paths",
              "rootfsPropagation": "rootfs.propagation", "destination": "target", "mounts": "volumes"}


def field_names(field):
    parts = [p.split("[")[0] for p in field.split(".")]
    names = [field, parts[-1], SPEC_NAMES.get(parts[-1], parts[-1])]
    if parts[0] in ("linux", "process", "mounts", "annotation"):
        names += [parts[1] if len(parts) > 1 else parts[0], SPEC_NAMES.get(parts[0], parts[0])]
    return names


def materialise(env, field, value):
    """Make a hostile host path exist, so the script gets past its own existence checks."""
    if "\x00" in value or not os.path.isabs(value):
        return  # never a path relative to the test's working directory
    try:
        if field == "root.path":
            os.makedirs(os.path.dirname(value), exist_ok=True)
            if not os.path.lexists(value):
                os.symlink(env.rootfs, value)
        elif field in ("mounts[%d].source" % (DEFAULT_MOUNTS + 1), "mounts[%d].source" % (DEFAULT_MOUNTS + 2)):
            os.makedirs(value, exist_ok=True)
    except OSError:
        pass


def check_import(env, bundle, accepted):
    """`containerfs import` agrees with `render --bundle`, and touches nothing."""
    before = env.snapshot()
    out = os.path.join(os.path.dirname(bundle), "imported.yml")
    imported = hostile.cli("import", os.path.join(bundle, "config.json"), "-o", out)
    problems = env.check(before)
    if imported.rc == 0 and not accepted:
        problems.append("import accepted what render --bundle refused: %r" % imported)
    elif imported.rc != 0 and not hostile.refused_cleanly(imported):
        problems.append("import did not refuse cleanly: %r" % imported)
    return problems


@pytest.mark.parametrize("field", hostile_fields())
def test_hostile_string_in_config_field(env, field):
    cases, values = [], {}
    for label in sorted(hostile.payload_cases(env)):
        case_dir = hostile.new_case_dir(env, "%s-%s" % (field, label))
        config = example_config(env, case_dir)
        whole, suffix = hostile.payload_cases(env, hostile.canary_of(case_dir))[label]
        value = whole if whole is not None else config_value(config, field) + suffix
        set_config_field(config, field, value)
        values[label] = value
        bundle = write_bundle(case_dir, config)
        cases.append(hostile.Case(label, case_dir, ["--bundle", bundle], field_names(field), hostile.probe_command(),
                                  before_run=lambda v=value: materialise(env, field, v)))
    for case in hostile.run_cases(env, cases):
        if field == "process.user.uid" and case.script:
            case.problems.append("a string uid was accepted")
        case.problems += check_import(env, case.source_args[1], case.script is not None)
    problems = hostile.report(cases, lambda case: values[case.label])
    assert not problems, problems


def test_example_config_runs_and_the_probe_sees_nothing(env):
    case_dir = hostile.new_case_dir(env, "baseline")
    bundle = write_bundle(case_dir, example_config(env, case_dir))
    case = hostile.run_cases(env, [hostile.Case("baseline", case_dir, ["--bundle", bundle], [""],
                                                hostile.probe_command())])[0]
    assert case.script and case.result.rc == 0 and case.problems == [], (case.problems, case.__dict__.get("result"))
    assert check_import(env, bundle, True) == []


@pytest.mark.parametrize("where", ["args", "env"])
def test_process_args_and_env_arrive_verbatim(env, where):
    """config.json's process.args and env may hold any text: verbatim inside, or refused."""
    problems = []
    cases = dict(hostile.payloads(env), **hostile.whole_values(env))
    for label, payload in sorted(cases.items()):
        value = "v" + payload
        case_dir = hostile.new_case_dir(env, "%s-%s" % (where, label))
        config = example_config(env, case_dir)
        if where == "args":
            config["process"]["args"] = ["/bin/sh", "-c", 'printf "[%s]" "$1"', "sh", value]
            run_args = []
        else:
            config["process"]["env"] = ["PATH=/bin", "HOSTILE=" + value]
            run_args = ["/bin/sh", "-c", 'printf "[%s]" "$HOSTILE"']
        problems += hostile.verbatim_or_refused(env, label, value, case_dir,
                                                ["--bundle", write_bundle(case_dir, config)], run_args)
    assert not problems, "\n\n".join(problems)
