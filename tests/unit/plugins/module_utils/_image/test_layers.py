"""Layer unpacking: formats, verification, attributes, and every hazard of a hostile
layer (docs/image-hazards.md lists them with the test for each). Each hostile layer is applied next to an `outside` directory that
stands for the host; the tests check that nothing appeared, changed or moved there."""
import io
import os
import stat
import subprocess
import sys
import tarfile

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as B
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import flatten as F
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import layers as L
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError
from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import (chardev, dir_, file_, fifo, hardlink, make_tar, opaque,
                                    symlink, whiteout)


@pytest.fixture
def host(tmp_path):
    """A fake piece of host filesystem next to the layer: must stay exactly as it is."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    os.chmod(str(outside / "secret"), 0o600)
    before = fx.snapshot(str(outside))
    yield outside
    assert fx.snapshot(str(outside)) == before, "the host side was touched"
    assert os.lstat(str(outside / "secret")).st_nlink == 1


def apply(tmp_path, layers, flatten=False, compression=None, name="root", **kw):
    """Apply tars (bottom first). flatten: onto one tree. Else one dir per layer; returns
    the list of layer dirs."""
    if flatten:
        root = tmp_path / name
        root.mkdir()
        applier = L.LayerApplier(str(root), flatten=True)
        for i, t in enumerate(layers):
            L.apply_layer(io.BytesIO(fx.compress(t, compression)), str(root),
                          name="layer%d" % i, applier=applier, **kw)
        return root
    dirs = []
    for i, t in enumerate(layers):
        d = tmp_path / ("%s%d" % (name, i))
        d.mkdir()
        L.apply_layer(io.BytesIO(fx.compress(t, compression)), str(d), name="layer%d" % i, **kw)
        dirs.append(d)
    return dirs


BOTH = pytest.mark.parametrize("flatten", [False, True], ids=["layer", "flatten"])


# --------------------------------------------------------------- formats and verification

@pytest.mark.parametrize("compression", [None, "gzip", "xz", "zstd"])
def test_compressions_and_digests(tmp_path, compression):
    tar = make_tar([dir_("etc"), file_("etc/hostname", b"box\n")])
    blob = fx.compress(tar, compression)
    d = tmp_path / "l"
    d.mkdir()
    got = L.apply_layer(io.BytesIO(blob), str(d), digest=fx.sha(blob), size=len(blob),
                        diff_id=fx.sha(tar))
    assert got["digest"] == fx.sha(blob) and got["diff_id"] == fx.sha(tar)
    assert got["compression"] == compression
    assert (d / "etc/hostname").read_bytes() == b"box\n"


def test_zstd_without_the_python_module_uses_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "_zstd_reader", B._zstd_command_reader)
    tar = make_tar([file_("big", os.urandom(3 << 20))])
    blob = fx.compress(tar, "zstd")
    d = tmp_path / "l"
    d.mkdir()
    got = L.apply_layer(io.BytesIO(blob), str(d), digest=fx.sha(blob), diff_id=fx.sha(tar))
    assert got["diff_id"] == fx.sha(tar) and (d / "big").stat().st_size == 3 << 20


@pytest.mark.parametrize("what", ["digest", "size", "diff_id"])
def test_mismatch_is_a_clear_error(tmp_path, what):
    tar = make_tar([file_("a", b"x")])
    blob = fx.compress(tar, "gzip")
    kw = {"digest": fx.sha(blob), "size": len(blob), "diff_id": fx.sha(tar)}
    kw[what] = {"digest": fx.sha(b"other"), "size": len(blob) - 3,
                "diff_id": fx.sha(b"other")}[what]
    d = tmp_path / "l"
    d.mkdir()
    with pytest.raises(L.LayerVerifyError) as err:
        L.apply_layer(io.BytesIO(blob), str(d), name="blob-under-test", **kw)
    assert "blob-under-test" in str(err.value) and what.replace("_", "") in \
        str(err.value).replace("_", "")


def test_truncated_and_garbage_streams(tmp_path):
    tar = make_tar([file_("a", b"x" * 5000)])
    for data, words in ((tar[:1536], "truncated"), (b"\x01" * 1024, "checksum"),
                        (fx.compress(tar, "gzip")[:-30], "decompress")):
        d = tmp_path / ("l%d" % len(data))
        d.mkdir()
        with pytest.raises(ImageInputError) as err:
            L.apply_layer(io.BytesIO(data), str(d), name="bad")
        assert words in str(err.value)


def test_empty_blob_is_an_empty_layer(tmp_path):
    d = tmp_path / "l"
    d.mkdir()
    assert L.apply_layer(io.BytesIO(b""), str(d))["diff_id"] == fx.sha(b"")
    assert os.listdir(str(d)) == []


def test_long_names_gnu_and_pax(tmp_path):
    long = "/".join(["d" * 60] * 4) + "/file"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        name = long if fmt != tarfile.USTAR_FORMAT else "u" * 90 + "/" + "f" * 90
        d = apply(tmp_path, [make_tar([file_(name, b"deep")], fmt=fmt)], name="f%d" % fmt)[0]
        assert (d / name).read_bytes() == b"deep"


# --------------------------------------------------------------- attributes

def test_owners_modes_times_xattrs_hardlinks(tmp_path):
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    d = apply(tmp_path, [make_tar([
        dir_("usr", mode=0o755, mtime=1000),
        dir_("usr/bin", mode=0o555, mtime=2000),      # read-only dir filled afterwards
        file_("usr/bin/su", b"su", mode=0o4755, uid=0, gid=0, mtime=3000),
        file_("usr/bin/wall", b"wall", mode=0o2755, uid=0, gid=5),
        file_("usr/bin/own", b"o", mode=0o4750, uid=1000, gid=1000),   # setuid after chown
        file_("usr/bin/ping", b"ping", xattrs={"security.capability":
                                               cap.decode("utf-8", "surrogateescape"),
                                               "user.note": "hi"}),
        hardlink("usr/bin/su2", "usr/bin/su"),
        symlink("usr/bin/sh", "/bin/busybox", uid=7, gid=8, mtime=4000),
        chardev("null", 1, 3, mode=0o666),
        fifo("pipe", mode=0o640),
    ])])[0]
    st = os.lstat(str(d / "usr/bin/own"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o4750)
    assert stat.S_IMODE(os.lstat(str(d / "usr/bin/su")).st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(str(d / "usr/bin/wall")).st_mode) == 0o2755
    assert os.lstat(str(d / "usr/bin/wall")).st_gid == 5
    assert stat.S_IMODE(os.lstat(str(d / "usr/bin")).st_mode) == 0o555
    assert os.lstat(str(d / "usr/bin")).st_mtime == 2000
    assert os.lstat(str(d / "usr")).st_mtime == 1000
    assert os.lstat(str(d / "usr/bin/su")).st_mtime == 3000
    assert os.getxattr(str(d / "usr/bin/ping"), "security.capability") == cap
    assert os.getxattr(str(d / "usr/bin/ping"), "user.note") == b"hi"
    assert os.lstat(str(d / "usr/bin/su2")).st_ino == os.lstat(str(d / "usr/bin/su")).st_ino
    sl = os.lstat(str(d / "usr/bin/sh"))
    assert os.readlink(str(d / "usr/bin/sh")) == "/bin/busybox"
    assert (sl.st_uid, sl.st_gid, sl.st_mtime) == (7, 8, 4000)
    nst = os.lstat(str(d / "null"))
    assert stat.S_ISCHR(nst.st_mode) and nst.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(nst.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(str(d / "pipe")).st_mode)


def test_overlay_xattrs_from_the_tar_are_dropped(tmp_path):
    warnings = []
    d = tmp_path / "l"
    d.mkdir()
    applier = L.LayerApplier(str(d), warnings=warnings)
    L.apply_layer(io.BytesIO(make_tar([dir_("x", xattrs={"trusted.overlay.opaque": "y",
                                                         "trusted.overlay.redirect": "/etc"})])),
                  str(d), applier=applier)
    assert os.listxattr(str(d / "x")) == []
    assert any("overlayfs metadata" in w for w in warnings)


def test_whiteouts_become_devices_and_opaque_xattr(tmp_path):
    d = apply(tmp_path, [make_tar([dir_("etc"), whiteout("etc/motd"), opaque("var"),
                                   dir_("var")])])[0]
    st = os.lstat(str(d / "etc/motd"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(str(d / "var"), "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(str(d / "etc/.wh.motd"))


def test_a_real_0_0_device_is_refused_in_layer_mode(tmp_path):
    with pytest.raises(L.UnsafeLayerError, match="whiteout"):
        apply(tmp_path, [make_tar([chardev("dev/x", 0, 0)])])


def test_rootless_skips_devices_and_owners(tmp_path):
    """Item 28: in a user namespace (root mapped to us only) device nodes are skipped
    with a warning and the rest of the layer unpacks."""
    tar = tmp_path / "l.tar"
    tar.write_bytes(make_tar([dir_("dev"), chardev("dev/null", 1, 3), file_("a", b"a", uid=5),
                              whiteout("gone")]))
    script = (
        "import sys, os; sys.path.insert(0, %r)\n"
        "from tests.lib import collection; collection.register()\n"
        "from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import layers as _layers\n"
        "os.mkdir(%r)\n"
        "r = _layers.apply_layer(open(%r, 'rb'), %r)\n"
        "print('\\n'.join(r['warnings']))\n" % (
            os.getcwd(), str(tmp_path / "out"), str(tar), str(tmp_path / "out")))
    proc = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", script],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "device nodes skipped" in proc.stdout and "owners not kept" in proc.stdout
    assert (tmp_path / "out/a").read_bytes() == b"a"
    assert not os.path.lexists(str(tmp_path / "out/dev/null"))
    assert os.lstat(str(tmp_path / "out/gone")).st_rdev == 0   # whiteouts still work


# --------------------------------------------------------------- hostile layers (item 19-29)

@BOTH
@pytest.mark.parametrize("name", ["../x", "a/../../x", "..", "a/../b"])
def test_dotdot_names_are_refused(tmp_path, host, flatten, name):
    with pytest.raises(L.UnsafeLayerError, match=r"'\.\.'"):
        apply(tmp_path, [make_tar([file_(name, b"boom")])], flatten=flatten)


@BOTH
def test_absolute_names_are_rerooted(tmp_path, host, flatten):
    name = str(host / "planted")
    out = apply(tmp_path, [make_tar([file_(name, b"inside")])], flatten=flatten)
    root = out if flatten else out[0]
    assert (root / name.lstrip("/")).read_bytes() == b"inside"


@BOTH
def test_entry_under_a_symlink_of_the_same_layer_is_refused(tmp_path, host, flatten):
    with pytest.raises(L.UnsafeLayerError, match="evil"):
        apply(tmp_path, [make_tar([symlink("evil", str(host)), file_("evil/x", b"boom")])],
              flatten=flatten)
    with pytest.raises(L.UnsafeLayerError):
        apply(tmp_path, [make_tar([symlink("rel", "../../.."), dir_("rel/y")])],
              flatten=flatten, name="second")


def test_symlink_of_a_lower_layer_is_replaced_not_followed(tmp_path, host):
    layers = [make_tar([symlink("evil", str(host))]),
              make_tar([file_("evil/x", b"inside"), file_("evil/secret", b"mine")])]
    root = apply(tmp_path, layers, flatten=True)
    assert (root / "evil").is_dir() and not (root / "evil").is_symlink()
    assert (root / "evil/x").read_bytes() == b"inside"
    dirs = apply(tmp_path, layers, name="ovl")           # layer mode: two independent dirs
    assert (dirs[1] / "evil/x").read_bytes() == b"inside"


@BOTH
@pytest.mark.parametrize("target", ["../../outside/secret", "SECRET_ABS", "evil/secret",
                                    "missing", "d"])
def test_hardlinks_stay_in_the_layer(tmp_path, host, flatten, target):
    target = str(host / "secret") if target == "SECRET_ABS" else target
    with pytest.raises(L.UnsafeLayerError, match="hardlink"):
        apply(tmp_path, [make_tar([symlink("evil", str(host)), dir_("d"),
                                   hardlink("h", target)])], flatten=flatten)


@BOTH
@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh...", "d/.wh.", "d/.wh.."])
def test_invalid_whiteouts_are_refused(tmp_path, host, flatten, name):
    with pytest.raises(L.UnsafeLayerError, match="invalid whiteout"):
        apply(tmp_path, [make_tar([dir_("d"), file_(name)])], flatten=flatten)


def test_whiteout_through_a_symlink(tmp_path, host):
    with pytest.raises(L.UnsafeLayerError):
        apply(tmp_path, [make_tar([symlink("evil", str(host)), whiteout("evil/secret")])])
    root = apply(tmp_path, [make_tar([symlink("evil", str(host))]),
                            make_tar([whiteout("evil/secret"), opaque("evil")])], flatten=True)
    assert os.listdir(str(root / "evil")) == []


LOWER = make_tar([dir_("d"), file_("d/old1", b"1"), dir_("d/sub"), file_("d/sub/old2", b"2"),
                  file_("keep", b"k"), file_("x", b"lower x")])


@pytest.mark.parametrize("upper", [
    [opaque("d"), file_("d/new", b"n")],
    [file_("d/new", b"n"), opaque("d")],                      # item 23: opaque after siblings
])
def test_opaque_order_does_not_matter(tmp_path, upper):
    root = apply(tmp_path, [LOWER, make_tar([dir_("d")] + upper)], flatten=True)
    assert sorted(os.listdir(str(root / "d"))) == ["new"]
    assert (root / "keep").exists()


def test_same_tree_for_every_order(tmp_path):
    entries = [dir_("d"), opaque("d"), file_("d/new", b"n"), dir_("d/sub2"), whiteout("x"),
               file_("y", b"y")]
    snaps = set()
    import itertools
    for i, perm in enumerate(itertools.permutations(entries[1:])):
        if i % 7:
            continue
        perm = [entries[0]] + list(perm)
        root = apply(tmp_path, [LOWER, make_tar(perm)], flatten=True, name="p%d" % i)
        snaps.add(tuple(sorted(fx.snapshot(str(root), dir_mtimes=False).items())))
        dirs = apply(tmp_path, [make_tar(perm)], name="o%d" % i)
        snaps_l = fx.snapshot(str(dirs[0]), dir_mtimes=False)
        assert os.getxattr(str(dirs[0] / "d"), "trusted.overlay.opaque") == b"y"
        assert stat.S_ISCHR(os.lstat(str(dirs[0] / "x")).st_mode)
        assert set(snaps_l) == {"", "d", "d/new", "d/sub2", "x", "y"}
    assert len(snaps) == 1


@pytest.mark.parametrize("order", ["whiteout-first", "entry-first"])
def test_whiteout_of_a_path_of_the_same_layer(tmp_path, order):
    wh = [whiteout("x"), whiteout("d")]
    ents = [file_("x", b"upper x"), dir_("d"), file_("d/new", b"n")]
    upper = make_tar(wh + ents if order == "whiteout-first" else ents + wh)
    root = apply(tmp_path, [LOWER, upper], flatten=True)
    assert (root / "x").read_bytes() == b"upper x"
    assert sorted(os.listdir(str(root / "d"))) == ["new"]
    dirs = apply(tmp_path, [upper], name="ovl")
    assert (dirs[0] / "x").read_bytes() == b"upper x"
    assert os.getxattr(str(dirs[0] / "d"), "trusted.overlay.opaque") == b"y"


@BOTH
@pytest.mark.parametrize("entry", [symlink(".", "/"), symlink("./", "/tmp"),
                                   file_(".", b"x"), hardlink("./", "a")])
def test_root_entry_must_be_a_directory(tmp_path, host, flatten, entry):
    with pytest.raises(L.UnsafeLayerError, match="root entry"):
        apply(tmp_path, [make_tar([entry, file_("after", b"a")])], flatten=flatten)


def test_root_directory_entry_sets_attributes(tmp_path):
    d = apply(tmp_path, [make_tar([dir_(".", mode=0o750, mtime=1234), file_("a")])])[0]
    assert stat.S_IMODE(d.stat().st_mode) == 0o750 and d.stat().st_mtime == 1234


def test_file_then_directory(tmp_path, host):
    # across layers: a lower file replaced by a directory (flatten and overlay agree)
    root = apply(tmp_path, [make_tar([file_("a", b"file")]),
                            make_tar([dir_("a"), file_("a/b", b"b")])], flatten=True)
    assert (root / "a/b").read_bytes() == b"b"
    # a lower file in the middle of a path, with no directory entry
    root = apply(tmp_path, [make_tar([file_("a", b"file")]), make_tar([file_("a/b", b"b")])],
                 flatten=True, name="implicit")
    assert (root / "a/b").read_bytes() == b"b"
    # in one layer: an explicit directory entry replaces the file (the later entry wins) ...
    d = apply(tmp_path, [make_tar([file_("a", b"f"), dir_("a"), file_("a/b", b"b")])],
              name="same")[0]
    assert (d / "a/b").read_bytes() == b"b"
    # ... but an entry under a file of the same layer is refused
    with pytest.raises(L.UnsafeLayerError, match="non-directory"):
        apply(tmp_path, [make_tar([file_("a", b"f"), file_("a/b", b"b")])], name="bad")
    # directory then file: the file replaces the directory
    d = apply(tmp_path, [make_tar([dir_("a"), file_("a/x"), file_("a", b"f")])], name="df")[0]
    assert (d / "a").read_bytes() == b"f"


@BOTH
def test_setuid_survives_chown(tmp_path, flatten):
    out = apply(tmp_path, [make_tar([file_("s", b"s", mode=0o6755, uid=1234, gid=4321)])],
                flatten=flatten)
    st = os.lstat(str((out if flatten else out[0]) / "s"))
    assert stat.S_IMODE(st.st_mode) == 0o6755 and (st.st_uid, st.st_gid) == (1234, 4321)


def test_duplicate_entries_later_wins(tmp_path):
    d = apply(tmp_path, [make_tar([file_("a", b"1"), file_("a", b"2"), symlink("l", "x"),
                                   symlink("l", "y")])])[0]
    assert (d / "a").read_bytes() == b"2" and os.readlink(str(d / "l")) == "y"


def test_symlink_targets_are_kept_verbatim_and_never_followed(tmp_path, host):
    d = apply(tmp_path, [make_tar([symlink("etc", str(host)), symlink("etc", "/etc"),
                                   file_("etc", b"replaced, not followed")])])[0]
    assert (d / "etc").read_bytes() == b"replaced, not followed"


def test_apply_layer_dir_matches_streamed_flatten(tmp_path):
    layers = [LOWER, make_tar([dir_("d"), opaque("d"), file_("d/new", b"n"), whiteout("x"),
                               hardlink("d/hl", "d/new"), symlink("s", "/nowhere"),
                               chardev("c", 1, 5), file_("su", b"s", mode=0o4755, uid=3)])]
    streamed = apply(tmp_path, layers, flatten=True, name="streamed")
    dirs = apply(tmp_path, layers, name="dirs")
    out = tmp_path / "fromdirs"
    out.mkdir()
    for d in dirs:
        F.apply_layer_dir(str(d), str(out))
    a, b = fx.snapshot(str(streamed)), fx.snapshot(str(out))
    a.pop("")
    b.pop("")
    assert a == b
    assert os.lstat(str(out / "d/hl")).st_ino == os.lstat(str(out / "d/new")).st_ino


@pytest.mark.parametrize("upper", [
    [dir_("d"), opaque("d"), dir_("d/sub"), file_("d/sub/new", b"n")],   # opaque over nested lower
    [whiteout("d"), file_("keep", b"upper keep")],                       # whiteout of a whole dir
    [dir_("x"), file_("x/in", b"i"), whiteout("keep")],                  # dir over a lower file
    [file_("d", b"file over dir"), symlink("x", "/etc")],                # non-dirs over lower entries
    [dir_("ln"), file_("ln/f", b"f")],                                   # dir over a lower symlink
])
def test_stored_and_streamed_flatten_follow_the_same_rules(tmp_path, host, upper):
    """The two flatten paths (tar stream, stored layer dir) share one rule each: same tree."""
    lower = make_tar([dir_("d"), file_("d/old1", b"1"), dir_("d/sub"), file_("d/sub/old2", b"2"),
                      file_("keep", b"k"), file_("x", b"lower x"), symlink("ln", str(host))])
    layers = [lower, make_tar(upper)]
    streamed = apply(tmp_path, layers, flatten=True, name="streamed")
    out = tmp_path / "fromdirs"
    out.mkdir()
    for d in apply(tmp_path, layers, name="dirs"):
        F.apply_layer_dir(str(d), str(out))
    a, b = fx.snapshot(str(streamed)), fx.snapshot(str(out))
    a.pop("")
    b.pop("")
    assert a == b
