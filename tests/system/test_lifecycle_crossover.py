"""One on-host layout for both back-ends: a container the rendered script made is seen,
stopped, started and removed by the modules, and one the module made by the script.

Every test works under its own tmp dir; the cleanup kills what it started by the pids in
RUN/pid and RUN/monitor and removes the containers.
"""
import os

import pytest

from tests.lib.playbook import run_playbook
from tests.system import _lifecycle as L

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def spec(tmp_path, rootfs):
    spec = L.make_spec(tmp_path, rootfs, name="cross")
    yield spec
    L.kill_all(spec["state_dir"], spec["run_dir"])


def info(tmp_path, spec, name=None):
    args = {"state_dir": spec["state_dir"], "run_dir": spec["run_dir"]}
    if name:
        args["name"] = name
    return run_playbook(tmp_path, [{"name": "info", "fromscratch.containerfs.container_info": args}])[0]


def test_a_script_made_container_is_run_by_the_modules(tmp_path, spec):
    paths = L.paths_of(spec)
    script = L.render(spec, str(tmp_path))
    rc, out, err = L.sh(script, "start")
    assert rc == 0, err
    pid = L.status(spec)["pid"]
    assert pid is not None and L.alive(pid)
    assert os.path.isfile(paths["script"]) and os.path.isfile(paths["record"])

    listed = info(tmp_path, spec)["containers"]
    assert [(c["name"], c["state"], c["pid"]) for c in listed] == [("cross", "running", pid)]
    one = info(tmp_path, spec, "cross")
    assert one["state"] == "running" and one["process"]["pid"] == pid and one["container"]["drift"] == []

    # the module sees the script's container as its own: the same spec changes nothing
    same = run_playbook(tmp_path, [L.task(spec, "started")])[0]
    assert same["changed"] is False and same["actions"] == [] and same["container"]["pid"] == pid

    stopped = run_playbook(tmp_path, [L.task(spec, "stopped", stop_timeout=1)])[0]
    assert stopped["actions"] == ["stop the process (pid %d)" % pid]
    L.wait_gone(pid)
    assert L.sh(script, "status")[:2] == (3, "stopped (last exit 137)\n")
    assert info(tmp_path, spec, "cross")["state"] == "stopped"

    again = run_playbook(tmp_path, [L.task(spec, "started")])[0]
    assert again["actions"] == ["start the process"] and L.alive(again["container"]["pid"])

    gone = run_playbook(tmp_path, [L.task(spec, "absent", stop_timeout=1)])[0]
    assert gone["changed"] is True
    L.wait_gone(again["container"]["pid"])
    assert not os.path.exists(paths["state"]) and not os.path.exists(paths["run"])
    assert L.mounts_under(str(tmp_path)) == []
    assert L.sh(script, "status")[:2] == (3, "down\n")


def test_a_module_made_container_is_run_by_the_script(tmp_path, spec):
    paths = L.paths_of(spec)
    made = run_playbook(tmp_path, [L.task(spec, "started")])[0]
    pid = made["container"]["pid"]
    script = paths["script"]
    assert L.sh(script, "status")[:2] == (0, "running %d\n" % pid)

    rc, out, err = L.sh(script, "exec", "--", "hostname")
    assert (rc, out) == (0, "cross\n"), err
    rc, out, err = L.sh(script, "stop", "--timeout", "1")
    assert rc == 0, err
    L.wait_gone(pid)
    assert L.status(spec)["state"] == "stopped"
    result = run_playbook(tmp_path, [L.task(spec, "stopped")])[0]
    assert result["changed"] is False and result["container"]["exit_status"] == 137

    rc, out, err = L.sh(script, "start")
    assert rc == 0, err
    pid = L.status(spec)["pid"]
    result = run_playbook(tmp_path, [L.task(spec, "started")])[0]
    assert result["changed"] is False and result["container"]["pid"] == pid

    rc, out, err = L.sh(script, "down")
    assert rc == 0, err
    L.wait_gone(pid)
    assert not os.path.exists(paths["state"]) and not os.path.exists(paths["run"])
    assert L.mounts_under(str(tmp_path)) == []
    result = run_playbook(tmp_path, [L.task(spec, "absent")])[0]
    assert result["changed"] is False


def test_container_exec_in_a_running_and_a_stopped_container(tmp_path, spec):
    run_playbook(tmp_path, [L.task(spec, "started")])
    exec_task = {"name": "exec", "fromscratch.containerfs.container_exec": {
        "name": "cross", "state_dir": spec["state_dir"],
        "argv": ["sh", "-c", "echo $GREETING; pwd; id -u; cat; cat /proc/1/comm"],
        "env": {"GREETING": "hi there"}, "chdir": "/etc", "user": "1000:1000", "stdin": "in"}}
    result = run_playbook(tmp_path, [exec_task])[0]
    assert result["changed"] is True and result["rc"] == 0, result
    assert result["container_state"] == "running"
    lines = result["stdout_lines"]
    assert lines[:4] == ["hi there", "/etc", "1000", "in"]
    assert lines[4] == "sleep"  # it sees the container's pid 1

    failing = {"name": "fail", "fromscratch.containerfs.container_exec": {
        "name": "cross", "state_dir": spec["state_dir"], "command": "sh -c 'echo oops >&2; exit 7'"}}
    result = run_playbook(tmp_path, [failing], expect_failure=True)[0]
    assert result["failed"] is True and result["rc"] == 7 and result["stderr"] == "oops\n"
    assert result["msg"] == "non-zero return code 7: oops"

    run_playbook(tmp_path, [L.task(spec, "stopped", stop_timeout=1)])
    result = run_playbook(tmp_path, [dict(exec_task, **{"fromscratch.containerfs.container_exec": dict(
        exec_task["fromscratch.containerfs.container_exec"], argv=["sh", "-c", "echo $$; hostname"], user=None)})])[0]
    assert result["container_state"] == "stopped"
    assert result["stdout_lines"] == ["1", "cross"]
    assert L.status(spec)["state"] == "stopped"

    skipped = run_playbook(tmp_path, [exec_task], check=True)[0]
    assert skipped["changed"] is False and skipped["msg"] == "skipped in check mode"

    missing = {"name": "missing", "fromscratch.containerfs.container_exec": {
        "name": "nosuch", "state_dir": spec["state_dir"], "argv": ["true"]}}
    result = run_playbook(tmp_path, [missing], expect_failure=True)[0]
    assert "container nosuch is not set up" in result["msg"]
