# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files of an image source, kept in a directory or in an uncompressed tar.

Standard library only (the CLI and the modules on the targets both import it).

`open_source()` gives a `DirSource` or a `TarSource`; both answer `exists`, `size` and
`open` for a relative path and never reach outside the source (``..`` is refused, links
are resolved inside it). `detect_format()` tells which kind of image a path holds.

Private to the collection; may change without notice.
"""

import os
import re
import tarfile
import threading

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.blob import sniff_compression
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError


def clean_rel(rel, where):
    parts = []
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ImageInputError("%s: path %r leaves the source; refusing it" % (where, rel))
        parts.append(part)
    if not parts:
        raise ImageInputError("%s: empty path %r" % (where, rel))
    return "/".join(parts)


def _norm_in_archive(path, where):
    """Lexically resolve a link target inside an archive; refuse leaving its root."""
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ImageInputError("%s: link target %r leaves the archive" % (where, path))
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class DirSource:
    """Files of an image source kept in a directory."""

    def __init__(self, path):
        self.path = path
        self.root = os.path.realpath(path)

    def _real(self, rel):
        rel = clean_rel(rel, self.path)
        real = os.path.realpath(os.path.join(self.root, rel))
        if not real.startswith(self.root + "/"):
            raise ImageInputError("%s: %r resolves outside the source (%s); refusing it" % (
                self.path, rel, real))
        return real

    def exists(self, rel):
        return os.path.isfile(self._real(rel))

    def size(self, rel):
        return os.stat(self._real(rel)).st_size

    def open(self, rel):
        try:
            return open(self._real(rel), "rb", buffering=0)
        except OSError as exc:
            raise ImageInputError("%s: cannot open %r: %s" % (self.path, rel, exc.strerror))

    def close(self):
        pass


class _ReadOnlyFile:
    """What every opened member is: read(), close(), a context manager."""

    def readable(self):
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _MemberReader(_ReadOnlyFile):
    """A read()-only file over one member's bytes of the archive's open file: positioned
    reads (pread), so the members of one archive read side by side (layers are unpacked
    in threads) without moving a shared offset, and without opening the path again."""

    def __init__(self, fd, offset, size, name):
        self._fd, self._at, self._left, self._name = fd, offset, size, name

    def read(self, n=-1):
        n = self._left if n is None or n < 0 else min(n, self._left)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._at)
        if not data:
            raise ImageInputError("%s: the archive ends inside it (truncated?)" % self._name)
        self._at += len(data)
        self._left -= len(data)
        return data

    def close(self):
        """(the archive's file stays open: TarSource.close closes it)"""


class _LockedReader(_ReadOnlyFile):
    """A member tarfile reads for us (a sparse one): through the archive's shared offset,
    so one read at a time."""

    def __init__(self, f, lock):
        self._f, self._lock = f, lock

    def read(self, n=-1):
        with self._lock:
            return self._f.read(n)

    def close(self):
        self._f.close()


class TarSource:
    """Files of an image source kept in an uncompressed tar (docker save, oci-archive)."""

    def __init__(self, path):
        self.path = path
        self._shared_offset = threading.Lock()
        try:
            self.tar = tarfile.open(path, "r:")
        except (tarfile.TarError, OSError) as exc:
            raise ImageInputError("%s: not a readable tar archive: %s" % (path, exc))
        self.members = {}
        for m in self.tar.getmembers():
            name = "/".join(p for p in m.name.split("/") if p not in ("", "."))
            if name:
                self.members[name] = m

    def _member(self, rel):
        rel = clean_rel(rel, self.path)
        for _hop in range(16):
            m = self.members.get(rel)
            if m is None:
                return None
            if m.isfile():
                return m
            if m.issym():   # docker save links duplicate layers: resolve inside the tar
                base = rel.rpartition("/")[0]
                rel = _norm_in_archive(base + "/" + m.linkname if base else m.linkname,
                                       self.path)
            elif m.islnk():
                rel = _norm_in_archive(m.linkname, self.path)
            else:
                return None
        raise ImageInputError("%s: too many links resolving %r" % (self.path, rel))

    def exists(self, rel):
        try:
            return self._member(rel) is not None
        except ImageInputError:
            return False

    def size(self, rel):
        return self._member(rel).size

    def open(self, rel):
        m = self._member(rel)
        if m is None:
            raise ImageInputError("%s: %r is missing from the archive" % (self.path, rel))
        if m.issparse():
            return _LockedReader(self.tar.extractfile(m), self._shared_offset)
        return _MemberReader(self.tar.fileobj.fileno(), m.offset_data, m.size, "%s: %s" % (self.path, rel))

    def close(self):
        self.tar.close()


_ARCHIVE_TOP = re.compile(r"(blobs|index\.json|oci-layout|manifest\.json|repositories|"
                          r"[0-9a-f]{64}(\.json)?)")


def detect_format(source):
    """'oci', 'docker-archive', 'tarball' or 'dir' for a path; ImageInputError if none."""
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, "oci-layout")):
            return "oci"
        if os.path.isfile(os.path.join(source, "manifest.json")):
            return "docker-archive"
        return "dir"
    if not os.path.isfile(source):
        raise ImageInputError("source %r does not exist (or is not a file or directory)"
                              % source)
    with open(source, "rb") as f:
        head = f.read(512)
    if sniff_compression(head):
        return "tarball"
    if not tarfile.is_tarfile(source):
        raise ImageInputError("source %r is neither a directory nor a tar archive "
                              "(plain, gzip, xz or zstd)" % source)
    seen = set()
    try:
        with tarfile.open(source, "r:") as tar:
            for m in tar:
                parts = [p for p in m.name.split("/") if p not in ("", ".")]
                if not parts:
                    continue
                if not _ARCHIVE_TOP.fullmatch(parts[0]):
                    return "tarball"   # a root filesystem entry: stop reading early
                seen.add(parts[0])
    except tarfile.TarError as exc:
        raise ImageInputError("source %r: unreadable tar archive: %s" % (source, exc))
    if "oci-layout" in seen:
        return "oci"
    if "manifest.json" in seen:
        return "docker-archive"
    return "tarball"


def open_source(source):
    return DirSource(source) if os.path.isdir(source) else TarSource(source)
