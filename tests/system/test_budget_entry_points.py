"""Budgets through every way in (issue 13 item 3): the image module (ansible-playbook and a
direct run), the CLI's unpack and pull, and a spec's rootfs.image.limits on a registry
pull. Each bomb is built here, small, against a small limit; each stops with an error
naming the layer's digest, the limit and the option that raises it, and leaves nothing
(no layer, no temp dir, no half destination); the raised limit lets the same image in."""
import json
import os
import subprocess
import sys
import zlib

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as S
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from tests.lib import oci_fixtures as fx
from tests.lib import registry as R
from tests.lib.oci_fixtures import file_, make_tar
from tests.lib.playbook import run_playbook
from tests.lib.run_module import run_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "scripts", "containerfs")
KiB = 1024
FIRST = make_tar([file_("zeros", b"\0" * (600 * KiB))])
SECOND = make_tar([file_("more-zeros", b"\0" * (600 * KiB))])
MANY = make_tar([file_("f%d" % i) for i in range(40)])
DEEP = make_tar([file_("/".join(["d"] * 9 + ["leaf"]), b"x")])


def layout(tmp_path, layers, name="layout"):
    path = str(tmp_path / name)
    fx.oci_layout(path, list(layers), tag="1")
    return path


def digest_of(layer):
    return fx.sha(fx.compress(layer, "gzip"))


def store_is_empty(store):
    layers = os.path.join(store, "layers", "sha256")
    return (not os.path.isdir(layers) or os.listdir(layers) == []) and not S.ImageStore(store).images()


def cli(*args):
    return subprocess.run([sys.executable, CLI] + list(args), capture_output=True, text=True, check=False)


# --------------------------------------------------------------- the image module

def test_module_stops_a_bomb_across_two_layers_and_a_raised_limit_lets_it_in(tmp_path):
    src = layout(tmp_path, [FIRST, SECOND])
    store = str(tmp_path / "store")
    task = {"name": "import", "fromscratch.containerfs.image": {
        "name": "bomb", "source": src, "store": store, "limits": {"bytes": 1024 * KiB}}}
    res = run_playbook(tmp_path, [task], expect_failure=True)
    assert res[0]["failed"]
    msg = res[0]["msg"]
    # either layer may be the one that goes over: they are unpacked side by side
    assert any(digest_of(layer) in msg for layer in (FIRST, SECOND))
    assert "limit bytes" in msg and "the option limits.bytes" in msg
    assert store_is_empty(store)
    task["fromscratch.containerfs.image"]["limits"] = {"bytes": 2048 * KiB}
    res = run_playbook(tmp_path, [task])
    assert res[0]["changed"] and res[0]["image"]["layers"] == [fx.sha(FIRST), fx.sha(SECOND)]


@pytest.mark.parametrize("layer, limits, needle", [
    (MANY, {"entries": 10}, "more than 10 entries (limit entries)"),
    (MANY, {"layer_entries": 10}, "more than 10 entries (limit layer_entries)"),
    (DEEP, {"depth": 5}, "10 levels deep, more than 5 (limit depth)"),
    (FIRST, {"layer_bytes": 100 * KiB}, "(limit layer_bytes)"),
], ids=["entries", "layer_entries", "depth", "layer_bytes"])
def test_module_limits(tmp_path, layer, limits, needle):
    src = layout(tmp_path, [layer])
    store = str(tmp_path / "store")
    res = run_module(tmp_path, "image", {"name": "bomb", "source": src, "store": store, "limits": limits})
    assert res["failed"] and needle in res["msg"] and digest_of(layer) in res["msg"], res
    assert store_is_empty(store)


def test_module_refuses_a_bad_limit_and_a_gzip_of_zeros(tmp_path):
    src = layout(tmp_path, [FIRST])
    store = str(tmp_path / "store")
    res = run_module(tmp_path, "image", {"name": "x", "source": src, "store": store, "limits": {"bytes": 0}})
    assert res["failed"] and "limits.bytes must be a positive integer" in res["msg"], res
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"".join(comp.compress(b"\0" * (1 << 20)) for _mib in range(32)) + comp.flush()
    bomb = str(tmp_path / "zeros.tar.gz")
    with open(bomb, "wb") as f:
        f.write(zeros)
    res = run_module(tmp_path, "image", {"name": "zeros", "source": bomb, "store": store})
    assert res["failed"] and "not a tar layer" in res["msg"] and bomb in res["msg"], res
    assert store_is_empty(store)


# --------------------------------------------------------------- the container module

def test_container_spec_limits_stop_a_layer_and_a_raised_limit_lets_it_in(tmp_path):
    src = layout(tmp_path, [FIRST, SECOND])
    spec = {"name": "c", "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run"),
            "rootfs": {"image": {"source": src, "limits": {"layer_bytes": 500 * KiB}}}}
    task = {"name": "container", "fromscratch.containerfs.container": {"spec": spec}}
    res = run_playbook(tmp_path, [task], expect_failure=True)
    assert res[0]["failed"] and "rootfs.image.limits.layer_bytes" in res[0]["msg"], res[0]
    assert digest_of(FIRST) in res[0]["msg"]
    spec["rootfs"]["image"]["limits"] = {"layer_bytes": 2048 * KiB}
    assert run_playbook(tmp_path, [task])[0]["changed"]
    task["fromscratch.containerfs.container"]["state"] = "absent"
    assert run_playbook(tmp_path, [task])[0]["changed"]


def stored_layers(store):
    return set(S.ImageStore(store).layers())


@pytest.mark.parametrize("own_store", [False, True], ids=["state-dir-store", "store-of-its-own"])
@pytest.mark.parametrize("rebuild", [False, True], ids=["first-set-up", "rebuild"])
def test_container_stopped_by_its_budget_leaves_no_layer_it_added(tmp_path, own_store, rebuild):
    """Layers 1-2 of the image are unpacked, the third goes over: the second goes (nothing
    else uses it; the container's own reference, written before the layers, keeps none of
    them), the first, shared with an image already stored, stays. A first set-up leaves no
    container (absent: no change); a rebuild leaves the container, which absent removes."""
    third = make_tar([file_("big-zeros", b"\0" * (800 * KiB))])
    state, run = str(tmp_path / "state"), str(tmp_path / "run")
    store = str(tmp_path / "store") if own_store else state
    base = layout(tmp_path, [FIRST], name="base")
    S.ImageStore(store).pull("base", base)
    before = stored_layers(store)
    assert before == {fx.sha(FIRST)}
    image = {"store": store, "limits": {"layer_bytes": 700 * KiB}}
    spec = {"name": "c", "state_dir": state, "run_dir": run, "rootfs": {"image": dict(image, source=base)}}
    if rebuild:
        assert run_module(tmp_path, "container", {"spec": spec})["changed"]
    spec["rootfs"]["image"]["source"] = layout(tmp_path, [FIRST, SECOND, third])
    res = run_module(tmp_path, "container", {"spec": spec})
    assert res["failed"] and "rootfs.image.limits.layer_bytes" in res["msg"] and digest_of(third) in res["msg"], res
    assert stored_layers(store) == before and S.ImageStore(store).images() == ["base"]
    assert not [n for n in os.listdir(os.path.join(store, "layers", "sha256")) if n.startswith(".")]
    container = os.path.join(state, "containers", "c")
    assert os.path.isdir(container) is rebuild
    res = run_module(tmp_path, "container", {"name": "c", "state_dir": state, "run_dir": run, "state": "absent"})
    assert not res.get("failed") and res["changed"] is rebuild, res
    assert not os.path.exists(container) and stored_layers(store) == before
    if own_store:
        assert not os.listdir(os.path.join(store, "refs")), "the container's reference stayed"


def test_store_undoes_only_the_added_layers_nothing_else_uses(tmp_path):
    """undo_added_layers: of the layers given, those the set-up's own reference alone keeps
    go; one another reference keeps, and one the set-up did not add, stay."""
    store = S.ImageStore(str(tmp_path / "store"))
    store.pull("x", layout(tmp_path, [FIRST, SECOND, MANY]))
    store.remove("x", keep_layers=True)
    first, second, many = fx.sha(FIRST), fx.sha(SECOND), fx.sha(MANY)
    os.makedirs(store.refs_dir)
    own = os.path.join(store.refs_dir, "container-c-0123456789ab.json")
    for path, layers in ((own, [first, second, many]), (os.path.join(store.refs_dir, "pin.json"), [second])):
        with open(path, "w") as f:
            json.dump({"layers": layers}, f)
    assert store.undo_added_layers([first, second], own) == [first]
    assert set(store.layers()) == {second, many}


def test_container_stopped_by_another_error_keeps_the_layers_it_added(tmp_path):
    """A layer that fails its digest is no budget's: the layers before it are complete and
    verified, and stay for the next try (as a pull's do)."""
    third = make_tar([file_("other", b"x")])
    state = str(tmp_path / "state")
    src = layout(tmp_path, [FIRST, SECOND, third])
    blob = os.path.join(src, "blobs", "sha256", digest_of(third).split(":", 1)[1])
    with open(blob, "r+b") as f:
        size = len(f.read())
        f.seek(0)
        f.write(b"\0" * size)
    spec = {"name": "c", "state_dir": state, "run_dir": str(tmp_path / "run"), "rootfs": {"image": {"source": src}}}
    res = run_module(tmp_path, "container", {"spec": spec})
    assert res["failed"] and digest_of(third) in res["msg"] and "limit" not in res["msg"], res
    assert stored_layers(state) == {fx.sha(FIRST), fx.sha(SECOND)}


# --------------------------------------------------------------- the CLI

def test_cli_unpack_stops_and_leaves_no_dest(tmp_path):
    src = layout(tmp_path, [FIRST, SECOND])
    dest = tmp_path / "out"
    proc = cli("unpack", src, str(dest), "--max-layer-bytes", str(700 * KiB), "--max-bytes", str(1024 * KiB))
    assert proc.returncode == 2, proc
    assert any(digest_of(layer) in proc.stderr for layer in (FIRST, SECOND)) and "raise --max-bytes" in proc.stderr
    assert not dest.exists() and not [n for n in os.listdir(str(tmp_path)) if n.startswith(".out")]
    store = str(tmp_path / "store")
    proc = cli("unpack", src, str(dest), "--store", store, "--max-entries", "1")
    assert proc.returncode == 2 and "raise --max-entries" in proc.stderr, proc
    assert not dest.exists() and store_is_empty(store)
    proc = cli("unpack", src, str(dest), "--store", store, "--max-bytes", str(2048 * KiB))
    assert proc.returncode == 0, proc
    assert os.path.getsize(str(dest / "more-zeros")) == 600 * KiB


def test_cli_refuses_a_bad_limit(tmp_path):
    proc = cli("unpack", layout(tmp_path, [FIRST]), str(tmp_path / "out"), "--max-depth", "-1")
    assert proc.returncode == 2 and "limits.depth must be a positive integer" in proc.stderr, proc
    assert not (tmp_path / "out").exists()


@pytest.fixture
def fake(tmp_path):
    path = layout(tmp_path, [MANY, SECOND], name="served")
    server = R.FakeRegistry(path).start()
    yield server
    server.stop()


def test_cli_pull_stops_and_leaves_nothing(fake, tmp_path):
    store = str(tmp_path / "store")
    proc = cli("pull", fake.ref("1"), "--store", store, "--tls-verify=false", "--max-layer-entries", "20")
    assert proc.returncode == 2 and digest_of(MANY) in proc.stderr and "raise --max-layer-entries" in proc.stderr, proc
    assert store_is_empty(store)
    proc = cli("pull", fake.ref("1"), "--store", store, "--tls-verify=false", "--max-layer-entries", "41")
    assert proc.returncode == 0, proc


# --------------------------------------------------------------- a spec

def test_spec_limits_hold_on_a_registry_pull(fake, tmp_path):
    state = str(tmp_path / "state")
    raw = {"name": "c", "state_dir": state, "rootfs": {"image": {
        "source": fake.ref("1"), "tls_verify": False, "limits": {"bytes": 512 * KiB}}}}
    with pytest.raises(SpecError) as err:
        _image_spec.load(raw, fetch_layers=True)
    assert "raise rootfs.image.limits.bytes" in str(err.value) and digest_of(SECOND) in str(err.value)
    assert store_is_empty(state)
    raw["rootfs"]["image"]["limits"] = {"bytes": 4096 * KiB}
    spec = _image_spec.load(raw, fetch_layers=True)
    assert spec["rootfs"]["image"]["limits"] == {"bytes": 4096 * KiB}
    assert S.ImageStore(state).has_layer(fx.sha(SECOND))
