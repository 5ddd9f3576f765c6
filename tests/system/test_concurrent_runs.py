"""Two runs of one container at once (issue 7 items 6 and 9).

Script: 25 back-to-back pairs of `SCRIPT run` of one container, each pair started
together (one of each pair pinned to CPU 0, which makes the races show). Every run either
runs correctly (a write to / fails, the masked /proc files are masked) or fails with a
clear lock / "already running" message; nothing hangs; the host rootfs directory gains
no file (device nodes!) and both mount tables are unchanged.

Module: two `container state=present` runs at once on one container, then a third: the
container has as many mounts as a single run makes, and the third says changed=false. A
run held still while it holds the container's lock: a second run waits for it (and says
which lock and what to do when its lock_timeout runs out).
"""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from tests.lib import hostile
from tests.lib.playbook import run_playbook
from tests.lib.run_module import finish_module, run_module, start_module

PAIRS = 25
ROUNDS = 3
NAME = "twice"
# What a refused second run may say.
BUSY = re.compile(r"lock|already running|busy|in use|another run", re.I)
# Inside: is / read-only, and is every masked /proc file this kernel has masked?
# (/proc/kcore is missing on some kernels: check the default masked files that exist.)
PROBE = ("touch /probe-write 2>/dev/null && echo ROOT-RW || echo ROOT-RO; "
         "for p in /proc/kcore /proc/keys /proc/timer_list; do [ -e $p ] || continue; echo MASK-CHECKED; "
         "grep -q \" $p \" /proc/self/mountinfo || echo UNMASKED-$p; done; sleep 0.2")


@pytest.fixture
def env(tmp_path, busybox_rootfs):
    return hostile.HostEnv(str(tmp_path / "host"), busybox_rootfs)


def render(env, case_dir, **fields):
    spec = {"name": NAME, "hostname": NAME, "rootfs": {"path": env.rootfs},
            "state_dir": os.path.join(case_dir, "state"), "run_dir": os.path.join(case_dir, "run")}
    spec.update(fields)
    return hostile.render_spec(spec, case_dir)


def judge(result):
    """Problems of one run of the pair: [] if it ran right or was refused clearly."""
    problems = result.problems()
    if result.timed_out:
        return problems
    if result.rc == 0:
        if "ROOT-RO" not in result.stdout or "MASK-CHECKED" not in result.stdout or "UNMASKED" in result.stdout:
            problems.append("ran without its protections: %r" % result)
    elif not BUSY.search(result.stderr):
        problems.append("failed without a lock / already-running message: %r" % result)
    return problems


def test_two_script_runs_at_once(env, tmp_path):
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    script = render(env, case_dir)
    before = env.snapshot()
    problems, outcomes = [], {"ran": 0, "refused": 0}
    for index in range(PAIRS):
        runs = [hostile.start_script(script, ["run", "/bin/sh", "-c", PROBE], env, case_dir,
                                     shell=shell, tag="%d-%d" % (index, n))
                for n, shell in enumerate((("taskset", "-c", "0", "dash"), ("dash",)))]
        for result in [hostile.finish_script(run, 20) for run in runs]:
            outcomes["ran" if result.rc == 0 else "refused"] += 1
            problems += ["pair %d: %s" % (index, p) for p in judge(result)]
    problems += env.check(before)
    assert not problems, "%s\n(outcomes: %s)" % ("\n\n".join(problems[:10]), outcomes)
    assert outcomes["ran"] >= PAIRS, "most pairs should run at least once: %s" % outcomes


# ---------------------------------------------------------------------------------------
# The container module
# ---------------------------------------------------------------------------------------

def task(spec, state="present"):
    return {"name": "container %s" % state,
            "fromscratch.containerfs.container": {"spec": spec, "state": state}}


def container_mount_count(spec):
    """Mounts at or under the container root, seen in its pinned mount namespace."""
    root = os.path.join(spec["run_dir"], spec["name"], "rootfs")
    ns = os.path.join(spec["run_dir"], spec["name"], "ns", "mnt")
    result = subprocess.run(["nsenter", "--mount=" + ns, "cat", "/proc/self/mountinfo"],
                            stdout=subprocess.PIPE, universal_newlines=True, check=True)
    points = [line.split()[4] for line in result.stdout.splitlines()]
    return len([p for p in points if p == root or p.startswith(root + "/")])


def play_dir(tmp_path, n):
    """A directory of its own for one ansible-playbook run (its play.yml, its temp dirs)."""
    path = tmp_path / ("play-%s" % n)
    path.mkdir()
    return path


def host_mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def presents_at_once(tmp_path, spec, round_):
    """Two `present` playbooks started together; both results."""
    results = {}

    def present(n):
        results[n] = run_playbook(play_dir(tmp_path, "%d-%d" % (round_, n)), [task(spec)], expect_failure=True)[0]

    threads = [threading.Thread(target=present, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return [results.get(n) for n in (1, 2)]


def test_two_module_presents_at_once(env, tmp_path):
    spec = {"name": NAME, "hostname": NAME, "rootfs": {"path": env.rootfs, "overlay": True},
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    try:
        run_playbook(play_dir(tmp_path, "single"), [task(spec)])
        single_count = container_mount_count(spec)
        for round_ in range(ROUNDS):
            run_playbook(play_dir(tmp_path, "absent-%d" % round_), [task(spec, "absent")])
            for n, result in enumerate(presents_at_once(tmp_path, spec, round_)):
                assert result is not None, "round %d: present %d did not finish" % (round_, n)
                if result.get("failed"):
                    assert BUSY.search(result.get("msg", "")), (
                        "round %d: present %d failed without a lock message: %r" % (round_, n, result))
            count = container_mount_count(spec)
            third = run_playbook(play_dir(tmp_path, "third-%d" % round_), [task(spec)])[0]
            assert count == single_count, (
                "round %d: two presents at once left %d mounts, one present makes %d" % (round_, count, single_count))
            assert third["changed"] is False, third
    finally:
        run_playbook(play_dir(tmp_path, "cleanup"), [task(spec, "absent")], expect_failure=True)
    assert host_mounts_under(spec["run_dir"]) == []


# ---------------------------------------------------------------------------------------
# The container's lock: a second run waits for the first (issue 9 item 5)
# ---------------------------------------------------------------------------------------

STOP = "CONTAINERFS_TEST_STOP_AFTER_STEP"


def wait_stopped(proc, deadline_s=60):
    """Wait until `proc` is stopped (state T in /proc/PID/stat); fail if it ends first."""
    deadline = time.monotonic() + deadline_s
    while True:
        assert proc.poll() is None, "the first run ended instead of stopping: %r" % (finish_module(proc),)
        with open("/proc/%d/stat" % proc.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        assert time.monotonic() < deadline, "the first run did not stop"
        time.sleep(0.01)


def flock_holders(path):
    """The pids holding flock(2) on `path` (/proc/locks, by inode)."""
    inode = os.stat(path).st_ino
    holders = []
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if fields[1] == "FLOCK" and fields[-3].endswith(":%d" % inode) and "->" not in line:
                holders.append(int(fields[4]))
    return holders


def test_a_second_module_run_waits_for_the_first_and_a_short_lock_timeout_says_what_to_do(env, tmp_path):
    """The first run is stopped (SIGSTOP, test hook) after its first step, holding the lock.
    A second run with lock_timeout=1 fails naming the lock and what to do; one with a long
    lock_timeout waits: once the first ends (set up, changed), it finds nothing to do. Had
    it not waited, it would have found no record and set the container up itself."""
    spec = {"name": NAME, "hostname": NAME, "rootfs": {"path": env.rootfs, "overlay": True},
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    lock = os.path.join(spec["run_dir"], NAME + ".lock")
    first = start_module(tmp_path, "container", {"spec": spec}, env={STOP: "1"})
    second = None
    try:
        wait_stopped(first)
        assert flock_holders(lock) == [first.pid]
        refused = run_module(tmp_path, "container", {"spec": spec, "lock_timeout": 1})
        assert refused.rc == 1 and refused["failed"] is True, refused
        assert "container %s" % NAME in refused["msg"] and lock in refused["msg"], refused["msg"]
        assert "wait for that run to end and try again, or give a longer lock_timeout" in refused["msg"]
        assert not os.path.exists(os.path.join(spec["state_dir"], "containers", NAME, "plan.json"))
        second = start_module(tmp_path, "container", {"spec": spec, "lock_timeout": 120})
        os.kill(first.pid, signal.SIGCONT)
        done = finish_module(first)
        assert done.rc == 0 and done["changed"] is True, done
        waited = finish_module(second)
        assert waited.rc == 0 and waited["changed"] is False and waited["actions"] == [], waited
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                finish_module(proc)
        run_module(tmp_path, "container", {"spec": spec, "state": "absent"})
    assert host_mounts_under(spec["run_dir"]) == []
