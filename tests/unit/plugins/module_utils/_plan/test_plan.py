"""The plan: order, options and determinism."""
import copy
import json

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import (
    build_plan, format_plan, MOUNT_STEPS, STEP_KINDS)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import host_steps, root_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec


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
    assert mountopts.words(by_target["/dev"]["options"]) == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert by_target["/dev"]["options"]["data"] == ["mode=755", "size=65536k"]
    assert mountopts.words(by_target["/sys"]["options"]) == ["nosuid", "noexec", "nodev", "ro"]
    assert by_target["/proc"]["no_symlinks"] and by_target["/sys"]["no_symlinks"] and by_target["/dev"]["no_symlinks"]
    assert not by_target["/dev/shm"]["no_symlinks"]


def test_volume_options():
    plan = build_plan(spec_of(volumes=[
        {"source": "/a", "target": "/ro", "readonly": True, "recursive": False, "propagation": "rslave"},
        {"type": "tmpfs", "target": "/t", "size": "1m", "mode": "0700", "options": ["noexec"]},
    ]))
    by_target = {s["target"]: s for s in plan["steps"] if s["op"] == "mount"}
    assert by_target["/ro"]["options"] == dict(mountopts.empty(), bind="bind", set=["ro"], propagation="rslave")
    assert by_target["/ro"]["create"] == "match_source"
    assert by_target["/t"]["options"] == dict(mountopts.empty(), set=["nosuid", "nodev", "noexec"],
                                              data=["size=1m", "mode=0700"])


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


# ---------------------------------------------------------------------------------------
# Issue 8: typed options on every mount-like step; every kind has a handler everywhere
# ---------------------------------------------------------------------------------------

def full_plan():
    return build_plan(spec_of(
        hostname="box", rootfs={"path": "/img", "overlay": True, "propagation": "rshared"},
        volumes=[{"source": "/a", "target": "/data", "readonly": True},
                 {"type": "tmpfs", "target": "/scratch", "readonly": True},
                 {"source": "/b", "target": "/scratch/sub"}],
        process={"args": ["sh"], "cwd": "/srv"}, add_readonly_paths=["/data"], add_masked_paths=["/x"]))


def test_every_mount_like_step_carries_typed_options():
    for step in full_plan()["steps"] + build_plan(spec_of())["steps"]:
        if step["op"] in MOUNT_STEPS:
            assert sorted(step["options"]) == sorted(mountopts.empty()), step
            assert mountopts.parse(mountopts.words(step["options"])) == step["options"], step


def test_plan_kinds_are_the_mount_steps_and_more():
    assert set(MOUNT_STEPS) <= set(STEP_KINDS)
    ops_seen = set(ops(full_plan())) | set(ops(build_plan(spec_of())))
    assert ops_seen >= set(STEP_KINDS) - {"unpack_layer"}, set(STEP_KINDS) - ops_seen


def test_every_step_kind_has_an_applier_handler():
    elsewhere = set(host_steps.HOST_STEP_KINDS) | set(root_steps.STARTED_STEP_KINDS)
    for kind in STEP_KINDS:
        if kind in elsewhere:
            continue
        for prefix in ("check_", "do_"):
            assert callable(getattr(root_steps.RootSteps, prefix + kind, None)), \
                "the applier has no RootSteps.%s%s" % (prefix, kind)


def test_every_host_step_kind_has_a_host_handler():
    assert set(host_steps.HOST_STEP_KINDS) <= set(STEP_KINDS)
    for kind in set(host_steps.HOST_STEP_KINDS) - {"namespaces", "unpack_layer"}:
        for prefix in ("check_", "do_"):
            assert callable(getattr(host_steps.HostSteps, prefix + kind, None)), \
                "the applier has no HostSteps.%s%s" % (prefix, kind)
    assert callable(host_steps.HostSteps.unpack_layer)


def test_every_step_kind_has_a_script_handler():
    from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render
    assert set(_render.STEP_HANDLERS) == set(STEP_KINDS)


def test_readonly_volume_wins_over_its_words():
    """`readonly: true` is applied after the option words (validation refuses rw with it;
    a plan built from an unvalidated spec is read-only all the same)."""
    spec = spec_of(volumes=[{"source": "/a", "target": "/data", "readonly": True}])
    spec["volumes"][0]["options"] = ["rw"]
    step = [s for s in build_plan(spec)["steps"] if s.get("target") == "/data"][0]
    assert mountopts.is_readonly(step["options"]) and "rw" not in step["options"]["clear"]


def test_readonly_mount_with_a_mount_below_is_remounted_at_the_end():
    plan = full_plan()
    steps = plan["steps"]
    scratch = [s for s in steps if s["op"] == "mount" and s["target"] == "/scratch"][0]
    assert scratch["readonly_later"] and not mountopts.is_readonly(scratch["options"])
    late = [s for s in steps if s["op"] == "remount_readonly"]
    assert [s["target"] for s in late] == ["/scratch"]
    assert late[0]["options"]["set"] == ["remount", "nosuid", "nodev", "ro"]
    assert late[0]["source"] == "none"  # or mount --all skips it as "already mounted"
    below = [i for i, s in enumerate(steps) if s.get("target") == "/scratch/sub"][0]
    assert below < steps.index(late[0]) < ops(plan).index("remount_root_readonly")
    # nothing below /data: read-only at once
    data = [s for s in steps if s["op"] == "mount" and s["target"] == "/data"][0]
    assert mountopts.is_readonly(data["options"]) and not data["readonly_later"]


def test_readonly_path_keeps_the_flags_the_plan_built():
    """The flags of the tmpfs volume (nosuid, nodev, set by the plan, not by the user's
    words) reach the read-only bind of a path on it; on a bind they come from mountinfo."""
    plan = build_plan(spec_of(volumes=[{"type": "tmpfs", "target": "/scratch"},
                                       {"source": "/a", "target": "/data"}],
                              add_readonly_paths=["/scratch/sub", "/data/sub"]))
    by_path = {s["path"]: s for s in plan["steps"] if s["op"] == "readonly_path"}
    assert by_path["/scratch/sub"]["options"]["set"] == ["ro", "nosuid", "nodev"]
    assert by_path["/scratch/sub"]["keep_live_flags"] is False
    assert by_path["/data/sub"]["options"]["set"] == ["ro"]
    assert by_path["/data/sub"]["keep_live_flags"] is True


def test_namespace_decisions_are_data():
    step = [s for s in build_plan(spec_of())["steps"] if s["op"] == "namespaces"][0]
    assert step["propagation"] == "rslave" and step["fork"] is True
    step = [s for s in build_plan(spec_of(namespaces=["mount", "uts"]))["steps"] if s["op"] == "namespaces"][0]
    assert step["fork"] is False


def test_a_symlink_step_names_its_content_link_to_not_target():
    links = [s for s in build_plan(spec_of())["steps"] if s["op"] == "symlink"]
    pairs = [(s["path"], s["link_to"]) for s in links]
    assert pairs[:2] == [("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0")]
    assert all("target" not in s for s in links)
