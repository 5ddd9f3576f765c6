"""The tar header parser (_image/tar.py) on headers built byte by byte: checksums (unsigned,
signed, their padding, wrong ones), numeric fields (octal with NUL or space padding,
base-256, non-octal), pax records, GNU long names, type flags. Each stream is read in
pieces of several sizes, so that every header also straddles two chunks. The parser before
its speed-up (header checksum by Adler-32, fewer calls) read every case the same; only the
refusal of negative sizes is new."""
import base64
import os
import tempfile

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import tar as T
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageInputError, UnsafeLayerError,
)

CHUNK_SIZES = (7, 512, 1 << 20)


def header(name=b"f", mode=b"0000644\0", uid=b"0000000\0", gid=b"0000000\0",
           size=b"00000000000\0", mtime=b"00000000000\0", typeflag=b"0", linkname=b"",
           magic=b"ustar\x0000", devmajor=b"0000000\0", devminor=b"0000000\0", prefix=b"",
           checksum=None):
    """A 512-byte header from raw fields. `checksum`: None (the unsigned sum, as GNU tar
    writes it), "signed" (bytes above 127 counted negative, as some old tars did), a
    function of the unsigned sum giving the 8-byte field, or the field itself."""
    h = bytearray(512)
    for offset, value in ((0, name), (100, mode), (108, uid), (116, gid), (124, size),
                          (136, mtime), (156, typeflag), (157, linkname), (257, magic),
                          (329, devmajor), (337, devminor), (345, prefix)):
        h[offset:offset + len(value)] = value
    h[148:156] = b" " * 8
    unsigned = sum(h)
    if checksum is None:
        h[148:156] = b"%06o\0 " % unsigned
    elif checksum == "signed":
        h[148:156] = b"%06o\0 " % (unsigned - 2 * sum(b for b in h if b > 127))
    elif callable(checksum):
        h[148:156] = checksum(unsigned)
    else:
        h[148:156] = checksum
    assert len(h) == 512, "a field longer than its place"
    return bytes(h)


def member(data=b"", **fields):
    """A header and its data, padded to a block; `size` defaults to the data's."""
    fields.setdefault("size", b"%011o\0" % len(data))
    return header(**fields) + data + bytes(-len(data) % 512)


def pax(records, typeflag=b"x"):
    """A pax header (x, or g for a global one) holding `records` (key, value) as bytes."""
    body = b""
    for key, value in records:
        rest = b" " + key + b"=" + value + b"\n"
        length = len(rest) + 1      # the length counts its own digits
        while len(rest) + len(str(length)) != length:
            length = len(rest) + len(str(length))
        body += str(length).encode() + rest
    return member(body, name=b"PaxHeaders/f", typeflag=typeflag)


def read(stream, chunk=1 << 20):
    """The entries of `stream` as tuples, with the data of regular files."""
    reader = T.TarReader([stream[i:i + chunk] for i in range(0, len(stream), chunk)],
                         name="layer", budget=_budget.Budget().layer("layer"))
    entries = []
    for e in reader:
        data = None
        if e.type == T.REGULAR:
            data = _copied(reader, e.size)
        entries.append((e.name, e.type, e.size, e.mode, e.uid, e.gid, e.mtime_ns, e.linkname,
                        e.devmajor, e.devminor, e.xattrs, data))
    reader.drain()
    return entries


def _copied(reader, size):
    with tempfile.TemporaryFile() as f:
        reader.copy_to(f.fileno(), size)
        os.lseek(f.fileno(), 0, os.SEEK_SET)
        return os.read(f.fileno(), size + 1)


def entry(name="f", type_=T.REGULAR, size=0, mode=0o644, uid=0, gid=0, mtime_ns=0, linkname="",
          devmajor=0, devminor=0, xattrs=None, data=b""):
    return (name, type_, size, mode, uid, gid, mtime_ns, linkname, devmajor, devminor, xattrs,
            data if type_ == T.REGULAR else None)


END = bytes(1024)

# (id, stream, expected entries)
READ = [
    ("unsigned checksum", member(b"hi"), [entry(size=2, data=b"hi")]),
    ("signed checksum, name above 127", member(name=b"caf\xe9", checksum="signed"),
     [entry(name="caf\udce9")]),
    ("checksum 7 digits and NUL", member(checksum=lambda s: b"%07o\0" % s), [entry()]),
    ("checksum space-padded", member(checksum=lambda s: (b" %o \0" % s).rjust(8)), [entry()]),
    ("checksum in base-256", member(checksum=lambda s: b"\x80" + s.to_bytes(7, "big")),
     [entry()]),
    ("mode with leading spaces", member(mode=b"    644\0"), [entry()]),
    ("mode space-terminated", member(mode=b"0000755 "), [entry(mode=0o755)]),
    ("mode all NULs is 0", member(mode=b"\0" * 8), [entry(mode=0)]),
    ("mode read up to its first NUL", member(mode=b"12\0 34  "), [entry(mode=0o12)]),
    ("setuid and type bits", member(mode=b"0104755\0"), [entry(mode=0o4755)]),
    ("size of 12 digits, no terminator", member(b"abcde", size=b"000000000005"),
     [entry(size=5, data=b"abcde")]),
    ("size in base-256", member(b"abcde", size=b"\x80" + (5).to_bytes(11, "big")),
     [entry(size=5, data=b"abcde")]),
    ("size spanning blocks", member(b"x" * 1500), [entry(size=1500, data=b"x" * 1500)]),
    ("uid and gid in base-256", member(uid=b"\x80" + (1 << 31).to_bytes(7, "big"),
                                       gid=b"\x80" + (70000).to_bytes(7, "big")),
     [entry(uid=1 << 31, gid=70000)]),
    ("mtime", member(mtime=b"%011o\0" % 1700000000), [entry(mtime_ns=1700000000 * 10 ** 9)]),
    ("ustar prefix", member(name=b"file", prefix=b"some/dir"), [entry(name="some/dir/file")]),
    ("GNU magic: no prefix field", member(name=b"file", prefix=b"some/dir", magic=b"ustar  \0"),
     [entry(name="file")]),
    ("typeflag NUL is a file", member(b"a", typeflag=b"\0"), [entry(size=1, data=b"a")]),
    ("typeflag 7 is a file", member(b"a", typeflag=b"7"), [entry(size=1, data=b"a")]),
    ("old directory: file with a slash", member(name=b"d/"), [entry(name="d/", type_=T.DIRECTORY)]),
    ("GNU dumpdir: directory, listing skipped", member(b"Ya\0\0", name=b"d", typeflag=b"D")
     + member(b"z"), [entry(name="d", type_=T.DIRECTORY, size=4), entry(size=1, data=b"z")]),
    ("volume label skipped", member(b"label", typeflag=b"V") + member(b"z"),
     [entry(size=1, data=b"z")]),
    ("unknown type skipped", member(b"data", typeflag=b"Z") + member(b"z"),
     [entry(size=1, data=b"z")]),
    ("symlink: size ignored", member(typeflag=b"2", linkname=b"/etc/target",
                                     size=b"00000000012\0"),
     [entry(type_=T.SYMLINK, linkname="/etc/target")]),
    ("hardlink", member(typeflag=b"1", linkname=b"other"),
     [entry(type_=T.HARDLINK, linkname="other")]),
    ("character device", member(typeflag=b"3", devmajor=b"0000001\0", devminor=b"0000003\0"),
     [entry(type_=T.CHARDEV, devmajor=1, devminor=3)]),
    ("fifo: device fields ignored", member(typeflag=b"6", devmajor=b"zz"),
     [entry(type_=T.FIFO)]),
    ("pax overrides", pax([(b"path", b"long/\xc3\xa9t\xc3\xa9"), (b"linkpath", b"t"),
                           (b"uid", b"100000"), (b"gid", b"7"), (b"mtime", b"1.5"),
                           (b"atime", b"9"), (b"size", b"3")]) + member(b"abc", size=b"\0"),
     [entry(name="long/\xe9t\xe9", size=3, uid=100000, gid=7, mtime_ns=1500000000,
            linkname="t", data=b"abc")]),
    ("pax negative mtime", pax([(b"mtime", b"-1.25")]) + member(),
     [entry(mtime_ns=-1250000000)]),
    ("pax empty path", pax([(b"path", b"")]) + member(name=b"d", typeflag=b"5"),
     [entry(name="", type_=T.DIRECTORY)]),
    ("pax xattrs", pax([(b"SCHILY.xattr.user.a", b"b\n\0c"),
                        (b"LIBARCHIVE.xattr.user.%62", base64.b64encode(b"hi").rstrip(b"="))])
     + member(), [entry(xattrs={"user.a": b"b\n\0c", "user.b": b"hi"})]),
    ("pax global then local", pax([(b"uid", b"5")], typeflag=b"g") + member(name=b"a")
     + pax([(b"uid", b"6")]) + member(name=b"b") + member(name=b"c"),
     [entry(name="a", uid=5), entry(name="b", uid=6), entry(name="c", uid=5)]),
    ("GNU long name and link", member(b"n" * 150 + b"\0", name=b"././@LongLink", typeflag=b"L")
     + member(b"t" * 120 + b"\0", name=b"././@LongLink", typeflag=b"K")
     + member(name=b"short", typeflag=b"2", linkname=b"x"),
     [entry(name="n" * 150, type_=T.SYMLINK, linkname="t" * 120)]),
    ("empty GNU long name", member(b"\0", name=b"././@LongLink", typeflag=b"L")
     + member(name=b"short", typeflag=b"5"), [entry(name="", type_=T.DIRECTORY)]),
    ("pax path wins over a long name", pax([(b"path", b"p")])
     + member(b"n" * 150, name=b"././@LongLink", typeflag=b"L") + member(),
     [entry(name="p")]),
    ("empty stream", b"", []),
    ("end marker only, then padding", bytes(10240), []),
]

REFUSED = [
    ("checksum off by one", member(checksum=lambda s: b"%06o\0 " % (s + 1)), ImageInputError,
     "bad tar header checksum at byte 0"),
    ("checksum not octal", member(checksum=b"0012z45\0"), ImageInputError,
     "bad tar header checksum"),
    ("checksum of a second member", member(b"a") + member(checksum=b"0000000\0"),
     ImageInputError, "bad tar header checksum at byte 1024"),
    ("checksum of the header after a pax header", pax([(b"uid", b"1")])
     + member(checksum=b"1\0" * 4), ImageInputError, "bad tar header checksum at byte 1024"),
    ("garbage", b"\x01" * 1024, ImageInputError, "bad tar header checksum at byte 0"),
    ("mode not octal", member(mode=b"0000648\0"), ImageInputError,
     "malformed tar header near byte 512"),
    ("uid not a number", member(uid=b"00001x0\0"), ImageInputError, "malformed tar header"),
    ("size not octal", member(size=b"0000000009\0\0"), ImageInputError, "malformed tar header"),
    ("device number not octal", member(typeflag=b"4", devminor=b"9\0"), ImageInputError,
     "malformed tar header"),
    ("pax uid not a number", pax([(b"uid", b"x")]) + member(), ImageInputError,
     "malformed tar header"),
    ("pax size not a number", pax([(b"size", b"1e3")]) + member(), ImageInputError,
     "malformed tar header"),
    ("pax length not a number", member(b"3x a=b\n", name=b"p", typeflag=b"x") + member(),
     ImageInputError, "layer byte 0: malformed pax header"),
    ("pax length zero", member(b"0 a=b\n", name=b"p", typeflag=b"x") + member(),
     ImageInputError, "malformed pax header"),
    ("pax record without =", member(b"9 abcdef\n", name=b"p", typeflag=b"x") + member(),
     ImageInputError, "malformed pax record"),
    ("pax sparse", pax([(b"GNU.sparse.major", b"1")]) + member(), UnsafeLayerError,
     "sparse file (pax GNU.sparse)"),
    ("GNU sparse", member(typeflag=b"S"), UnsafeLayerError, "GNU sparse file"),
    ("extended header too big",
     header(typeflag=b"x", size=b"%011o\0" % (T.MAX_EXTENDED_HEADER + 1)), ImageInputError,
     "a 'x' header of 1048577 bytes at byte 0"),
    ("extended header of negative size", header(typeflag=b"L", size=b"\xff" * 12),
     ImageInputError, "a 'L' header of -1 bytes"),
    ("extended header, then the end", pax([(b"uid", b"1")]) + END, ImageInputError,
     "tar stream ends after an extended header"),
    ("truncated data", member(b"abc")[:513], ImageInputError, "truncated tar stream"),
    ("truncated header", member()[:300], ImageInputError, "truncated tar stream at byte 0"),
    ("data after the end marker", member() + END + member(), ImageInputError,
     "data after the tar end-of-archive marker"),
]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize("stream, expected", [case[1:] for case in READ],
                         ids=[case[0] for case in READ])
def test_headers_read(stream, expected, chunk):
    end = END if stream.strip(b"\0") else b""
    assert read(stream + end, chunk) == expected


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
@pytest.mark.parametrize("stream, error, words", [case[1:] for case in REFUSED],
                         ids=[case[0] for case in REFUSED])
def test_headers_refused(stream, error, words, chunk):
    with pytest.raises(error) as err:
        read(stream, chunk)
    assert words in str(err.value)


@pytest.mark.parametrize("size", [b"\xff" * 12, b"\xff" + (2 ** 88 - 5).to_bytes(11, "big")],
                         ids=["-1", "-5"])
@pytest.mark.parametrize("typeflag", [b"0", b"5", b"V"])
def test_negative_size_refused(size, typeflag):
    """A negative size (base-256) would move the next header off its place: another tar
    reader would see other members."""
    with pytest.raises(ImageInputError) as err:
        read(member(size=size, typeflag=typeflag) + member(b"a", name=b"x") + END)
    assert "negative size" in str(err.value)


def test_pax_negative_size_refused():
    with pytest.raises(ImageInputError) as err:
        read(pax([(b"size", b"-512")]) + member(b"a") + END)
    assert "negative size -512" in str(err.value)


@pytest.mark.parametrize("field, value", [
    (b"0000644\0", 0o644), (b"0000644 ", 0o644), (b" 644 \0\0\0", 0o644), (b"\0" * 8, 0),
    (b" " * 8, 0), (b"7777777\0", 0o7777777), (b"\x80" + (1 << 40).to_bytes(7, "big"), 1 << 40),
    (b"\xff" * 8, -1), (b"\x80" + bytes(7), 0)])
def test_numeric_fields(field, value):
    assert T._num(field) == value


def test_header_sum_is_the_byte_sum():
    """The checksum arithmetic against sum() on headers of every byte value, each half at
    its largest (all 0xff) and around the Adler-32 modulus."""
    for fill in (0, 1, 127, 128, 200, 255):
        h = bytes([fill]) * 512
        assert T._header_sum(h) == sum(h[:148]) + 8 * 32 + sum(h[156:])
    h = header(name=b"\xff" * 100, linkname=b"\xfe" * 100, prefix=b"\xfd" * 155)
    assert T._header_sum(h) == sum(h[:148]) + 8 * 32 + sum(h[156:])
