# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A streaming tar reader for layer blobs, and the cleaning of tar names.

Standard library only (the CLI and the modules on the targets both import it).

`TarReader` parses the tar stream as it comes out of `_blob.BlobStream` (an iterable of
byte chunks) and yields one `TarEntry` per file; it never seeks, and the data of a
regular entry goes straight to a file descriptor (`copy_to()`). `clean_name()` turns a
tar name into a path relative to the layer's root, refusing ``..``.

Given a `_budget.LayerBudget`, the reader feeds it every chunk of the stream and every
member as it reads them, so a decompression bomb stops at its limit. What is not a tar is
refused: a first header with a bad checksum, or more than zero padding (MAX_TRAILER)
after the end-of-archive marker - a gzip of zeros is "end of archive" and padding forever.

Private to the collection; may change without notice.
"""

import base64
import os
import zlib
from urllib.parse import unquote

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageInputError, UnsafeLayerError,
)

REGULAR, HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO = "0", "1", "2", "3", "4", "5", "6"
# Go's archive/tar reads pax and GNU long-name headers of at most 1 MiB; so do we (they are
# held in memory whole).
MAX_EXTENDED_HEADER = 1 << 20
# What may follow the end-of-archive marker: zero padding up to a record (10 KiB for GNU
# tar and Python's tarfile, none for Go's), with room for large blocking factors. More, or
# anything but zeros, is not a tar layer: a gzip of zeros decompresses to "end-of-archive
# and padding" forever, and another tar reader could find entries we never saw.
MAX_TRAILER = 1 << 20
BLOCK = 512
END_BLOCK = bytes(BLOCK)   # two of them end the archive; we stop at the first
# pax keys that carry an xattr or mark a sparse file (refused); any other key is read by name
_XATTR_OR_SPARSE_KEYS = ("SCHILY.xattr.", "LIBARCHIVE.xattr.", "GNU.sparse.")
# typeflags of the headers that describe the member after them: pax (x, g), GNU long names (L, K)
_EXTENDED_TYPES = frozenset("xgLK")


class TarEntry:
    __slots__ = ("name", "type", "size", "mode", "uid", "gid", "mtime_ns", "linkname",
                 "devmajor", "devminor", "xattrs")

    def __repr__(self):
        return "TarEntry(%r, type=%r)" % (self.name, self.type)


def _num(field):
    """A tar numeric field: octal text, or GNU base-256 when the high bit is set."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xff:  # negative base-256
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _header_sum(header):
    """The unsigned checksum of a 512-byte header: its bytes summed, the checksum field
    (bytes 148-155) counted as eight spaces.

    Summed in C: sum() took 2.6 us a header, and a member (one or two headers) about 15 us
    in all. The low half of an Adler-32 started at 0 is the byte sum modulo 65521, exact for
    at most 256 bytes (they sum to at most 65280)."""
    adler32 = zlib.adler32
    return ((adler32(header[:256], 0) & 0xffff) + (adler32(header[256:], 0) & 0xffff)
            - (adler32(header[148:156], 0) & 0xffff) + 8 * 32)


def _header_name(header):
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\x00":  # POSIX ustar: the prefix field extends the name
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name


def _pax_records(data, name, at):
    """The records of the pax header at byte `at` of layer `name`, a dict of str to bytes."""
    records = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ImageInputError("%s byte %d: malformed pax header" % (name, at))
        if length <= 0:
            raise ImageInputError("%s byte %d: malformed pax header" % (name, at))
        record = data[space + 1:pos + length]
        pos += length
        key, eq, value = record.partition(b"=")
        if not eq:
            raise ImageInputError("%s byte %d: malformed pax record %r" % (name, at, record[:40]))
        if value.endswith(b"\n"):
            value = value[:-1]
        records[key.decode("utf-8", "surrogateescape")] = value
    return records


def _pax_time_ns(value):
    text = value.decode("ascii", "replace")
    sign = -1 if text.startswith("-") else 1
    whole, _dot, frac = text.lstrip("-").partition(".")
    frac = (frac + "000000000")[:9]
    return sign * (int(whole or 0) * 1000000000 + int(frac or 0))


class TarReader:
    """Iterates the entries of a tar stream given as an iterable of byte chunks.

    Handles ustar, GNU long names (L/K), and pax headers (x/g) with SCHILY.xattr.* and
    LIBARCHIVE.xattr.*. The data of a regular entry must be consumed with `copy_to()`
    or is skipped automatically before the next header.
    """

    def __init__(self, chunks, name="layer", budget=None):
        self._it = iter(chunks)
        self._budget = budget  # _budget.LayerBudget: fed every chunk and member
        self._buf = b""
        self._off = 0
        self._pending = 0      # data + padding left of the current entry
        self.name = name
        self.offset = 0        # position in the tar stream, for messages

    def _fill(self):
        for data in self._it:
            if data:
                if self._budget is not None:
                    self._budget.add_bytes(len(data))
                if self._off < len(self._buf):
                    self._buf = self._buf[self._off:] + data
                else:
                    self._buf = data
                self._off = 0
                return True
        return False

    def _read_exact(self, n):
        while len(self._buf) - self._off < n:
            if not self._fill():
                raise ImageInputError("%s: truncated tar stream at byte %d" % (
                    self.name, self.offset))
        start = self._off
        self._off += n
        self.offset += n
        return self._buf[start:self._off]

    def _consume(self, n):
        """Consume at most n (> 0) bytes of the stream, as many as the buffer holds (it is
        refilled when empty): their (start, end) offsets in it, valid until the next call."""
        if self._off >= len(self._buf) and not self._fill():
            raise ImageInputError("%s: truncated tar stream at byte %d" % (self.name, self.offset))
        start = self._off
        end = min(start + n, len(self._buf))
        self._off = end
        self.offset += end - start
        return start, end

    def _skip(self, n):
        while n > 0:
            start, end = self._consume(n)
            n -= end - start

    def copy_to(self, fd, size):
        """Write the next `size` data bytes of the current entry to file descriptor fd."""
        write = os.write
        left = size
        while left > 0:
            start, end = self._consume(left)
            left -= end - start
            view = memoryview(self._buf)[start:end]
            while view:
                done = write(fd, view)
                view = view[done:]
        self._pending -= size

    def drain(self):
        """Consume what is left of the stream after the end-of-archive marker (the hashes
        need every byte): zero padding of at most MAX_TRAILER bytes, else refused."""
        seen = self._trailer(self._buf[self._off:], 0)
        self._buf = b""
        self._off = 0
        for data in self._it:
            if self._budget is not None:
                self._budget.add_bytes(len(data))
            seen = self._trailer(data, seen)

    def _trailer(self, data, seen):
        """`data` follows `seen` bytes after the end-of-archive marker: the new count."""
        if data.count(0) != len(data):
            raise ImageInputError("%s: data after the tar end-of-archive marker (at byte %d): not a "
                                  "tar layer, or more than one archive; refusing it" % (
                                      self.name, self.offset))
        seen += len(data)
        if seen > MAX_TRAILER:
            raise ImageInputError("%s: more than %d bytes of zeros after the tar end-of-archive "
                                  "marker (at byte %d): not a tar layer (a stream of zeros?); "
                                  "refusing it" % (self.name, MAX_TRAILER, self.offset))
        return seen

    def __iter__(self):
        global_pax = {}
        while True:
            if self._pending:
                self._skip(self._pending)
                self._pending = 0
            if self.offset == 0 and not self._buf and not self._fill():
                return  # an empty blob: an empty layer
            header = self._read_exact(BLOCK)
            if header == END_BLOCK:
                return  # end-of-archive marker
            try:
                entry = self._parse(header, global_pax)
            except ValueError as exc:
                raise ImageInputError("%s: malformed tar header near byte %d: %s" % (
                    self.name, self.offset, exc))
            if self._budget is not None:
                self._budget.add_entry(entry.name if entry is not None else None)
            if entry is not None:
                yield entry

    def _check(self, header, at):
        try:
            stored = _num(header[148:156])
        except ValueError:
            stored = -1
        unsigned = _header_sum(header)
        if stored != unsigned:
            signed = unsigned - 2 * sum(b for b in header if b > 127)
            if stored != signed:
                raise ImageInputError("%s: bad tar header checksum at byte %d (not a tar "
                                      "archive, or corrupt)" % (self.name, at))

    def _parse(self, header, global_pax):
        at = self.offset - BLOCK
        self._check(header, at)
        pax = dict(global_pax)
        long_name = long_link = None
        while True:
            typeflag = chr(header[156]) if header[156] else REGULAR
            size = _num(header[124:136])
            if typeflag not in _EXTENDED_TYPES:
                break
            if not 0 <= size <= MAX_EXTENDED_HEADER:
                raise ImageInputError("%s: a %r header of %d bytes at byte %d (at most %d): "
                                      "refusing it" % (self.name, typeflag, size, at,
                                                       MAX_EXTENDED_HEADER))
            data = self._read_exact(size)
            self._skip(-size % BLOCK)
            if typeflag == "x":
                pax.update(_pax_records(data, self.name, at))
            elif typeflag == "g":
                global_pax.update(_pax_records(data, self.name, at))
                pax.update(global_pax)
            elif typeflag == "L":
                long_name = data.split(b"\0", 1)[0]
            else:
                long_link = data.split(b"\0", 1)[0]
            header = self._read_exact(BLOCK)
            if header == END_BLOCK:
                raise ImageInputError("%s: tar stream ends after an extended header "
                                      "at byte %d" % (self.name, at))
            self._check(header, self.offset - BLOCK)
        # pax records win over GNU long names, which win over the header's fields
        name = pax.get("path")
        if name is None:
            name = long_name if long_name is not None else _header_name(header)
        link = pax.get("linkpath")
        if link is None:
            link = long_link if long_link is not None else header[157:257].split(b"\0", 1)[0]
        e = TarEntry()
        e.name = name.decode("utf-8", "surrogateescape")
        e.linkname = link.decode("utf-8", "surrogateescape")
        e.size = int(pax["size"]) if "size" in pax else size
        if e.size < 0:   # base-256 or pax: the next header would be read off its place (as Go)
            raise ValueError("negative size %d" % e.size)
        e.mode = _num(header[100:108]) & 0o7777
        e.uid = int(pax["uid"]) if "uid" in pax else _num(header[108:116])
        e.gid = int(pax["gid"]) if "gid" in pax else _num(header[116:124])
        e.mtime_ns = _pax_time_ns(pax["mtime"]) if "mtime" in pax else \
            _num(header[136:148]) * 1000000000
        is_device = typeflag in (CHARDEV, BLOCKDEV)
        e.devmajor = _num(header[329:337]) if is_device else 0
        e.devminor = _num(header[337:345]) if is_device else 0
        e.xattrs = None
        for key, value in pax.items():
            if not key.startswith(_XATTR_OR_SPARSE_KEYS):
                continue
            if key.startswith("SCHILY.xattr."):
                e.xattrs = e.xattrs or {}
                e.xattrs[key[13:]] = value
            elif key.startswith("LIBARCHIVE.xattr."):
                e.xattrs = e.xattrs or {}
                e.xattrs[unquote(key[17:])] = base64.b64decode(value + b"===")
            else:
                raise UnsafeLayerError("%s: %r is a sparse file (pax GNU.sparse); sparse "
                                       "layer entries are not supported" % (self.name, e.name))
        if typeflag in ("0", "7"):
            typeflag = REGULAR
            if e.name.endswith("/"):
                typeflag = DIRECTORY   # old tars mark directories by a trailing slash
        elif typeflag == "D":          # GNU dumpdir: a directory with a listing as data
            typeflag = DIRECTORY
        elif typeflag == "S":
            raise UnsafeLayerError("%s: %r is a GNU sparse file; sparse layer entries are "
                                   "not supported" % (self.name, e.name))
        elif typeflag not in (HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO):
            # V (volume label), M (multi-volume), unknown: nothing to write.
            self._pending = e.size + (-e.size % BLOCK)
            return None
        e.type = typeflag
        has_data = typeflag == REGULAR or chr(header[156]) == "D"
        self._pending = (e.size + (-e.size % BLOCK)) if has_data else 0
        if not has_data:
            e.size = 0
        return e


def clean_name(name, what, layer):
    """Lexically clean a tar name into a relative path inside the layer ('' = the root).

    Absolute names are re-rooted (as GNU tar does); any '..' component is refused.
    """
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafeLayerError("%s: %s %r has a '..' component; refusing a path that "
                                   "could leave the layer" % (layer, what, name))
        parts.append(part)
    return "/".join(parts)
