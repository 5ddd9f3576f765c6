"""The script's process lifecycle: start (a detached monitor), status, stop, restart
policies, logs, exec, and a start after a simulated reboot.

Run in pytest's own mount namespace (see test_script_up_start.py). Waits poll for what
must happen (tests.lib.lifecycle.wait_until); no time is asserted.
"""
import json
import os
import signal
import subprocess

import pytest

from tests.lib.lifecycle import Kept, proc_ticks, wait_until

SLEEPER = {"args": ["sleep", "1000"], "env": ["PATH=/bin:/usr/bin", "FOO=from-spec"]}
# a pid 1 that ends on TERM (a shell as pid 1 gets TERM only through a handler)
POLITE = {"args": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]}


def started(container, *options):
    """`start` (returns once the process runs; a hang fails) -> the pid."""
    result = container.sh("start", *options, timeout=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    pid = container.running()
    assert pid, (result.stderr, container.read("log"))
    return pid


def down(container):
    result = container.sh("down", "--timeout", "1", timeout=30)
    assert result.returncode == 0, result.stderr
    container.assert_down()


def in_pinned(container, path):
    """A file of the container's filesystem, read through its pinned mount namespace."""
    return subprocess.run(["nsenter", "--mount=" + os.path.join(container.ns, "mnt"), "cat", path],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout


@pytest.mark.parametrize("shell", ["dash", "busybox-ash", "bash"])
def test_start_status_exec_stop_down(kept, shell):
    container = kept(shell=shell, process=POLITE)
    pid = started(container)
    pid_line = container.read("pid").split()
    # "PID TICKS": the start in epoch seconds is the readers' to work out (boot time + ticks)
    assert pid_line == [str(pid), str(proc_ticks(pid))]
    assert container.live("monitor")
    status = container.sh("status")
    assert (status.returncode, status.stdout) == (0, "running %d\n" % pid)
    again = container.sh("start")
    assert (again.returncode, "running already" in again.stderr) == (0, True), again.stderr
    # pid 1 is the process; its /proc is its own pid namespace's; the masked paths are masked
    look = container.sh("exec", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; ls /proc | grep '^[0-9]' | sort -n | tr '\\n' ' '; echo;"
                        " stat -c %t:%T /proc/keys; grep ' /proc/sys ' /proc/self/mountinfo")
    assert look.returncode == 0, look.stderr
    lines = look.stdout.splitlines()
    assert lines[0] == "sh -c trap 'exit 0' TERM; while :; do sleep 0.1; done "
    pids = [int(p) for p in lines[1].split()]
    assert pids[0] == 1 and pids[-1] < 20, pids  # a pid namespace of its own
    assert lines[2] == "1:3"
    assert " ro," in lines[3], lines[3]
    stop = container.sh("stop", "--timeout", "5")
    assert (stop.returncode, stop.stderr.strip().endswith("stopped")) == (0, True), stop.stderr
    assert proc_ticks(pid) is None and container.read("pid") is None and container.read("monitor") is None
    assert container.read("stopping") is None
    assert container.read("exit").split()[0] == "0"
    status = container.sh("status")
    assert (status.returncode, status.stdout) == (3, "stopped (last exit 0)\n")
    assert "stopped already" in container.sh("stop").stderr
    down(container)


def test_stop_kills_a_process_that_ignores_term(kept):
    container = kept(process=SLEEPER)  # sleep as pid 1: TERM has no handler, so no effect
    pid = started(container)
    stop = container.sh("stop", "--timeout", "1")
    assert stop.returncode == 0, stop.stderr
    assert proc_ticks(pid) is None and container.read("pid") is None
    assert container.read("exit").split()[0] == "137"  # 128 + SIGKILL
    down(container)


def test_foreground_start_waits_and_exits_with_the_status(kept):
    """systemd's ExecStart: no detach, no restart; pid, log and exit files as detached."""
    container = kept(process={"args": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
    result = container.sh("start", "--foreground", "--restart", "always", timeout=15)
    assert result.returncode == 3, result.stderr
    assert container.read("exit").split()[0] == "3"
    assert container.read("log") == "out\nerr\n"
    assert container.read("pid") is None and container.read("monitor") is None
    down(container)


def test_foreground_start_ends_when_stopped(kept):
    container = kept(process=SLEEPER)
    argv = ["dash", container.script, "start", "--foreground"]
    foreground = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        pid = wait_until(container.running, 15)
        assert pid and container.live("monitor") == foreground.pid
        assert container.sh("stop", "--timeout", "1").returncode == 0
        assert foreground.wait(timeout=15) == 137
    finally:
        if foreground.poll() is None:
            foreground.kill()
            foreground.wait()
    down(container)


def test_on_failure_restarts_after_a_failure_not_after_success(kept, copy_rootfs):
    """Each run appends to a tmpfs of the kept filesystem: the first fails, the second
    ends with 0, so on-failure restarts once."""
    runs = "echo $$ >> /data/runs; [ $(wc -l < /data/runs) -ge 2 ] && exit 0; exit 1"
    container = kept(process={"args": ["sh", "-c", runs]}, rootfs={"path": copy_rootfs()},
                     volumes=[{"type": "tmpfs", "target": "/data"}])
    result = container.sh("start", "--restart", "on-failure", timeout=15)
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: container.live("monitor") is None and container.read("pid") is None, 15)
    assert container.read("exit").split()[0] == "0"
    rootfs = container_root(container)
    assert in_pinned(container, rootfs + "/data/runs") == "1\n1\n"  # pid 1, twice
    assert "restarting it in 1s" in container.read("log")
    down(container)


def test_the_back_off_starts_over_after_a_long_run(kept, copy_rootfs):
    """Two quick failures double the wait (1 s, 2 s); a run of 10 s or more starts it over
    at 1 s; then it ends with 0."""
    runs = ("echo $$ >> /data/runs; n=$(wc -l < /data/runs); [ $n -eq 3 ] && sleep 10; "
            "[ $n -ge 4 ] && exit 0; exit 1")
    container = kept(process={"args": ["sh", "-c", runs]}, rootfs={"path": copy_rootfs()},
                     volumes=[{"type": "tmpfs", "target": "/data"}])
    result = container.sh("start", "--restart", "on-failure", timeout=15)
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: container.live("monitor") is None and container.read("pid") is None, 40)
    waits = [line.rsplit(" ", 1)[-1] for line in container.read("log").splitlines()
             if "restarting it in" in line]
    assert waits == ["1s", "2s", "1s"], container.read("log")
    assert container.read("exit").split()[0] == "0"
    down(container)


def container_root(container):
    return json.loads(container.read("record"))["paths"]["root"]


def test_always_restarts_and_stop_prevents_a_restart(kept, copy_rootfs):
    container = kept(process={"args": ["sh", "-c", "echo run >> /data/runs"]}, rootfs={"path": copy_rootfs()},
                     volumes=[{"type": "tmpfs", "target": "/data"}])
    result = container.sh("start", "--restart", "always", timeout=15)
    assert result.returncode == 0, result.stderr
    runs = container_root(container) + "/data/runs"
    assert wait_until(lambda: in_pinned(container, runs).count("run") >= 2, 15)
    monitor = container.live("monitor")
    assert monitor
    stop = container.sh("stop", "--timeout", "1")
    assert stop.returncode == 0, stop.stderr
    # the monitor is gone: nothing can start the process again
    assert proc_ticks(monitor) is None and container.read("monitor") is None
    assert container.read("pid") is None and container.read("stopping") is None
    down(container)


def test_logs_hold_the_output_capped_and_rotated(kept):
    lines = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done; echo to-stderr >&2"
    container = kept(process={"args": ["sh", "-c", lines]})
    result = container.sh("start", "--log-size", "1000", timeout=15)
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: container.read("exit"), 15)
    assert wait_until(lambda: container.live("monitor") is None, 10)
    assert os.path.getsize(container.path("log1")) == 1000
    assert os.path.getsize(container.path("log")) <= 1000
    logs = container.sh("logs")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == container.read("log1") + container.read("log")
    # what the two files keep is the end of the output, nothing lost in between
    full = "".join("line-%d\n" % i for i in range(400)) + "to-stderr\n"
    assert full.endswith(logs.stdout) and len(logs.stdout) > 1000
    down(container)


def test_exec_in_a_running_container(kept):
    container = kept(process=SLEEPER)
    pid = started(container)
    result = container.sh("exec", "sh", "-c", "echo $FOO; tr '\\0' ' ' < /proc/1/cmdline; echo; pwd; id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from-spec\nsleep 1000 \n/\n0\n"
    result = container.sh("exec", "--env", "FOO=given", "--cwd", "/tmp", "--user", "1000:1000",
                          "--", "sh", "-c", "echo $FOO; pwd; id -u; id -g; exit 7")
    assert (result.returncode, result.stdout) == (7, "given\n/tmp\n1000\n1000\n"), result.stderr
    assert container.running() == pid
    down(container)


def test_exec_in_a_stopped_container_gets_a_fresh_pid_namespace(kept):
    container = kept(process=SLEEPER)
    result = container.sh("exec", "true")
    assert result.returncode == 1 and "is not set up" in result.stderr, result.stderr
    assert container.sh("up").returncode == 0
    # (an --env named like a variable of the script's own code changes nothing of it)
    result = container.sh("exec", "--env", "BAR=x 'y' $z", "--env", "_cwd=/nowhere", "--cwd", "/tmp",
                          "sh", "-c", "echo $$; echo \"$FOO|$BAR|$_cwd\"; pwd; ls /proc | grep -c '^[0-9]'; exit 5")
    assert (result.returncode, result.stdout) == (5, "1\nfrom-spec|x 'y' $z|/nowhere\n/tmp\n3\n"), result.stderr
    assert container.read("pid") is None and container.read("log") is None
    status = container.sh("status")
    assert (status.returncode, status.stdout) == (3, "stopped\n")
    down(container)


def test_a_process_that_cannot_exec_ends_with_127(kept):
    container = kept(process={"args": ["no-such-command"]})
    result = container.sh("start", timeout=15)
    # exec fails in the container: it ran (status 127), no restart asked
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: container.read("exit"), 10)
    assert container.read("exit").split()[0] == "127"
    assert wait_until(lambda: container.live("monitor") is None, 10)
    down(container)


def test_start_after_a_reboot_builds_again(kept):
    """A reboot: the processes die, the run dir is gone (a tmpfs), the state dir stays."""
    container = kept(process=SLEEPER)
    pid = started(container)
    monitor = container.live("monitor")
    os.kill(monitor, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: proc_ticks(pid) is None and proc_ticks(monitor) is None, 10)
    for point in reversed(container.mounts_under_run()):
        subprocess.run(["umount", "--lazy", point], check=True)
    subprocess.run(["rm", "-rf", container.run_dir], check=True)
    status = container.sh("status")
    assert status.stdout.startswith("down"), status.stdout
    new = started(container)
    assert new != pid
    status = container.sh("status")
    assert status.stdout.startswith("running %d" % new), status.stdout
    down(container)


def test_up_from_another_spec_is_refused_while_running(kept, make_container, tmp_path):
    container = kept(process=SLEEPER)
    started(container)
    other = tmp_path / "other"
    other.mkdir()
    changed = make_container(directory=str(other), process=dict(SLEEPER, args=["sleep", "999"]))
    result = Kept(changed.script, changed.name, changed.state_dir, changed.run_dir).sh("up")
    assert result.returncode == 1 and "stop it first" in result.stderr, result.stderr
    assert container.running()
    down(container)


def test_start_from_a_rootfs_without_proc_under_a_read_only_root(kept, copy_rootfs):
    """`up` makes the /proc mount point while the root is writable: `start` mounts the
    process's /proc when the root is read-only already."""
    bare = copy_rootfs()
    subprocess.run(["rm", "-rf", os.path.join(bare, "proc")], check=True)
    container = kept(rootfs={"path": bare, "readonly": True}, process=POLITE)
    started(container)
    look = container.sh("exec", "cat", "/proc/1/cmdline")
    assert look.returncode == 0 and look.stdout.startswith("sh\0-c\0"), look.stderr
    down(container)


# A process of the container that swaps a directory and a symlink to a host directory at
# one path, as fast as it can (no rename swaps a directory with a symlink: each round has a
# moment with nothing there).
CWD_RACER = ("mkdir /scratch/work; while :; do mv /scratch/work /scratch/work.d; ln -s %s /scratch/work;"
             " rm /scratch/work; mv /scratch/work.d /scratch/work; done")


def test_exec_cwd_raced_by_the_container_never_lands_on_the_host(kept, tmp_path):
    """CVE-2024-21626's `exec --cwd`: the working directory is opened after the chroot
    (nsenter --wdns), so a symlink swapped in meanwhile resolves in the container's root.
    Opened in the host's view of /proc/PID/root (nsenter --wd), 8 of 60 execs ran in the host
    directory when measured. About one exec in five finds the directory there: 60 make one
    that does all but certain (the last assertion: the race was run)."""
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "host-only").write_text("x")
    container = kept(process={"args": ["sh", "-c", CWD_RACER % host], "env": ["PATH=/bin:/usr/bin"]},
                     volumes=[{"type": "tmpfs", "target": "/scratch"}])
    started(container)
    outputs = [container.sh("exec", "--cwd", "/scratch/work", "--", "sh", "-c", "pwd -P; ls").stdout
               for _attempt in range(60)]
    down(container)
    assert not [out for out in outputs if "host-only" in out], "an exec ran in the host's directory"
    assert "/scratch/work\n" in outputs or "/scratch/work.d\n" in outputs, "no exec ran in the directory"
