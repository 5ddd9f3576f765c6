"""Twins: the algorithms the script (shell) and the applier (Python) each carry by design,
answered on one table of cases each, and required to answer identically:

  target_in_root    <-> InRoot.resolve               (in-root path resolution)
  make_target       <-> InRoot.make_mount_point      (mount-point creation)
  inherited_flags   <-> _applier.lies_on_flags       (the flags of the mount a path lies on)
  live_pid          <-> process.live_pid             (the liveness rule: pid and start ticks)
  cgroup_bind_source <-> _applier._v1_bind_source    (a v1 cgroup's directory under its mount)

The shell functions are cut out of a rendered script (each is a top-level `name() {`
... `}` block) and run under dash, bash and busybox ash with a small prelude.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import inroot as _inroot
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import root_steps as _applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHELLS = {"dash": ["dash"], "bash": ["bash"], "busybox-ash": ["busybox", "ash"]}
PRELUDE = r'''
set -eu
die() { printf 'ERROR %s\n' "$*"; exit 1; }
say() { printf '%s\n' "$*" >&2; }
T_readlink=$(command -v readlink)
T_mkdir=$(command -v mkdir)
CFS_MOUNTS=
'''


def shell_functions(*names):
    """The named functions, cut out of a script rendered from a plain spec."""
    script = _render.render_script(build_plan(load_spec(
        {"name": "twins", "rootfs": {"path": "/srv/rootfs"}, "state_dir": "/s", "run_dir": "/r"})))
    found = []
    for name in names:
        match = re.search(r"^%s\(\) \{\n.*?^\}\n" % re.escape(name), script, re.M | re.S)
        assert match, "the script has no function %s" % name
        found.append(match.group(0))
    return PRELUDE + "\n".join(found)


def run_shell(shell, code, **env):
    proc = subprocess.run(SHELLS[shell] + ["-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=dict(os.environ, **env), check=False)
    assert not proc.stderr or "ERROR" in proc.stdout, proc.stderr
    return proc.stdout


# ---------------------------------------------------------------------------------------
# target_in_root <-> resolve_in_root
# ---------------------------------------------------------------------------------------

TREE_LINKS = {
    "abs": "/a/b",              # absolute: restarts at the root
    "rel": "a/b",
    "up": "../../..",           # '..' stops at the root
    "toroot": "/",
    "loop1": "loop2", "loop2": "loop1",
    "a/b/chain": "../../rel",   # a chain through a directory
    "a/b/self": ".",
    "dangling": "/nowhere/deeper",
    "a/escape": "../../../../etc",
}

RESOLVE_CASES = [
    "/", "/a", "/a/b/c", "/a/f", "/abs", "/abs/c", "/rel/c", "/up", "/up/a/b", "/toroot/a/f",
    "/loop1", "/loop1/x", "/a/b/chain/c", "/a/b/self/self/c", "/dangling", "/dangling/x",
    "/missing/x/y", "/a/../a/b/../../a/f", "/../../a", "/a/escape/passwd", "/a/./b//c/",
    "/toroot/up/abs/chain", "/a/f/under-a-file",
]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "f").write_text("f")
    for name, target in TREE_LINKS.items():
        os.symlink(target, str(root / name))
    return str(root)


def python_resolve(root, path, nofollow):
    try:
        with _inroot.InRoot(root) as inroot:
            return "OK " + inroot.resolve(path, nofollow=nofollow)
    except _inroot.ApplyError:
        return "ERROR"


@pytest.mark.parametrize("shell", sorted(SHELLS))
@pytest.mark.parametrize("nofollow", [False, True], ids=["follow", "nofollow"])
def test_target_in_root_and_resolve_in_root_answer_alike(tree, shell, nofollow):
    code = shell_functions("target_in_root") + "".join(
        '( target_in_root %s %s; printf "OK %%s\\n" "$RESOLVED" ) || true\n'
        % (_render.shell_quote(path), "nofollow" if nofollow else "") for path in RESOLVE_CASES)
    lines = run_shell(shell, code, CFS_ROOT=tree).splitlines()
    script = [line if line.startswith("OK ") else "ERROR" for line in lines]
    python = [python_resolve(tree, path, nofollow) for path in RESOLVE_CASES]
    assert dict(zip(RESOLVE_CASES, script)) == dict(zip(RESOLVE_CASES, python))
    assert all(a.startswith("OK " + tree) or a == "ERROR" for a in python), "never outside the root"


# ---------------------------------------------------------------------------------------
# make_target <-> InRoot.make_mount_point
# ---------------------------------------------------------------------------------------

# (create, source: "dir"/"file"/"missing"/None, what is at the target first)
MAKE_CASES = [
    ("dir", None, None), ("dir", None, "dir"), ("dir", None, "file"), ("dir", None, "link"),
    ("file", None, None), ("file", None, "file"), ("file", None, "dir"), ("file", None, "link"),
    ("file", None, "no-parent"),
    ("match_source", "dir", None), ("match_source", "file", None), ("match_source", "file", "dir"),
    ("match_source", "dir", "file"), ("match_source", "missing", None), ("match_source", "dir", "link"),
]


def prepare(base, source_kind, existing):
    """A fresh root with the target (root/t or root/p/t) in its first state."""
    root = os.path.join(base, "root")
    os.makedirs(root)
    target = os.path.join(root, "p", "t") if existing == "no-parent" else os.path.join(root, "t")
    if existing == "dir":
        os.mkdir(target)
    elif existing == "file":
        open(target, "w").close()
    elif existing == "link":
        os.symlink("/elsewhere", target)
    source = os.path.join(base, "source")
    if source_kind == "dir":
        os.mkdir(source)
    elif source_kind == "file":
        open(source, "w").close()
    return root, target, source


def outcome(ok, target):
    if not ok:
        return "ERROR"
    if os.path.islink(target):
        return "link"
    return "dir" if os.path.isdir(target) else "file" if os.path.exists(target) else "missing"


@pytest.mark.parametrize("shell", sorted(SHELLS))
@pytest.mark.parametrize("create,source_kind,existing", MAKE_CASES)
def test_make_target_and_make_mount_point_answer_alike(tmp_path, shell, create, source_kind, existing):
    root, target, source = prepare(str(tmp_path / "py"), source_kind, existing)
    try:
        with _inroot.InRoot(root) as inroot:
            inroot.make_mount_point(os.path.relpath(target, root), create, source)
        python = outcome(True, target)
    except (_inroot.ApplyError, OSError):
        python = "ERROR"
    root, target, source = prepare(str(tmp_path / "sh"), source_kind, existing)
    # mount(8) makes a directory the script leaves to X-mount.mkdir: do it here
    # both resolve the target in the root first (the script by target_in_root, as add_mount's callers do)
    code = shell_functions("target_in_root", "make_target") + (
        'target_in_root %s\nmake_target %s %s\n'
        '[ -z "$MKDIR_OPTION" ] || "$T_mkdir" -p -- "$RESOLVED"\necho done\n'
        % (_render.shell_quote("/" + os.path.relpath(target, root)), create, _render.shell_quote(source)))
    out = run_shell(shell, code, CFS_ROOT=root)
    script = outcome(out.strip().endswith("done"), target)
    assert script == python


# ---------------------------------------------------------------------------------------
# inherited_flags <-> lies_on_flags
# ---------------------------------------------------------------------------------------

MOUNTS = [("top", "nosuid"), ("top/nested", "nodev,noexec"), ("top/with space", "noexec"),
          ("top/nested/deeper", "nosuid,nodev,noexec"), ("top/over", "nodev"), ("top/over", "nosuid")]
FLAG_CASES = ["/", "top", "top/file", "top/nested", "top/nested/x/y", "top/nestedx",
              "top/with space", "top/with space/in", "top/nested/deeper/z", "top/over/a", "elsewhere"]

# Runs in a private mount namespace: mounts MOUNTS under BASE, then prints, for each case,
# the applier's answer and each shell's answer as JSON.
FLAGS_HARNESS = r'''
import json, os, subprocess, sys
sys.path.insert(0, os.getcwd())
from tests.lib import collection
collection.register()
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import root_steps as _applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo as _mountinfo
base, code, mounts, cases, shells = json.loads(sys.argv[1])
for path, options in mounts:
    os.makedirs(os.path.join(base, path), exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", os.path.join(base, path)], check=True)
    os.makedirs(os.path.join(base, "top", "nested", "x"), exist_ok=True)
table = _mountinfo.read()
out = {"python": [",".join(_applier.lies_on_flags(table, p if p == "/" else os.path.join(base, p))) for p in cases]}
for name, argv in shells.items():
    lines = subprocess.run(argv + ["-c", code], stdout=subprocess.PIPE, universal_newlines=True,
                           check=True).stdout.splitlines()
    out[name] = [l[len("FLAGS "):].lstrip(",") for l in lines]
print(json.dumps(out))
'''


def test_inherited_flags_and_lies_on_flags_answer_alike(tmp_path):
    base = str(tmp_path)
    paths = ["/" if p == "/" else os.path.join(base, p) for p in FLAG_CASES]
    code = shell_functions("fstab_escape", "current_mounts", "inherited_flags") + "".join(
        'inherited_flags %s; printf "FLAGS %%s\\n" "$INHERITED"\n' % _render.shell_quote(p) for p in paths)
    args = json.dumps([base, code, MOUNTS, FLAG_CASES, SHELLS])
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                           FLAGS_HARNESS, args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    python = dict(zip(FLAG_CASES, answers.pop("python")))
    for shell, flags in answers.items():
        assert dict(zip(FLAG_CASES, flags)) == python, shell
    assert python["top/with space/in"] == "noexec" and python["top/over/a"] == "nosuid"
    assert python["top/nestedx"] == "nosuid" and python["top/nested/x/y"] == "nodev,noexec"


# ---------------------------------------------------------------------------------------
# live_pid <-> process.live_pid
# ---------------------------------------------------------------------------------------

# Pid file texts, written with L (a live process), T (its start ticks) and Z, ZT (a zombie's).
PID_FILE_CASES = {
    "live": "L T", "live, started_at": "L T 1700000000", "live, newline": "L T\n",
    "live, leading blanks": " \tL T", "live, odd third field": "L T x7",
    "other ticks": "L T1", "ticks with a leading zero": "L 0T", "pid with a leading zero": "0L T",
    "no ticks": "L", "empty": "", "words": "abc T", "negative": "-L T", "pid 0": "0 T",
    "ticks on a second line": "L\nT", "carriage return": "L T\r\n", "zombie": "Z ZT",
    "symlink": None, "missing": None,
}


@pytest.fixture
def processes():
    live = subprocess.Popen(["sleep", "60"])
    zombie = subprocess.Popen(["true"])
    while _process.start_ticks(zombie.pid) is not None:  # until it has exited, unreaped
        with open("/proc/%d/stat" % zombie.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    yield {"L": live.pid, "Z": zombie.pid}
    live.kill()
    live.wait()
    zombie.wait()


def pid_file_text(template, processes):
    with open("/proc/%d/stat" % processes["Z"]) as f:
        zombie_ticks = f.read().rsplit(")", 1)[1].split()[19]
    values = {"ZT": zombie_ticks, "T": str(_process.start_ticks(processes["L"])),
              "L": str(processes["L"]), "Z": str(processes["Z"])}
    return re.sub("ZT|T|L|Z", lambda m: values[m.group(0)], template)


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_live_pid_answers_alike(tmp_path, shell, processes):
    code = shell_functions("proc_ticks", "live_pid") + "die() { exit 1; }\n"
    answers = {}
    for name, template in PID_FILE_CASES.items():
        path = tmp_path / ("case%d" % len(answers))
        if name == "symlink":
            (tmp_path / "target").write_text(pid_file_text("L T", processes))
            path.symlink_to(tmp_path / "target")
        elif template is not None:
            path.write_text(pid_file_text(template, processes))
        code += '(live_pid %s; printf "LIVE %%s\\n" "$LIVE") || echo refused\n' % _render.shell_quote(str(path))
        try:
            answers[name] = _process.live_pid(str(path))[0]
        except OSError:
            answers[name] = "refused"
    lines = run_shell(shell, code).splitlines()
    shell_answers = {name: line if line == "refused" else int(line[len("LIVE "):]) if line != "LIVE " else None
                     for name, line in zip(PID_FILE_CASES, lines)}
    assert shell_answers == answers
    assert answers["symlink"] == "refused"
    live = [name for name, pid in answers.items() if pid not in (None, "refused")]
    assert sorted(live) == sorted(["live", "live, started_at", "live, newline", "live, leading blanks",
                                   "live, odd third field"])


# ---------------------------------------------------------------------------------------
# cgroup_bind_source <-> _v1_bind_source
# ---------------------------------------------------------------------------------------

# In a private mount namespace: a tmpfs on /sys/fs/cgroup, then hierarchy "whole" as a
# mount of a tree's top (root /... of its filesystem) and "sub" as a bind of a subtree, the
# way a container without a cgroup namespace sees its parent's hierarchies; "stacked" has
# two mounts at one point (the top one counts).
CGROUP_HARNESS = r'''
import json, os, subprocess, sys
sys.path.insert(0, os.getcwd())
from tests.lib import collection
collection.register()
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import root_steps as _applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo as _mountinfo
base, code, shells = json.loads(sys.argv[1])
def sh(*argv):
    subprocess.run(argv, check=True)
sh("mount", "-t", "tmpfs", "tmpfs", "/sys/fs/cgroup")
tree = os.path.join(base, "tree")
os.makedirs(os.path.join(tree, "a", "b", "c"))
os.makedirs(os.path.join(tree, "ab"))
for name in ("whole", "sub", "stacked"):
    os.mkdir("/sys/fs/cgroup/" + name)
sh("mount", "-t", "tmpfs", "tmpfs", "/sys/fs/cgroup/whole")
sh("mount", "--bind", os.path.join(tree, "a"), "/sys/fs/cgroup/sub")
sh("mount", "--bind", tree, "/sys/fs/cgroup/stacked")
sh("mount", "--bind", os.path.join(tree, "a", "b"), "/sys/fs/cgroup/stacked")
table = _mountinfo.read()
sub_root = _mountinfo.top_mount(table, "/sys/fs/cgroup/sub")["root"]
stacked_root = _mountinfo.top_mount(table, "/sys/fs/cgroup/stacked")["root"]
cases = [("whole", "/"), ("whole", "/x/y"), ("absent", "/x"),
         ("sub", sub_root), ("sub", sub_root + "/b/c"), ("sub", sub_root + "b"), ("sub", "/elsewhere"),
         ("sub", "/"), ("stacked", stacked_root + "/c"), ("stacked", sub_root + "/b")]
out = {"cases": cases, "sub_root": sub_root,
       "python": [_applier._v1_bind_source(table, d, p) for d, p in cases]}
calls = "".join("cgroup_bind_source %s %s; printf 'SOURCE %%s\\n' \"$SOURCE\"\n" % (json.dumps(d), json.dumps(p))
                for d, p in cases)
for name, argv in shells.items():
    lines = subprocess.run(argv + ["-c", code + calls], stdout=subprocess.PIPE, universal_newlines=True,
                           check=True).stdout.splitlines()
    out[name] = [l[len("SOURCE "):] for l in lines]
print(json.dumps(out))
'''


def test_cgroup_bind_source_and_v1_bind_source_answer_alike(tmp_path):
    code = shell_functions("cgroup_bind_source")
    args = json.dumps([str(tmp_path), code, SHELLS])
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                           CGROUP_HARNESS, args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    python = answers["python"]
    for shell in SHELLS:
        assert answers[shell] == python, shell
    by_case = dict(zip([tuple(c) for c in answers["cases"]], python))
    sub_root = answers["sub_root"]
    assert by_case[("sub", sub_root + "/b/c")] == "/sys/fs/cgroup/sub/b/c"
    assert by_case[("sub", sub_root)] == "/sys/fs/cgroup/sub"
    assert by_case[("sub", sub_root + "b")] == "/sys/fs/cgroup/sub" + sub_root + "b"
    assert by_case[("whole", "/x/y")] == "/sys/fs/cgroup/whole/x/y"
    assert by_case[("stacked", sub_root + "/b")] == "/sys/fs/cgroup/stacked"
