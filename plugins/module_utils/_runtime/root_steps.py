# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root steps: one check_ and one do_ per kind of step done inside the container's
namespaces, against the container root.

The check looks at the live state (mountinfo, lstat, the uts hostname); the action is
done only when the check says it is missing, through descriptors of the root (inroot.py).
lies_on_flags and _v1_bind_source have twins in the script (tests/system/test_twins.py).

Private to the collection; may change without notice.
"""

import os
import stat

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import inroot, mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.commands import run
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.inroot import InRoot
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts

# The plan's step kinds done outside RootSteps: on the host (host_steps.HostSteps;
# namespaces by namespaces.Namespaces), and those of a started process, left to start.
# Every other kind needs a check_ and a do_ in RootSteps (tests/unit/plugins/module_utils/_plan/test_plan.py).
STARTED_STEP_KINDS = ("pivot_root", "root_propagation", "exec")
# Steps that stack a new mount on their target, and steps that change the last one there.
NEW_LAYER_KINDS = ("mount_rootfs", "mount", "cgroup", "readonly_path", "mask_path")
REMOUNT_KINDS = ("remount_readonly", "remount_root_readonly")


def _nofollow(step):
    """Whether the step's target may lie behind no symlink at all (proc, sysfs, /dev)."""
    return step.get("no_symlinks", False)


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


class RootSteps:
    """Checks and applies root-phase steps from inside the container's namespaces. A check
    reads paths; every change goes through descriptors of the root (inroot.InRoot), so a
    symlink swapped in meanwhile cannot take it onto the host."""

    def __init__(self, root, steps=()):
        self.root = root
        self.inroot = InRoot(root)
        self.mounts = mountinfo.read()
        self._above = layers_above(list(steps))

    def close(self):
        self.inroot.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
        return self.inroot.resolve(_point_of(step), nofollow=_nofollow(step))

    def _reopen(self, step, below=""):
        """A function giving a fresh descriptor of the step's target (or of `below` in it):
        after a mount there, the mount's root."""
        path = _point_of(step) + below
        return lambda: self.inroot.open(path, nofollow=_nofollow(step))

    def _make_target(self, step, create, source=None):
        return self.inroot.make_mount_point(_point_of(step), create, source, nofollow=_nofollow(step))

    def entry(self, path):
        """The host path of the entry `path` names: its directory resolved in the root, its
        last name not followed (a device node or a /dev link replaces a symlink there)."""
        head, name = os.path.split(path.rstrip("/"))
        return os.path.join(self.inroot.resolve(head or "/"), name)

    # -- mount_rootfs (the root is ours: a path under the run dir) -----------------
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
        target = self._make_target(step, step["create"], step["source"])
        fstype = "none" if step["fstype"] == "bind" else step["fstype"]
        _mount(step["options"], MountSource(step["source"]), target, self._reopen(step), fstype)

    # -- remount_readonly: read-only once everything below exists (finalizeRootfs) ----
    def check_remount_readonly(self, step):
        top = self.own_mount(step, self.target(step))
        return top is not None and _has_flags(top, step["options"])

    def do_remount_readonly(self, step):
        _mount(step["options"], None, self._reopen(step)(), None)

    # -- cgroup --------------------------------------------------------------------
    def check_cgroup(self, step):
        top = self.own_mount(step, self.target(step))
        return top is not None and top["fstype"] in ("cgroup2", "tmpfs")

    def do_cgroup(self, step):
        target = self._make_target(step, "dir")
        options = step["options"]
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            _mount(options, MountSource("cgroup2"), target, self._reopen(step), "cgroup2")
            return
        _mount(step["v1_tmpfs_options"], MountSource("tmpfs"), target, self._reopen(step), "tmpfs")
        mounts = mountinfo.read()
        for controllers, path in _v1_hierarchies():
            name = controllers.replace("name=", "")
            where = self.inroot.make_dir(step["target"] + "/" + name, nofollow=True)
            reopen = self._reopen(step, "/" + name)
            if step["cgroupns"]:
                _mount(mountopts.parse(mountopts.words(options) + [controllers]), MountSource("cgroup"),
                       where, reopen, "cgroup")
            else:
                _mount(step["v1_bind_options"], MountSource(_v1_bind_source(mounts, name, path)), where, reopen)
        if step["v1_tmpfs_remount"]:
            _mount(step["v1_tmpfs_remount"], None, self._reopen(step)(), None)

    # -- devices -------------------------------------------------------------------
    def check_mknod(self, step):
        try:
            st = os.lstat(self.entry(step["path"]))
        except OSError:
            return False
        kind = {"c": stat.S_ISCHR, "b": stat.S_ISBLK, "p": stat.S_ISFIFO}[step["type"]]
        return (kind(st.st_mode) and stat.S_IMODE(st.st_mode) == int(step["mode"], 8) and
                (step["type"] == "p" or (os.major(st.st_rdev), os.minor(st.st_rdev)) ==
                 (step["major"], step["minor"])) and (st.st_uid, st.st_gid) == (step["uid"], step["gid"]))

    def do_mknod(self, step):
        """Make the node by name in its directory's descriptor, then reopen it O_NOFOLLOW and
        change its owner and mode through that descriptor only if it is the node made."""
        parent, name = self.inroot.parent_of(step["path"])
        _unlink_entry(parent, name)
        kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[step["type"]]
        rdev = os.makedev(step["major"], step["minor"])
        os.mknod(name, kind | 0o600, rdev, dir_fd=parent)
        node = self.inroot.open_entry(parent, name)
        st = os.fstat(node)
        if stat.S_IFMT(st.st_mode) != kind or (kind != stat.S_IFIFO and st.st_rdev != rdev):
            raise ApplyError("%s changed right after it was made; refusing to change its owner and mode"
                             % step["path"])
        os.chown(inroot.fd_path(node), step["uid"], step["gid"])
        os.chmod(inroot.fd_path(node), int(step["mode"], 8))  # after chown, and not subject to the umask

    def check_symlink(self, step):
        if step["if_exists"] and not os.path.exists(step["if_exists"]):
            return True
        path = self.entry(step["path"])
        return os.path.islink(path) and os.readlink(path) == step["link_to"]

    def do_symlink(self, step):
        parent, name = self.inroot.parent_of(step["path"])
        _unlink_entry(parent, name)
        os.symlink(step["link_to"], name, dir_fd=parent)

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
        self.inroot.make_dir(step["path"])  # (or made meanwhile: a shared root)

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
        target = self._reopen(step)()
        options = step["options"]
        if step["keep_live_flags"]:
            options = mountopts.with_flags(options, *lies_on_flags(self.mounts, self.target(step)))
        _mount(options, MountSource(fd=target), target, self._reopen(step))

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
        target = self._reopen(step)()
        if stat.S_ISDIR(os.fstat(target).st_mode):
            _mount(step["options"], MountSource("tmpfs"), target, self._reopen(step), "tmpfs")
            return
        null = self.inroot.open("/dev/null", nofollow=True)
        st = os.fstat(null)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            raise ApplyError("/dev/null in the container is not the null device (char 1:3); "
                             "refusing to mask with it", step=step["path"])
        _mount(step["file_options"], MountSource(fd=null), target, self._reopen(step))

    # -- read-only root ------------------------------------------------------------
    def check_remount_root_readonly(self, step):
        top = self.own_mount(step, self.root)
        return top is not None and _has_flags(top, step["options"])

    def do_remount_root_readonly(self, step):
        run(["mount", "--no-canonicalize", "-o", mountopts.option_string(step["options"]), self.root])


class MountSource:
    """What a mount comes from: a name or host path given as it is (proc, tmpfs, a volume's
    host directory), or a descriptor from the root (a path bound onto itself, /dev/null)."""

    def __init__(self, name=None, fd=None):
        self.name, self.fd = name, fd

    def argument(self):
        return inroot.fd_path(self.fd) if self.fd is not None else self.name

    def fds(self):
        return [self.fd] if self.fd is not None else []


def _mount(typed, source, target, reopen, fstype=None):
    """Mount onto the descriptor `target`, one mount(2) call at a time (mountopts.calls).
    Each follow-up acts on a descriptor reopen() gives after the call before it, which must
    lie on another mount than `target`: the one just made (never the mount below it)."""
    below = inroot.mount_id(target)
    for i, call in enumerate(mountopts.calls(typed)):
        first = i == 0
        if not first:
            target = reopen()
            if inroot.mount_id(target) == below:
                raise ApplyError("the mount point changed while it was mounted on")
        cmd = ["mount", "--no-canonicalize"] + (["-t", fstype] if first and fstype else [])
        # (a propagation change is a call of its own: `-o` without a source looks in fstab)
        cmd += ["--make-" + call["propagation"]] if call["propagation"] else ["-o", mountopts.option_string(call)]
        fds = {target}
        if first and source is not None:
            cmd.append(source.argument())
            fds.update(source.fds())
        run(cmd + [inroot.fd_path(target)], fds=sorted(fds))


def _unlink_entry(parent, name):
    """Remove what is at `name` in the directory `parent` (a file, node or link; never a
    directory's contents), so that a new entry can be made there."""
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass


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
