"""The on-disk layout (plugins/module_utils/_layout.py) is pinned here: changing a path is
a deliberate act (stores and state dirs written by an older version must still be found),
and the back-ends read the paths the plan carries instead of joining their own."""
import json
import os
import re

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import host_steps as _host_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _image_store
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import validate as _spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan, container_paths
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render

TEMPLATE = os.path.join(_render.TEMPLATE_DIR, "container.sh.j2")
HEX = "ab" * 32


def test_defaults_have_one_definition():
    assert (_layout.DEFAULT_STATE_DIR, _layout.DEFAULT_RUN_DIR) == ("/var/lib/containerfs", "/run/containerfs")
    assert (_spec.DEFAULT_STATE_DIR, _spec.DEFAULT_RUN_DIR) == (_layout.DEFAULT_STATE_DIR, _layout.DEFAULT_RUN_DIR)
    assert _image_store.DEFAULT_ROOT == _layout.DEFAULT_STATE_DIR


def test_container_paths_are_pinned():
    assert _layout.container_paths("web", "/s", "/r", overlay=True) == {
        "state": "/s/containers/web",
        "etc": "/s/containers/web/etc",
        "upper": "/s/containers/web/upper",
        "work": "/s/containers/web/work",
        "record": "/s/containers/web/plan.json",
        "script": "/s/containers/web/container.sh",
        "log": "/s/containers/web/container.log",
        "exit_status": "/s/containers/web/exit",
        "volumes": "/s/containers/web/volumes",
        "env_probe": "/s/containers/web/env-signals",
        "image_ref": None,
        "run": "/r/web",
        "root": "/r/web/rootfs",
        "ns": "/r/web/ns",
        "fstab": "/r/web/fstab",
        "mount_err": "/r/web/mount.err",
        "fifo": "/r/web/go",
        "pid": "/r/web/pid",
        "monitor": "/r/web/monitor",
        "stopping": "/r/web/stopping",
        "signal": "/r/web/signal",
        "lock": "/r/web.lock",
        "store": None, "store_lock": None, "layer_temp": None,
    }


def test_container_paths_without_overlay_use_the_given_rootfs():
    paths = _layout.container_paths("web", "/s", "/r", overlay=False, rootfs_path="/srv/root")
    assert (paths["root"], paths["upper"], paths["work"]) == ("/srv/root", None, None)


def test_image_paths_in_the_state_dirs_own_store():
    paths = _layout.container_paths("web", "/s", "/r", overlay=True, store="/s")
    assert (paths["image_ref"], paths["store"], paths["store_lock"]) == (
        "/s/containers/web/image.json", "/s", "/s/.lock")
    key = "b64e8754ecc5"  # sha256("/s/containers/web")[:12]
    assert paths["layer_temp"] == "/s/layers/sha256/.tmp-" + key
    assert _layout.store_of_ref(paths["image_ref"], paths["state"]) == "/s"


def test_image_paths_in_a_store_of_its_own():
    paths = _layout.container_paths("web", "/s", "/r", overlay=True, store="/t")
    key = "b64e8754ecc5"
    assert paths["image_ref"] == "/t/refs/container-web-%s.json" % key
    assert (paths["store"], paths["store_lock"]) == ("/t", "/t/.lock")
    assert _layout.store_of_ref(paths["image_ref"], paths["state"]) == "/t"


def test_store_layout_is_pinned():
    store = _layout.StoreLayout("/t")
    assert store.layer("sha256:" + HEX) == "/t/layers/sha256/" + HEX
    assert store.layer_meta("sha256:" + HEX) == "/t/layers/sha256/%s.json" % HEX
    assert store.lock == "/t/.lock"
    assert store.temp("x") == "/t/layers/sha256/.tmp-x"
    assert store.image_record("library/busybox:1.36") == "/t/images/library%2Fbusybox:1.36.json"
    assert store.image_name("library%2Fbusybox:1.36.json") == "library/busybox:1.36"
    assert store.image_name("a.json.tmp-1") is None
    assert store.refs_dir == "/t/refs"
    assert store.container_image_ref("web") == "/t/containers/web/image.json"


def test_other_container_files_are_pinned():
    paths = _layout.container_paths("web", "/s", "/r", overlay=True)
    assert _layout.etc_file(paths, "resolv.conf") == "/s/containers/web/etc/resolv.conf"
    assert _layout.ns_file(paths["ns"], "mnt") == "/r/web/ns/mnt"
    assert _layout.image_volume("/s", "web", "data") == "/s/containers/web/volumes/data"
    assert _layout.flatten_sidecar("/x/tree") == "/x/tree.image.json"
    assert re.fullmatch(r"/s/containers/web/dev\.[0-9a-f]{16}", _layout.dev_template(paths["state"], [{"op": "mknod"}]))
    with pytest.raises(ValueError):
        _layout.etc_file(paths, "passwd")


def spec(**fields):
    raw = {"name": "web", "state_dir": "/s", "run_dir": "/r", "rootfs": {"path": "/srv/root"}}
    raw.update(fields)
    return _spec.load_spec(raw)


def test_the_plan_carries_every_path():
    plan = build_plan(spec())
    assert set(plan["paths"]) == set(_layout.CONTAINER_PATH_KEYS) | {"dev_template"}
    assert plan["paths"] == dict(container_paths(spec()), dev_template=plan["paths"]["dev_template"])
    assert plan["paths"]["dev_template"].startswith("/s/containers/web/dev.")


def test_the_dev_template_changes_with_the_devices():
    one = build_plan(spec())["paths"]["dev_template"]
    two = build_plan(spec(devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]))
    assert two["paths"]["dev_template"] != one


def test_the_script_reads_its_paths_from_the_plan():
    plan = build_plan(spec())
    plan["paths"].update(fstab="/elsewhere/fstab", fifo="/elsewhere/go", pid="/elsewhere/pid",
                         mount_err="/elsewhere/err", signal="/elsewhere/sig",
                         dev_template="/s/containers/web/devices")
    script = _render.render_script(plan)
    for var, path in (("FSTAB", "fstab"), ("GO", "go"), ("PID_FILE", "pid"),
                      ("MOUNT_ERRORS", "err"), ("SIGNAL", "sig")):
        assert "\nCFS_%s='/elsewhere/%s'\n" % (var, path) in script
    assert "\nCFS_DEV_TEMPLATE='/s/containers/web/devices'\n" in script


def test_the_template_joins_no_path_the_plan_names():
    with open(TEMPLATE) as f:
        text = f.read()
    assert not re.search(r"\$CFS_(RUN|STATE)/[A-Za-z.]", text)  # $CFS_RUN/fstab-style joins
    for joined in ("/layers/sha256", "/.lock", "/.tmp-", "/pid", "/fstab", "mount.err", "/go"):
        assert joined not in text, joined


def test_layer_metadata_has_one_schema():
    meta = _layout.layer_metadata("sha256:" + HEX, "sha256:" + HEX, 10, None, "gzip", ["w"])
    assert sorted(meta) == sorted(_layout.LAYER_METADATA_KEYS)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created"])
    assert json.loads(_layout.layer_metadata_text(meta)) == meta
    with pytest.raises(ValueError):
        _layout.layer_metadata("sha256:" + HEX, "sha256:" + HEX, -1, None, None)


def test_scripts_layer_metadata_is_the_schema_with_a_time_mark():
    step = {"diff_id": "sha256:" + HEX, "digest": "sha256:" + HEX, "size": 3,
            "media_type": None, "compression": ""}
    text = _render.layer_metadata(step)
    # the script puts the time where the mark is: the rest is the store's schema
    meta = json.loads(text.replace(_layout.CREATED_AT_RUN_TIME, "2024-01-02T03:04:05Z"))
    assert sorted(meta) == sorted(_layout.LAYER_METADATA_KEYS)
    assert text.index(_layout.CREATED_AT_RUN_TIME) < text.index('"diff_id"')
    step["media_type"] = _layout.CREATED_AT_RUN_TIME
    with pytest.raises(_render.RenderError):
        _render.layer_metadata(step)


def record(state_dir, plan):
    state = os.path.join(state_dir, "containers", plan["name"])
    os.makedirs(state)
    with open(os.path.join(state, "plan.json"), "w") as f:
        json.dump(plan, f)


def test_a_plan_recorded_before_the_layout_paths_is_completed(tmp_path):
    state_dir, run_dir = str(tmp_path / "s"), str(tmp_path / "r")
    plan = build_plan(spec(state_dir=state_dir, run_dir=run_dir))
    old = dict((k, plan["paths"][k]) for k in _host_steps.FIRST_RECORDED_PATHS)
    record(state_dir, dict(plan, paths=old))
    got = _host_steps.recorded_plan(state_dir, "web")
    assert got["paths"]["ns"] == os.path.join(run_dir, "web", "ns")
    assert got["paths"]["record"] == os.path.join(state_dir, "containers", "web", "plan.json")


def test_a_recorded_plan_naming_another_ns_dir_is_refused(tmp_path):
    state_dir, run_dir = str(tmp_path / "s"), str(tmp_path / "r")
    plan = build_plan(spec(state_dir=state_dir, run_dir=run_dir))
    plan["paths"]["ns"] = "/run"
    record(state_dir, plan)
    with pytest.raises(ApplyError, match="paths.ns"):
        _host_steps.recorded_plan(state_dir, "web")


def test_source_blobs_file_is_pinned():
    """Where the store keeps what it measured of a source's blobs: one file per source path."""
    layout = _layout.StoreLayout("/st")
    path = layout.source_blobs("/srv/img.tar")
    assert os.path.dirname(path) == "/st/sources" == layout.sources_dir
    assert layout.is_source_blobs(os.path.basename(path))
    assert path != layout.source_blobs("/srv/other.tar")
    assert not layout.is_source_blobs("x.json") and not layout.is_source_blobs(os.path.basename(path) + ".tmp")
