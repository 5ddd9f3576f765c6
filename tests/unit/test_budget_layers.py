"""Budgets (issue 13 item 3): bytes, entries and path depth per layer and per image, checked
while the tar stream is read, so a decompression bomb stops early, names its layer, the
limit and how to raise it, and leaves nothing; and a layer that is not a tar is refused.

The bombs are built here, small, against small limits (the code does not care about the
scale); the stream of zeros is the real shape: a gzip that decompresses to 64 MiB."""
import gzip
import json
import os
import zlib

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as Bu
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as S
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import tar as T
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import unpack as U
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    BudgetExceededError, ImageInputError,
)
from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, make_tar

KiB = 1024
SMALL = make_tar([dir_("etc"), file_("etc/os-release", b"ID=test\n")])
ZEROS_600K = make_tar([file_("zeros", b"\0" * (600 * KiB))])
OTHER_600K = make_tar([file_("more-zeros", b"\0" * (600 * KiB))])


def many_files(count, prefix="f"):
    return make_tar([file_("%s%d" % (prefix, i)) for i in range(count)])


def deep(levels):
    return make_tar([file_("/".join(["d"] * (levels - 1) + ["leaf"]), b"x")])


def gzip_of_zeros(size):
    """A gzip member of `size` zero bytes, compressed chunk by chunk (never held whole)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    out = []
    for _chunk_index in range(size // len(chunk)):
        out.append(comp.compress(chunk))
    out.append(comp.flush())
    return b"".join(out)


def raw_layout(path, blobs, diff_ids):
    """An OCI layout whose layer blobs are given as they are (not necessarily tars)."""
    descs = [dict(fx._put_blob(path, blob), mediaType=fx.MEDIA["gzip" if blob[:2] == b"\x1f\x8b" else None])
             for blob in blobs]
    cfg = json.dumps(fx.make_config(diff_ids), sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(fx._put_blob(path, cfg), mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": descs}, sort_keys=True).encode()
    mdesc = dict(fx._put_blob(path, manifest), mediaType="application/vnd.oci.image.manifest.v1+json")
    fx.write_index(path, [fx.tagged(mdesc, "latest")])
    return path


@pytest.fixture
def store(tmp_path):
    return S.ImageStore(str(tmp_path / "store"))


def layout(tmp_path, layers, name="layout"):
    path = str(tmp_path / name)
    fx.oci_layout(path, list(layers))
    return path


def digest_of(layer):
    return fx.sha(fx.compress(layer, "gzip"))


def assert_store_empty(store):
    """No layer (complete or partial), no temp dir, no image record."""
    assert os.listdir(store.layers_dir) == []
    assert store.images() == []


def pull_refused(store, src, limits, hint="limits.%(name)s"):
    with pytest.raises(BudgetExceededError) as err:
        store.pull("bomb", src, budget=Bu.Budget(limits, hint=hint))
    assert_store_empty(store)
    return err.value


# --------------------------------------------------------------- the limits, one by one

@pytest.mark.parametrize("limits, limit", [
    ({"layer_bytes": 512 * KiB}, "layer_bytes"),
    ({"bytes": 512 * KiB}, "bytes"),
])
def test_a_big_file_stops_at_the_byte_limit_and_leaves_nothing(tmp_path, store, limits, limit):
    src = layout(tmp_path, [ZEROS_600K])
    exc = pull_refused(store, src, limits)
    msg = str(exc)
    assert exc.limit == limit and "limits.%s" % limit in msg and str(512 * KiB) in msg
    assert digest_of(ZEROS_600K) in msg and "layer 0" in msg


def test_the_image_byte_limit_adds_up_layers_and_takes_back_the_first(tmp_path, store):
    """Two layers each under the limit, together over it: the one that went over names
    itself (either: layers are unpacked side by side), and the other one, complete and
    verified, goes too (the pull leaves nothing)."""
    src = layout(tmp_path, [ZEROS_600K, OTHER_600K])
    exc = pull_refused(store, src, {"bytes": 1024 * KiB})
    assert exc.limit == "bytes" and "the image unpacks more than %d bytes" % (1024 * KiB) in str(exc)
    assert any(digest_of(layer) in str(exc) for layer in (ZEROS_600K, OTHER_600K))


def test_the_layer_byte_limit_holds_for_each_layer_not_their_sum(tmp_path, store):
    src = layout(tmp_path, [ZEROS_600K, OTHER_600K])
    r = store.pull("two", src, budget=Bu.Budget({"layer_bytes": 700 * KiB}))
    assert len(r["layers_added"]) == 2


@pytest.mark.parametrize("limits, limit", [
    ({"entries": 20}, "entries"),
    ({"layer_entries": 20}, "layer_entries"),
])
def test_too_many_entries(tmp_path, store, limits, limit):
    src = layout(tmp_path, [many_files(50)])
    exc = pull_refused(store, src, limits)
    assert exc.limit == limit and "more than 20 entries" in str(exc)


def test_entries_add_up_over_the_image(tmp_path, store):
    src = layout(tmp_path, [many_files(15, "a"), many_files(15, "b")])
    assert store.pull("ok", src, budget=Bu.Budget({"layer_entries": 15, "entries": 30}))["changed"]
    store.remove("ok")
    exc = pull_refused(store, src, {"entries": 29})
    assert exc.limit == "entries" and "the image has more than 29 entries" in str(exc)


def test_too_deep(tmp_path, store):
    src = layout(tmp_path, [deep(12)])
    exc = pull_refused(store, src, {"depth": 11})
    assert exc.limit == "depth" and "12 levels deep, more than 11" in str(exc)
    assert store.pull("deep", src, budget=Bu.Budget({"depth": 12}))["changed"]


def test_a_raised_limit_lets_the_same_image_through(tmp_path, store):
    src = layout(tmp_path, [ZEROS_600K, OTHER_600K])
    pull_refused(store, src, {"bytes": 1024 * KiB, "entries": 10})
    r = store.pull("big", src, budget=Bu.Budget({"bytes": 2048 * KiB, "entries": 10}))
    assert r["changed"] and len(r["layers_added"]) == 2
    assert os.path.getsize(os.path.join(store.layer_path(fx.sha(ZEROS_600K)), "zeros")) == 600 * KiB


def test_a_normal_image_imports_with_the_defaults(tmp_path, store):
    src = layout(tmp_path, [SMALL, ZEROS_600K])
    r = store.pull("normal", src)
    assert r["changed"] and store.has_layer(fx.sha(SMALL)) and store.has_layer(fx.sha(ZEROS_600K))


def test_a_pull_stopped_by_its_budget_keeps_layers_others_use(tmp_path, store):
    store.pull("base", layout(tmp_path, [SMALL], name="base"))
    src = layout(tmp_path, [SMALL, ZEROS_600K])
    with pytest.raises(BudgetExceededError):
        store.pull("bomb", src, budget=Bu.Budget({"bytes": 512 * KiB}))
    assert store.layers() == [fx.sha(SMALL)] and store.images() == ["base"]


def test_the_hint_names_the_option_of_the_caller(tmp_path, store):
    src = layout(tmp_path, [many_files(5)])
    exc = pull_refused(store, src, {"layer_entries": 2}, hint="--max-%(flag)s")
    assert str(exc).endswith("raise --max-layer-entries")


def test_unpack_without_a_store_leaves_no_dest_and_no_temp(tmp_path):
    src = layout(tmp_path, [SMALL, ZEROS_600K])
    with pytest.raises(BudgetExceededError, match="layer 1"):
        U.unpack(src, str(tmp_path / "out"), budget=Bu.Budget({"layer_bytes": 512 * KiB}))
    assert not os.path.exists(str(tmp_path / "out"))
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".out")]


def test_unpack_through_a_store_passes_the_budget(tmp_path):
    src = layout(tmp_path, [many_files(30)])
    with pytest.raises(BudgetExceededError):
        U.unpack(src, str(tmp_path / "out"), store=str(tmp_path / "st"), budget=Bu.Budget({"entries": 10}))
    assert not os.path.exists(str(tmp_path / "out"))
    assert os.listdir(str(tmp_path / "st" / "layers" / "sha256")) == []


@pytest.mark.parametrize("limits, error", [
    ({"bytes": 0}, "limits.bytes must be a positive integer"),
    ({"bytes": "10g"}, "limits.bytes must be a positive integer"),
    ({"depth": True}, "limits.depth must be a positive integer"),
    ({"bites": 1}, "limits.bites is not a limit"),
    ([1], "limits must be a mapping"),
])
def test_bad_limits_are_refused(limits, error):
    with pytest.raises(ImageInputError, match=error):
        Bu.check_limits(limits)


def test_unset_limits_are_the_defaults():
    assert Bu.check_limits({"bytes": None, "depth": 7}) == dict(Bu.DEFAULT_LIMITS, depth=7)
    assert Bu.DEFAULT_LIMITS["bytes"] == 10 * (1 << 30)


# --------------------------------------------------------------- not a tar

def test_a_gzip_of_zeros_is_refused_quickly_and_named(tmp_path, store):
    """64 MiB of zeros read as a tar is "end of archive, then padding": refused after 1 MiB
    of padding, without decompressing the rest."""
    blob = gzip_of_zeros(64 << 20)
    src = raw_layout(str(tmp_path / "zeros"), [blob], [fx.sha(b"not checked: refused before")])
    with pytest.raises(ImageInputError, match="zeros after the tar end-of-archive marker") as err:
        store.pull("zeros", src)
    assert fx.sha(blob) in str(err.value)
    assert_store_empty(store)


@pytest.mark.parametrize("blob", [
    os.urandom(4096),
    gzip.compress(os.urandom(4096)),
], ids=["random", "gzip-of-random"])
def test_random_bytes_are_refused_and_named(tmp_path, store, blob):
    src = raw_layout(str(tmp_path / "random"), [blob], [fx.sha(b"x")])
    with pytest.raises(ImageInputError, match="not a tar archive") as err:
        store.pull("random", src)
    assert fx.sha(blob) in str(err.value)
    assert_store_empty(store)


def test_data_after_the_end_marker_is_refused(tmp_path, store):
    layer = SMALL + b"\0" * 1024 + make_tar([file_("hidden", b"seen by tar -i")])
    src = layout(tmp_path, [layer])
    with pytest.raises(ImageInputError, match="data after the tar end-of-archive marker"):
        store.pull("two", src)
    assert_store_empty(store)


@pytest.mark.parametrize("tar", [
    b"",                      # a zero-length layer (Go's archive/tar: no entries)
    b"\0" * 512,              # a lone end block
    b"\0" * 1024,             # Docker's empty layer (Go's archive/tar)
    b"\0" * 10240,            # an empty archive of GNU tar or Python's tarfile (a record)
    SMALL + b"\0" * (T.MAX_TRAILER - 10240),         # padding within the allowance
], ids=["zero-length", "lone-block", "docker-empty", "record", "padded"])
def test_empty_and_padded_tars_are_layers(tmp_path, store, tar):
    src = layout(tmp_path, [tar])
    assert store.pull("empty", src)["changed"] and store.has_layer(fx.sha(tar))


def test_dockers_32_byte_empty_gzip_layer(tmp_path, store):
    blob = gzip.compress(b"\0" * 1024, mtime=0)
    assert len(blob) <= 32 + 8      # the well-known a3ed95ca... blob is 32 bytes
    src = raw_layout(str(tmp_path / "empty"), [blob], [fx.sha(b"\0" * 1024)])
    assert store.pull("empty", src)["changed"]


def test_an_oversized_pax_header_is_refused_before_it_is_read():
    pax = T.MAX_EXTENDED_HEADER + 1
    header = bytearray(512)
    header[0:9] = b"PaxHeader"
    header[100:108] = b"0000644\0"
    header[124:136] = ("%011o\0" % pax).encode()
    header[156:157] = b"x"
    header[257:263] = b"ustar\0"
    header[148:156] = b" " * 8
    header[148:156] = ("%06o\0 " % sum(header)).encode()
    reader = T.TarReader([bytes(header)], name="layer sha256:abc")
    with pytest.raises(ImageInputError, match="'x' header of %d bytes" % pax):
        list(reader)


# --------------------------------------------------------------- reading without unpacking

def test_check_mode_hashing_a_tarball_stops_at_the_budget(tmp_path, store):
    tarball = str(tmp_path / "rootfs.tar.gz")
    with open(tarball, "wb") as f:
        f.write(fx.compress(ZEROS_600K, "gzip"))
    with pytest.raises(BudgetExceededError, match="rootfs.tar.gz"):
        store.pull("t", tarball, check_mode=True, budget=Bu.Budget({"bytes": 512 * KiB}))
    assert store.pull("t", tarball, check_mode=True)["changed"]
    assert not os.path.exists(store.root)


def test_a_spec_hashing_a_tarball_stops_at_its_limits(tmp_path):
    tarball = str(tmp_path / "rootfs.tar.gz")
    with open(tarball, "wb") as f:
        f.write(fx.compress(ZEROS_600K, "gzip"))
    raw = {"name": "c", "state_dir": str(tmp_path / "state"),
           "rootfs": {"image": {"source": tarball, "limits": {"bytes": 512 * KiB}}}}
    with pytest.raises(SpecError, match=r"rootfs\.image\.source: .*raise rootfs\.image\.limits\.bytes"):
        _image_spec.load(raw)
    raw["rootfs"]["image"]["limits"] = {"bytes": 1024 * KiB, "depth": 0}
    with pytest.raises(SpecError, match=r"rootfs\.image\.limits\.depth: must be a positive integer"):
        _image_spec.load(raw)
    del raw["rootfs"]["image"]["limits"]["depth"]
    assert _image_spec.load(raw)["rootfs"]["image"]["limits"] == {"bytes": 1024 * KiB}
