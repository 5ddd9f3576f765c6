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
import shutil
import stat
import subprocess

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _mountinfo as mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import describe_step

NS_FILES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "cgroup": "cgroup"}
CLONE_FLAGS = {"mnt": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "net": 0x40000000,
               "cgroup": 0x02000000}
# setns order: the mount namespace last, once the others no longer need host paths.
SETNS_ORDER = ("cgroup", "ipc", "uts", "net", "mnt")
MAX_SYMLINKS = 40


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
# Paths inside the container root
# ---------------------------------------------------------------------------------------

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
                                 % "/" + "/".join(done + [part]), step=path)
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

    def __init__(self, plan):
        self.run_dir = plan["paths"]["run"]
        self.dir = os.path.join(self.run_dir, "ns")
        step = [s for s in plan["steps"] if s["op"] == "namespaces"][0]
        self.wanted = [n for n in step["namespaces"] if n["type"] in NS_FILES]
        self.propagation = step["propagation"]

    def files(self):
        """{kind: path} of every namespace the applier enters (pinned or joined)."""
        out = {}
        for ns in self.wanted:
            kind = NS_FILES[ns["type"]]
            out[kind] = ns["path"] or os.path.join(self.dir, kind)
        return out

    def pinned(self, host_mounts):
        """True when every namespace we pin is an nsfs mount in its place."""
        nsfs = set(e["mount_point"] for e in host_mounts if e["fstype"] == "nsfs")
        return all(path in nsfs for kind, path in self.files().items()
                   if path.startswith(self.dir + "/"))

    def create(self):
        """Pin fresh namespaces: nsfs bind mounts need a private mount to live on."""
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o700)
        host = mountinfo.read()
        if not mountinfo.top_mount(host, self.dir):
            run(["mount", "--bind", self.dir, self.dir])
        run(["mount", "--make-private", self.dir])
        fresh = [ns["type"] for ns in self.wanted if ns["path"] is None]
        for kind in fresh:
            path = os.path.join(self.dir, NS_FILES[kind])
            if not os.path.exists(path):
                open(path, "a").close()
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
                path = os.path.join(self.dir, NS_FILES[kind])
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
        if os.path.isdir(self.run_dir):
            shutil.rmtree(self.run_dir)

    def enter(self):
        """Move the calling (single-threaded, forked) process into the namespaces."""
        files = self.files()
        for kind in SETNS_ORDER:
            if kind in files:
                setns(files[kind], kind)


# ---------------------------------------------------------------------------------------
# Root steps: one check and one action per kind
# ---------------------------------------------------------------------------------------

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
        if step["kind"] == "overlay":
            run(["mount", "-t", "overlay", "-o", ",".join(step["options"]), "overlay", self.root])
        else:
            run(["mount", "--rbind", step["source"], self.root])

    # -- mount ---------------------------------------------------------------------
    def check_mount(self, step):
        target = self.target(step)
        top = mountinfo.top_mount(self.mounts, target)
        if top is None or not mountinfo.wanted_flags(step["options"]) <= top["options"]:
            return False
        if step["fstype"] == "bind":
            return _same_file(target, step["source"])
        return top["fstype"] == step["fstype"]

    def do_mount(self, step):
        target = self.target(step)
        _make_mount_point(target, step["create"], step["source"])
        options = ",".join(step["options"]) or "defaults"
        fstype = "none" if step["fstype"] == "bind" else step["fstype"]
        run(["mount", "--no-canonicalize", "-t", fstype, "-o", options, step["source"], target])

    # -- cgroup --------------------------------------------------------------------
    def check_cgroup(self, step):
        top = mountinfo.top_mount(self.mounts, self.target(step))
        return top is not None and top["fstype"] in ("cgroup2", "tmpfs")

    def do_cgroup(self, step):
        target = self.target(step)
        _make_mount_point(target, "dir", None)
        options = ",".join(step["options"])
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            run(["mount", "-t", "cgroup2", "-o", options, "cgroup2", target])
            return
        tmpfs_options = ",".join(step["v1_tmpfs_options"])
        run(["mount", "-t", "tmpfs", "-o", tmpfs_options, "tmpfs", target])
        for controllers, path in _v1_hierarchies():
            where = os.path.join(target, controllers.replace("name=", ""))
            os.mkdir(where, 0o755)
            if step["cgroupns"]:
                run(["mount", "-t", "cgroup", "-o", "%s,%s" % (options, controllers), "cgroup", where])
            else:
                source = "/sys/fs/cgroup/%s%s" % (controllers.replace("name=", ""), path)
                run(["mount", "--bind", "-o", "bind," + options, source, where])
        if step["v1_tmpfs_readonly"]:
            run(["mount", "-o", "remount,ro," + tmpfs_options, target])

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
        return not os.path.exists(target) or (top is not None and "ro" in top["options"])

    def do_readonly_path(self, step):
        # A bind remount sets exactly the flags it is given: keep the nosuid, nodev and
        # noexec of the filesystem the path lies on (runc does), from the plan when it
        # knows them, else from the live mount table.
        target = self.target(step)
        if step.get("lies_on"):
            keep = step["lies_on"]["flags"]
        else:
            keep = sorted(self._lies_on(target)["options"] & set(("nosuid", "nodev", "noexec")))
        run(["mount", "--no-canonicalize", "--rbind", "-o", ",".join(["bind", "ro"] + keep),
             target, target])

    def _lies_on(self, path):
        """The live mount a path lies on: the last mounted whose mount point holds it."""
        found = None
        for entry in self.mounts:
            point = entry["mount_point"]
            if point == "/" or path == point or path.startswith(point.rstrip("/") + "/"):
                found = entry
        return found

    def check_mask_path(self, step):
        target = self.target(step)
        if not os.path.exists(target):
            return True
        top = mountinfo.top_mount(self.mounts, target)
        if os.path.isdir(target):
            return top is not None and top["fstype"] == "tmpfs" and "ro" in top["options"]
        st = os.stat(target)
        return top is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)

    def do_mask_path(self, step):
        target = self.target(step)
        if os.path.isdir(target):
            run(["mount", "--no-canonicalize", "-t", "tmpfs", "-o", ",".join(step["dir_options"]),
                 "tmpfs", target])
        else:
            null = resolve_in_root(self.root, "/dev/null", nofollow=True)
            st = os.lstat(null)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                raise ApplyError("/dev/null in the container is not the null device (char 1:3); "
                                 "refusing to mask with it", step=step["path"])
            run(["mount", "--no-canonicalize", "--bind", null, target])

    # -- read-only root ------------------------------------------------------------
    def check_remount_root_readonly(self, step):
        top = mountinfo.top_mount(self.mounts, self.root)
        return top is not None and "ro" in top["options"]

    def do_remount_root_readonly(self, step):
        run(["mount", "--no-canonicalize", "-o", "remount,bind,ro", self.root])


def _same_file(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _make_mount_point(target, create, source):
    """A directory, or an empty file for a bind of a file; never through a symlink."""
    if create == "match_source":
        if not os.path.exists(source):
            raise ApplyError("bind source %s does not exist" % source)
        create = "dir" if os.path.isdir(source) else "file"
    if os.path.islink(target):
        raise ApplyError("mount point %s is a symlink" % target)
    if create == "dir":
        if not os.path.isdir(target):
            os.makedirs(target, 0o755)
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

def _host_step_done(step):
    if step["op"] == "make_dir":
        return os.path.isdir(step["path"])
    if step["op"] == "unpack_layer":
        return os.path.isdir(step["dest"]) and os.path.isfile(step["dest"] + ".json")
    content = step.get("content")
    if step["op"] == "copy_file":
        with open(step["source"]) as f:
            content = f.read()
    try:
        with open(step["path"]) as f:
            return f.read() == content
    except (IOError, OSError):
        return False


def _do_host_step(step):
    if step["op"] == "make_dir":
        os.makedirs(step["path"], int(step["mode"], 8))
        return
    if step["op"] == "unpack_layer":
        _unpack_layer(step)
        return
    content = step.get("content")
    if step["op"] == "copy_file":
        with open(step["source"]) as f:
            content = f.read()
    tmp = step["path"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(content)
    os.chmod(tmp, int(step["mode"], 8))
    os.rename(tmp, step["path"])


def _unpack_layer(step):
    """Verify and unpack one image layer into the shared store (the image module's code)."""
    from ansible_collections.fromscratch.containerfs.plugins.module_utils import _image_store
    store_root = os.path.dirname(os.path.dirname(os.path.dirname(step["dest"])))
    try:
        _image_store.ImageStore(store_root).add_layer(
            step["source"], step["format"], step["blob"], digest=step["digest"],
            size=step["size"], diff_id=step["diff_id"], compression=step["compression"] or None,
            media_type=step.get("media_type"))
    except _image_store.ImageError as exc:
        raise ApplyError(str(exc), step=describe_step(step))


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


def recorded_plan(state_dir, name):
    """The plan a container was last set up from (its state dir keeps it), or None."""
    path = os.path.join(state_dir, "containers", name, "plan.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


class Applier(object):
    """Converge or remove the persistent container filesystem of one plan."""

    def __init__(self, plan, check_mode=False):
        self.plan = plan
        self.check_mode = check_mode
        self.namespaces = Namespaces(plan)
        self.record = os.path.join(plan["paths"]["state"], "plan.json")

    def recorded_digest(self):
        try:
            with open(self.record) as f:
                return json.load(f).get("digest")
        except (IOError, OSError, ValueError):
            return None

    def exists(self):
        return self.namespaces.pinned(mountinfo.read())

    def converge(self):
        """Make the container filesystem match the plan; return the steps done (or that
        would be done in check mode), each described in one line."""
        done = []
        for step in [s for s in self.plan["steps"] if s["phase"] == "host" and s["op"] != "namespaces"]:
            if not _host_step_done(step):
                done.append(describe_step(step))
                if not self.check_mode:
                    _do_host_step(step)
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

    def _converge_root(self):
        self.namespaces.enter()
        steps = RootSteps(self.plan["paths"]["root"])
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
        tmp = self.record + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.plan, f, indent=1, sort_keys=True)
        os.rename(tmp, self.record)

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
        root = self.plan["paths"]["root"].rstrip("/")
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
        if self.exists() or os.path.isdir(self.namespaces.run_dir):
            done.append("unpin namespaces and remove %s" % self.namespaces.run_dir)
            if not self.check_mode:
                self.namespaces.remove()
        if os.path.isdir(state):
            done.append("remove %s" % state)
            if not self.check_mode:
                shutil.rmtree(state)
        ref = self.plan["paths"].get("image_ref")
        if ref and os.path.exists(ref):  # a reference kept in a store of its own
            done.append("remove %s" % ref)
            if not self.check_mode:
                os.unlink(ref)
        return done
