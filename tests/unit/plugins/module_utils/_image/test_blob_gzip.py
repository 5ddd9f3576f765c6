"""The gzip reader of a layer's decompression thread (blob._GzipMembers) against
gzip.GzipFile, with each inflater: zlib, and python-isal's when it is installed (CI
installs it; a host without it skips that half). Whatever the inflater, a layer reads the
same members, refuses the same damage and hands out bounded chunks."""
import gzip
import io
import struct
import sys
import zlib

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as B
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import errors as E
from tests.lib import oci_fixtures as fx


def _isal_inflater():
    isal_zlib = pytest.importorskip("isal.isal_zlib")
    return B.Inflater("isal", isal_zlib.decompressobj, isal_zlib.error)


@pytest.fixture(params=["zlib", "isal"])
def inflater(request, monkeypatch):
    """Each inflater in turn, as the one BlobStream and _GzipMembers use by default."""
    chosen = B.ZLIB_INFLATER if request.param == "zlib" else _isal_inflater()
    monkeypatch.setattr(B, "GZIP_INFLATER", chosen)
    return chosen


class Trickle(io.BytesIO):
    """A blob that hands out at most `step` bytes a read: headers, members and padding
    arrive split at every place."""

    def __init__(self, data, step):
        super().__init__(data)
        self._step = step

    def read(self, n=-1):
        return super().read(self._step if n is None or n < 0 else min(n, self._step))


def member(data, flags=0, extra=None, name=None, comment=None, header_crc=None):
    """One gzip member, RFC 1952 written out (not what gzip.compress happens to write):
    the optional fields given, `flags` or'ed in, a header CRC (FHCRC) if `header_crc` is
    "right" or a number (a wrong one)."""
    fields = b""
    if extra is not None:
        flags |= 4
        fields += struct.pack("<H", len(extra)) + extra
    if name is not None:
        flags |= 8
        fields += name + b"\0"
    if comment is not None:
        flags |= 16
        fields += comment + b"\0"
    if header_crc is not None:
        flags |= 2
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff" + fields
    if header_crc is not None:
        header += struct.pack("<H", (zlib.crc32(header) if header_crc == "right" else header_crc) & 0xffff)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return header + deflate.compress(data) + deflate.flush() + struct.pack(
        "<II", zlib.crc32(data), len(data) & 0xffffffff)


def flip(blob, offset):
    """`blob` with one bit of the byte at `offset` flipped."""
    return blob[:offset] + bytes([blob[offset] ^ 1]) + blob[offset + 1:]


GZ = gzip.compress(b"first member " * 50000, mtime=0)
GZ2 = gzip.compress(b"second member", mtime=0)


def read_stream(blob, name="x"):
    with B.BlobStream(blob if hasattr(blob, "read") else io.BytesIO(blob), name=name,
                      compression="gzip") as stream:
        data = b"".join(stream)
    return data, stream


# ------------------------------------------------------------------------- the chooser

def test_isal_is_the_inflater_where_it_is_installed():
    """The chooser must not fall back to zlib quietly where isal imports (as in CI)."""
    pytest.importorskip("isal.isal_zlib")
    assert B.GZIP_INFLATER.name == "isal"
    assert B._fastest_inflater().name == "isal"


def test_zlib_is_the_inflater_where_isal_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "isal", None)    # `import isal` raises ImportError
    assert B._fastest_inflater() is B.ZLIB_INFLATER


# ---------------------------------------------------------------- what both inflaters read

@pytest.mark.parametrize("blob", [
    GZ, GZ + GZ2, GZ + b"\0" * 600 + GZ2 + b"\0" * 3, b"",
    member(b"x" * 5000, extra=b"XY\2\0ab", name=b"layer.tar", comment=b"c", header_crc="right"),
], ids=["one member", "two members", "zero padding", "empty", "every header field"])
@pytest.mark.parametrize("step", [None, 1, 3], ids=["whole", "bytewise", "3 bytes a read"])
def test_gzip_members_read_what_gzipfile_reads(inflater, blob, step):
    expected = gzip.GzipFile(fileobj=io.BytesIO(blob)).read() if blob else b""
    data, stream = read_stream(Trickle(blob, step) if step else blob)
    assert data == expected
    assert stream.diff_id == fx.sha(expected) and stream.digest == fx.sha(blob)


# ------------------------------------------------------------- what both inflaters refuse

TRUNCATED = "ended before the end-of-stream"
NOT_GZIP = {"zlib": "incorrect header check", "isal": "Invalid gzip/zlib wrapper"}
BAD_CHECK = {"zlib": "incorrect (data|length|header) check|header crc mismatch",
             "isal": "Incorrect checksum"}
BAD_METHOD = {"zlib": "unknown compression method", "isal": "unsupported compress method"}


@pytest.mark.parametrize("blob, error", [
    (GZ[:-20], TRUNCATED),
    (GZ[:-3], TRUNCATED),
    (GZ[:5], TRUNCATED),
    (GZ + b"junk after it", NOT_GZIP),
    (GZ + b"\0" * 3 + b"junk after padding", NOT_GZIP),
    (b"\0" * 100, NOT_GZIP),
    (flip(GZ, len(GZ) - 5), BAD_CHECK),
    (flip(GZ, len(GZ) - 1), BAD_CHECK),
    (member(b"data", header_crc=0), BAD_CHECK),
    (GZ[:2] + b"\x07" + GZ[3:], BAD_METHOD),
    (member(b"data", flags=0x20), "reserved gzip header flags set"),
    (GZ + member(b"data", flags=0x80), "reserved gzip header flags set"),
], ids=["truncated", "truncated trailer", "truncated header", "junk after a member",
        "junk after padding", "zeros are no gzip", "bad crc", "bad length", "bad header crc",
        "not deflate", "reserved flag", "reserved flag, second member"])
@pytest.mark.parametrize("step", [None, 2], ids=["whole", "2 bytes a read"])
def test_gzip_members_refuse_what_gzipfile_refuses(inflater, blob, error, step):
    words = error[inflater.name] if isinstance(error, dict) else error
    with pytest.raises(E.ImageInputError, match="x: cannot decompress .gzip.: .*(%s)" % words):
        read_stream(Trickle(blob, step) if step else blob)


@pytest.mark.parametrize("name_size, error", [(4096 - 11, None), (4096 - 10, "header longer than 4096 bytes"),
                                              (10 * 4096, "header longer than 4096 bytes")])
@pytest.mark.parametrize("step", [None, 1000], ids=["whole", "1000 bytes a read"])
def test_a_gzip_header_is_read_whole_up_to_a_limit(inflater, monkeypatch, name_size, error, step):
    """A member header is handed to the inflater whole (isal misreads one in pieces), so its
    size is bounded: a name without end is not buffered without end."""
    monkeypatch.setattr(B, "GZIP_HEADER_LIMIT", 4096)
    blob = member(b"data", name=b"n" * name_size)
    if error is None:
        assert read_stream(Trickle(blob, step) if step else blob)[0] == b"data"
        return
    with pytest.raises(E.ImageInputError, match=error):
        read_stream(Trickle(blob, step) if step else blob)


# ------------------------------------------------------------------ bounded, like a bomb's

@pytest.mark.parametrize("size", [B.CHUNK, 1000])
def test_gzip_members_hand_out_bounded_chunks(inflater, size):
    """A bomb (two members of zeros) is read a chunk at a time: no read returns more than
    asked, so the budgets downstream stop it within a chunk."""
    bomb = gzip.compress(b"\0" * (8 * B.CHUNK), mtime=0) + gzip.compress(b"\0" * 5000, mtime=0)
    reader = B._GzipMembers(io.BytesIO(bomb), inflater)
    sizes = [len(d) for d in iter(lambda: reader.read(size), b"")]
    assert max(sizes) <= size and sum(sizes) == 8 * B.CHUNK + 5000
