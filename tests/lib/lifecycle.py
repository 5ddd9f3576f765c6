"""A kept container driven through its rendered script's lifecycle commands (up, start,
exec, status, stop, logs, down), for the system tests.

The commands run in the mount namespace pytest runs in (a private one, see
tests/system/conftest.py): a kept container's pinned namespaces are mounts there that
outlive one script call. Every pid the container files name is remembered, so that a
failed test can still kill what it started (by pid, never by name) and undo its mounts.
"""
import os
import signal
import subprocess
import time

from tests.lib import mountinfo

HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
SHELLS = {"dash": ("dash",), "bash": ("bash",), "busybox-ash": ("busybox", "ash")}


def proc_ticks(pid):
    """The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or
    None when it is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def wait_until(predicate, timeout=10.0, step=0.05):
    """Poll `predicate` until it returns something true (returned) or `timeout` passes
    (None). A wait for something to happen, never an assertion on time."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(step)


class Kept:
    """One container's script, its files, and every process its pid files named."""

    def __init__(self, script, name, state_dir, run_dir, shell="dash"):
        self.script = script
        self.name = name
        self.shell = shell
        self.state = os.path.join(state_dir, "containers", name)
        self.run_dir = os.path.join(run_dir, name)
        self.ns = os.path.join(self.run_dir, "ns")
        self.seen = {}  # pid -> ticks of every container pid 1 and monitor seen

    def path(self, key):
        """A file of the layout: pid, monitor, stopping (run dir); log, exit, record,
        script (state dir)."""
        run = {"pid": "pid", "monitor": "monitor", "stopping": "stopping", "go": "go"}
        state = {"log": "container.log", "log1": "container.log.1", "exit": "exit",
                 "record": "plan.json", "script": "container.sh"}
        if key in run:
            return os.path.join(self.run_dir, run[key])
        return os.path.join(self.state, state[key])

    def sh(self, *args, timeout=30, shell=None):
        """`SHELL SCRIPT ARGS...` with its output captured; a hang fails the test."""
        argv = list(SHELLS[shell or self.shell]) + [self.script] + list(args)
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, env=HOST_ENV,
                                timeout=timeout, check=False)
        self.remember()
        return result

    def read(self, key):
        try:
            with open(self.path(key)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def pid_file(self, key):
        """(pid, ticks) of the pid or monitor file, or None."""
        text = self.read(key)
        if not text:
            return None
        fields = text.split()
        return int(fields[0]), int(fields[1])

    def remember(self):
        for key in ("pid", "monitor"):
            found = self.pid_file(key)
            if found:
                self.seen[found[0]] = found[1]

    def live(self, key):
        """The pid the file names when it runs (same start time), else None."""
        found = self.pid_file(key)
        if found:
            self.seen[found[0]] = found[1]
            if proc_ticks(found[0]) == found[1]:
                return found[0]
        return None

    def running(self):
        return self.live("pid")

    def alive_seen(self):
        """The remembered processes that still run."""
        return sorted(pid for pid, ticks in self.seen.items() if proc_ticks(pid) == ticks)

    def mounts_under_run(self):
        return [m.mount_point for m in mountinfo.read()
                if m.mount_point == self.run_dir or m.mount_point.startswith(self.run_dir + "/")]

    def assert_down(self):
        """Nothing of the container is left: no mount under its run dir, no run or state
        dir, none of its processes."""
        assert self.mounts_under_run() == []
        assert not os.path.lexists(self.run_dir), os.listdir(self.run_dir)
        assert not os.path.lexists(self.state), os.listdir(self.state)
        assert wait_until(lambda: not self.alive_seen(), timeout=5), self.alive_seen()

    def kill_everything(self):
        """After a failed test: kill what it started (by pid), unpin, remove the dirs."""
        self.remember()
        for pid, ticks in sorted(self.seen.items()):
            if proc_ticks(pid) == ticks:
                os.kill(pid, signal.SIGKILL)
        for point in reversed(self.mounts_under_run()):
            subprocess.run(["umount", "--lazy", point], check=False)
        subprocess.run(["rm", "-rf", "--", self.run_dir, self.state], check=False)
