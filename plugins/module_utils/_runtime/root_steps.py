# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root steps: one check_ and one do_ per kind of step done inside the container's
namespaces, against the container root, and the in-root path resolution they share.

The check looks at the live state (mountinfo, lstat, the uts hostname); the action is
done only when the check says it is missing. resolve_in_root, _make_mount_point and
lies_on_flags have twins in the script (tests/system/test_twins.py).

Private to the collection; may change without notice.
"""

import os
import stat

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.commands import run
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts

# The plan's step kinds done outside RootSteps: on the host (host_steps.HostSteps;
# namespaces by namespaces.Namespaces), and those of a started process, left to start.
# Every other kind needs a check_ and a do_ in RootSteps (tests/unit/plugins/module_utils/_plan/test_plan.py).
STARTED_STEP_KINDS = ("pivot_root", "root_propagation", "exec")
MAX_SYMLINKS = 40
# Steps that stack a new mount on their target, and steps that change the last one there.
NEW_LAYER_KINDS = ("mount_rootfs", "mount", "cgroup", "readonly_path", "mask_path")
REMOUNT_KINDS = ("remount_readonly", "remount_root_readonly")


def _point_of(step):
    """The container path a mounting step mounts on (the root: "/")."""
    if step["op"] in ("mount_rootfs", "remount_root_readonly"):
        return "/"
    return step.get("target") or step.get("path")


def layers_above(steps):
    """{id(step): how many later steps stack a mount on the same point}: mounts pile up on
    one point (a bind of /etc/hostname, then a mask over it), so each step's own mount is
    that many below the top of the live stack there (whatever the host put below it)."""
    out = {}
    later = {}
    for step in reversed(steps):
        if step["op"] in NEW_LAYER_KINDS + REMOUNT_KINDS:
            point = _point_of(step)
            out[id(step)] = later.get(point, 0)
            if step["op"] in NEW_LAYER_KINDS:
                later[point] = later.get(point, 0) + 1
    return out


# Twin of the script's target_in_root (tests/system/test_twins.py).
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


class RootSteps:
    """Checks and applies root-phase steps from inside the container's namespaces."""

    def __init__(self, root, steps=()):
        self.root = root
        self.mounts = mountinfo.read()
        self._above = layers_above(list(steps))

    def own_mount(self, step, point):
        """The live mount of `step` at `point` (see layers_above), or None: the top one when
        no later step mounts there."""
        stack = [e for e in self.mounts if e["mount_point"] == point]
        above = self._above.get(id(step), 0)
        return stack[-1 - above] if len(stack) > above else None

    def _is_top(self, step):
        return self._above.get(id(step), 0) == 0

    def refresh(self):
        self.mounts = mountinfo.read()

    def target(self, step):
        path = step.get("target") or step.get("path")
        return resolve_in_root(self.root, path, nofollow=step.get("no_symlinks", False))

    # -- mount_rootfs --------------------------------------------------------------
    def check_mount_rootfs(self, step):
        top = self.own_mount(step, self.root)
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
        top = self.own_mount(step, target)
        if top is None or not _has_flags(top, step["options"]):
            return False
        if step["fstype"] == "bind":
            # (a mount above it hides its file: then the device it comes from must match)
            return _same_file(target, step["source"]) if self._is_top(step) else _same_device(top, step["source"])
        return top["fstype"] == step["fstype"]

    def do_mount(self, step):
        target = self.target(step)
        _make_mount_point(target, step["create"], step["source"])
        fstype = "none" if step["fstype"] == "bind" else step["fstype"]
        run(["mount", "--no-canonicalize", "-t", fstype, "-o", mountopts.option_string(step["options"]),
             step["source"], target])

    # -- remount_readonly: read-only once everything below exists (finalizeRootfs) ----
    def check_remount_readonly(self, step):
        top = self.own_mount(step, self.target(step))
        return top is not None and _has_flags(top, step["options"])

    def do_remount_readonly(self, step):
        run(["mount", "--no-canonicalize", "-o", mountopts.option_string(step["options"]), self.target(step)])

    # -- cgroup --------------------------------------------------------------------
    def check_cgroup(self, step):
        top = self.own_mount(step, self.target(step))
        return top is not None and top["fstype"] in ("cgroup2", "tmpfs")

    def do_cgroup(self, step):
        target = self.target(step)
        _make_mount_point(target, "dir", None)
        options = step["options"]
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            run(["mount", "-t", "cgroup2", "-o", mountopts.option_string(options), "cgroup2", target])
            return
        run(["mount", "-t", "tmpfs", "-o", mountopts.option_string(step["v1_tmpfs_options"]), "tmpfs", target])
        mounts = mountinfo.read()
        for controllers, path in _v1_hierarchies():
            where = os.path.join(target, controllers.replace("name=", ""))
            os.mkdir(where, 0o755)
            if step["cgroupns"]:
                run(["mount", "-t", "cgroup", "-o", ",".join(mountopts.words(options) + [controllers]),
                     "cgroup", where])
            else:
                source = _v1_bind_source(mounts, controllers.replace("name=", ""), path)
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
        return os.path.islink(path) and os.readlink(path) == step["link_to"]

    def do_symlink(self, step):
        path = os.path.join(resolve_in_root(self.root, os.path.dirname(step["path"])),
                            os.path.basename(step["path"]))
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(step["link_to"], path)

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
        os.makedirs(self.target(step), 0o755, exist_ok=True)  # (or made meanwhile: a shared root)

    # the mount point of a mount made at start (/proc): a directory made the same way
    check_mount_point = check_workdir
    do_mount_point = do_workdir

    # -- read-only and masked paths ------------------------------------------------
    def check_readonly_path(self, step):
        target = self.target(step)
        top = self.own_mount(step, target)
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
        top = self.own_mount(step, target)
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
        top = self.own_mount(step, self.root)
        return top is not None and _has_flags(top, step["options"])

    def do_remount_root_readonly(self, step):
        run(["mount", "--no-canonicalize", "-o", mountopts.option_string(step["options"]), self.root])


def _has_flags(entry, options):
    """The drift check of a mount: the live mount has the per-mount flags the typed
    options set (mountinfo shows ro, nosuid, nodev, noexec)."""
    return set(mountopts.checked_flags(options)) <= entry["options"]


# Twin of the script's inherited_flags (tests/system/test_twins.py): the nosuid, nodev
# and noexec of the live mount a path lies on.
def lies_on_flags(mounts, path):
    """The nosuid/nodev/noexec of the live mount `path` lies on: the last mounted whose
    mount point holds it (mountinfo lists mounts in mount order)."""
    found = None
    for entry in mounts:
        point = entry["mount_point"]
        if point == "/" or path == point or path.startswith(point.rstrip("/") + "/"):
            found = entry
    return [flag for flag in mountopts.INHERITED_FLAGS if found and flag in found["options"]]


def _same_device(entry, source):
    """True when a live mount comes from the filesystem `source` lies on."""
    try:
        dev = os.stat(source).st_dev
    except OSError:
        return False
    return entry["device"] == "%d:%d" % (os.major(dev), os.minor(dev))


def _same_file(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


# Twin of the script's make_target (tests/system/test_twins.py).
def _make_mount_point(target, create, source):
    """A directory, or an empty file for a bind of a file; never through a symlink, and
    never a directory where a file is or a file where a directory is. Another set-up on the
    same root (containers sharing a plain rootfs) may make it at the same time: what it
    made is taken, as the script's mkdir -p and `: >>` take it."""
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
            os.makedirs(target, 0o755, exist_ok=True)
    elif os.path.isdir(target):
        raise ApplyError("mount point %s is a directory, but the source is a file" % target)
    elif not os.path.exists(target):
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755, exist_ok=True)
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        except FileExistsError:
            if os.path.isdir(target):
                raise ApplyError("mount point %s appeared meanwhile as a directory, but the source "
                                 "is a file" % target)
    if os.path.islink(target):
        raise ApplyError("mount point %s appeared meanwhile as a symlink" % target)


# Twin of the script's cgroup_bind_source (tests/system/test_twins.py).
def _v1_bind_source(mounts, directory, path):
    """The host directory of this process's cgroup in the v1 hierarchy `directory`: its path
    (/proc/self/cgroup) relative to the root of the hierarchy's mount, as runc takes it. In a
    container without a cgroup namespace, /sys/fs/cgroup/<directory> holds only a subtree."""
    point = "/sys/fs/cgroup/" + directory
    top = mountinfo.top_mount(mounts, point)
    root = top["root"].rstrip("/") if top else ""
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    return point + path


def _v1_hierarchies():
    """(controllers, cgroup path) of each cgroup v1 hierarchy this process is in."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            if number != "0" and controllers:
                out.append((controllers, path))
    return out
