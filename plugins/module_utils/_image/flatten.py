# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flattening: layers already unpacked, applied in order onto one root filesystem.

PRIVATE to the collection: it can have breaking changes at any time. Standard library
only (the CLI and the modules on the targets both import it).

`apply_layer_dir()` applies an unpacked layer directory (as `_layers` writes it in
``layer`` mode) onto a tree: whiteout devices delete, opaque directories replace the
lower children, the rest is copied with its attributes. `check_dest()` and
`temp_next_to()` make the flattened tree appear at its destination complete or not at
all.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import os
import shutil
import stat
import tempfile

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.blob import CHUNK
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.layers import (
    FORBIDDEN_XATTR_PREFIXES, OPAQUE_XATTR, path_in,
)


def _remove_path(path, st=None):
    st = st or os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _copy_xattrs(src, dst, dst_fd=None):
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for key in names:
        if key.startswith(FORBIDDEN_XATTR_PREFIXES):
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


def is_whiteout_stat(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


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

    def prepare(dpath, st):
        """Make the dest path free for a non-directory."""
        try:
            cur = os.lstat(dpath)
        except FileNotFoundError:
            return
        _remove_path(dpath, cur)

    def walk(rel):
        sdir = path_in(src, rel)
        for entry in os.scandir(sdir):
            crel = rel + "/" + entry.name if rel else entry.name
            spath = sdir + "/" + entry.name
            dpath = path_in(root, crel)
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                opaque = False
                if whiteouts:
                    try:
                        opaque = os.getxattr(spath, OPAQUE_XATTR, follow_symlinks=False) == b"y"
                    except OSError:
                        opaque = False
                try:
                    cur = os.lstat(dpath)
                    if not stat.S_ISDIR(cur.st_mode):
                        os.unlink(dpath)
                        os.mkdir(dpath, 0o700)
                    elif opaque:
                        for child in os.listdir(dpath):
                            _remove_path(dpath + "/" + child)
                except FileNotFoundError:
                    os.mkdir(dpath, 0o700)
                os.chown(dpath, st.st_uid, st.st_gid, follow_symlinks=False)
                _copy_xattrs(spath, dpath)
                dir_attrs.append((dpath, st))
                walk(crel)
                continue
            if whiteouts and is_whiteout_stat(st):
                try:
                    _remove_path(dpath)
                except FileNotFoundError:
                    pass
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(mode):
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    prepare(dpath, st)
                    os.link(first, dpath, follow_symlinks=False)
                    continue
                links[(st.st_dev, st.st_ino)] = dpath
            prepare(dpath, st)
            if stat.S_ISREG(mode):
                sfd = os.open(spath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    dfd = os.open(dpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, 0o600)
                    try:
                        _copy_file_data(sfd, dfd, st.st_size)
                        os.fchown(dfd, st.st_uid, st.st_gid)
                        os.fchmod(dfd, stat.S_IMODE(mode))
                        _copy_xattrs(spath, dpath, dfd)
                        os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
                    finally:
                        os.close(dfd)
                finally:
                    os.close(sfd)
                continue
            if stat.S_ISLNK(mode):
                os.symlink(os.readlink(spath), dpath)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                os.mknod(dpath, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            else:
                if warnings is not None:
                    warnings.append("%s: %r skipped (a socket)" % (src, crel))
                continue
            os.chown(dpath, st.st_uid, st.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(mode):
                os.chmod(dpath, stat.S_IMODE(mode))
            _copy_xattrs(spath, dpath)
            os.utime(dpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

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
