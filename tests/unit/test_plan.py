"""The plan: order, options and determinism."""
import copy
import json

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import (
    build_plan, format_plan, STEP_KINDS)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import load_spec


def spec_of(**extra):
    raw = {"name": "demo", "rootfs": {"path": "/srv/rootfs"}, "state_dir": "/s", "run_dir": "/r"}
    raw.update(extra)
    return load_spec(raw)


def ops(plan):
    return [s["op"] for s in plan["steps"]]


def test_plan_is_deterministic():
    spec = spec_of(volumes=[{"source": "/a", "target": "/data"}], add_masked_paths=["/x"])
    first = json.dumps(build_plan(spec), sort_keys=True)
    for _attempt in range(3):
        assert json.dumps(build_plan(copy.deepcopy(spec)), sort_keys=True) == first
    assert build_plan(spec)["digest"] == build_plan(copy.deepcopy(spec))["digest"]
    assert build_plan(spec_of(hostname="other"))["digest"] != build_plan(spec)["digest"]


def test_phases_are_in_runc_order():
    plan = build_plan(spec_of(volumes=[{"source": "/a", "target": "/data"}]))
    order = ops(plan)
    first = {op: order.index(op) for op in reversed(order)}
    assert first["namespaces"] < first["mount_rootfs"] < first["mount"] < first["mknod"]
    assert first["mknod"] < first["readonly_path"] < first["mask_path"]
    assert first["mask_path"] < first["remount_root_readonly"] < first["pivot_root"] < first["exec"]
    assert order[-1] == "exec"
    assert all(op in STEP_KINDS for op in order)


def test_mounts_keep_spec_order_then_volumes_then_etc():
    plan = build_plan(spec_of(volumes=[{"source": "/a", "target": "/data"}]))
    targets = [s["target"] for s in plan["steps"] if s["op"] in ("mount", "cgroup")]
    assert targets == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                       "/sys/fs/cgroup", "/data", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]


def test_runc_default_options_reach_the_plan():
    plan = build_plan(spec_of())
    by_target = {s["target"]: s for s in plan["steps"] if s["op"] in ("mount", "cgroup")}
    assert by_target["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert by_target["/sys"]["options"] == ["nosuid", "noexec", "nodev", "ro"]
    assert by_target["/proc"]["no_symlinks"] and by_target["/sys"]["no_symlinks"]
    assert not by_target["/dev"]["no_symlinks"]


def test_volume_options():
    plan = build_plan(spec_of(volumes=[
        {"source": "/a", "target": "/ro", "readonly": True, "recursive": False, "propagation": "rslave"},
        {"type": "tmpfs", "target": "/t", "size": "1m", "mode": "0700", "options": ["noexec"]},
    ]))
    by_target = {s["target"]: s for s in plan["steps"] if s["op"] == "mount"}
    assert by_target["/ro"]["options"] == ["bind", "ro", "rslave"]
    assert by_target["/ro"]["create"] == "match_source"
    assert by_target["/t"]["options"] == ["nosuid", "nodev", "noexec", "size=1m", "mode=0700"]


def test_overlay_rootfs_uses_state_and_run_dirs():
    plan = build_plan(spec_of(rootfs={"path": "/img", "overlay": True}))
    rootfs = [s for s in plan["steps"] if s["op"] == "mount_rootfs"][0]
    assert rootfs["kind"] == "overlay"
    assert rootfs["lower"] == ["/img"]
    assert rootfs["upper"] == "/s/containers/demo/upper"
    assert rootfs["target"] == "/r/demo/rootfs" == plan["paths"]["root"]


def test_optional_steps_follow_the_spec():
    plan = build_plan(spec_of(rootfs={"path": "/r", "readonly": False, "propagation": "rshared"},
                              etc={"hosts": False, "resolv_conf": False}, namespaces=["mount"]))
    assert "remount_root_readonly" not in ops(plan)
    assert "hostname" not in ops(plan)
    assert [s["propagation"] for s in plan["steps"] if s["op"] == "root_propagation"] == ["rshared"]
    assert not [s for s in plan["steps"] if s["op"] == "mount" and s["target"].startswith("/etc")]


def test_dns_settings_are_written_else_host_copy():
    plan = build_plan(spec_of(dns={"nameservers": ["10.0.0.1"], "search": ["a.example"],
                                   "options": ["ndots:2"]},
                              etc={"extra_hosts": [{"address": "10.0.0.9", "names": ["db", "db.lan"]}]}))
    files = {s["path"].rsplit("/", 1)[1]: s for s in plan["steps"] if s["op"] == "write_file"}
    assert files["resolv.conf"]["content"] == "nameserver 10.0.0.1\nsearch a.example\noptions ndots:2\n"
    assert "10.0.0.9\tdb db.lan\n" in files["hosts"]["content"]
    assert "127.0.0.1\tlocalhost runc\n" in files["hosts"]["content"]
    copies = [s for s in build_plan(spec_of())["steps"] if s["op"] == "copy_file"]
    assert copies[0]["source"] == "/etc/resolv.conf"


def test_dev_bind_skips_device_setup():
    spec = spec_of(mounts=[{"target": "/proc", "type": "proc"},
                           {"target": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}])
    assert "mknod" not in ops(build_plan(spec))


def test_format_plan_lists_every_step():
    plan = build_plan(spec_of())
    text = format_plan(plan)
    numbered = [line for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert len(numbered) == len(plan["steps"])
    assert "mount tmpfs tmpfs on /dev (nosuid,strictatime,mode=755,size=65536k)" in text
