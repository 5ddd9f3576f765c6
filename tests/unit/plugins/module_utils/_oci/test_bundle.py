"""OCI interop: config.json -> spec (import), spec -> config.json (export), round trips."""
import copy
import glob
import json
import os
import subprocess

import pytest
import yaml

from ansible_collections.fromscratch.containerfs.plugins.module_utils._oci import bundle as _oci
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import defaults as _spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import SpecError, load_spec
from tests.lib.collection import REPO_ROOT

CLI = os.path.join(REPO_ROOT, "scripts", "containerfs")
BUNDLE = "/srv/bundle"

# What `runc spec` (runc 1.1, libcontainer/specconv/example.go) writes, minus the process
# confinement fields that some tests add back.
RUNC_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {"terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                "env": list(_spec.DEFAULT_ENV), "cwd": "/",
                "capabilities": {"bounding": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": True},
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [{"destination": m["target"], "type": m["type"], "source": m["source"],
                "options": list(m["options"])} for m in _spec.RUNC_DEFAULT_MOUNTS],
    "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]},
              "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
              "maskedPaths": list(_spec.RUNC_MASKED_PATHS),
              "readonlyPaths": list(_spec.RUNC_READONLY_PATHS)},
}
# runc spec leaves out the options of /proc
del RUNC_SPEC["mounts"][0]["options"]


def runc_spec(**changes):
    config = copy.deepcopy(RUNC_SPEC)
    config.update(changes)
    return config


def imported(config, lenient=False):
    raw, warnings = _oci.import_config(config, BUNDLE, lenient=lenient)
    return load_spec(raw, base_dir=BUNDLE), raw, warnings


def import_errors(config):
    with pytest.raises(SpecError) as info:
        _oci.import_config(config, BUNDLE)
    return dict(info.value.errors)


def round_trip(spec, bundle="/srv/exported"):
    config, _files = _oci.export_bundle(spec, bundle)
    config = json.loads(json.dumps(config))  # what a file would hold
    raw, warnings = _oci.import_config(config, bundle)
    assert warnings == []
    return load_spec(raw, base_dir=bundle)


# ---------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------

def test_runc_default_config_imports_as_the_runc_defaults():
    spec, raw, warnings = imported(runc_spec())
    assert spec["name"] == "bundle"  # the bundle directory's name
    assert spec["rootfs"]["path"] == "/srv/bundle/rootfs"  # relative to the bundle, as runc
    assert spec["rootfs"]["readonly"] is True
    assert spec["hostname"] == "runc"
    assert spec["mounts"] == [dict(m) for m in _spec.RUNC_DEFAULT_MOUNTS]
    assert "mounts" not in raw and "masked_paths" not in raw  # defaults stay implicit
    assert [n["type"] for n in spec["namespaces"]] == ["mount", "uts", "ipc", "pid", "net"]
    # a plain runc bundle has no /etc binds: nothing is generated
    assert spec["etc"] == {"hosts": False, "hostname": False, "resolv_conf": False,
                           "extra_hosts": []}
    assert spec["volumes"] == []


def test_process_setup_fields_are_named_in_one_warning_never_dropped_silently():
    _spec_, _raw, warnings = imported(runc_spec())
    assert len(warnings) == 1
    for field in ("process.terminal", "process.capabilities", "process.rlimits",
                  "process.noNewPrivileges", "linux.resources"):
        assert field in warnings[0]


def test_false_or_empty_process_setup_fields_need_no_warning():
    config = runc_spec()
    config["process"].update(terminal=False, capabilities={}, rlimits=[], noNewPrivileges=False)
    del config["linux"]["resources"]
    assert imported(config)[2] == []


def test_absent_oci_fields_mean_what_they_mean_in_oci_not_our_defaults():
    config = runc_spec(root={"path": "/abs/rootfs"})
    del config["hostname"]
    del config["linux"]["maskedPaths"]
    del config["linux"]["readonlyPaths"]
    spec = imported(config)[0]
    assert spec["rootfs"]["path"] == "/abs/rootfs"
    assert spec["rootfs"]["readonly"] is False  # OCI root.readonly defaults to false
    assert spec["hostname"] is None             # runc keeps the inherited hostname
    assert spec["masked_paths"] == [] and spec["readonly_paths"] == []


@pytest.mark.parametrize("oci, ours", [("network", "net"), ("mount", "mount"), ("uts", "uts"),
                                       ("ipc", "ipc"), ("pid", "pid"), ("cgroup", "cgroup")])
def test_namespace_names(oci, ours):
    config = runc_spec()
    config["linux"]["namespaces"] = [{"type": "mount"}, {"type": "uts"}]
    if oci not in ("mount", "uts"):
        config["linux"]["namespaces"].append({"type": oci, "path": "/proc/1/ns/x"})
    spec = imported(config)[0]
    assert ours in [n["type"] for n in spec["namespaces"]]
    if oci not in ("mount", "uts"):
        assert {"type": ours, "path": "/proc/1/ns/x"} in spec["namespaces"]
        exported = _oci.export_bundle(spec, BUNDLE)[0]["linux"]["namespaces"]
        assert {"type": oci, "path": "/proc/1/ns/x"} in exported


@pytest.mark.parametrize("kind", ["user", "time"])
def test_user_and_time_namespaces_are_errors_or_lenient_warnings(kind):
    config = runc_spec()
    config["linux"]["namespaces"].append({"type": kind})
    assert "not supported" in import_errors(config)["linux.namespaces[5].type"]
    spec, _raw, warnings = imported(config, lenient=True)
    assert kind not in [n["type"] for n in spec["namespaces"]]
    assert any(w.startswith("linux.namespaces[5].type: namespace %r" % kind) for w in warnings)


@pytest.mark.parametrize("path, value", [
    ("hooks", {"prestart": [{"path": "/bin/true"}]}),
    ("domainname", "example.org"),
    ("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
    ("linux.gidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
    ("linux.sysctl", {"net.ipv4.ip_forward": "1"}),
    ("linux.mountLabel", "system_u:object_r:container_file_t:s0"),
    ("process.user.additionalGids", [10]),
    ("process.user.umask", 0o077),
    ("process.commandLine", "cmd.exe"),
    ("windows", {}),
])
def test_unsupported_fields_are_named_errors_and_lenient_warnings(path, value):
    config = runc_spec()
    parent = config
    for key in path.split(".")[:-1]:
        parent = parent[key]
    parent[path.split(".")[-1]] = value
    assert path in import_errors(config)
    spec, raw, warnings = imported(config, lenient=True)
    assert any(w.startswith(path + ":") and "--lenient" in w for w in warnings)


def test_unsupported_mount_type_and_runtime_options_are_named():
    config = runc_spec()
    config["mounts"] += [
        {"destination": "/data", "type": "overlay", "source": "overlay", "options": ["lowerdir=/a"]},
        {"destination": "/x", "type": "bind", "source": "/x", "options": ["rbind", "idmap"]},
        {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]},
        {"destination": "/y", "type": "bind", "source": "/y", "options": ["bind"],
         "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]},
    ]
    errors = import_errors(config)
    assert "'overlay'" in errors["mounts[7].type"]
    assert "'idmap'" in errors["mounts[8].options[1]"]
    assert "'tmpcopyup'" in errors["mounts[9].options[0]"]
    assert "mounts[10].uidMappings" in errors
    spec, _raw, warnings = imported(config, lenient=True)
    assert "/data" not in [m["target"] for m in spec["mounts"]]
    assert len(warnings) == 5


def test_relative_mount_destination_is_an_error():
    config = runc_spec()
    config["mounts"].append({"destination": "data", "type": "tmpfs", "source": "tmpfs"})
    assert "absolute" in import_errors(config)["mounts[7].destination"]


def test_every_bind_and_propagation_option_word_is_kept_in_order():
    words = ["rbind", "ro", "nosuid", "nodev", "noexec", "relatime", "strictatime", "noatime",
             "nodiratime", "rslave"]
    config = runc_spec()
    config["mounts"].append({"destination": "/data", "type": "none", "source": "data",
                             "options": words})
    spec = imported(config)[0]
    volume = spec["volumes"][0]
    assert volume["source"] == "/srv/bundle/data"  # bundle-relative, as runc resolves it
    assert volume["readonly"] and volume["recursive"] and volume["propagation"] == "rslave"
    assert volume["options"] == words[2:-1]
    assert round_trip(spec) == spec


@pytest.mark.parametrize("propagation", ["private", "rprivate", "slave", "rslave", "shared",
                                         "rshared", "unbindable", "runbindable"])
def test_bind_propagation_words(propagation):
    config = runc_spec()
    config["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv/data",
                             "options": ["bind", propagation]})
    spec = imported(config)[0]
    assert spec["volumes"][0]["propagation"] == propagation
    assert spec["volumes"][0]["recursive"] is False
    assert round_trip(spec) == spec


def test_binds_that_are_not_volume_shaped_stay_mounts_and_keep_their_place():
    config = runc_spec()
    config["mounts"] += [
        {"destination": "/a", "type": "bind", "source": "/srv/a", "options": ["rbind", "rslave"]},
        {"destination": "/b", "type": "bind", "source": "/srv/b", "options": ["rbind", "ro"]},
        {"destination": "/c", "type": "bind", "source": "/srv/c", "options": ["bind", "private"]},
    ]
    spec = imported(config)[0]
    # /a looks like a volume but precedes a plain mount: it stays a mount (order is kept)
    assert [m["target"] for m in spec["mounts"]][-2:] == ["/a", "/b"]
    assert [v["target"] for v in spec["volumes"]] == ["/c"]
    assert round_trip(spec) == spec


def test_tmpfs_with_size_and_mode():
    config = runc_spec()
    config["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=700"]})
    spec = imported(config)[0]
    assert spec["volumes"] == [{"type": "tmpfs", "target": "/run", "readonly": False,
                                "options": ["noexec"], "size": "1m", "mode": "0700"}]
    assert round_trip(spec) == spec


@pytest.mark.parametrize("kind", ["cgroup", "cgroup2", "proc", "sysfs", "devpts", "mqueue"])
def test_pseudo_filesystems_map_one_to_one(kind):
    config = runc_spec()
    config["mounts"].append({"destination": "/extra", "type": kind, "source": kind,
                             "options": ["nosuid"]})
    spec = imported(config)[0]
    assert spec["mounts"][-1] == {"target": "/extra", "type": kind, "source": kind,
                                  "options": ["nosuid"]}
    exported = _oci.export_bundle(spec, BUNDLE)[0]["mounts"][-1]
    assert exported == {"destination": "/extra", "type": kind, "source": kind, "options": ["nosuid"]}


def test_devices_file_mode_and_defaults():
    config = runc_spec()
    config["linux"]["devices"] = [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666, "uid": 0, "gid": 0},
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620, "gid": 5},
        {"path": "/dev/ptmx", "type": "c", "major": 5, "minor": 2},
    ]
    spec, raw, warnings = imported(config)
    assert raw["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                               "mode": "0620", "gid": 5}]
    assert "/dev/ptmx" in warnings[0]
    exported = _oci.export_bundle(spec, BUNDLE)[0]["linux"]["devices"]
    assert exported == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                         "fileMode": 0o620, "uid": 0, "gid": 5}]


def test_process_fields():
    config = runc_spec()
    config["process"].update(args=["/bin/app", "-v"], env=["A=1"], cwd="/srv",
                             user={"uid": 1000, "gid": 100, "umask": 0o022})
    spec = imported(config)[0]
    assert spec["process"] == {"args": ["/bin/app", "-v"], "env": ["A=1"], "cwd": "/srv",
                               "uid": 1000, "gid": 100}


def test_rootfs_propagation():
    config = runc_spec()
    config["linux"]["rootfsPropagation"] = "rslave"
    spec = imported(config)[0]
    assert spec["rootfs"]["propagation"] == "rslave"
    assert _oci.export_bundle(spec, BUNDLE)[0]["linux"]["rootfsPropagation"] == "rslave"


def test_bad_oci_version_and_missing_root():
    config = runc_spec(ociVersion="0.5.0")
    del config["root"]
    errors = import_errors(config)
    assert "ociVersion" in errors and "root.path" in errors


def test_spec_from_bundle_reads_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(runc_spec()))
    raw, warnings = _oci.spec_from_bundle(str(tmp_path))
    assert raw["rootfs"]["path"] == str(tmp_path / "rootfs")
    assert raw["name"] == tmp_path.name
    with pytest.raises(SpecError) as info:
        _oci.spec_from_bundle(str(tmp_path / "missing"))
    assert "cannot read" in str(info.value)


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------

def full_spec():
    return load_spec({
        "name": "web", "hostname": "web.example", "rootfs": {"path": "/srv/web/rootfs",
                                                             "readonly": False,
                                                             "propagation": "private"},
        "namespaces": ["mount", "uts", "ipc", "pid", {"type": "net", "path": "/run/netns/web"},
                       "cgroup"],
        "mounts": list(_spec.RUNC_DEFAULT_MOUNTS) + [
            {"target": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}],
        "volumes": [{"source": "/srv/web/data", "target": "/data", "readonly": True,
                     "propagation": "rslave"},
                    {"type": "tmpfs", "target": "/tmp", "size": "64m", "mode": "1777"}],
        "etc": {"extra_hosts": [{"address": "10.0.0.2", "names": ["db"]}]},
        "dns": {"nameservers": ["10.0.0.1"], "search": ["example"]},
        "devices": [{"path": "/dev/fuse", "major": 10, "minor": 229}],
        "add_masked_paths": ["/proc/cpuinfo"], "readonly_paths": ["/proc/sys"],
        "process": {"args": ["/bin/web"], "user": "33:33", "cwd": "/srv"},
        "state_dir": "/var/tmp/cfs", "run_dir": "/run/cfs",
    })


def test_export_writes_mounts_volumes_then_etc_binds_of_bundle_files():
    config, files = _oci.export_bundle(full_spec(), "/srv/b")
    targets = [m["destination"] for m in config["mounts"]]
    assert targets[:7] == [m["target"] for m in _spec.RUNC_DEFAULT_MOUNTS]
    assert targets[7:] == ["/run", "/data", "/tmp", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    assert config["mounts"][8]["options"] == ["rbind", "ro", "rslave"]
    assert config["mounts"][9]["options"] == ["nosuid", "nodev", "size=64m", "mode=1777"]
    assert config["mounts"][-1] == {"destination": "/etc/resolv.conf", "type": "bind",
                                    "source": "/srv/b/etc/resolv.conf", "options": ["bind"]}
    assert files["etc/hosts"][0].endswith("10.0.0.2\tdb\n")
    assert files["etc/resolv.conf"][0] == "nameserver 10.0.0.1\nsearch example\n"
    assert config["process"]["user"] == {"uid": 33, "gid": 33}
    assert config["process"]["terminal"] is False
    assert "capabilities" not in config["process"]


def test_export_of_resolv_conf_without_dns_copies_the_hosts():
    _config, files = _oci.export_bundle(load_spec({"name": "a", "rootfs": {"path": "/r"}}), "/b")
    assert files["etc/resolv.conf"] == (None, "/etc/resolv.conf")


def test_export_refuses_an_overlay_root():
    spec = load_spec({"name": "a", "rootfs": {"path": "/r", "overlay": True}})
    with pytest.raises(SpecError) as info:
        _oci.export_bundle(spec, "/b")
    assert info.value.errors[0][0] == "rootfs.overlay"


def test_round_trip_of_a_full_spec():
    spec = full_spec()
    assert round_trip(spec) == spec


def test_round_trip_when_mounts_end_with_a_volume_shaped_entry():
    spec = full_spec()
    assert spec["mounts"][-1]["target"] == "/run"  # looks like a tmpfs volume
    config = _oci.export_bundle(spec, "/b")[0]
    del config["annotations"]  # without our counts the heuristic makes /run a volume
    config["mounts"] = [m for m in config["mounts"] if not m["destination"].startswith("/etc/")]
    raw, _warnings = _oci.import_config(config, "/b")
    assert raw["volumes"][0]["target"] == "/run"
    assert round_trip(spec) == spec  # with them it is exact


def test_user_edits_to_the_exported_mounts_win_over_the_annotation():
    spec = full_spec()
    config = _oci.export_bundle(spec, "/b")[0]
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/etc/hosts"]
    config["mounts"].insert(8, {"destination": "/opt", "type": "bind", "source": "/opt",
                                "options": ["rbind"]})
    spec2 = load_spec(_oci.import_config(config, "/b")[0], base_dir="/b")
    assert spec2["etc"]["hosts"] is False and spec2["etc"]["resolv_conf"] is True
    assert [m["target"] for m in spec2["mounts"]][-2:] == ["/run", "/opt"]


EXAMPLES = sorted(glob.glob(os.path.join(REPO_ROOT, "examples", "*.yml")))


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_example_round_trips(path):
    with open(path) as f:
        spec = load_spec(yaml.safe_load(f), base_dir=os.path.dirname(path))
    if spec["rootfs"]["overlay"]:
        pytest.skip("an overlay root has no OCI form (export refuses it)")
    assert round_trip(spec) == spec


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([CLI] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60, check=False)


def test_cli_bundle_import_export(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(runc_spec()))
    result = cli("plan", "--bundle", str(bundle))
    assert result.returncode == 0, result.stderr
    assert "mount sysfs sysfs on /sys" in result.stdout
    assert "warning: ignored (runtime process setup" in result.stderr
    result = cli("import", str(bundle / "config.json"), "-o", str(tmp_path / "spec.yml"))
    assert result.returncode == 0, result.stderr
    assert cli("validate", str(tmp_path / "spec.yml")).returncode == 0
    result = cli("export", str(tmp_path / "spec.yml"), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    exported = json.loads((tmp_path / "out" / "config.json").read_text())
    assert [m["destination"] for m in exported["mounts"]] == \
        [m["destination"] for m in RUNC_SPEC["mounts"]]
    assert cli("validate", "--bundle", str(tmp_path / "out")).returncode == 0


def test_cli_unsupported_field_exits_2_unless_lenient(tmp_path):
    config = runc_spec()
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = cli("validate", "--bundle", str(tmp_path))
    assert result.returncode == 2 and "linux.uidMappings: user namespaces" in result.stderr
    result = cli("validate", "--bundle", str(tmp_path), "--lenient")
    assert result.returncode == 0 and "linux.uidMappings" in result.stderr
    assert cli("validate", "spec.yml", "--bundle", str(tmp_path)).returncode == 1
