"""The applier's step count and test-only hooks, its lock message and its record (no root:
host steps only, in a tmp dir; the hooks in a forked child)."""
import fcntl
import json
import os
import signal

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import applier as A
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.host_steps import HostSteps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec


@pytest.fixture
def plan(tmp_path):
    os.mkdir(str(tmp_path / "root"))
    return build_plan(load_spec({"name": "web", "hostname": "web", "rootfs": {"path": str(tmp_path / "root")},
                                 "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run"),
                                 "dns": {"nameservers": ["10.0.0.1"]}}))


@pytest.mark.parametrize("value, want", [
    (None, (None, None)), ("", (None, None)), ("0", (None, None)), ("-1", (None, None)),
    ("x", (None, None)), ("2.5", (None, None)), ("3", (3, signal.SIGKILL))])
def test_the_kill_hook_is_a_positive_int_or_nothing(monkeypatch, value, want):
    monkeypatch.delenv("CONTAINERFS_TEST_STOP_AFTER_STEP", raising=False)
    if value is None:
        monkeypatch.delenv("CONTAINERFS_TEST_KILL_AFTER_STEP", raising=False)
    else:
        monkeypatch.setenv("CONTAINERFS_TEST_KILL_AFTER_STEP", value)
    assert A._test_step_hook() == want


def test_host_steps_report_each_done_step_and_none_in_check_mode(tmp_path, plan):
    calls = []
    bases = [str(tmp_path / "state"), str(tmp_path / "run")]
    checked = HostSteps(plan, bases, True, on_done=lambda: calls.append(1)).converge()
    assert checked and calls == []
    done = HostSteps(plan, bases, False, on_done=lambda: calls.append(1)).converge()
    assert done == checked and len(calls) == len(done)
    assert HostSteps(plan, bases, False, on_done=lambda: calls.append(1)).converge() == []
    assert len(calls) == len(done)


def steps_until_killed(plan, k, steps):
    """In a forked child with the kill hook at k: call _step_done `steps` times, writing
    the count after each to a pipe; (the counts written, how the child ended)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        os.environ["CONTAINERFS_TEST_KILL_AFTER_STEP"] = str(k)
        applier = A.Applier(plan)
        for count in range(steps):
            applier._step_done()
            os.write(write_fd, b"%d\n" % (count + 1))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        written = f.read().split()
    status = os.waitpid(pid, 0)[1]
    return written, status


def test_the_kill_hook_kills_right_after_the_kth_step(plan):
    written, status = steps_until_killed(plan, 3, 5)
    assert written == ["1", "2"] and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    written, status = steps_until_killed(plan, 6, 5)
    assert written == ["1", "2", "3", "4", "5"] and os.WIFEXITED(status)


def test_the_kill_hook_in_a_forked_step_child_takes_the_module_process_too(plan, tmp_path):
    """Root steps run in a child of the module process (_in_child): the k-th step there
    kills both, so neither goes on."""
    trace = str(tmp_path / "trace")

    def step_and_note(applier):
        for count in range(1, 4):
            applier._step_done()
            with open(trace, "a") as f:
                f.write("child %d\n" % count)

    pid = os.fork()
    if pid == 0:  # the module process
        os.environ["CONTAINERFS_TEST_KILL_AFTER_STEP"] = "2"
        applier = A.Applier(plan)
        applier._step_done()  # one step done before the child, as the host steps are
        try:
            A._in_child(lambda: step_and_note(applier))
        finally:
            with open(trace, "a") as f:
                f.write("module went on\n")
            os._exit(0)
    status = os.waitpid(pid, 0)[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert not os.path.exists(trace), open(trace).read()


def test_a_lock_timeout_names_the_lock_and_what_to_do(plan):
    applier = A.Applier(plan)
    lock = plan["paths"]["lock"]
    with applier.locked(5):
        fd = os.open(lock, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        with pytest.raises(ApplyError) as caught:
            with A.Applier(plan).locked(0):
                pass
    message = str(caught.value)
    assert message.startswith("container web: another run holds the lock %s; gave up after 0s" % lock)
    assert "wait for that run to end and try again, or give a longer lock_timeout" in message
    with applier.locked(0, shared=True):  # released: taken at once
        pass


def test_recorded_plan_is_the_record_or_none(plan):
    applier = A.Applier(plan)
    assert applier.recorded_plan() is None
    os.makedirs(plan["paths"]["state"])
    with open(plan["paths"]["record"], "w") as f:
        f.write("{not json")
    assert applier.recorded_plan() is None
    with open(plan["paths"]["record"], "w") as f:
        json.dump(plan, f)
    assert applier.recorded_plan() == plan
