"""Signals during `SCRIPT run` reach the container and end the run cleanly (issue 7 item 11).

The container's pid 1 traps TERM, INT and HUP, writes which one it got to a volume and
exits 7. We send TERM, INT or HUP to the script's own process, or TERM to its whole
process group (what a terminal's ^C or a service manager's stop does). Like `runc run`,
the script must forward the signal to pid 1 and wait: pid 1 got it (the volume says so),
the script exits with the container's status (7) within a few seconds, no process of
the container is left, its run dir holds no pid file, fifo or fstab, and both mount
tables are as before.

The script runs under `setsid` inside the conftest-like wrapper namespace, so its process
group holds the script and what it starts, not the test's wrapper.
"""
import os
import signal
import time
import uuid

import pytest

from tests.lib import hostile
from tests.lib.run_files import kept_by_a_run

NAME = "sig"
READY_TIMEOUT = 15
EXIT_TIMEOUT = 5


@pytest.fixture
def env(tmp_path, busybox_rootfs):
    return hostile.HostEnv(str(tmp_path / "host"), busybox_rootfs)


def pid1_command(marker):
    """pid 1: trap the three signals, report the one it got on /vol, exit 7."""
    code = ("for s in TERM INT HUP; do trap \"echo $s > /vol/got; exit 7\" $s; done; "
            "echo ready > /vol/ready; while :; do sleep 0.1; done")
    return ["/bin/sh", "-c", code, marker]


def render_container(env, case_dir):
    volume = os.path.join(case_dir, "vol")
    os.makedirs(volume)
    spec = {"name": NAME, "hostname": NAME, "rootfs": {"path": env.rootfs},
            "state_dir": os.path.join(case_dir, "state"), "run_dir": os.path.join(case_dir, "run"),
            "volumes": [{"source": volume, "target": "/vol"}]}
    return hostile.render_spec(spec, case_dir), volume, spec


def cmdlines():
    """{pid: argv} of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    out[int(entry)] = f.read().decode("utf-8", "replace").split("\0")
            except OSError:
                pass
    return out


def script_pid(script):
    """The script's main process: the session leader running `dash SCRIPT run`."""
    for pid, argv in cmdlines().items():
        if argv[:3] == ["dash", script, "run"]:
            try:
                if os.getsid(pid) == pid:
                    return pid
            except OSError:
                pass
    return None


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def leftovers(marker):
    return sorted(pid for pid, argv in cmdlines().items() if marker in argv)


@pytest.mark.parametrize("how", ["TERM", "INT", "HUP", "TERM-group"])
def test_signal_reaches_pid1_and_the_run_ends_clean(env, tmp_path, how):
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    script, volume, spec = render_container(env, case_dir)
    marker = "cfs-signal-test-%s" % uuid.uuid4().hex
    started = hostile.start_script(script, ["run"] + pid1_command(marker), env, case_dir,
                                   shell=("setsid", "dash"))
    try:
        ready = wait_for(lambda: os.path.exists(os.path.join(volume, "ready")), READY_TIMEOUT)
        pid = script_pid(script)
        assert ready and pid, "the container did not start: %r" % (
            hostile.finish_script(started, 5, sessions=[pid] if pid else []),)
        signame = how.split("-")[0]
        sent = time.monotonic()
        if how.endswith("group"):
            os.killpg(pid, getattr(signal, "SIG" + signame))
        else:
            os.kill(pid, getattr(signal, "SIG" + signame))
        result = hostile.finish_script(started, EXIT_TIMEOUT + 5, sessions=(pid,))
        took = time.monotonic() - sent
    finally:
        for pid in leftovers(marker):  # our own container's processes only
            os.kill(pid, signal.SIGKILL)
    problems = []
    got = os.path.join(volume, "got")
    if not os.path.exists(got):
        problems.append("the container's pid 1 never got SIG%s" % signame)
    else:
        with open(got) as f:
            if f.read().strip() != signame:
                problems.append("pid 1 got another signal than SIG%s" % signame)
    if result.timed_out or took > EXIT_TIMEOUT:
        problems.append("the script took %.1fs to exit after SIG%s" % (took, signame))
    if result.rc != 7:
        problems.append("exit status %s, not the container's (7)" % result.rc)
    left = leftovers(marker)
    if left:
        problems.append("container processes left running: %s" % left)
    run = os.path.join(spec["run_dir"], NAME)
    stale = [n for n in os.listdir(run) if not kept_by_a_run(os.path.join(run, n))]
    if stale:
        problems.append("left in the run dir: %s" % stale)
    problems += result.problems()
    assert not problems, "%s\n%r" % ("\n".join(problems), result)


def children(pid):
    """The pids whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def test_a_signal_ends_a_run_whose_supervise_is_gone(env, tmp_path):
    """The script's supervise (the subshell reading the container side's reports) killed:
    nothing would answer the container side any more. A TERM to the script then KILLs the
    container (whose pid 1 here ignores TERM, as a pid 1 without a handler does) instead of
    passing TERM on, and the run ends: no container runs on unwatched holding the lock, and
    a new run can start."""
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    script, volume, _spec = render_container(env, case_dir)
    marker = "cfs-supervise-test-%s" % uuid.uuid4().hex
    deaf = ["/bin/sh", "-c", "echo ready > /vol/ready; while :; do sleep 0.1; done", marker]
    started = hostile.start_script(script, ["run"] + deaf, env, case_dir, shell=("setsid", "dash"))
    try:
        ready = wait_for(lambda: os.path.exists(os.path.join(volume, "ready")), READY_TIMEOUT)
        pid = script_pid(script)
        assert ready and pid, "the container did not start: %r" % (
            hostile.finish_script(started, 5, sessions=[pid] if pid else []),)
        # the pipeline's two subshells: container_side (it has started unshare) and
        # supervise (idle in read, no child)
        idle = [child for child in children(pid) if not children(child)]
        assert len(idle) == 1, "cannot tell supervise among %r" % children(pid)
        os.kill(idle[0], signal.SIGKILL)
        assert wait_for(lambda: idle[0] not in children(pid), EXIT_TIMEOUT), "supervise not reaped"
        os.kill(pid, signal.SIGTERM)
        ended = wait_for(lambda: not os.path.exists("/proc/%d" % pid), EXIT_TIMEOUT + 5)
        wait_for(lambda: not leftovers(marker), EXIT_TIMEOUT)
        left = leftovers(marker)
        for stray in left:  # (else the container, holding the script's output, hangs the test)
            os.kill(stray, signal.SIGKILL)
        result = hostile.finish_script(started, EXIT_TIMEOUT + 5, sessions=(pid,))
    finally:
        for pid in leftovers(marker):  # our own container's processes only
            os.kill(pid, signal.SIGKILL)
    assert ended and left == [], "the run did not end, or left its container running: %s %r" % (left, result)
    assert not result.timed_out and result.rc != 0, result
    again = hostile.run_script(script, ["run", "/bin/true"], env, case_dir)
    assert again.rc == 0, again
