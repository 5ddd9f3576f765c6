"""The run's files, named once in the script (CFS_RUN_FILES, from the layout's paths):
`cleanup` empties them with builtins when a run ends, `monitor_cleanup` removes them with
the fifo and the monitor's file; tests/lib/run_files.py expects the same names."""
import os
import shlex
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render
from tests.lib.run_files import RUN_FILES_EMPTIED, START_FIFO

SHELLS = ["dash", "bash", "busybox ash"]
# the header values the two functions read
HEADER = ("CFS_RUN=", "CFS_RUN_FILES=", "CFS_GO=", "CFS_MONITOR=", "CFS_PID_FILE=")
# what cleanup calls first: the pid 1 of a run still alive goes (none is, here)
CLEANUP_HELPERS = ("kill_left_pid1", "live_pid", "proc_ticks")
# in every run file: "PID TICKS" of no process (above the kernel's highest pid_max, 2^22)
NO_PROCESS = "4194305 5678\n"
# what lies in a run dir besides the run's files: neither function touches it
OTHERS = {"stopping": "", "unrelated": "keep me\n"}


def script_lines(run_dir):
    plan = build_plan(load_spec({"name": "demo", "rootfs": {"path": "/srv/rootfs"}, "state_dir": "/s",
                                 "run_dir": run_dir}))
    return plan["paths"], _render.render_script(plan).splitlines()


def header_value(lines, name):
    line = [text for text in lines if text.startswith(name + "=")][0]
    return shlex.split(line[len(name) + 1:])[0]


def shell_function(lines, name):
    start = lines.index("%s() {" % name)
    return "\n".join(lines[start:lines.index("}", start) + 1])


def call(shell, lines, function, helpers=()):
    functions = [shell_function(lines, name) for name in helpers + (function,)]
    code = "\n".join(["set -eu"] + [text for text in lines if text.startswith(HEADER)] +
                     functions + ["T_rm=rm", function])
    subprocess.run(shell.split() + ["-c", code], check=True)


def a_run_dir(tmp_path):
    """A run dir (its path as hostile as a run dir may be) as a run leaves it before its
    end: every run file written, the fifo, the monitor's file and others."""
    paths, lines = script_lines(str(tmp_path / "r'u n*"))
    os.makedirs(paths["run"])
    for name in RUN_FILES_EMPTIED:
        with open(os.path.join(paths["run"], name), "w") as f:
            f.write(NO_PROCESS)
    os.mkfifo(paths["fifo"])
    for path, content in [(paths["monitor"], "99 1\n")] + [(os.path.join(paths["run"], n), c) for n, c in OTHERS.items()]:
        with open(path, "w") as f:
            f.write(content)
    return paths, lines


def contents(run):
    found = {}
    for name in os.listdir(run):
        path = os.path.join(run, name)
        if os.path.islink(path) or not os.path.isfile(path):
            found[name] = "(link)" if os.path.islink(path) else "(other)"
        else:
            with open(path) as f:
                found[name] = f.read()
    return found


def test_the_script_names_the_run_files_the_tests_expect():
    paths, lines = script_lines("/r")
    names = header_value(lines, "CFS_RUN_FILES").split()
    assert sorted(names) == sorted(RUN_FILES_EMPTIED)
    assert all(os.path.join(paths["run"], name) in paths.values() for name in names)


@pytest.mark.parametrize("shell", SHELLS)
def test_cleanup_empties_the_run_files_keeps_the_fifo_and_follows_no_link(shell, tmp_path):
    paths, lines = a_run_dir(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("not ours\n")
    planted = os.path.join(paths["run"], RUN_FILES_EMPTIED[-1])
    os.unlink(planted)
    os.symlink(str(outside), planted)
    call(shell, lines, "cleanup", CLEANUP_HELPERS)
    want = dict(OTHERS, **{name: "" for name in RUN_FILES_EMPTIED})
    want.update({RUN_FILES_EMPTIED[-1]: "(link)", START_FIFO: "(other)", os.path.basename(paths["monitor"]): "99 1\n"})
    assert contents(paths["run"]) == want
    assert outside.read_text() == "not ours\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_monitor_cleanup_removes_the_run_files_the_fifo_and_the_monitor_s_file(shell, tmp_path):
    paths, lines = a_run_dir(tmp_path)
    call(shell, lines, "monitor_cleanup")
    assert contents(paths["run"]) == OTHERS
