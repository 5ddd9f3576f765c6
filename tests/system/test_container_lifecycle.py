"""fromscratch.containerfs.container's lifecycle, for real through ansible-playbook:
present installs the script, started/stopped/restart/recreate/absent run the container's
process with it, check mode and diff predict, ten containers converge at once.

Every test works under its own tmp dir; the cleanup kills what it started by the pids in
RUN/pid and RUN/monitor and removes the containers.
"""
import os
import subprocess

import pytest

from tests.lib.playbook import run_playbook
from tests.system import _lifecycle as L

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def spec(tmp_path, rootfs):
    spec = L.make_spec(tmp_path, rootfs)
    yield spec
    L.kill_all(spec["state_dir"], spec["run_dir"])


def play(tmp_path, *tasks, **kwargs):
    return run_playbook(tmp_path, list(tasks), **kwargs)


def test_present_installs_the_script_and_starts_nothing(tmp_path, spec):
    paths = L.paths_of(spec)
    first = play(tmp_path, L.task(spec, "present"))[0]
    assert first["changed"] is True
    assert "install the script %s" % paths["script"] in first["actions"]
    assert os.stat(paths["script"]).st_mode & 0o777 == 0o700
    with open(paths["script"]) as f:
        head = f.read(4096)
    assert "from spec %s." % first["container"]["digest"] in head
    assert first["container"]["state"] == "stopped" and first["container"]["pid"] is None
    assert first["container"]["unit"] is None
    assert not os.path.exists(paths["pid"]) and not os.path.exists(paths["monitor"])
    assert "_script" not in first["invocation"]["module_args"]
    again = play(tmp_path, L.task(spec, "present"))[0]
    assert again["changed"] is False and again["actions"] == []


def pid_file(spec):
    with open(L.paths_of(spec)["pid"]) as f:
        return [int(v) for v in f.read().split()]


def started(tmp_path, spec, **extra):
    result = play(tmp_path, L.task(spec, "started", **extra))[0]
    assert result["container"]["state"] == "running", result
    return result


def test_started_runs_the_process_in_the_pinned_namespaces(tmp_path, spec):
    paths = L.paths_of(spec)
    first = started(tmp_path, spec)
    assert first["changed"] is True and first["actions"][-1] == "start the process"
    pid = first["container"]["pid"]
    assert pid_file(spec)[0] == pid and pid_file(spec)[1] == L._process.start_ticks(pid)
    # the pid file holds "PID TICKS": started_at is the boot time plus the ticks
    booted = L._process.boot_time()
    assert first["container"]["started_at"] == booted + pid_file(spec)[1] // os.sysconf("SC_CLK_TCK")
    with open("/proc/%d/cmdline" % pid) as f:
        assert f.read().split("\0")[:2] == ["sleep", "1000"]
    # its uts namespace is the pinned one; its pid namespace is its own (it is pid 1 there)
    assert L.ns_inode("/proc/%d/ns/uts" % pid) == L.ns_inode(os.path.join(paths["ns"], "uts"))
    assert L.ns_inode("/proc/%d/ns/pid" % pid) != L.ns_inode("/proc/self/ns/pid")
    with open("/proc/%d/status" % pid) as f:
        assert [l.split()[1:] for l in f if l.startswith("NSpid:")][0][-1] == "1"
    monitor = L.status(spec)["monitor_pid"]
    assert monitor is not None and L.alive(monitor)

    again = play(tmp_path, L.task(spec, "started"))[0]
    assert again["changed"] is False and again["actions"] == []
    assert again["container"]["pid"] == pid
    present = play(tmp_path, L.task(spec, "present"))[0]
    assert present["changed"] is False and present["container"]["pid"] == pid


def test_stopped_stops_it_and_keeps_the_filesystem(tmp_path, spec):
    paths = L.paths_of(spec)
    pid = started(tmp_path, spec)["container"]["pid"]
    monitor = L.status(spec)["monitor_pid"]
    stopped = play(tmp_path, L.task(spec, "stopped", stop_timeout=1))[0]
    assert stopped["changed"] is True
    assert stopped["actions"] == ["stop the process (pid %d)" % pid]
    assert stopped["container"]["state"] == "stopped" and stopped["container"]["pid"] is None
    # sleep as pid 1 ignores SIGTERM: killed after stop_timeout
    assert stopped["container"]["exit_status"] == 137
    L.wait_gone(pid)
    L.wait_gone(monitor)
    assert not os.path.exists(paths["pid"]) and not os.path.exists(paths["stopping"])
    assert os.path.join(paths["ns"], "mnt") in L.mounts_under(paths["run"])
    again = play(tmp_path, L.task(spec, "stopped"))[0]
    assert again["changed"] is False and again["actions"] == []


def test_restart_starts_a_new_process_and_the_diff_says_so(tmp_path, spec):
    pid = started(tmp_path, spec)["container"]["pid"]
    result = play(tmp_path, L.task(spec, "started", restart=True, stop_timeout=1), diff=True)[0]
    assert result["changed"] is True
    assert result["actions"] == ["stop the process (pid %d)" % pid, "start the process again (restart)"]
    assert result["container"]["pid"] != pid and L.alive(result["container"]["pid"])
    L.wait_gone(pid)
    assert result["diff"]["before"].splitlines()[-1] == "process: running (pid %d)" % pid
    assert result["diff"]["after"].splitlines()[-1] == "process: running (restarted: restart)"


def test_a_changed_spec_restarts_it_with_the_new_spec(tmp_path, spec):
    pid = started(tmp_path, spec)["container"]["pid"]
    spec["hostname"] = "renamed"
    result = play(tmp_path, L.task(spec, "started", stop_timeout=1), diff=True)[0]
    assert result["changed"] is True
    assert result["actions"][0] == "stop the process (pid %d)" % pid
    assert result["actions"][-1] == "start the process again (spec changed)"
    new = result["container"]["pid"]
    assert new != pid
    with open(os.path.join(L.paths_of(spec)["etc"], "hostname")) as f:
        assert f.read().strip() == "renamed"
    uts = os.path.join(L.paths_of(spec)["ns"], "uts")
    assert L.ns_inode("/proc/%d/ns/uts" % new) == L.ns_inode(uts)
    assert "process: running (restarted: spec changed)" in result["diff"]["after"]


def test_present_refuses_a_changed_spec_while_it_runs(tmp_path, spec):
    pid = started(tmp_path, spec)["container"]["pid"]
    spec["hostname"] = "renamed"
    result = play(tmp_path, L.task(spec, "present"), expect_failure=True)[0]
    assert result["failed"] is True
    assert "state=started to restart it" in result["msg"], result["msg"]
    assert L.status(spec)["pid"] == pid


def test_recreate_starts_from_a_fresh_filesystem_and_keeps_the_log(tmp_path, spec):
    paths = L.paths_of(spec)
    spec["process"]["args"] = ["sh", "-c", "echo hello-from-the-container; exec sleep 1000"]
    spec["rootfs"]["readonly"] = False
    pid = started(tmp_path, spec)["container"]["pid"]
    L.wait_for(lambda: "hello-from-the-container" in L._process.log_tail(paths["log"]), what="the log line")
    with open("/proc/%d/root/marker" % pid, "w") as f:
        f.write("x")
    assert os.path.exists(os.path.join(paths["upper"], "marker"))
    result = play(tmp_path, L.task(spec, "started", recreate=True, stop_timeout=1))[0]
    assert result["changed"] is True
    assert result["actions"][0] == "stop the process (pid %d)" % pid
    assert "remove %s" % paths["state"] in result["actions"]
    new = result["container"]["pid"]
    assert new != pid
    assert not os.path.exists(os.path.join(paths["upper"], "marker"))
    assert not os.path.exists("/proc/%d/root/marker" % new)
    L.wait_for(lambda: L._process.log_tail(paths["log"]).count("hello-from-the-container") == 2,
               what="the second run's log line after the first one's")


def test_absent_while_running_stops_and_leaves_nothing(tmp_path, spec):
    paths = L.paths_of(spec)
    pid = started(tmp_path, spec)["container"]["pid"]
    monitor = L.status(spec)["monitor_pid"]
    result = play(tmp_path, L.task(spec, "absent", stop_timeout=1))[0]
    assert result["changed"] is True
    assert result["actions"][0] == "stop the process (pid %d)" % pid
    L.wait_gone(pid)
    L.wait_gone(monitor)
    assert not os.path.exists(paths["state"]) and not os.path.exists(paths["run"])
    assert L.mounts_under(str(tmp_path)) == []
    again = play(tmp_path, L.task(spec, "absent"))[0]
    assert again["changed"] is False


def test_check_mode_predicts_and_changes_nothing(tmp_path, spec):
    paths = L.paths_of(spec)
    predicted = play(tmp_path, L.task(spec, "started"), check=True)[0]
    assert predicted["changed"] is True and predicted["actions"][-1] == "start the process"
    assert "install the script %s" % paths["script"] in predicted["actions"]
    assert not os.path.exists(paths["state"]) and not os.path.exists(paths["run"])

    pid = started(tmp_path, spec)["container"]["pid"]
    for state, expected in (("stopped", "stop the process (pid %d)" % pid),
                            ("absent", "stop the process (pid %d)" % pid)):
        result = play(tmp_path, L.task(spec, state), check=True, diff=True)[0]
        assert result["changed"] is True and result["actions"][0] == expected, result
        assert L.status(spec)["pid"] == pid
    restart = play(tmp_path, L.task(spec, "started", restart=True), check=True, diff=True)[0]
    assert restart["actions"] == ["stop the process (pid %d)" % pid, "start the process again (restart)"]
    assert restart["diff"]["after"].splitlines()[-1] == "process: running (restarted: restart)"
    assert L.status(spec)["pid"] == pid
    same = play(tmp_path, L.task(spec, "started"), check=True)[0]
    assert same["changed"] is False and same["actions"] == []


def test_a_process_that_exits_leaves_its_status_and_log(tmp_path, spec):
    paths = L.paths_of(spec)
    spec["process"]["args"] = ["sh", "-c", "echo boom; sleep 1; exit 3"]
    first = play(tmp_path, L.task(spec, "started"))[0]
    assert first["container"]["state"] == "running"  # it ends a second later
    L.wait_for(lambda: L.status(spec)["exit_status"] is not None and L.status(spec)["monitor_pid"] is None,
               what="the process and its monitor to end")
    assert L.status(spec)["exit_status"] == 3
    assert L._process.log_tail(paths["log"]).splitlines() == ["boom"]
    # started again: the stopped process starts (changed), and its status is kept until it ends
    again = play(tmp_path, L.task(spec, "started"))[0]
    assert again["changed"] is True and again["actions"] == ["start the process"]


def test_a_process_that_fails_at_once_fails_the_task_with_its_log(tmp_path, spec):
    """When it ended before the module looked, the task fails with its status and log;
    when it still ran then (`start` returns once the pid file is written: a race the test
    cannot order), its status is recorded all the same. Never a lost status."""
    spec["process"]["args"] = ["sh", "-c", "echo cannot-work >&2; exit 3"]
    result = play(tmp_path, L.task(spec, "started"), expect_failure=True)[0]
    if not result.get("failed"):  # it was still running when the module looked
        assert result["container"]["state"] in ("running", "stopped")
        L.wait_for(lambda: L.status(spec)["exit_status"] == 3, what="the exit status")
        return
    assert result["exit_status"] == 3
    assert "the process exited at once with status 3" in result["msg"]
    assert "cannot-work" in result["msg"] and result["log_tail"] == "cannot-work"
    assert result["actions"][-1] == "start the process"


def test_restart_policy_on_failure_restarts_it(tmp_path, spec):
    data = tmp_path / "data"
    data.mkdir()
    spec["volumes"] = [{"source": str(data), "target": "/data"}]
    spec["process"]["args"] = ["sh", "-c", "echo run >> /data/runs; test $(wc -l < /data/runs) -ge 2 && exec sleep 1000; exit 1"]
    play(tmp_path, L.task(spec, "started", restart_policy="on-failure"))
    L.wait_for(lambda: (data / "runs").exists() and (data / "runs").read_text().count("run") == 2
               and L.status(spec)["state"] == "running", what="the restart after a failure")
    assert L.status(spec)["exit_status"] == 1


def test_enabled_without_systemd_warns(tmp_path, spec):
    if L._process.systemd_is_pid1():
        pytest.skip("systemd is pid 1 here")
    result = play(tmp_path, L.task(spec, "present", enabled=True))[0]
    assert any("enabled is for systemd" in w for w in result.get("warnings", [])), result
    assert result["container"]["unit"] is None


def test_ten_containers_in_parallel(tmp_path, rootfs):
    hosts = ["c%d" % n for n in range(10)]
    spec = L.make_spec(tmp_path, rootfs, name="{{ inventory_hostname }}")
    spec["hostname"] = "{{ inventory_hostname }}"
    try:
        results = L.run_hosts_playbook(tmp_path, hosts, [L.task(spec, "started")])
        pids = {}
        for host in hosts:
            result = results[host][0]
            assert not result.get("failed"), result
            assert result["changed"] is True and result["container"]["name"] == host
            pids[host] = result["container"]["pid"]
            assert L._process.status(L._layout_paths(host, spec["state_dir"], spec["run_dir"]))["pid"] == pids[host]
            with open(os.path.join(L._layout_paths(host, spec["state_dir"], spec["run_dir"])["etc"], "hostname")) as f:
                assert f.read().strip() == host
        assert len(set(pids.values())) == 10
        results = L.run_hosts_playbook(tmp_path, hosts, [L.task(spec, "absent", stop_timeout=1)])
        for host in hosts:
            assert results[host][0]["changed"] is True, results[host][0]
            L.wait_gone(pids[host])
        assert os.listdir(os.path.join(spec["state_dir"], "containers")) == []
        assert sorted(os.listdir(spec["run_dir"])) == sorted(h + ".lock" for h in hosts)
        assert L.mounts_under(str(tmp_path)) == []
    finally:
        L.kill_all(spec["state_dir"], spec["run_dir"])


@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "directory"])
def test_started_from_a_rootfs_without_proc_under_a_read_only_root(tmp_path, rootfs, overlay):
    """Many images (busybox's) ship no /proc: its mount point is made while the root is
    still writable, since the process's /proc is mounted only at start."""
    bare = str(tmp_path / "bare")
    subprocess.run(["cp", "-a", rootfs, bare], check=True)
    subprocess.run(["rm", "-rf", os.path.join(bare, "proc")], check=True)
    spec = L.make_spec(tmp_path, bare)
    spec["rootfs"] = {"path": bare, "overlay": overlay, "readonly": True}
    try:
        first = started(tmp_path, spec)
        with open("/proc/%d/mountinfo" % first["container"]["pid"]) as f:
            assert any(line.split()[4] == "/proc" for line in f)
        again = play(tmp_path, L.task(spec, "started"))[0]
        assert again["changed"] is False
    finally:
        L.kill_all(spec["state_dir"], spec["run_dir"])
