# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe unpacking of OCI / Docker image layers.

`apply_layer()` reads one layer blob once: `_blob.BlobStream` verifies and decompresses
it, `_tar.TarReader` parses the tar stream, and `LayerApplier` writes the entries onto a
root directory in one of two modes:

* ``layer`` (a fresh, private directory per layer, served later as an overlayfs
  lowerdir): a whiteout ``.wh.NAME`` becomes a 0:0 character device ``NAME``; an opaque
  marker ``.wh..wh..opq`` becomes the xattr ``trusted.overlay.opaque=y`` on its directory.
* ``flatten`` (layers applied in order onto one tree, for hosts without overlayfs):
  whiteouts delete lower content, an opaque marker clears the lower children of its
  directory. Paths written by the same layer are never deleted by its own whiteouts, so
  the result does not depend on the order of entries in the tar (image-spec layer.md).

Every path is resolved inside the root, lexically, and no symlink is ever followed
(runtimes.md 5.4): names with ``..`` are refused, absolute names are re-rooted, an entry
under a symlink or file written by the same layer is refused, a non-directory of a lower
layer in the middle of a path is replaced by a directory (what overlayfs shows), hardlink
targets and whiteouts are resolved the same way, and a root entry ``./`` that is not a
directory is refused. Owners are set before modes (setuid bits survive), ``l*``/fd
variants only.

The rules both modes share with `flatten.apply_layer_dir()` (a layer unpacked in
``layer`` mode applied onto a tree) live in `tree`.

Private to the collection; may change without notice.
"""

import errno
import os
import stat

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as _blob
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import tree as _tree
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageError, LayerVerifyError, UnsafeLayerError,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.tar import (
    BLOCKDEV, CHARDEV, DIRECTORY, FIFO, HARDLINK, REGULAR, SYMLINK, TarReader, clean_name,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.tree import (
    OPAQUE_MARKER, WHITEOUT_PREFIX, path_in,
)


def _rootless_default():
    """True when chown to arbitrary ids and mknod of devices will fail (user namespace
    without a full map, or not root at all)."""
    if os.geteuid() != 0:
        return True
    try:
        with open("/proc/self/uid_map") as f:
            lines = f.read().split()
        return lines[:3] != ["0", "0", "4294967295"]
    except OSError:
        return False


# --------------------------------------------------------------------------- applying

class LayerApplier:
    """Writes the entries of layers onto `root` (an existing directory).

    `flatten=False`: overlay lowerdir representation (whiteout devices, opaque xattr).
    `flatten=True`: layers applied in order onto one tree.
    `warnings` is a list that receives one line per thing skipped (devices when rootless,
    forbidden xattrs).
    """

    def __init__(self, root, flatten=False, rootless=None, warnings=None):
        self.root = os.path.abspath(root)
        self.flatten = flatten
        self.rootless = _rootless_default() if rootless is None else rootless
        self.warnings = warnings if warnings is not None else []
        self._warned = set()

    # -- per-layer state
    def _begin(self, layer):
        self.layer = layer
        self.upper = {""}            # paths written (or passed through) by this layer
        self.dirs_ok = {""}          # paths known to be real directories, this layer
        self.whiteouts = set()       # layer mode: whiteout devices made by this layer
        self.dir_attrs = {}          # path -> (mode, mtime_ns): set once the layer is done
        self.restore_times = {}      # flatten: lower dirs whose mtime must survive
        if self.flatten:
            st = os.lstat(self.root)
            self.restore_times[""] = (st.st_atime_ns, st.st_mtime_ns)

    def _finish(self):
        for rel, times in self.restore_times.items():
            if rel in self.dir_attrs:
                continue
            path = path_in(self.root, rel)
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    os.utime(path, ns=times, follow_symlinks=False)
            except FileNotFoundError:
                pass
        # Modes and times of directories last: writing a child changes the parent's mtime,
        # and a read-only directory must stay writable until its children are in.
        for rel, (mode, mtime_ns) in self.dir_attrs.items():
            path = path_in(self.root, rel)
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    continue
            except FileNotFoundError:
                continue
            os.chmod(path, mode)
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def warn(self, msg, key=None):
        key = key or msg
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(msg)

    def apply(self, entries, layer="layer"):
        """Apply TarEntry objects from a TarReader (which must be `entries`)."""
        self._begin(layer)
        for entry in entries:
            self._entry(entry, entries)
        self._finish()

    # -- entries
    def _entry(self, e, reader):
        name = clean_name(e.name, "entry", self.layer)
        if name == "":
            if e.type != DIRECTORY:
                raise UnsafeLayerError("%s: the root entry %r is not a directory (type %s); "
                                       "refusing it (CVE-2021-29136)" % (self.layer, e.name,
                                                                         _TYPE_NAMES[e.type]))
            self._attrs_dir("", e)
            return
        parent, _sep, base = name.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base, e)
            return
        self._ensure_dir(parent, e.name)
        handler = _HANDLERS[e.type]
        handler(self, name, e, reader)
        self.upper.add(name)

    def _ensure_dir(self, rel, entry_name):
        """Make sure `rel` is a real directory, never following a symlink."""
        if rel in self.dirs_ok:
            return
        parent = rel.rpartition("/")[0]
        self._ensure_dir(parent, entry_name)
        path = path_in(self.root, rel)
        try:
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)        # implicit parent: 0755 root:root, like docker
        except FileExistsError:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                if self.flatten and rel not in self.upper:
                    self.restore_times[rel] = (st.st_atime_ns, st.st_mtime_ns)
            elif rel in self.whiteouts:
                # whiteout of NAME and NAME/child in one layer: NAME is a new, opaque dir
                self.whiteouts.discard(rel)
                _tree.replace_with_dir(path, 0o755)
                os.chmod(path, 0o755)
                self._set_opaque(rel)
            elif rel in self.upper or not self.flatten:
                kind = "symlink" if stat.S_ISLNK(st.st_mode) else "non-directory"
                raise UnsafeLayerError("%s: entry %r lies under %r, a %s written by the same "
                                       "layer; refusing to write through it" % (
                                           self.layer, entry_name, rel, kind))
            else:
                # A non-directory of a lower layer in the middle of a path: replaced by a
                # directory, which is what overlayfs shows (upper dir over lower non-dir).
                _tree.replace_with_dir(path, 0o755)
                os.chmod(path, 0o755)
        self.dirs_ok.add(rel)
        self.upper.add(rel)

    def _replace(self, rel, create):
        """`create(path)` at `rel`; an earlier entry in the way is removed (the later wins)."""
        def forget(path, st):
            _tree.remove_entry(path, st)
            self.whiteouts.discard(rel)
            if stat.S_ISDIR(st.st_mode):
                self.dirs_ok = {p for p in self.dirs_ok if p != rel and not p.startswith(rel + "/")}
        return _tree.replace_entry(path_in(self.root, rel), create, forget)

    def _chown(self, target, uid, gid, follow=False):
        try:
            if isinstance(target, int):
                os.fchown(target, uid, gid)
            else:
                os.chown(target, uid, gid, follow_symlinks=follow)
        except OSError as exc:
            if not self.rootless or exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
            self.warn("rootless: owners not kept (uid/gid %d:%d and others cannot be set)"
                      % (uid, gid), key="chown")

    def _xattrs(self, target, e, rel, follow=False):
        if not e.xattrs:
            return
        for key, value in sorted(e.xattrs.items()):
            if not _tree.layer_may_set_xattr(key):
                self.warn("%s: xattr %r on %r dropped: a layer may not set overlayfs "
                          "metadata itself" % (self.layer, key, rel))
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP) and (
                        self.rootless or not key.startswith(("user.", "trusted."))):
                    self.warn("%s: xattr %r on %r not kept: %s" % (
                        self.layer, key, rel, exc.strerror), key="xattr:" + key)
                    continue
                raise ImageError("%s: cannot set xattr %r on %r: %s" % (
                    self.layer, key, rel, exc.strerror))

    def _attrs_dir(self, rel, e):
        path = path_in(self.root, rel)
        self._chown(path, e.uid, e.gid)
        self._xattrs(path, e, rel)
        self.dir_attrs[rel] = (e.mode, e.mtime_ns)

    def _dir(self, rel, e, reader):
        path = path_in(self.root, rel)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                opaque = rel in self.whiteouts   # whiteout + directory NAME: opaque
                self.whiteouts.discard(rel)      # otherwise the later entry wins
                _tree.replace_with_dir(path, 0o700)
                if opaque:
                    self._set_opaque(rel)
        self.dirs_ok.add(rel)
        self._attrs_dir(rel, e)

    def _file(self, rel, e, reader):
        fd = self._replace(rel, _tree.create_file)
        try:
            if e.size:
                reader.copy_to(fd, e.size)
            self._chown(fd, e.uid, e.gid)
            os.fchmod(fd, e.mode)        # after chown: chown clears setuid/setgid
            self._xattrs(fd, e, rel)
            os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
        finally:
            os.close(fd)

    def _symlink(self, rel, e, reader):
        path = path_in(self.root, rel)
        self._replace(rel, lambda p: os.symlink(e.linkname, p))  # kept verbatim, never followed
        self._chown(path, e.uid, e.gid)
        self._xattrs(path, e, rel)
        os.utime(path, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)

    def _hardlink(self, rel, e, reader):
        target = clean_name(e.linkname, "hardlink target of %r:" % e.name, self.layer)
        where = "%s: hardlink %r -> %r" % (self.layer, e.name, e.linkname)
        if target == "" or target == rel:
            raise UnsafeLayerError("%s: invalid target" % where)
        # Resolve the target inside the root without following symlinks on the way.
        parts = target.split("/")
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub in self.dirs_ok:
                continue
            try:
                st = os.lstat(path_in(self.root, sub))
            except FileNotFoundError:
                raise UnsafeLayerError("%s: the target does not exist in the layer" % where)
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeLayerError("%s: the target path goes through %r, which is not "
                                       "a directory; refusing to follow it" % (where, sub))
        src = path_in(self.root, target)
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            raise UnsafeLayerError("%s: the target does not exist in the layer" % where)
        if stat.S_ISDIR(st.st_mode) or target in self.whiteouts:
            raise UnsafeLayerError("%s: the target is a %s" % (
                where, "directory" if stat.S_ISDIR(st.st_mode) else "whiteout"))
        if not self.flatten and target not in self.upper:
            raise UnsafeLayerError("%s: the target is not in this layer" % where)
        self._replace(rel, lambda p: os.link(src, p, follow_symlinks=False))

    def _node(self, rel, e, reader):
        path = path_in(self.root, rel)
        kind = {CHARDEV: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, FIFO: stat.S_IFIFO}[e.type]
        dev = os.makedev(e.devmajor, e.devminor) if e.type != FIFO else 0
        if e.type != FIFO and not self.flatten and e.devmajor == 0 and e.devminor == 0:
            raise UnsafeLayerError("%s: %r is a 0:0 character/block device, which overlayfs "
                                   "would read as a whiteout; refusing it" % (self.layer, e.name))
        try:
            self._replace(rel, lambda p: os.mknod(p, kind | 0o600, dev))
        except PermissionError:
            if not self.rootless or e.type == FIFO:
                raise
            self.warn("rootless: device nodes skipped (first: %r %d:%d)" % (
                rel, e.devmajor, e.devminor), key="mknod")
            return
        self._chown(path, e.uid, e.gid)
        os.chmod(path, e.mode)           # just made by mknod: not a symlink
        self._xattrs(path, e, rel)
        os.utime(path, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)

    # -- whiteouts
    def _whiteout(self, parent, base, e):
        if base == OPAQUE_MARKER:
            self._ensure_dir(parent, e.name)
            if self.flatten:
                _tree.clear_lower_children(self.root, parent, self.upper.__contains__)
            else:
                self._set_opaque(parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", ".."):
            raise UnsafeLayerError("%s: invalid whiteout %r: it names %s" % (
                self.layer, e.name, "nothing" if not victim else "a '.' or '..' entry"))
        self._ensure_dir(parent, e.name)
        rel = parent + "/" + victim if parent else victim
        path = path_in(self.root, rel)
        if self.flatten:
            _tree.remove_lower(self.root, rel, self.upper.__contains__)
            return
        if rel in self.whiteouts:
            return
        if rel in self.upper:
            # The same layer also writes NAME: keep it; a directory becomes opaque so the
            # lower NAME stays hidden (image-spec: whiteouts apply to lower layers only).
            if stat.S_ISDIR(os.lstat(path).st_mode):
                self._set_opaque(rel)
            return
        try:
            _tree.make_whiteout(path)
        except FileExistsError:
            raise UnsafeLayerError("%s: whiteout %r: %r already exists" % (
                self.layer, e.name, rel))
        except PermissionError:
            raise ImageError("%s: cannot create the whiteout device for %r (mknod 0:0 "
                             "needs Linux >= 5.8 in a user namespace); use the flatten mode "
                             "instead" % (self.layer, rel))
        self.whiteouts.add(rel)

    def _set_opaque(self, rel):
        try:
            _tree.set_opaque(path_in(self.root, rel))
        except OSError as exc:
            raise ImageError("%s: cannot mark %r opaque (setxattr %s): %s; the layer store "
                             "needs a filesystem with trusted.* xattrs, or use the flatten "
                             "mode" % (self.layer, rel or "/", _tree.OPAQUE_XATTR, exc.strerror))


_TYPE_NAMES = {REGULAR: "regular file", HARDLINK: "hardlink", SYMLINK: "symlink",
               CHARDEV: "character device", BLOCKDEV: "block device", DIRECTORY: "directory",
               FIFO: "fifo"}
_HANDLERS = {
    REGULAR: LayerApplier._file,
    HARDLINK: LayerApplier._hardlink,
    SYMLINK: LayerApplier._symlink,
    CHARDEV: LayerApplier._node,
    BLOCKDEV: LayerApplier._node,
    FIFO: LayerApplier._node,
    DIRECTORY: LayerApplier._dir,
}


def apply_layer(fileobj, root, flatten=False, name="layer", digest=None, size=None,
                diff_id=None, progress=None, applier=None, compression=None, budget=None,
                stream=None):
    """Read one layer blob from `fileobj` and apply it onto `root`; verify it.

    `digest`/`size` are the descriptor's (checked against the blob as read), `diff_id`
    the config's (checked against the uncompressed tar stream). `budget`: the image's
    _budget.Budget (shared by its layers; default: the default limits, for this layer
    alone), checked while the stream is read. `stream`: the _blob.layer_stream() of
    `fileobj` with these arguments, already started to read ahead (default: one made
    here). Returns a dict with the
    measured `digest`, `size`, `diff_id`, `compression` and `warnings`. On any error
    the caller owns cleaning `root` (write into a temporary directory).
    """
    if stream is None:
        stream = _blob.layer_stream(fileobj, name=name, digest=digest, size=size, diff_id=diff_id,
                                    progress=progress, compression=compression)
    if applier is None:
        applier = LayerApplier(root, flatten=flatten)
    with stream as blob:
        budget = budget if budget is not None else _budget.Budget()
        reader = TarReader(blob, name=name, budget=budget.layer(name))
        try:
            applier.apply(reader, layer=name)
        except ImageError:
            raise
        except OSError as exc:
            raise ImageError("%s: cannot write %s: %s" % (
                name, exc.filename or root, exc.strerror or exc))
        reader.drain()
    if size is not None and blob.size != size:
        raise LayerVerifyError("%s: size mismatch: the descriptor says %d bytes, the blob "
                               "has %d" % (name, size, blob.size))
    if digest is not None and blob.digest != digest:
        raise LayerVerifyError("%s: digest mismatch: the descriptor says %s, the blob is %s"
                               % (name, digest, blob.digest))
    if diff_id is not None and blob.diff_id != diff_id:
        raise LayerVerifyError("%s: diff_id mismatch: the image config says %s, the "
                               "uncompressed layer is %s" % (name, diff_id, blob.diff_id))
    return {"digest": blob.digest, "size": blob.size, "diff_id": blob.diff_id,
            "compression": blob.compression, "warnings": list(applier.warnings)}
