"""fromscratch.containerfs.image pulls `docker://` references from a real registry on
loopback; a container names the pulled image by name and converges after the registry
is gone; a spec naming a registry reference itself is refused with what to do."""
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


def test_a_spec_naming_a_registry_reference_says_to_pull_it_first(tmp_path):
    ref = "docker://127.0.0.1:1/team/box:1"
    result = run_playbook(tmp_path, [container_task(tmp_path, {"source": ref})], expect_failure=True)[0]
    assert result["failed"] is True
    assert any("registry reference: pull it into the store first" in e and "rootfs.image.name" in e
               for e in result.get("errors", [result["msg"]])), result
    assert not os.path.exists(str(tmp_path / "state" / "containers" / "box"))


def test_wrong_tag_names_the_reference_and_stores_nothing(tmp_path):
    store = str(tmp_path / "store")
    with R.Registry(str(tmp_path / "registry")) as registry:
        registry.push(busybox_layout(tmp_path), "team/box:1", layout_ref="t")
        ref = registry.ref("team/box:nope")
        result = run_playbook(tmp_path, [image_task(store, ref)], expect_failure=True)[0]
    assert result["failed"] is True and "team/box" in result["msg"] and "nope" in result["msg"], result
    assert not os.path.exists(os.path.join(store, "images", "app.json"))
