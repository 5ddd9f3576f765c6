"""The systemd unit of a container: `systemd-analyze verify` accepts it (systemd need not
be pid 1), and its ExecStart and ExecStop lines, split into words as systemd splits them,
start the container in the foreground and stop it."""
import os
import shutil
import subprocess

import pytest

from tests.lib.playbook import run_playbook
from tests.system import _lifecycle as L

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"),
]


def systemd_words(line):
    """Split an Exec*= value as systemd does for what unit_word() writes: words separated by
    blanks, double-quoted words with \\\\ and \\" escapes; then %% -> % (specifiers) and
    $$ -> $ (variables)."""
    words, word, quoted, escaped, started = [], [], False, False, False
    for char in line:
        if escaped:
            word.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            started = True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(char)
            started = True
    assert not quoted and not escaped, "unterminated quoting in %r" % line
    if started:
        words.append("".join(word))
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


def verify(unit_file):
    return subprocess.run(["systemd-analyze", "verify", "--man=no", unit_file], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=L.HOST_ENV, check=False)


def unit_of(spec, tmp_path, policy="on-failure", stop_timeout=1):
    plan = L._host_steps.recorded_plan(spec["state_dir"], spec["name"])
    unit_dir = tmp_path / "units"
    unit_dir.mkdir(exist_ok=True)
    unit_file = str(unit_dir / os.path.basename(L._process.unit_path(spec["name"])))
    with open(unit_file, "w") as f:
        f.write(L._process.unit_text(plan, policy, stop_timeout))
    return unit_file


def exec_line(unit_file, key):
    with open(unit_file) as f:
        lines = [l[len(key) + 1:].rstrip("\n") for l in f if l.startswith(key + "=")]
    assert len(lines) == 1
    return systemd_words(lines[0])


@pytest.fixture
def spec(tmp_path, rootfs):
    # a state dir with a blank and a % in it: the unit must quote and escape the paths
    spec = L.make_spec(tmp_path, rootfs, name="unit")
    spec["state_dir"] = str(tmp_path / "state 100%")
    yield spec
    L.kill_all(spec["state_dir"], spec["run_dir"])


def test_the_unit_verifies_and_its_exec_lines_run_the_container(tmp_path, spec):
    paths = L.paths_of(spec)
    run_playbook(tmp_path, [L.task(spec, "present")])
    unit_file = unit_of(spec, tmp_path)
    result = verify(unit_file)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr

    start = exec_line(unit_file, "ExecStart")
    assert start[:3] == ["/bin/sh", paths["script"], "start"] and "--foreground" in start
    stop = exec_line(unit_file, "ExecStop")
    assert stop == ["/bin/sh", paths["script"], "stop", "--timeout", "1"]

    service = subprocess.Popen(start, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=L.HOST_ENV)
    try:
        L.wait_for(lambda: L.status(spec)["state"] == "running" or service.poll() is not None,
                   what="the container to run")
        state = L.status(spec)
        assert state["state"] == "running", service.communicate()
        assert state["monitor_pid"] == service.pid  # in the foreground, ExecStart's shell watches it
        pid = state["pid"]
        assert L.ns_inode("/proc/%d/ns/uts" % pid) == L.ns_inode(os.path.join(paths["ns"], "uts"))

        stopped = subprocess.run(stop, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, universal_newlines=True, env=L.HOST_ENV,
                                 timeout=60, check=False)
        assert stopped.returncode == 0, stopped.stderr
        assert service.wait(timeout=60) == 137  # sleep as pid 1 ignores SIGTERM: killed
        L.wait_gone(pid)
        assert L.status(spec)["state"] == "stopped" and L.status(spec)["exit_status"] == 137
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def test_a_bad_unit_fails_verification(tmp_path, spec):
    """The check above can fail: a unit whose ExecStart names no program is refused."""
    run_playbook(tmp_path, [L.task(spec, "present")])
    unit_file = unit_of(spec, tmp_path)
    with open(unit_file) as f:
        text = f.read()
    with open(unit_file, "w") as f:
        f.write(text.replace("ExecStart=/bin/sh", "ExecStart=/no/such/sh"))
    result = verify(unit_file)
    assert result.returncode != 0 and "/no/such/sh" in result.stderr


def test_systemd_words():
    assert systemd_words('/bin/sh "/a b/100%%/$$x" start') == ["/bin/sh", "/a b/100%/$x", "start"]
    assert systemd_words('a "b\\"c\\\\d"') == ["a", 'b"c\\d']


# A stand-in for systemctl where systemd is not pid 1 (the module's test hook
# CONTAINERFS_TEST_SYSTEMD=DIR: units are written to DIR, DIR/systemctl is run). It logs
# its calls and runs the unit's Exec lines as a Type=simple service: start returns at once.
FAKE_SYSTEMCTL = r'''#!/bin/sh
set -eu
dir=$(dirname "$0")
printf '%s\n' "$*" >> "$dir/calls"
exec_line() { sed -n "s/^$1=//p" "$dir/$2"; }
case $1 in
    daemon-reload) ;;
    start)
        eval "set -- $(exec_line ExecStart "$2")"
        "$@" < /dev/null >> "$dir/service.out" 2>&1 &
        echo "$!" > "$dir/service.pid"
        ;;
    stop)
        [ -f "$dir/service.pid" ] || exit 0
        unit=$2
        eval "set -- $(exec_line ExecStop "$unit")"
        "$@"
        pid=$(cat "$dir/service.pid")
        n=0
        while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
        rm -f "$dir/service.pid"
        ;;
    is-failed) exit 1 ;;
    is-enabled) [ -e "$dir/$3.enabled" ] ;;
    enable) touch "$dir/$2.enabled" ;;
    disable) rm -f "$dir/$2.enabled" ;;
    *) echo "unknown call: $*" >&2; exit 1 ;;
esac
'''


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    directory = tmp_path / "systemd"
    directory.mkdir(mode=0o700)
    systemctl = directory / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL)
    systemctl.chmod(0o700)
    monkeypatch.setenv(L._process.TEST_SYSTEMD, str(directory))
    return directory


def calls(directory):
    """The stand-in's calls, but is-failed (polled while the module waits for the process)."""
    path = directory / "calls"
    lines = path.read_text().splitlines() if path.exists() else []
    return [l for l in lines if not l.startswith("is-failed ")]


def test_the_module_runs_it_with_its_unit_where_systemd_is_pid1(tmp_path, rootfs, fake_systemd):
    spec = L.make_spec(tmp_path, rootfs, name="svc")
    unit = "containerfs-svc.service"
    unit_file = fake_systemd / unit
    try:
        first = run_playbook(tmp_path, [L.task(spec, "started", restart_policy="on-failure", enabled=True,
                                               stop_timeout=1)])[0]
        assert first["changed"] is True
        assert first["container"]["unit"] == str(unit_file)
        assert first["container"]["state"] == "running"
        assert "write the systemd unit %s" % unit_file in first["actions"]
        assert "enable the systemd unit %s" % unit in first["actions"]
        assert calls(fake_systemd) == ["daemon-reload", "start " + unit, "is-enabled --quiet " + unit, "enable " + unit]
        text = unit_file.read_text()
        assert text == L._process.unit_text(L._host_steps.recorded_plan(spec["state_dir"], "svc"), "on-failure", 1)
        assert verify(str(unit_file)).returncode == 0
        # the process runs under the unit's ExecStart (in the foreground: no detached monitor)
        pid = first["container"]["pid"]
        assert L.status(spec)["monitor_pid"] == int((fake_systemd / "service.pid").read_text())

        again = run_playbook(tmp_path, [L.task(spec, "started", restart_policy="on-failure", enabled=True,
                                               stop_timeout=1)])[0]
        assert again["changed"] is False and again["container"]["pid"] == pid
        assert calls(fake_systemd)[4:] == ["is-enabled --quiet " + unit]

        stopped = run_playbook(tmp_path, [L.task(spec, "stopped", restart_policy="on-failure", stop_timeout=1)])[0]
        assert stopped["actions"] == ["stop the process (pid %d)" % pid]
        assert calls(fake_systemd)[5:] == ["stop " + unit]
        L.wait_gone(pid)
        assert L.status(spec)["state"] == "stopped" and L.status(spec)["monitor_pid"] is None

        gone = run_playbook(tmp_path, [L.task(spec, "absent")])[0]
        assert "remove the systemd unit %s" % unit_file in gone["actions"]
        assert calls(fake_systemd)[6:] == ["disable " + unit, "daemon-reload"]
        assert not unit_file.exists() and not (fake_systemd / (unit + ".enabled")).exists()
        assert not os.path.exists(L.paths_of(spec)["state"])
    finally:
        L.kill_all(spec["state_dir"], spec["run_dir"])
