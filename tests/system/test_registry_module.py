"""fromscratch.containerfs.image pulls `docker://` references from a real registry on
loopback; a container names the pulled image by name and converges after the registry
is gone; a container whose spec names a registry reference pulls it into the store once
(pull: missing), or again when asked (pull: always)."""
import os

import pytest

from tests.lib import oci_fixtures as fx
from tests.lib import registry as R
from tests.lib.playbook import run_playbook

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(bool(R.tools_missing()), reason="missing: %s" % R.tools_missing())]


def busybox_layout(tmp_path):
    root = fx.busybox_tree(str(tmp_path / "tree"))
    os.chmod(root, 0o755)
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, [fx.tar_of_dir(root)], tag="t",
                  config={"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
    return layout


def image_task(store, source=None, state="present", **extra):
    args = dict(extra, name="app", store=store, state=state)
    if source:
        args.update(source=source, validate_certs=False)
    return {"name": "image %s" % state, "fromscratch.containerfs.image": args}


def container_task(tmp_path, rootfs_image, state="present"):
    spec = {"name": "box", "hostname": "box", "rootfs": {"image": rootfs_image},
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    return {"name": "container %s" % state, "fromscratch.containerfs.container": {"spec": spec, "state": state}}


def test_pull_by_reference_then_a_container_by_name_without_the_registry(tmp_path):
    store = str(tmp_path / "store")
    with R.Registry(str(tmp_path / "registry")) as registry:
        registry.push(busybox_layout(tmp_path), "team/box:1", layout_ref="t")
        ref = registry.ref("team/box:1")
        first, again = run_playbook(tmp_path, [image_task(store, ref), image_task(store, ref)])
    assert first["changed"] is True and len(first["layers_added"]) == 1, first
    assert first["image"]["manifest_digest"].startswith("sha256:")
    assert first["image"]["source"] == {"path": ref, "stat": None, "digest": first["image"]["manifest_digest"]}
    assert again["changed"] is False and again["layers_added"] == [], again
    # the registry is stopped: the container uses the stored, verified layers by name
    up, same, gone = run_playbook(tmp_path, [container_task(tmp_path, {"name": "app", "store": store}),
                                             container_task(tmp_path, {"name": "app", "store": store}),
                                             container_task(tmp_path, {"name": "app", "store": store}, "absent")])
    assert up["changed"] is True and same["changed"] is False, (up, same)
    lowers = [os.path.join(store, "layers", "sha256", d.split(":", 1)[1]) for d in first["image"]["layers"]]
    assert all(os.path.isdir(path) for path in lowers)
    assert gone["changed"] is True and not os.path.exists(str(tmp_path / "state" / "containers" / "box"))


def test_a_container_from_a_registry_reference_pulls_once(tmp_path):
    """rootfs.image.source docker://...: check mode writes nothing; the first converge pulls
    into the store (a record named after the reference, the manifest digest pinned in the
    plan); with the registry stopped, the next converge (pull: missing) changes nothing."""
    store = str(tmp_path / "store")
    with R.Registry(str(tmp_path / "registry")) as registry:
        registry.push(busybox_layout(tmp_path), "team/box:1", layout_ref="t")
        ref = registry.ref("team/box:1")
        image = {"source": ref, "tls_verify": False, "store": store}
        task = container_task(tmp_path, image)
        checked = dict(task, check_mode=True)
        dry = run_playbook(tmp_path, [checked])[0]
        assert dry["changed"] is True and not os.path.exists(store), dry
        up = run_playbook(tmp_path, [task])[0]
        assert up["changed"] is True, up
        name = ref[len("docker://"):]
        records = os.listdir(os.path.join(store, "images"))
        assert len(records) == 1 and records[0].endswith(".json"), records
    same, gone = run_playbook(tmp_path, [task, container_task(tmp_path, image, "absent")])
    assert same["changed"] is False, same
    assert gone["changed"] is True and not os.path.exists(str(tmp_path / "state" / "containers" / "box"))
    # the image stays in the store, by the reference's name
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import ImageStore
    assert ImageStore(store).image(name)["source"]["path"] == ref


def test_pull_always_follows_a_moved_tag(tmp_path):
    """pull: missing keeps the digest the store holds; pull: always resolves the tag again
    and the plan changes with it."""
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as image_spec
    store = str(tmp_path / "store")
    v1 = busybox_layout(tmp_path)
    v2 = str(tmp_path / "layout2")
    fx.oci_layout(v2, [fx.tar_of_dir(str(tmp_path / "tree")), fx.make_tar([fx.file_("v2", b"2")])],
                  tag="t", config={"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]})
    with R.Registry(str(tmp_path / "registry")) as registry:
        registry.push(v1, "team/box:1", layout_ref="t")
        raw = {"name": "box", "state_dir": str(tmp_path / "state"),
               "rootfs": {"image": {"source": registry.ref("team/box:1"), "tls_verify": False, "store": store}}}
        first = image_spec.load(raw, fetch_layers=True)["rootfs"]["image"]["resolved"]
        registry.push(v2, "team/box:1", layout_ref="t")
        kept = image_spec.load(raw, fetch_layers=True)["rootfs"]["image"]["resolved"]
        raw["rootfs"]["image"]["pull"] = "always"
        moved = image_spec.load(raw, fetch_layers=True)["rootfs"]["image"]["resolved"]
    assert kept == first
    assert moved["manifest_digest"] != first["manifest_digest"] and len(moved["layers"]) == 2
    # the new digest is what the store holds now: pull missing keeps it, without the registry
    del raw["rootfs"]["image"]["pull"]
    assert image_spec.load(raw)["rootfs"]["image"]["resolved"] == moved


def test_wrong_tag_names_the_reference_and_stores_nothing(tmp_path):
    store = str(tmp_path / "store")
    with R.Registry(str(tmp_path / "registry")) as registry:
        registry.push(busybox_layout(tmp_path), "team/box:1", layout_ref="t")
        ref = registry.ref("team/box:nope")
        result = run_playbook(tmp_path, [image_task(store, ref)], expect_failure=True)[0]
    assert result["failed"] is True and "team/box" in result["msg"] and "nope" in result["msg"], result
    assert not os.path.exists(os.path.join(store, "images", "app.json"))
