# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Paths inside a container root, held as file descriptors from the walk that finds them
to the mount, mknod or chmod that uses them.

A process that writes the root while it is set up (a container sharing a plain rootfs, or
a running container whose root is converged again) may swap a directory for a symlink
between a look at a path and its use: a mount, mkdir or chmod by path would then land on
the host (CVE-2021-30465, CVE-2024-45310, CVE-2025-31133). Here every component is opened
O_PATH|O_NOFOLLOW relative to the one before, a symlink is resolved by hand as if the root
were / (an absolute link restarts at the root, '..' stops at it), what is missing is made
relative to its parent's descriptor, and mount(8) and chmod are handed /proc/self/fd/N,
which the kernel follows to the very file the descriptor holds.

Private to the collection; may change without notice.
"""

import os
import stat

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError

MAX_SYMLINKS = 40
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def fd_path(fd):
    return "/proc/self/fd/%d" % fd


def mount_id(fd):
    """The id of the mount a descriptor lies on (mnt_id in /proc/self/fdinfo)."""
    with open("/proc/self/fdinfo/%d" % fd) as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise ApplyError("the kernel shows no mount id for a descriptor (/proc/self/fdinfo)")


def _components(path):
    return [p for p in path.split("/") if p and p != "."]


def _close_all(fds):
    for fd in fds:
        os.close(fd)


class Walk:
    """Where a walk of a path in the root ended: `fd` (the caller's to close) holds the
    deepest component that exists, the root at least; `names` is how it was reached and
    `missing` what is left of the path (plain names: no symlink can be below a missing one)."""

    def __init__(self, root, fd, names, missing):
        self.root, self.fd, self.names, self.missing = root, fd, names, missing

    def path_of(self, names):
        return os.path.join(self.root, *names) if names else self.root

    @property
    def path(self):
        return self.path_of(self.names + self.missing)


class InRoot:
    """A container root (a host path of ours): each walk starts at a descriptor of it opened
    then, so that it sees the rootfs once that is mounted there. The descriptors handed out
    stay open until close()."""

    def __init__(self, root):
        self.root = root
        self._kept = []

    def close(self):
        _close_all(self._kept)
        self._kept = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def walk(self, path, nofollow=False):
        """Walk `path` from the root (see the module's docstring). With nofollow, any symlink
        on the way is an error (proc and sysfs targets)."""
        parts = _components(path)
        stack = []  # (name, descriptor) of each component below the root
        missing = []
        hops = 0
        root = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            while parts:
                part = parts.pop(0)
                if part == "..":
                    if missing:
                        missing.pop()
                    elif stack:
                        os.close(stack.pop()[1])
                    continue
                if missing:
                    missing.append(part)
                    continue
                parent = stack[-1][1] if stack else root
                try:
                    fd = os.open(part, _PATH_FLAGS, dir_fd=parent)
                except (FileNotFoundError, NotADirectoryError):  # (a name under a file is missing too)
                    missing.append(part)
                    continue
                if not stat.S_ISLNK(os.fstat(fd).st_mode):
                    stack.append((part, fd))
                    continue
                os.close(fd)
                if nofollow:
                    raise ApplyError("%s is a symlink; refusing to mount through it"
                                     % "/".join([""] + [n for n, _fd in stack] + [part]), step=path)
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise ApplyError("too many levels of symbolic links", step=path)
                link = os.readlink(part, dir_fd=parent)
                if link.startswith("/"):
                    _close_all(fd for _n, fd in stack)
                    stack = []
                parts = _components(link) + parts
        except BaseException:
            _close_all([root] + [fd for _n, fd in stack])
            raise
        _close_all(fd for _n, fd in stack[:-1])
        if stack:
            os.close(root)
        return Walk(self.root, stack[-1][1] if stack else root, [n for n, _fd in stack], missing)

    def resolve(self, path, nofollow=False):
        """The host path `path` in the root resolves to (what exists of it followed, the rest
        appended): never outside the root. Twin of the script's target_in_root
        (tests/system/test_twins.py)."""
        walk = self.walk(path, nofollow)
        os.close(walk.fd)
        return walk.path

    def open(self, path, nofollow=False):
        """A descriptor of what `path` names in the root; an ApplyError when it is missing."""
        walk = self.walk(path, nofollow)
        if walk.missing:
            os.close(walk.fd)
            raise ApplyError("%s does not exist in the container root" % walk.path)
        return self._kept_inside(walk.fd, walk.path)

    def open_entry(self, parent, name):
        """A descriptor of the entry `name` in the directory `parent`, not followed."""
        fd = os.open(name, _PATH_FLAGS, dir_fd=parent)
        self._kept.append(fd)
        return fd

    def _kept_inside(self, fd, path):
        """`fd`, kept, once the kernel confirms it lies in the root."""
        self._check_inside(fd, path)
        self._kept.append(fd)
        return fd

    def _check_inside(self, fd, path):
        """A directory renamed out of the root during the walk takes what is below it along
        (only a process that can write outside the root can do that): refuse it (and close it)."""
        where = os.readlink(fd_path(fd))
        if where != self.root and not where.startswith(self.root.rstrip("/") + "/"):
            os.close(fd)
            raise ApplyError("%s left the container root meanwhile (it is now %s)" % (path, where))

    def make_dir(self, path, nofollow=False):
        """A descriptor of the directory `path` names, made with its missing parents."""
        walk = self.walk(path, nofollow)
        if walk.missing:
            self._check_inside(walk.fd, walk.path)
            fd = self._make_dirs(walk, walk.missing)
        elif stat.S_ISDIR(os.fstat(walk.fd).st_mode):
            fd = walk.fd
        else:
            os.close(walk.fd)
            raise ApplyError("%s is not a directory" % walk.path)
        return self._kept_inside(fd, walk.path)

    def _make_dirs(self, walk, names):
        """Make `names` one below the other from walk.fd, each relative to the descriptor of
        the one before; one made meanwhile (another set-up) is taken, a symlink refused.
        The descriptor of the last (walk.fd is closed on the way)."""
        fd = walk.fd
        for i, name in enumerate(names):
            try:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(name, _PATH_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = child
            mode = os.fstat(fd).st_mode
            if not stat.S_ISDIR(mode):
                os.close(fd)
                raise ApplyError("%s appeared meanwhile as %s" % (
                    walk.path_of(walk.names + walk.missing[:i + 1]),
                    "a symlink" if stat.S_ISLNK(mode) else "a file, where a directory is made"))
        return fd

    def make_mount_point(self, path, create, source, nofollow=False):
        """A descriptor of the mount point `path`, made when missing: a directory, or an empty
        file for a bind of a file (create "match_source": the kind of `source`, a host path).
        Never a directory where a file is or a file where a directory is; what another set-up
        made meanwhile is taken, as the script's mkdir -p and `: >>` take it.
        Twin of the script's make_target (tests/system/test_twins.py)."""
        if create == "match_source":
            if not os.path.exists(source):
                raise ApplyError("bind source %s does not exist" % source)
            create = "dir" if os.path.isdir(source) else "file"
        walk = self.walk(path, nofollow)
        if walk.missing:
            self._check_inside(walk.fd, walk.path)
            make = self._make_dirs if create == "dir" else self._make_file
            return self._kept_inside(make(walk, walk.missing), walk.path)
        if stat.S_ISDIR(os.fstat(walk.fd).st_mode) != (create == "dir"):
            os.close(walk.fd)
            raise ApplyError("mount point %s is %s" % (walk.path, "a directory, but the source is a file"
                                                       if create != "dir" else
                                                       "not a directory, but the source is one"))
        return self._kept_inside(walk.fd, walk.path)

    def _make_file(self, walk, names):
        """An empty file at the end of `names` (its missing parents made), opened as made."""
        parent = self._make_dirs(walk, names[:-1]) if names[:-1] else walk.fd
        try:
            try:
                os.close(os.open(names[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o644, dir_fd=parent))
            except FileExistsError:
                pass
            fd = os.open(names[-1], _PATH_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        mode = os.fstat(fd).st_mode
        if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
            os.close(fd)
            raise ApplyError("mount point %s appeared meanwhile as %s" % (
                walk.path, "a symlink" if stat.S_ISLNK(mode) else "a directory, but the source is a file"))
        return fd

    def parent_of(self, path):
        """(a descriptor of the directory holding `path`'s last name, made when missing; that
        name): for an entry made or replaced by name (a device node, a /dev link)."""
        head, name = os.path.split(path.rstrip("/"))
        if name in ("", ".", ".."):
            raise ApplyError("%s names no entry to make" % path)
        return self.make_dir(head or "/"), name
