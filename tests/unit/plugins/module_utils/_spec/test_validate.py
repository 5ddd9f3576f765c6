"""Validation rules of the spec: each rule refuses what it should, naming the field."""
import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import defaults as _defaults
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import SpecError, load_spec


def minimal(**extra):
    spec = {"name": "demo", "rootfs": {"path": "/srv/rootfs"}}
    spec.update(extra)
    return spec


def errors_of(raw):
    with pytest.raises(SpecError) as info:
        load_spec(raw)
    return dict(info.value.errors)


def test_minimal_spec_gets_runc_defaults():
    spec = load_spec(minimal())
    assert spec["hostname"] == "runc"
    assert spec["rootfs"]["readonly"] is True
    assert [m["target"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert spec["masked_paths"] == list(_defaults.RUNC_MASKED_PATHS)
    assert spec["readonly_paths"] == list(_defaults.RUNC_READONLY_PATHS)
    assert [n["type"] for n in spec["namespaces"]] == ["mount", "uts", "ipc", "pid", "net"]
    assert spec["process"] == {"args": ["sh"], "env": list(_defaults.DEFAULT_ENV), "cwd": "/",
                               "uid": 0, "gid": 0}
    assert sorted(d["path"] for d in spec["devices"]) == [
        "/dev/full", "/dev/null", "/dev/random", "/dev/tty", "/dev/urandom", "/dev/zero"]


def test_every_error_is_reported_at_once():
    errors = errors_of({"name": "bad name!", "rootfs": {"path": "/r"}, "hostname": "-x-",
                        "volumes": [{"source": "/a", "target": "rel"}]})
    assert set(errors) == {"name", "hostname", "volumes[0].target"}


def test_unknown_field_has_did_you_mean():
    errors = errors_of(minimal(hostnme="x"))
    assert "did you mean 'hostname'" in errors["hostnme"]
    errors = errors_of(minimal(volumes=[{"source": "/a", "target": "/b", "readnly": True}]))
    assert "did you mean 'readonly'" in errors["volumes[0].readnly"]


@pytest.mark.parametrize("target, fragment", [
    ("relative/path", "must be an absolute path inside the container"),
    ("/", "must not be '/'"),
    ("//", "must not be '/'"),
    ("/a/../etc", "'..'"),
    ("/a/./b", "'.'"),
    (5, "must be a string"),
])
def test_bad_volume_targets(target, fragment):
    errors = errors_of(minimal(volumes=[{"source": "/src", "target": target}]))
    assert fragment in errors["volumes[0].target"]


def test_message_format_names_field_path():
    with pytest.raises(SpecError) as info:
        load_spec(minimal(volumes=[{"source": "/a", "target": "/ok"}, {"source": "/b", "target": "x"}]))
    assert "volumes[1].target: must be an absolute path inside the container" in str(info.value)


@pytest.mark.parametrize("hostname", ["-lead", "trail-", "under_score", "a" * 64, "sp ace", "", "a..b"])
def test_invalid_hostnames(hostname):
    assert "hostname" in errors_of(minimal(hostname=hostname))


@pytest.mark.parametrize("hostname", ["web", "web-1", "a.b.c", "x" * 63])
def test_valid_hostnames(hostname):
    assert load_spec(minimal(hostname=hostname))["hostname"] == hostname


def test_hostname_needs_uts_namespace():
    errors = errors_of(minimal(hostname="web", namespaces=["mount", "pid"]))
    assert "UTS" in errors["hostname"]
    assert load_spec(minimal(namespaces=["mount"]))["hostname"] is None


def test_device_without_major_minor_is_refused():
    errors = errors_of(minimal(devices=[{"path": "/dev/fuse", "type": "c"}]))
    assert "is required" in errors["devices[0].major"]
    assert "is required" in errors["devices[0].minor"]


def test_device_fields_are_checked():
    errors = errors_of(minimal(devices=[
        {"path": "/dev/x", "type": "z", "major": 1, "minor": 1},
        {"path": "/etc/x", "major": 1, "minor": 1},
        {"path": "/dev/y", "major": "1", "minor": -1},
        {"path": "/dev/z", "major": 1, "minor": 2, "mode": "999"},
    ]))
    assert "must be 'c'" in errors["devices[0].type"]
    assert "under /dev" in errors["devices[1].path"]
    assert "integer" in errors["devices[2].major"]
    assert "octal" in errors["devices[3].mode"]


def test_spec_device_replaces_default_of_same_path():
    spec = load_spec(minimal(devices=[{"path": "/dev/null", "major": 1, "minor": 3, "mode": "0600"},
                                      {"path": "/dev/fuse", "major": 10, "minor": 229}]))
    by_path = {d["path"]: d for d in spec["devices"]}
    assert by_path["/dev/null"]["mode"] == "0600"
    assert by_path["/dev/fuse"] == {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                    "mode": "0666", "uid": 0, "gid": 0}


def test_duplicate_targets_are_refused():
    errors = errors_of(minimal(volumes=[{"source": "/a", "target": "/data"},
                                        {"type": "tmpfs", "target": "/data/"},
                                        {"source": "/b", "target": "/etc/hosts"}]))
    assert "already used by volumes[0].target" in errors["volumes[1].target"]
    assert "already used by" in errors["volumes[2].target"]


def test_duplicate_device_and_namespace():
    errors = errors_of(minimal(devices=[{"path": "/dev/a", "major": 1, "minor": 1},
                                        {"path": "/dev/a", "major": 1, "minor": 1}],
                               namespaces=["mount", "pid", "pid"]))
    assert "twice" in errors["devices[1].path"]
    assert "twice" in errors["namespaces[2].type"]


@pytest.mark.parametrize("raw, path, fragment", [
    (minimal(hostname=5), "hostname", "must be a string"),
    (minimal(rootfs={"path": "/r", "readonly": "yes"}), "rootfs.readonly", "must be a boolean"),
    (minimal(volumes={"a": 1}), "volumes", "must be a list"),
    (minimal(process={"args": "sh -c x"}), "process.args", "must be a list of strings"),
    (minimal(process={"args": ["sh", 1]}), "process.args[1]", "must be a string"),
    (minimal(masked_paths="/proc/kcore"), "masked_paths", "must be a list of strings"),
    (minimal(etc={"hosts": "no"}), "etc.hosts", "must be a boolean"),
    (minimal(dns={"nameservers": ["not-an-ip"]}), "dns.nameservers[0]", "IP address"),
    (minimal(process={"user": "root"}), "process.user", "numeric"),
    (minimal(process={"env": ["NOEQUALS"]}), "process.env[0]", "NAME=value"),
    (minimal(namespaces=["user"]), "namespaces[0].type", "must be one of"),
    (minimal(namespaces=["pid"]), "namespaces", "must include 'mount'"),
    (minimal(volumes=[{"type": "tmpfs", "target": "/t", "size": "lots"}]), "volumes[0].size", "size"),
    (minimal(volumes=[{"type": "tmpfs", "target": "/t", "mode": "rwx"}]), "volumes[0].mode", "octal"),
    (minimal(volumes=[{"type": "tmpfs", "target": "/t", "mode": 1777}]), "volumes[0].mode", "quoted"),
    (minimal(volumes=[{"source": "/a", "target": "/t", "propagation": "sideways"}]),
     "volumes[0].propagation", "must be one of"),
    (minimal(volumes=[{"type": "tmpfs", "target": "/t", "source": "/x"}]), "volumes[0].source",
     "bind volumes only"),
    (minimal(mounts=[{"target": "/x", "type": "nfs"}]), "mounts[0].type", "must be one of"),
    (minimal(mounts=[{"target": "/x", "type": "bind", "source": "rel"}]), "mounts[0].source",
     "absolute host path"),
    (minimal(etc={"extra_hosts": [{"address": "300.1.1.1", "names": ["db"]}]}),
     "etc.extra_hosts[0].address", "IPv4 or IPv6"),
    ({"rootfs": {"path": "/r"}}, "name", "is required"),
    ({"name": "x"}, "rootfs", "is required"),
    (minimal(version=2), "version", "must be 1"),
    (minimal(state_dir="relative"), "state_dir", "absolute host path"),
])
def test_wrong_types_and_values(raw, path, fragment):
    errors = errors_of(raw)
    assert path in errors, errors
    assert fragment in errors[path]


def test_not_a_mapping():
    with pytest.raises(SpecError) as info:
        load_spec(["name"])
    assert "must be a mapping" in str(info.value)


def test_relative_paths_resolve_against_the_spec_dir():
    spec = load_spec(minimal(rootfs={"path": "rootfs"}, volumes=[{"source": "data", "target": "/d"}]),
                     base_dir="/specs")
    assert spec["rootfs"]["path"] == "/specs/rootfs"
    assert spec["volumes"][0]["source"] == "/specs/data"


def test_masked_and_readonly_paths_replace_or_extend():
    spec = load_spec(minimal(masked_paths=["/proc/kcore"], add_masked_paths=["/secret", "/proc/kcore"],
                             add_readonly_paths=["/etc"]))
    assert spec["masked_paths"] == ["/proc/kcore", "/secret"]
    assert spec["readonly_paths"] == list(_defaults.RUNC_READONLY_PATHS) + ["/etc"]


def test_volume_defaults():
    spec = load_spec(minimal(volumes=[{"source": "/a", "target": "/b"},
                                      {"type": "tmpfs", "target": "/t", "size": "1m", "mode": "1777"}]))
    assert spec["volumes"][0] == {"type": "bind", "source": "/a", "target": "/b", "readonly": False,
                                  "options": [], "recursive": True, "propagation": "rprivate", "create": False}
    assert spec["volumes"][1]["mode"] == "1777"
    assert spec["volumes"][1]["size"] == "1m"


def test_env_mapping_and_user():
    spec = load_spec(minimal(process={"env": {"A": "1 2"}, "user": "1000:100"}))
    assert spec["process"]["env"] == ["A=1 2"]
    assert (spec["process"]["uid"], spec["process"]["gid"]) == (1000, 100)
    assert load_spec(minimal(process={"user": 7}))["process"]["gid"] == 7


def test_normalised_spec_is_a_fixed_point():
    once = load_spec(minimal(volumes=[{"source": "/a", "target": "/b//c/"}]))
    assert once["volumes"][0]["target"] == "/b/c"


def test_overlay_paths_must_fit_overlayfs_options():
    errors = errors_of(minimal(rootfs={"path": "/a,b", "overlay": True}, state_dir="/x:y"))
    assert "overlayfs" in errors["rootfs.path"]
    assert "overlayfs" in errors["state_dir"]
    assert load_spec(minimal(rootfs={"path": "/a,b"}))["rootfs"]["path"] == "/a,b"
