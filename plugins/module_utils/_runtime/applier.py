# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Linux applier: converge a host to a plan, step by step, against live state.

A persistent container filesystem lives in pinned namespaces: nsfs bind mounts under
``<run_dir>/<name>/ns/`` keep its mount (and uts, ipc, net, cgroup) namespaces alive with
no process in them, so the filesystem can be checked for drift, entered with
``nsenter --mount=<run_dir>/<name>/ns/mnt``, and later started. What belongs to a running
process tree (steps with ``at_start``: the /proc of its pid namespace and the paths in
it, pivot_root, exec) is left for start.

Each root step is checked against the live state seen from inside the namespaces
(mountinfo, lstat, the uts hostname) and done only when missing: a second run changes
nothing. When the spec itself changed (its digest differs from the one recorded), the
namespaces are rebuilt from scratch, so nothing of the old spec lingers.

Private to the collection; may change without notice. Standard library only; raises
`ApplyError`, never exits.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import json
import os
import stat
import subprocess

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import validate as _spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import describe_step

NS_FILES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "cgroup": "cgroup"}
CLONE_FLAGS = {"mnt": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "net": 0x40000000,
               "cgroup": 0x02000000}
# setns order: the mount namespace last, once the others no longer need host paths.
SETNS_ORDER = ("cgroup", "ipc", "uts", "net", "mnt")
MAX_SYMLINKS = 40
# The host paths of a container, as container_paths() computes them, that a recorded plan
# must hold before anything is read from or removed under them; the first plans recorded
# held only these, the others are filled in when missing.
FIRST_RECORDED_PATHS = ("state", "run", "root", "upper", "work", "etc", "image_ref")
RECORDED_PATHS = FIRST_RECORDED_PATHS + tuple(k for k in _layout.CONTAINER_PATH_KEYS if k not in FIRST_RECORDED_PATHS)


class ApplyError(Exception):
    """A step failed: `step` is its description, `detail` what the system said."""

    def __init__(self, message, step=None, cmd=None, detail=None):
        self.step = step
        self.cmd = cmd
        self.detail = detail
        text = message
        if step:
            text = "%s: %s" % (step, message)
        if detail:
            text = "%s (%s)" % (text, detail.strip())
        super(ApplyError, self).__init__(text)


def run(cmd):
    """Run a command (argv list); raise ApplyError with its stderr when it fails."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise ApplyError("command failed: %s" % " ".join(cmd), cmd=cmd,
                         detail=err.decode("utf-8", "replace") or "exit %d" % proc.returncode)
    return out.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# Names and host dirs: checked before any path is built from them
# ---------------------------------------------------------------------------------------

def check_name(name):
    """A container name as the spec allows it (the whole string: no '/', no newline)."""
    if not isinstance(name, str) or not _spec.NAME_RE.fullmatch(name):
        raise ApplyError("invalid container name %r: it must match %s" % (name, _spec.NAME_RE.pattern))
    return name


def check_host_dir(path, what):
    """An absolute host directory path without control characters."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ApplyError("%s must be an absolute path, got %r" % (what, path))
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ApplyError("%s must not hold control characters, got %r" % (what, path))
    return os.path.normpath(path)


def _os_error_text(exc):
    if isinstance(exc, _hostfs.UnsafePathError) or not exc.filename:
        return str(exc)
    return "%s: %s" % (exc.filename, exc.strerror or exc)


def _within(path, base):
    return path == base or path.startswith(base.rstrip("/") + "/")


def _canonical(path, base):
    """`path` with the user-given `base` it lies under canonicalised (realpath: how
    mountinfo shows it); our own components below it stay as they are."""
    return os.path.normpath(os.path.join(os.path.realpath(base), os.path.relpath(path, base)))


# ---------------------------------------------------------------------------------------
# Paths inside the container root
# ---------------------------------------------------------------------------------------

# Twin of the script's target_in_root (tests/integration/test_twins.py).
def resolve_in_root(root, path, nofollow=False):
    """Join `path` to `root`, following symlinks as if root were / (absolute links restart
    at root, '..' stops at it): the result never leaves root. With nofollow, any symlink
    on the way is an error (proc and sysfs targets)."""
    parts = [p for p in path.split("/") if p]
    done = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *(done + [part]))
        if os.path.islink(candidate):
            if nofollow:
                raise ApplyError("%s is a symlink; refusing to mount through it"
                                 % ("/" + "/".join(done + [part])), step=path)
            hops += 1
            if hops > MAX_SYMLINKS:
                raise ApplyError("too many levels of symbolic links", step=path)
            link = os.readlink(candidate)
            if link.startswith("/"):
                done = []
            parts = [p for p in link.split("/") if p] + parts
        else:
            done.append(part)
    return os.path.join(root, *done) if done else root


# ---------------------------------------------------------------------------------------
# Pinned namespaces
# ---------------------------------------------------------------------------------------

def _libc():
    return ctypes.CDLL(None, use_errno=True)


def setns(path, kind):
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc().setns(fd, CLONE_FLAGS[kind]) != 0:
            err = ctypes.get_errno()
            raise ApplyError("setns(%s) failed" % path, detail=os.strerror(err))
    finally:
        os.close(fd)


class Namespaces(object):
    """The pinned namespaces of one container under <run>/ns/."""

    def __init__(self, plan, run_dir=None, run_base=None, ns_dir=None):
        # run_dir and ns_dir: canonical (as mountinfo shows them); run_base: the run_dir
        # the user gave, below which every component is ours.
        self.run_dir = run_dir or plan["paths"]["run"]
        self.run_base = run_base or os.path.dirname(self.run_dir)
        self.dir = ns_dir or plan["paths"]["ns"]
        step = [s for s in plan["steps"] if s["op"] == "namespaces"][0]
        self.wanted = [n for n in step["namespaces"] if n["type"] in NS_FILES]
        self.propagation = step["propagation"]

    def files(self):
        """{kind: path} of every namespace the applier enters (pinned or joined)."""
        out = {}
        for ns in self.wanted:
            kind = NS_FILES[ns["type"]]
            out[kind] = ns["path"] or _layout.ns_file(self.dir, kind)
        return out

    def pinned(self, host_mounts):
        """True when every namespace we pin is an nsfs mount in its place."""
        nsfs = set(e["mount_point"] for e in host_mounts if e["fstype"] == "nsfs")
        return all(path in nsfs for kind, path in self.files().items()
                   if path.startswith(self.dir + "/"))

    def create(self):
        """Pin fresh namespaces: nsfs bind mounts need a private mount to live on."""
        _hostfs.make_dirs(self.dir, 0o700, trusted=self.run_base)
        host = mountinfo.read()
        if not mountinfo.top_mount(host, self.dir):
            run(["mount", "--bind", self.dir, self.dir])
        run(["mount", "--make-private", self.dir])
        fresh = [ns["type"] for ns in self.wanted if ns["path"] is None]
        for kind in fresh:
            path = _layout.ns_file(self.dir, NS_FILES[kind])
            if not os.path.exists(path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        # The kernel refuses (EINVAL) to bind a mount namespace that does not look newer
        # than the caller's; on recent kernels the ids are not ordered across CPUs, so a
        # fresh namespace made on another CPU can be refused. Try again, on each CPU.
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None]
        last_error = None
        for attempt in range(2 * len(cpus) + 2):
            try:
                self._pin(fresh, cpus[attempt % len(cpus)])
                return
            except ApplyError as exc:
                last_error = exc
                self.unpin(keep_dir=True)
        raise last_error

    def _pin(self, fresh, cpu):
        """Bind the namespaces of a fresh holder process (on `cpu`) to their files.

        (unshare --mount=FILE does the binding itself but gives no way to retry.)"""
        cmd = ["unshare", "--propagation", self.propagation.lstrip("r")]
        cmd += ["--" + kind for kind in fresh]
        cmd += ["sh", "-c", "echo ready; exec cat >/dev/null"]
        pin_cpu = (lambda: os.sched_setaffinity(0, [cpu])) if cpu is not None else None
        holder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, preexec_fn=pin_cpu)
        try:
            if holder.stdout.readline().strip() != b"ready":
                raise ApplyError("cannot create namespaces: %s" % " ".join(cmd),
                                 detail=holder.stderr.read().decode("utf-8", "replace"))
            for kind in fresh:
                path = _layout.ns_file(self.dir, NS_FILES[kind])
                run(["mount", "--bind", "/proc/%d/ns/%s" % (holder.pid, NS_FILES[kind]), path])
        finally:
            holder.stdin.close()
            holder.wait()

    def unpin(self, keep_dir=False):
        """Unpin every namespace; the mounts inside die with the last reference."""
        host = mountinfo.read()
        for entry in reversed(host):
            point = entry["mount_point"]
            if (point == self.dir and not keep_dir) or point.startswith(self.dir + "/"):
                run(["umount", "--lazy", point])

    def remove(self):
        """Unpin the namespaces and remove the run dir."""
        self.unpin()
        _hostfs.remove_tree(self.run_dir)

    def enter(self):
        """Move the calling (single-threaded, forked) process into the namespaces."""
        files = self.files()
        for kind in SETNS_ORDER:
            if kind in files:
                setns(files[kind], kind)


# ---------------------------------------------------------------------------------------
# Root steps: one check and one action per kind
# ---------------------------------------------------------------------------------------

# The plan's step kinds the applier handles outside RootSteps: on the host (Applier's
# host steps; namespaces by Namespaces), and those of a started process, left to start.
# Every other kind needs a check_ and a do_ in RootSteps (tests/unit/test_plan.py).
HOST_STEP_KINDS = ("unpack_layer", "write_file", "copy_file", "make_dir", "namespaces")
STARTED_STEP_KINDS = ("pivot_root", "root_propagation", "exec")


class RootSteps(object):
    """Checks and applies root-phase steps from inside the container's namespaces."""

    def __init__(self, root):
        self.root = root
        self.mounts = mountinfo.read()

    def refresh(self):
        self.mounts = mountinfo.read()

    def target(self, step):
        path = step.get("target") or step.get("path")
        return resolve_in_root(self.root, path, nofollow=step.get("no_symlinks", False))

    # -- mount_rootfs --------------------------------------------------------------
    def check_mount_rootfs(self, step):
        top = mountinfo.top_mount(self.mounts, self.root)
        if step["kind"] == "overlay":
            return top is not None and top["fstype"] == "overlay"
        return top is not None and _same_file(self.root, step["source"])

    def do_mount_rootfs(self, step):
        options = mountopts.option_string(step["options"])
        if step["kind"] == "overlay":
            run(["mount", "-t", "overlay", "-o", options, "overlay", self.root])
        else:
            run(["mount", "--no-canonicalize", "-o", options, step["source"], self.root])

    # -- mount ---------------------------------------------------------------------
    def check_mount(self, step):
        target = self.target(step)
        top = mountinfo.top_mount(self.mounts, target)
        if top is None or not _has_flags(top, step["options"]):
            return False
        if step["fstype"] == "bind":
            return _same_file(target, step["source"])
        return top["fstype"] == step["fstype"]

    def do_mount(self, step):
        target = self.target(step)
        _make_mount_point(target, step["create"], step["source"])
        fstype = "none" if step["fstype"] == "bind" else step["fstype"]
        run(["mount", "--no-canonicalize", "-t", fstype, "-o", mountopts.option_string(step["options"]),
             step["source"], target])

    # -- remount_readonly: read-only once everything below exists (finalizeRootfs) ----
    def check_remount_readonly(self, step):
        top = mountinfo.top_mount(self.mounts, self.target(step))
        return top is not None and _has_flags(top, step["options"])

    def do_remount_readonly(self, step):
        run(["mount", "--no-canonicalize", "-o", mountopts.option_string(step["options"]), self.target(step)])

    # -- cgroup --------------------------------------------------------------------
    def check_cgroup(self, step):
        top = mountinfo.top_mount(self.mounts, self.target(step))
        return top is not None and top["fstype"] in ("cgroup2", "tmpfs")

    def do_cgroup(self, step):
        target = self.target(step)
        _make_mount_point(target, "dir", None)
        options = step["options"]
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            run(["mount", "-t", "cgroup2", "-o", mountopts.option_string(options), "cgroup2", target])
            return
        run(["mount", "-t", "tmpfs", "-o", mountopts.option_string(step["v1_tmpfs_options"]), "tmpfs", target])
        for controllers, path in _v1_hierarchies():
            where = os.path.join(target, controllers.replace("name=", ""))
            os.mkdir(where, 0o755)
            if step["cgroupns"]:
                run(["mount", "-t", "cgroup", "-o", ",".join(mountopts.words(options) + [controllers]),
                     "cgroup", where])
            else:
                source = "/sys/fs/cgroup/%s%s" % (controllers.replace("name=", ""), path)
                run(["mount", "-o", mountopts.option_string(step["v1_bind_options"]), source, where])
        if step["v1_tmpfs_remount"]:
            run(["mount", "-o", mountopts.option_string(step["v1_tmpfs_remount"]), target])

    # -- devices -------------------------------------------------------------------
    def check_mknod(self, step):
        try:
            st = os.lstat(self.target(step))
        except OSError:
            return False
        kind = {"c": stat.S_ISCHR, "b": stat.S_ISBLK, "p": stat.S_ISFIFO}[step["type"]]
        return (kind(st.st_mode) and stat.S_IMODE(st.st_mode) == int(step["mode"], 8) and
                (step["type"] == "p" or (os.major(st.st_rdev), os.minor(st.st_rdev)) ==
                 (step["major"], step["minor"])) and (st.st_uid, st.st_gid) == (step["uid"], step["gid"]))

    def do_mknod(self, step):
        path = self.target(step)
        if os.path.lexists(path):
            os.unlink(path)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[step["type"]]
        os.mknod(path, kind | 0o600, os.makedev(step["major"], step["minor"]))
        os.lchown(path, step["uid"], step["gid"])
        os.chmod(path, int(step["mode"], 8))  # after chown, and not subject to the umask

    def check_symlink(self, step):
        path = os.path.join(self.root, step["path"].lstrip("/"))
        if step["if_exists"] and not os.path.exists(step["if_exists"]):
            return True
        return os.path.islink(path) and os.readlink(path) == step["target"]

    def do_symlink(self, step):
        path = os.path.join(resolve_in_root(self.root, os.path.dirname(step["path"])),
                            os.path.basename(step["path"]))
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(step["target"], path)

    # -- hostname ------------------------------------------------------------------
    def check_hostname(self, step):
        with open("/proc/sys/kernel/hostname") as f:
            return f.read().strip() == step["name"]

    def do_hostname(self, step):
        with open("/proc/sys/kernel/hostname", "w") as f:
            f.write(step["name"])

    # -- working directory ---------------------------------------------------------
    def check_workdir(self, step):
        return os.path.isdir(self.target(step))

    def do_workdir(self, step):
        os.makedirs(self.target(step), 0o755)

    # -- read-only and masked paths ------------------------------------------------
    def check_readonly_path(self, step):
        target = self.target(step)
        top = mountinfo.top_mount(self.mounts, target)
        return not os.path.exists(target) or (top is not None and _has_flags(top, step["options"]))

    def do_readonly_path(self, step):
        # A bind remount sets exactly the flags it is given: the plan's options keep the
        # nosuid, nodev and noexec of the filesystem the path lies on when it knows them;
        # else (keep_live_flags) they come from the live mount table, as runc's statfs.
        target = self.target(step)
        options = step["options"]
        if step["keep_live_flags"]:
            options = mountopts.with_flags(options, *lies_on_flags(self.mounts, target))
        run(["mount", "--no-canonicalize", "-o", mountopts.option_string(options), target, target])

    def check_mask_path(self, step):
        target = self.target(step)
        if not os.path.exists(target):
            return True
        top = mountinfo.top_mount(self.mounts, target)
        if os.path.isdir(target):
            return top is not None and top["fstype"] == "tmpfs" and _has_flags(top, step["options"])
        st = os.stat(target)
        return top is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)

    def do_mask_path(self, step):
        target = self.target(step)
        if os.path.isdir(target):
            run(["mount", "--no-canonicalize", "-t", "tmpfs", "-o", mountopts.option_string(step["options"]),
                 "tmpfs", target])
        else:
            null = resolve_in_root(self.root, "/dev/null", nofollow=True)
            st = os.lstat(null)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                raise ApplyError("/dev/null in the container is not the null device (char 1:3); "
                                 "refusing to mask with it", step=step["path"])
            run(["mount", "--no-canonicalize", "-o", mountopts.option_string(step["file_options"]), null, target])

    # -- read-only root ------------------------------------------------------------
    def check_remount_root_readonly(self, step):
        top = mountinfo.top_mount(self.mounts, self.root)
        return top is not None and _has_flags(top, step["options"])

    def do_remount_root_readonly(self, step):
        run(["mount", "--no-canonicalize", "-o", mountopts.option_string(step["options"]), self.root])


def _has_flags(entry, options):
    """The drift check of a mount: the live mount has the per-mount flags the typed
    options set (mountinfo shows ro, nosuid, nodev, noexec)."""
    return set(mountopts.checked_flags(options)) <= entry["options"]


# Twin of the script's inherited_flags (tests/integration/test_twins.py): the nosuid, nodev
# and noexec of the live mount a path lies on.
def lies_on_flags(mounts, path):
    """The nosuid/nodev/noexec of the live mount `path` lies on: the last mounted whose
    mount point holds it (mountinfo lists mounts in mount order)."""
    found = None
    for entry in mounts:
        point = entry["mount_point"]
        if point == "/" or path == point or path.startswith(point.rstrip("/") + "/"):
            found = entry
    return [flag for flag in ("nosuid", "nodev", "noexec") if found and flag in found["options"]]


def _same_file(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


# Twin of the script's make_target (tests/integration/test_twins.py).
def _make_mount_point(target, create, source):
    """A directory, or an empty file for a bind of a file; never through a symlink, and
    never a directory where a file is or a file where a directory is."""
    if create == "match_source":
        if not os.path.exists(source):
            raise ApplyError("bind source %s does not exist" % source)
        create = "dir" if os.path.isdir(source) else "file"
    if os.path.islink(target):
        raise ApplyError("mount point %s is a symlink" % target)
    if create == "dir":
        if os.path.exists(target) and not os.path.isdir(target):
            raise ApplyError("mount point %s is not a directory, but the source is one" % target)
        if not os.path.isdir(target):
            os.makedirs(target, 0o755)
    elif os.path.isdir(target):
        raise ApplyError("mount point %s is a directory, but the source is a file" % target)
    elif not os.path.exists(target):
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        os.close(fd)


def _v1_hierarchies():
    """(controllers, cgroup path) of each cgroup v1 hierarchy this process is in."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            if number != "0" and controllers:
                out.append((controllers, path))
    return out


# ---------------------------------------------------------------------------------------
# Host files and the whole converge
# ---------------------------------------------------------------------------------------

def _root_steps(plan):
    return [s for s in plan["steps"] if s["phase"] == "root" and not s["at_start"]]


def _in_child(func):
    """Run func() in a forked child (single-threaded, so it may setns); return its result
    (JSON-able) or raise its ApplyError."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            result = {"ok": func()}
        except ApplyError as exc:
            result = {"error": str(exc), "cmd": exc.cmd}
        except Exception as exc:  # report anything to the parent, never a traceback
            result = {"error": "%s: %s" % (type(exc).__name__, exc), "cmd": None}
        with os.fdopen(write_fd, "w") as f:
            json.dump(result, f)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data) if data else {"error": "the applier process died", "cmd": None}
    if "error" in result:
        raise ApplyError(result["error"], cmd=result.get("cmd"))
    return result["ok"]


def recorded_plan(state_dir, name, run_dir=None):
    """The plan a container was last set up from (its state dir keeps it), or None.

    `name`, `state_dir` and `run_dir` (None: the recorded one) are checked first; the plan
    read is refused unless its name and paths are those container_paths() gives for them,
    so nothing it names outside them is ever read or removed."""
    check_name(name)
    state_dir = check_host_dir(state_dir, "state_dir")
    if run_dir is not None:
        run_dir = check_host_dir(run_dir, "run_dir")
    state = _layout.container_state(state_dir, name)
    path = _layout.container_record(state_dir, name)
    try:
        if _hostfs.make_dirs(state, trusted=state_dir, create=False):
            return None
        plan = json.loads(_hostfs.read_file(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ApplyError("cannot read the recorded plan %s: %s" % (path, exc))
    _check_recorded(plan, name, state_dir, run_dir, path)
    return plan


def _check_recorded(plan, name, state_dir, run_dir, source):
    """Refuse a recorded plan whose name or paths are not where they must be."""
    def refuse(why):
        raise ApplyError("the recorded plan %s %s; refusing to use it (inspect that file, or "
                         "remove it by hand)" % (source, why))

    paths = plan.get("paths") if isinstance(plan, dict) else None
    if not isinstance(paths, dict) or not isinstance(plan.get("steps"), list):
        refuse("is not a plan")
    if plan.get("name") != name:
        refuse("is for container %r, not %r" % (plan.get("name"), name))
    for key in RECORDED_PATHS:
        if paths.get(key) is not None and not isinstance(paths[key], str):
            refuse("has a paths.%s that is not a string" % key)
    if run_dir is None:
        try:
            run_dir = check_host_dir(os.path.dirname(paths.get("run") or ""), "its run dir")
        except ApplyError as exc:
            refuse(str(exc))
    want = _expected_paths(name, state_dir, run_dir, paths)
    for key in set(RECORDED_PATHS) - set(FIRST_RECORDED_PATHS):
        paths.setdefault(key, want[key])  # plans recorded before the key existed
    for key in RECORDED_PATHS:
        got = paths.get(key)
        if (got and os.path.normpath(got)) != want[key]:
            refuse("has paths.%s = %r where %r was expected" % (key, got, want[key]))
    if not [s for s in plan["steps"] if isinstance(s, dict) and s.get("op") == "namespaces"]:
        refuse("has no namespaces step")


def _expected_paths(name, state_dir, run_dir, recorded):
    """container_paths() for a name, state and run dir, with what a plan may choose
    itself: the rootfs of a container without overlay, and the store its reference is in."""
    ref = recorded.get("image_ref")
    store = ref and _layout.store_of_ref(ref, _layout.container_state(state_dir, name))
    overlay = recorded.get("upper") is not None
    root = recorded.get("root")
    if not overlay:
        try:
            root = check_host_dir(root, "its rootfs")
        except ApplyError:
            root = None  # so refused below
    spec = {"name": name, "state_dir": state_dir, "run_dir": run_dir,
            "rootfs": {"overlay": overlay, "path": root, "image": {"store": store} if store else None}}
    want = _plan.container_paths(spec)
    return dict((k, v and os.path.normpath(v)) for k, v in want.items())


class Applier(object):
    """Converge or remove the persistent container filesystem of one plan."""

    def __init__(self, plan, check_mode=False):
        self.plan = plan
        self.check_mode = check_mode
        paths = plan["paths"]
        # The bases the user gave, below which every component is ours; and the paths we
        # compare with mountinfo, canonicalised once (a run dir under /var/run -> /run).
        self.state_base = os.path.dirname(os.path.dirname(paths["state"]))
        self.run_base = os.path.dirname(paths["run"])
        self.bases = [self.state_base, self.run_base]
        if paths.get("image_ref") and os.path.dirname(paths["image_ref"]) != paths["state"]:
            self.bases.append(os.path.dirname(os.path.dirname(paths["image_ref"])))
        run_dir = _canonical(paths["run"], self.run_base)
        self.root = (_canonical(paths["root"], self.run_base) if _within(paths["root"], paths["run"])
                     else os.path.realpath(paths["root"]))
        self.namespaces = Namespaces(plan, run_dir, os.path.realpath(self.run_base),
                                     _canonical(paths["ns"], self.run_base))
        self.record = paths["record"]

    def locked(self, timeout, shared=False):
        """The per-container lock (the script takes the same file with flock(1))."""
        lock = self.plan["paths"]["lock"]
        _hostfs.make_dirs(os.path.dirname(lock), 0o755)
        return _hostfs.locked(lock, timeout, shared=shared, what="container %s" % self.plan["name"])

    def recorded_digest(self):
        try:
            return json.loads(_hostfs.read_file(self.record)).get("digest")
        except (IOError, OSError, ValueError, AttributeError):
            return None

    def exists(self):
        return self.namespaces.pinned(mountinfo.read())

    def converge(self):
        """Make the container filesystem match the plan; return the steps done (or that
        would be done in check mode), each described in one line."""
        done = self._converge_host()
        fresh = not self.exists() or self.recorded_digest() != self.plan["digest"]
        if fresh:
            done.append("pin fresh namespaces in %s" % self.namespaces.dir)
            if self.check_mode:
                return done + [describe_step(s) for s in _root_steps(self.plan)]
            self.namespaces.unpin()
            self.namespaces.create()
        done += _in_child(self._converge_root)
        if not self.check_mode:
            self._write_record()
        return done

    # -- host steps: files and dirs in the state, run and store dirs ----------------
    def _converge_host(self):
        done = []
        layer_index = 0
        for step in [s for s in self.plan["steps"] if s["phase"] == "host" and s["op"] != "namespaces"]:
            try:
                if step["op"] == "unpack_layer":
                    changed = self._unpack_layer(step, layer_index)
                    layer_index += 1
                else:
                    changed = not self._host_step_done(step)
                    if changed and not self.check_mode:
                        self._do_host_step(step)
            except (OSError, IOError) as exc:
                raise ApplyError(_os_error_text(exc), step=describe_step(step))
            if changed:
                done.append(describe_step(step))
        return done

    def _base_of(self, path):
        """The user-given base `path` lies under (None: a path of the user's own, such as
        a volume source)."""
        for base in self.bases:
            if _within(path, base):
                return base
        return None

    def _host_step_done(self, step):
        if step["op"] == "make_dir":
            return not _hostfs.make_dirs(step["path"], int(step["mode"], 8),
                                         self._base_of(step["path"]), create=False)
        content = step.get("content")
        if step["op"] == "copy_file":
            with open(step["source"]) as f:
                content = f.read()
        try:
            return _hostfs.read_file(step["path"]) == content
        except (IOError, OSError):
            return False

    def _do_host_step(self, step):
        mode = int(step["mode"], 8)
        if step["op"] == "make_dir":
            _hostfs.make_dirs(step["path"], mode, self._base_of(step["path"]))
            return
        content = step.get("content")
        if step["op"] == "copy_file":
            with open(step["source"]) as f:
                content = f.read()
        _hostfs.write_file(step["path"], content, mode)

    def _unpack_layer(self, step, index):
        """Verify and unpack one image layer into the shared store (the image module's
        code). Whether it is there is asked under the store's lock, which its garbage
        collection holds from reading the references to deleting: our reference is written
        first, so a layer seen here stays. Returns True when it was (or would be) added."""
        from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _image_store
        store = _image_store.ImageStore(self.plan["paths"]["store"])
        if self.check_mode:
            return not store.has_layer(step["diff_id"])
        try:
            got = store.add_layer(
                step["source"], step["format"], step["blob"], digest=step["digest"],
                size=step["size"], diff_id=step["diff_id"], compression=step["compression"] or None,
                media_type=step.get("media_type"), index=index)
        except _image_store.ImageError as exc:
            raise ApplyError(str(exc), step=describe_step(step))
        return bool(got.get("added"))

    def _converge_root(self):
        self.namespaces.enter()
        steps = RootSteps(self.root)
        done = []
        for step in _root_steps(self.plan):
            if getattr(steps, "check_" + step["op"])(step):
                continue
            done.append(describe_step(step))
            if self.check_mode:
                continue
            try:
                getattr(steps, "do_" + step["op"])(step)
            except (OSError, IOError) as exc:
                raise ApplyError(os.strerror(exc.errno) if exc.errno else str(exc),
                                 step=describe_step(step))
            except ApplyError as exc:
                raise ApplyError(str(exc), step=describe_step(step), cmd=exc.cmd)
            steps.refresh()
        return done

    def _write_record(self):
        try:
            _hostfs.write_file(self.record, json.dumps(self.plan, indent=1, sort_keys=True), 0o600)
        except OSError as exc:
            raise ApplyError(_os_error_text(exc), step="record the plan in %s" % self.record)

    def summary(self):
        """Where the container lives: name, spec digest, root, namespace files, and the
        nsenter command that enters them."""
        files = self.namespaces.files()
        flags = {"mnt": "mount"}
        return {
            "name": self.plan["name"],
            "digest": self.plan["digest"],
            "root": self.plan["paths"]["root"],
            "namespaces": files,
            "enter": "nsenter " + " ".join("--%s=%s" % (flags.get(kind, kind), path)
                                           for kind, path in sorted(files.items())),
        }

    def live_mounts(self):
        """The container's mount table as seen from inside its mount namespace: one dict
        per mount under its root (mount_point relative to it, fstype, source, options)."""
        if not self.exists():
            return []
        return _in_child(self._mounts_inside)

    def _mounts_inside(self):
        self.namespaces.enter()
        root = self.root.rstrip("/")
        out = []
        for entry in mountinfo.read():
            point = entry["mount_point"]
            if point == root or point.startswith(root + "/"):
                out.append({"mount_point": point[len(root):] or "/", "fstype": entry["fstype"],
                            "source": entry["source"], "options": sorted(entry["options"]),
                            "super_options": sorted(entry["super_options"])})
        return out

    def persistent_steps(self):
        """One line per step a persistent container filesystem keeps (host and root)."""
        return [describe_step(s) for s in self.plan["steps"]
                if s["phase"] == "host" and s["op"] != "namespaces"] + \
            [describe_step(s) for s in _root_steps(self.plan)]

    def remove(self):
        """Remove every mount, pinned namespace and file of the container."""
        done = []
        state = self.plan["paths"]["state"]
        try:
            if self.exists() or os.path.lexists(self.namespaces.run_dir):
                done.append("unpin namespaces and remove %s" % self.namespaces.run_dir)
                if not self.check_mode:
                    self.namespaces.remove()
            if os.path.lexists(state):
                done.append("remove %s" % state)
                if not self.check_mode:
                    _hostfs.remove_tree(state)
            ref = self.plan["paths"].get("image_ref")
            if ref and os.path.lexists(ref):  # a reference kept in a store of its own
                done.append("remove %s" % ref)
                if not self.check_mode:
                    os.unlink(ref)
        except OSError as exc:
            raise ApplyError(_os_error_text(exc), step=done[-1] if done else "remove")
        return done
