"""fromscratch.containerfs.container, run for real through ansible-playbook.

Each test works under its own tmp dir (state_dir, run_dir); tests/run runs pytest in a
private mount namespace, and every test removes what it made.
"""
import os
import signal
import subprocess
import time

import pytest

from tests.lib.playbook import run_playbook
from tests.lib.hostile import render_spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def spec(tmp_path, rootfs):
    return {
        "name": "box",
        "hostname": "box",
        "rootfs": {"path": rootfs, "overlay": True},
        "state_dir": str(tmp_path / "state"),
        "run_dir": str(tmp_path / "run"),
        "volumes": [{"source": str(tmp_path / "data"), "target": "/data", "readonly": True}],
        "dns": {"nameservers": ["10.0.0.1"]},
    }


def task(spec, state="present", **extra):
    args = {"spec": spec, "state": state}
    args.update(extra)
    return {"name": "container %s" % state, "fromscratch.containerfs.container": args}


def inside(spec, command):
    """Run a command in the container's pinned namespaces (host binaries, host root view)."""
    ns = os.path.join(spec["run_dir"], spec["name"], "ns")
    return subprocess.run(["nsenter", "--mount=%s/mnt" % ns, "--uts=%s/uts" % ns, "sh", "-c", command],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=True).stdout


def container_mounts(spec):
    root = os.path.join(spec["run_dir"], spec["name"], "rootfs")
    table = {}
    for line in inside(spec, "cat /proc/self/mountinfo").splitlines():
        fields = line.split()
        point = fields[4]
        if point == root or point.startswith(root + "/"):
            table[point[len(root):] or "/"] = (fields[fields.index("-") + 1], set(fields[5].split(",")))
    return table


def host_mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if l.split()[4].startswith(path)]


def test_present_builds_then_idempotent_then_absent(tmp_path, spec):
    os.makedirs(spec["volumes"][0]["source"])
    first = run_playbook(tmp_path, [task(spec)], diff=True)[0]
    assert first["changed"] is True
    assert any("mount devpts" in a for a in first["actions"])
    assert "mount sysfs sysfs on /sys (nosuid,noexec,nodev,ro)" in first["diff"]["after"]
    assert "mount sysfs" not in first["diff"]["before"]
    assert first["container"]["namespaces"]["mnt"].endswith("/ns/mnt")

    mounts = container_mounts(spec)
    assert mounts["/"][0] == "overlay" and "ro" in mounts["/"][1]
    assert mounts["/dev"][0] == "tmpfs" and "nosuid" in mounts["/dev"][1]
    assert mounts["/dev/pts"][0] == "devpts"
    assert mounts["/sys"][0] == "sysfs" and "ro" in mounts["/sys"][1]
    assert mounts["/data"][1] >= {"ro"}
    assert "/proc" not in mounts, "the /proc of a pid namespace waits for the process"
    assert inside(spec, "hostname").strip() == "box"
    root = os.path.join(spec["run_dir"], "box", "rootfs")
    assert inside(spec, "cat %s/etc/resolv.conf" % root) == "nameserver 10.0.0.1\n"
    assert inside(spec, "stat -c '%%F %%t:%%T %%a' %s/dev/null" % root).strip() == \
        "character special file 1:3 666"
    # the host sees none of the container's mounts, only the pinned namespaces
    assert host_mounts_under(root) == []

    second = run_playbook(tmp_path, [task(spec)])[0]
    assert second["changed"] is False, second["actions"]
    assert second["actions"] == []

    gone = run_playbook(tmp_path, [task(spec, state="absent")])[0]
    assert gone["changed"] is True
    assert host_mounts_under(spec["run_dir"]) == []
    assert not os.path.exists(os.path.join(spec["run_dir"], "box"))
    assert not os.path.exists(os.path.join(spec["state_dir"], "containers", "box"))
    assert run_playbook(tmp_path, [task(spec, state="absent")])[0]["changed"] is False


def test_check_mode_changes_nothing(tmp_path, spec):
    os.makedirs(spec["volumes"][0]["source"])
    result = run_playbook(tmp_path, [task(spec)], check=True)[0]
    assert result["changed"] is True
    assert any("pin fresh namespaces" in a for a in result["actions"])
    assert not os.path.exists(os.path.join(spec["run_dir"], "box", "ns"))
    assert not os.path.exists(os.path.join(spec["state_dir"], "containers", "box"))


def test_drift_is_repaired(tmp_path, spec):
    os.makedirs(spec["volumes"][0]["source"])
    run_playbook(tmp_path, [task(spec)])
    root = os.path.join(spec["run_dir"], "box", "rootfs")
    inside(spec, "umount %s/dev/shm && rm %s/dev/zero && hostname other" % (root, root))
    check = run_playbook(tmp_path, [task(spec)], check=True)[0]
    assert check["changed"] is True
    assert sorted(check["actions"]) == sorted([
        "mount tmpfs shm on /dev/shm (nosuid,noexec,nodev,mode=1777,size=65536k)",
        "mknod /dev/zero c 1:5 mode 0666 uid 0 gid 0", "hostname box"])
    fixed = run_playbook(tmp_path, [task(spec)])[0]
    assert fixed["actions"] == check["actions"]
    assert container_mounts(spec)["/dev/shm"][0] == "tmpfs"
    assert inside(spec, "hostname").strip() == "box"
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_changed_spec_rebuilds(tmp_path, spec):
    os.makedirs(spec["volumes"][0]["source"])
    run_playbook(tmp_path, [task(spec)])
    spec["volumes"] = []
    result = run_playbook(tmp_path, [task(spec)])[0]
    assert result["changed"] is True
    assert "/data" not in container_mounts(spec)
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_a_changed_spec_diff_shows_what_changes_not_the_whole_list(tmp_path, spec):
    """Diff mode of a rebuild: the mounts, files and process settings that go and come,
    nothing that stays (the /proc, /dev and /sys mounts are the same)."""
    os.makedirs(spec["volumes"][0]["source"])
    run_playbook(tmp_path, [task(spec)])
    spec["volumes"] = [{"type": "tmpfs", "target": "/scratch"}]
    spec["hostname"] = "renamed"
    spec["process"] = {"args": ["sleep", "5"]}
    result = run_playbook(tmp_path, [task(spec)], diff=True)[0]
    removed, added = result["diff"]["before"].splitlines(), result["diff"]["after"].splitlines()
    assert any("/data" in line for line in removed) and not any("/data" in line for line in added)
    assert any(line.startswith("mount tmpfs") and "/scratch" in line for line in added), added
    assert any("hostname" in line and "renamed" in line for line in added), added
    assert 'process args ["sleep", "5"]' in added and 'process args ["sleep", "5"]' not in removed
    assert not any("/sys " in line or "/proc " in line for line in removed + added), (removed, added)
    assert result["changed"] is True
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_bad_spec_fails_with_field_path_and_touches_nothing(tmp_path, spec):
    spec["volumes"] = [{"source": "/x", "target": "relative"}]
    result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
    assert result["failed"]
    assert "volumes[0].target: must be an absolute path inside the container" in result["msg"]
    assert not os.path.exists(spec["run_dir"])
    assert not os.path.exists(spec["state_dir"])


def test_symlink_target_stays_inside_rootfs(tmp_path, spec, rootfs):
    """A volume target through an image symlink (/data -> /etc) lands in the rootfs's /etc."""
    image = tmp_path / "image"
    subprocess.run(["cp", "-a", rootfs, str(image)], check=True)
    os.symlink("/etc", str(image / "link"))
    outside = tmp_path / "outside"
    outside.mkdir()
    spec["rootfs"] = {"path": str(image), "overlay": True}
    spec["volumes"] = [{"type": "tmpfs", "target": "/link/mnt"}]
    run_playbook(tmp_path, [task(spec)])
    mounts = container_mounts(spec)
    assert mounts["/etc/mnt"][0] == "tmpfs"
    assert not os.path.exists("/etc/mnt"), "nothing lands on the host's /etc"
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_bundle_from_runc_spec(tmp_path, rootfs):
    """bundle: an OCI bundle as runc reads it (config.json of `runc spec`, its rootfs)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["cp", "-a", rootfs, str(bundle / "rootfs")], check=True)
    subprocess.run(["runc", "spec"], cwd=str(bundle), check=True)
    args = {"bundle": str(bundle), "name": "oci", "lenient": True,
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    first = run_playbook(tmp_path, [{"name": "bundle", "fromscratch.containerfs.container": args}])[0]
    assert first["changed"] is True
    # runc's own options for its fields, e.g. terminal and capabilities: named, not dropped
    assert any("capabilities" in w for w in first.get("warnings", [])), first.get("warnings")
    spec = {"name": "oci", "run_dir": args["run_dir"]}
    root = first["container"]["root"]
    assert root == str(bundle / "rootfs")
    mounts = {}
    for line in inside(spec, "cat /proc/self/mountinfo").splitlines():
        fields = line.split()
        if fields[4].startswith(root):
            mounts[fields[4][len(root):] or "/"] = fields[fields.index("-") + 1]
    assert mounts["/"] and mounts["/dev"] == "tmpfs" and mounts["/sys"] == "sysfs"
    assert inside(spec, "hostname").strip() == "runc"
    again = run_playbook(tmp_path, [{"name": "bundle", "fromscratch.containerfs.container": args}])[0]
    assert again["changed"] is False, again["actions"]
    args["state"] = "absent"
    run_playbook(tmp_path, [{"name": "bundle", "fromscratch.containerfs.container": args}])
    assert not os.path.exists(os.path.join(args["run_dir"], "oci"))
    assert not os.path.exists(os.path.join(args["state_dir"], "containers", "oci"))


def test_readonly_paths_keep_the_flags_of_their_filesystem(tmp_path, spec):
    """A read-only path keeps nosuid/nodev/noexec of what it lies on (a bind remount sets
    exactly the flags it is given): from the plan for sysfs, from mountinfo for a volume."""
    os.makedirs(os.path.join(spec["volumes"][0]["source"], "sub"))
    spec["volumes"][0].update(readonly=False, options=["nosuid", "nodev"])
    spec["add_readonly_paths"] = ["/sys/kernel", "/data/sub"]
    run_playbook(tmp_path, [task(spec)])
    mounts = container_mounts(spec)
    assert {"ro", "nosuid", "nodev", "noexec"} <= mounts["/sys/kernel"][1]
    assert {"ro", "nosuid", "nodev"} <= mounts["/data/sub"][1]
    assert "noexec" not in mounts["/data/sub"][1]
    assert run_playbook(tmp_path, [task(spec)])[0]["changed"] is False
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_info_reports_mounts_and_drift_and_absent_by_name(tmp_path, spec):
    """container_info: exists, the mount table from inside, drift; then absent by name
    alone finds everything from the recorded plan."""
    os.makedirs(spec["volumes"][0]["source"])
    info_task = {"name": "info", "fromscratch.containerfs.container_info":
                 {"name": "box", "state_dir": spec["state_dir"]}}
    assert run_playbook(tmp_path, [info_task])[0]["exists"] is False
    run_playbook(tmp_path, [task(spec)])
    info = run_playbook(tmp_path, [info_task])[0]
    assert info["changed"] is False and info["exists"] is True
    points = {m["mount_point"]: m["fstype"] for m in info["container"]["mounts"]}
    assert points["/"] == "overlay" and points["/dev"] == "tmpfs" and points["/data"]
    assert info["container"]["drift"] == []
    root = os.path.join(spec["run_dir"], "box", "rootfs")
    inside(spec, "umount %s/dev/mqueue" % root)
    drift = run_playbook(tmp_path, [info_task])[0]["container"]["drift"]
    assert drift == ["mount mqueue mqueue on /dev/mqueue (nosuid,noexec,nodev)"]
    assert "/dev/mqueue" not in container_mounts(spec), "info repairs nothing"
    by_name = {"name": "absent", "fromscratch.containerfs.container":
               {"name": "box", "state": "absent", "state_dir": spec["state_dir"]}}
    assert run_playbook(tmp_path, [by_name])[0]["changed"] is True
    assert host_mounts_under(spec["run_dir"]) == []
    assert not os.path.exists(os.path.join(spec["run_dir"], "box"))
    assert run_playbook(tmp_path, [info_task])[0]["exists"] is False
    # nothing recorded any more: absent by name takes the paths from the layout, no change
    assert run_playbook(tmp_path, [by_name])[0]["changed"] is False


def test_info_lists_a_module_container_and_a_script_run(tmp_path, spec, rootfs):
    """container_info without a name: a container the module set up is present (mounts,
    no drift); a container the rendered script runs, in the same state and run dirs, is
    running with the pid in its pid file, listed and by name, without waiting for the lock
    the script's run holds."""
    os.makedirs(spec["volumes"][0]["source"])
    run_playbook(tmp_path, [task(spec)])
    script_spec = {"name": "job", "rootfs": {"path": rootfs, "overlay": True},
                   "state_dir": spec["state_dir"], "run_dir": spec["run_dir"],
                   "process": {"args": ["sleep", "60"]}}
    case_dir = tmp_path / "job"
    case_dir.mkdir()
    script = render_spec(script_spec, str(case_dir))
    pid_file = os.path.join(spec["run_dir"], "job", "pid")
    dirs = {"state_dir": spec["state_dir"], "run_dir": spec["run_dir"], "lock_timeout": 2}
    run = subprocess.Popen(["dash", script, "run"], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not (os.path.exists(pid_file) and open(pid_file).read().strip()):
            assert time.monotonic() < deadline and run.poll() is None, "the script did not start"
            time.sleep(0.05)
        pid = int(open(pid_file).read().split()[0])
        listed, by_name = run_playbook(tmp_path, [
            {"name": "list", "fromscratch.containerfs.container_info": dirs},
            {"name": "job", "fromscratch.containerfs.container_info": dict(dirs, name="job")}])
        containers = {c["name"]: c for c in listed["containers"]}
        assert sorted(containers) == ["box", "job"], listed
        assert containers["box"]["state"] == "present" and containers["box"]["drift"] == []
        assert containers["box"]["mounts"] > 0 and containers["box"]["pid"] is None
        assert containers["job"]["state"] == "running" and containers["job"]["pid"] == pid
        assert containers["job"]["mounts"] is None and containers["job"]["image"] is None
        assert by_name["state"] == "running" and by_name["exists"] is False
    finally:
        try:
            os.kill(int(open(pid_file).read().split()[0]), signal.SIGKILL)
        except (OSError, ValueError):
            run.kill()
        run.wait(timeout=15)
    listed = run_playbook(tmp_path, [{"name": "list", "fromscratch.containerfs.container_info": dirs}])[0]
    assert [c["name"] for c in listed["containers"]] == ["box"], "a finished run is not listed"
    run_playbook(tmp_path, [task(spec, state="absent")])
    listed = run_playbook(tmp_path, [{"name": "list", "fromscratch.containerfs.container_info": dirs}])[0]
    assert listed["containers"] == []


# Issue 8: read-only from the typed options the plan built, applied the way runc does.
# The same three cases run through the rendered script in test_script_volumes.py.

def test_readonly_volume_is_read_only_and_rw_with_readonly_is_refused(tmp_path, spec):
    os.makedirs(spec["volumes"][0]["source"])
    spec["volumes"][0]["options"] = ["rw"]
    result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
    assert "volumes[0].options[0]" in result["msg"] and "readonly" in result["msg"], result["msg"]
    del spec["volumes"][0]["options"]
    run_playbook(tmp_path, [task(spec)])
    assert "ro" in container_mounts(spec)["/data"][1]
    root = os.path.join(spec["run_dir"], "box", "rootfs")
    denied = subprocess.run(["nsenter", "--mount=%s/box/ns/mnt" % spec["run_dir"], "touch",
                             root + "/data/denied"], stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_readonly_path_on_a_tmpfs_volume_keeps_its_nosuid_nodev(tmp_path, spec):
    spec["volumes"] = [{"type": "tmpfs", "target": "/scratch"}]
    spec["process"] = {"args": ["sh"], "cwd": "/scratch/sub"}
    spec["add_readonly_paths"] = ["/scratch/sub"]
    run_playbook(tmp_path, [task(spec)])
    assert {"ro", "nosuid", "nodev"} <= container_mounts(spec)["/scratch/sub"][1]
    assert run_playbook(tmp_path, [task(spec)])[0]["changed"] is False
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_readonly_tmpfs_volume_with_a_bind_below_it(tmp_path, spec):
    """Mounted read-write, remounted read-only once the bind below exists (finalizeRootfs);
    a second run finds nothing to do."""
    source = spec["volumes"][0]["source"]
    os.makedirs(source)
    spec["volumes"] = [{"type": "tmpfs", "target": "/scratch", "readonly": True},
                       {"source": source, "target": "/scratch/sub"}]
    first = run_playbook(tmp_path, [task(spec)])[0]
    assert "remount /scratch read-only (remount,nosuid,nodev,ro)" in first["actions"]
    mounts = container_mounts(spec)
    assert mounts["/scratch"][0] == "tmpfs" and {"ro", "nosuid", "nodev"} <= mounts["/scratch"][1]
    assert "/scratch/sub" in mounts and "rw" in mounts["/scratch/sub"][1]
    assert run_playbook(tmp_path, [task(spec)])[0]["changed"] is False
    run_playbook(tmp_path, [task(spec, state="absent")])


def test_a_mask_over_a_bind_is_idempotent(tmp_path, spec):
    """Mounts stack on one point (the /etc/hostname bind, then a mask over it): each step
    is checked against its own mount in the stack, so a second run finds nothing to do."""
    spec["add_masked_paths"] = ["/etc/hostname"]
    os.makedirs(spec["volumes"][0]["source"])
    first = run_playbook(tmp_path, [task(spec)])[0]
    assert any(a.startswith("mask /etc/hostname") for a in first["actions"]), first["actions"]
    second = run_playbook(tmp_path, [task(spec)])[0]
    assert second["changed"] is False, second["actions"]
    hostname = os.path.join(spec["run_dir"], spec["name"], "rootfs", "etc", "hostname")
    assert inside(spec, "wc -c < %s" % hostname).strip() == "0"  # /dev/null over the bind
    run_playbook(tmp_path, [task(spec, state="absent")])
