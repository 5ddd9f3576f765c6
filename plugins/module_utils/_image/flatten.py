# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flattening: layers already unpacked, applied in order onto one root filesystem.

`apply_layer_dir()` applies an unpacked layer directory (as `layers` writes it in
``layer`` mode) onto a tree with the rules of `tree`, the same ones the streamed path
(`layers.LayerApplier`, ``flatten`` mode) follows: whiteout devices delete, opaque
directories replace the lower children, the rest is copied with its attributes.
`check_dest()` and `temp_next_to()` make the flattened tree appear at its destination
complete or not at all.

Private to the collection; may change without notice.
"""

import contextlib
import errno
import os
import stat
import tempfile

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import tree as _tree
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.blob import CHUNK
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.tree import path_in


def _never_upper(_rel):
    """A stored layer is applied top-down: nothing of it is written yet when its whiteouts
    and opaque directories act, so everything they reach is lower."""
    return False


def _copy_xattrs(src, dst, dst_fd=None):
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for key in names:
        if not _tree.layer_may_set_xattr(key):
            continue
        value = os.getxattr(src, key, follow_symlinks=False)
        if dst_fd is not None:
            os.setxattr(dst_fd, key, value)
        else:
            os.setxattr(dst, key, value, follow_symlinks=False)


def _copy_file_data(sfd, dfd, size):
    copy_range = getattr(os, "copy_file_range", None)
    left = size
    if copy_range is not None:
        try:
            while left > 0:
                n = copy_range(sfd, dfd, min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
            if left == 0:
                return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
    while True:
        data = os.read(sfd, CHUNK)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(dfd, view):]


def _copy_file(spath, dpath, st):
    sfd = os.open(spath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = _tree.replace_entry(dpath, _tree.create_file)
        try:
            _copy_file_data(sfd, dfd, st.st_size)
            os.fchown(dfd, st.st_uid, st.st_gid)
            os.fchmod(dfd, stat.S_IMODE(st.st_mode))
            _copy_xattrs(spath, dpath, dfd)
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _enter_dir(root, rel, opaque):
    """Make `rel` a real directory of the tree; an opaque one loses its lower children."""
    dpath = path_in(root, rel)
    try:
        cur = os.lstat(dpath)
    except FileNotFoundError:
        os.mkdir(dpath, 0o700)
        return dpath
    if not stat.S_ISDIR(cur.st_mode):
        _tree.replace_with_dir(dpath, 0o700)
    elif opaque:
        _tree.clear_lower_children(root, rel, _never_upper)
    return dpath


def _copy_special(spath, dpath, st):
    """A symlink or a device/fifo node; False for what a layer cannot hold (a socket)."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        _tree.replace_entry(dpath, lambda p: os.symlink(os.readlink(spath), p))
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        _tree.replace_entry(dpath, lambda p: os.mknod(p, stat.S_IFMT(mode) | 0o600, st.st_rdev))
    else:
        return False
    os.chown(dpath, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(mode):
        os.chmod(dpath, stat.S_IMODE(mode))
    _copy_xattrs(spath, dpath)
    os.utime(dpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return True


def apply_layer_dir(src, root, whiteouts=True, warnings=None):
    """Apply an unpacked layer directory `src` onto the tree `root` (flatten).

    Whiteout devices delete, opaque directories replace the lower directory's children,
    everything else is copied with owners, modes, xattrs and times; hardlinks inside the
    layer stay hardlinks. Nothing is ever written through a symlink of `root`.
    With whiteouts=False, `src` is a plain root filesystem copied as-is.
    """
    src = os.path.abspath(src)
    root = os.path.abspath(root)
    links = {}
    dir_attrs = []

    def walk(rel):
        sdir = path_in(src, rel)
        for entry in os.scandir(sdir):
            crel = rel + "/" + entry.name if rel else entry.name
            spath = sdir + "/" + entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                dpath = _enter_dir(root, crel, whiteouts and _tree.is_opaque(spath))
                os.chown(dpath, st.st_uid, st.st_gid, follow_symlinks=False)
                _copy_xattrs(spath, dpath)
                dir_attrs.append((dpath, st))
                walk(crel)
            elif whiteouts and _tree.is_whiteout(st):
                _tree.remove_lower(root, crel, _never_upper)
            else:
                _copy_entry(spath, path_in(root, crel), st)

    def _copy_entry(spath, dpath, st):
        if st.st_nlink > 1:
            first = links.setdefault((st.st_dev, st.st_ino), dpath)
            if first != dpath:
                _tree.replace_entry(dpath, lambda p: os.link(first, p, follow_symlinks=False))
                return
        if stat.S_ISREG(st.st_mode):
            _copy_file(spath, dpath, st)
        elif not _copy_special(spath, dpath, st) and warnings is not None:
            warnings.append("%s: %r skipped (a socket)" % (src, os.path.relpath(spath, src)))

    rst = os.lstat(src)
    os.chown(root, rst.st_uid, rst.st_gid, follow_symlinks=False)
    walk("")
    dir_attrs.append((root, rst))
    for dpath, st in reversed(dir_attrs):
        os.chmod(dpath, stat.S_IMODE(st.st_mode))
        os.utime(dpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


# --------------------------------------------------------------------------- destination

def check_dest(dest):
    dest = os.path.abspath(dest)
    if os.path.islink(dest):
        raise ImageInputError("destination %r is a symlink; refusing it" % dest)
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise ImageInputError("destination %r exists and is not a directory" % dest)
        if os.listdir(dest):
            raise ImageInputError("destination %r exists and is not empty" % dest)
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise ImageInputError("the parent of the destination, %r, does not exist" % parent)
    return dest


@contextlib.contextmanager
def temp_next_to(dest):
    """A private temp dir beside dest, renamed onto it on success, removed on failure."""
    parent, base = os.path.split(dest)
    tmp = tempfile.mkdtemp(prefix=".%s.tmp-" % base, dir=parent)
    try:
        yield tmp
        os.rename(tmp, dest)
    except BaseException:
        _hostfs.remove_tree(tmp)  # ours, made by mkdtemp; a link put in its place is only unlinked
        raise
