"""Stored images by name and the store's blob hashes (issue 10):

- a spec's rootfs.image.name resolves from the store's record and layer metadata, reading
  no source; a missing name or layer is a SpecError naming the import to run;
- a blob the store unpacked is not hashed again by the spec loader while its file is
  unchanged (size, mtime, ctime, inode); any change to the file makes it hashed again,
  and the layers resolved either way are the same;
- users() names the containers that reference an image; prune forgets stale hashes.
"""
import hashlib
import json
import os
import types

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as S
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as I
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, make_tar

BASE = make_tar([dir_("etc"), file_("etc/os-release", b"ID=test\n")])
APP = make_tar([dir_("app"), file_("app/run", b"run", mode=0o755)])


@pytest.fixture
def store(tmp_path):
    return S.ImageStore(str(tmp_path / "store"))


def spec(store, **image):
    return {"name": "box", "state_dir": store.root, "rootfs": {"image": image}}


def refuse_hashing(monkeypatch):
    """From now on, a blob hashed by the spec loader fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a blob was hashed")
    monkeypatch.setattr(I, "_blob", types.SimpleNamespace(BlobStream=refuse))


def tarball(tmp_path, data=BASE, kind="gzip"):
    path = str(tmp_path / "rootfs.tar.gz")
    with open(path, "wb") as f:
        f.write(fx.compress(data, kind))
    return path


def test_a_name_resolves_from_the_store_without_its_source(tmp_path, store, monkeypatch):
    src = str(tmp_path / "layout")
    fx.oci_layout(src, [BASE, APP], config={"Cmd": ["/app/run"], "Env": ["A=1"]})
    store.pull("app", src)
    refuse_hashing(monkeypatch)
    os.rename(src, src + ".gone")
    loaded = I.load(spec(store, name="app"))
    image = loaded["rootfs"]["image"]
    assert image["name"] == "app" and image["source"] == src and image["store"] == store.root
    layers = image["resolved"]["layers"]
    assert [la["diff_id"] for la in layers] == [fx.sha(BASE), fx.sha(APP)]
    assert [la["path"] for la in layers] == ["blobs/sha256/" + la["digest"][7:] for la in layers]
    assert all(la["compression"] == "gzip" and la["size"] > 0 for la in layers)
    assert loaded["process"]["args"] == ["/app/run"] and "A=1" in loaded["process"]["env"]


def test_a_name_the_store_lacks_or_a_lost_layer_says_how_to_import(tmp_path, store):
    with pytest.raises(SpecError) as info:
        I.load(spec(store, name="app"))
    msg = dict(info.value.errors)["rootfs.image.name"]
    assert "no image 'app' in the store %s" % store.root in msg
    assert "fromscratch.containerfs.image: {name: app, source: PATH, store: %s}" % store.root in msg
    store.pull("app", tarball(tmp_path))
    os.unlink(store.layer_meta_path(fx.sha(BASE)))
    with pytest.raises(SpecError, match="layer.s. missing from the store.*%s.*import it again" % fx.sha(BASE)):
        I.load(spec(store, name="app"))


@pytest.mark.parametrize("extra", [{"source": "/srv/x"}, {"tag": "1"}, {"platform": "linux/amd64"}])
def test_a_name_takes_no_source_or_choice(store, extra):
    with pytest.raises(SpecError) as info:
        I.load(spec(store, name="app", **extra))
    assert "rootfs.image." + list(extra)[0] in dict(info.value.errors)


@pytest.mark.parametrize("kind", ["gzip", None])
def test_an_unpacked_tarball_is_not_hashed_again_until_it_changes(tmp_path, store, monkeypatch, kind):
    path = tarball(tmp_path, kind=kind)
    slow = I.load(spec(store, source=path))["rootfs"]["image"]["resolved"]
    store.pull("app", path)
    with monkeypatch.context() as m:
        refuse_hashing(m)
        fast = I.load(spec(store, source=path))["rootfs"]["image"]["resolved"]
        assert fast == slow                 # the same plan, whichever way it was read
        os.utime(path, ns=(1, os.stat(path).st_mtime_ns))  # only ctime changes: read again
        with pytest.raises(AssertionError, match="a blob was hashed"):
            I.load(spec(store, source=path))
    assert I.load(spec(store, source=path))["rootfs"]["image"]["resolved"] == slow


def test_a_container_unpack_remembers_hashes_too(tmp_path, store, monkeypatch):
    """add_layer (the container's way in) keeps the hashes as pull does."""
    path = tarball(tmp_path, data=APP)
    with open(path, "rb") as f:
        blob = f.read()
    store.add_layer(path, "tarball", None, "sha256:" + hashlib.sha256(blob).hexdigest(),
                    len(blob), fx.sha(APP), compression="gzip")
    refuse_hashing(monkeypatch)
    layer = I.load(spec(store, source=path))["rootfs"]["image"]["resolved"]["layers"][0]
    assert layer["diff_id"] == fx.sha(APP) and layer["size"] == len(blob) and layer["compression"] == "gzip"


def test_an_uncompressed_oci_blob_is_remembered(tmp_path, store, monkeypatch):
    src = str(tmp_path / "layout")
    fx.oci_layout(src, [BASE], compression=None)
    store.pull("app", src)
    refuse_hashing(monkeypatch)
    layer = I.load(spec(store, source=src))["rootfs"]["image"]["resolved"]["layers"][0]
    assert layer["diff_id"] == fx.sha(BASE) and layer["compression"] == ""


def test_users_and_prune_of_stale_hashes(tmp_path, store):
    path = tarball(tmp_path)
    store.pull("app", path)
    assert store.users("app") == []
    os.makedirs(os.path.join(store.root, "containers", "c1"))
    with open(os.path.join(store.root, "containers", "c1", "image.json"), "w") as f:
        json.dump({"layers": [fx.sha(BASE)]}, f)
    os.makedirs(store.refs_dir)
    with open(os.path.join(store.refs_dir, "container-web-x-0123456789ab.json"), "w") as f:
        json.dump({"image": "app"}, f)
    with open(os.path.join(store.refs_dir, "pin.json"), "w") as f:
        json.dump({"layers": [fx.sha(BASE)]}, f)
    assert store.users("app") == ["c1", "web-x"]
    assert store.prune() == {"layers": [], "blob_caches": []}
    cache = store.blob_cache_path(path)
    assert os.path.isfile(cache)
    with open(path, "ab") as f:
        f.write(b"\0")
    assert store.prune(check_mode=True)["blob_caches"] == [cache] and os.path.isfile(cache)
    assert store.prune()["blob_caches"] == [cache] and not os.path.exists(cache)


def test_a_corrupt_hash_cache_is_replaced_not_fatal(tmp_path, store, monkeypatch):
    path = tarball(tmp_path)
    cache = store.blob_cache_path(path)
    os.makedirs(os.path.dirname(cache))
    with open(cache, "w") as f:
        f.write('{"blobs": ')
    assert I.load(spec(store, source=path))["rootfs"]["image"]["resolved"]["layers"][0]["diff_id"] == fx.sha(BASE)
    assert store.pull("app", path)["changed"] is True
    refuse_hashing(monkeypatch)
    assert I.load(spec(store, source=path))["rootfs"]["image"]["resolved"]["layers"][0]["diff_id"] == fx.sha(BASE)
