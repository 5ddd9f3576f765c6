"""Stored images by name, through real playbooks (issue 10, items 2 and 4):

- `rootfs.image: {name: NAME}` uses the store's record and its verified layers: the source
  can be deleted and the container still converges, unchanged; a name the store does not
  hold fails before anything is touched and says how to import it;
- image_info lists the images with the containers that use them (read-only, check mode);
- image state=absent refuses an image a container uses unless force; prune then removes
  the orphans once the container is gone; absent on a gone image is no change, empty diff;
- a source imported before is not hashed again while its file is unchanged (the store keeps
  the hashes with the file's size, mtime, ctime and inode); a changed file is.
"""
import json
import os
import shutil
import subprocess

import pytest

from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, make_tar
from tests.lib.playbook import run_playbook

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CONFIG = {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"], "Env": ["PATH=/bin"]}


def busybox_layers(tmp_path):
    root = fx.busybox_tree(str(tmp_path / "base-tree"))
    os.chmod(root, 0o755)
    top = make_tar([dir_("srv"), file_("srv/app", b"app\n")])
    return [fx.tar_of_dir(root), top]


def container(name, store, tmp_path, state="present", image=None, spec=True):
    args = {"name": name, "state": state, "state_dir": store, "run_dir": str(tmp_path / "run")}
    if spec:
        args["spec"] = {"rootfs": {"image": image or {"name": "app"}}}
    return {"name": "container %s %s" % (name, state), "fromscratch.containerfs.container": args}


def image(store, **args):
    args.setdefault("name", "app")
    args["store"] = store
    return {"name": "image %s" % json.dumps(args, sort_keys=True), "fromscratch.containerfs.image": args}


def info(store, **args):
    return {"name": "image_info", "fromscratch.containerfs.image_info": dict(args, store=store)}


def failing(task):
    return dict(task, ignore_errors=True)


def checking(task):
    return dict(task, check_mode=True)


def with_diff(task):
    return dict(task, diff=True)


def tree(path):
    """Every path under `path`, relative, with what it is (the store before/after)."""
    out = []
    for base, dirs, files in os.walk(path):
        for n in sorted(dirs + files):
            full = os.path.join(base, n)
            out.append(os.path.relpath(full, path) + ("/" if os.path.isdir(full) else ""))
    return sorted(out)


def layer_entries(layers):
    return sorted(sum([[d[7:], d[7:] + ".json"] for d in layers], []))


def stored_layers(store):
    return sorted(os.listdir(os.path.join(store, "layers", "sha256")))


def inside(tmp_path, name, command):
    ns = os.path.join(str(tmp_path / "run"), name, "ns", "mnt")
    return subprocess.run(["nsenter", "--mount=" + ns, "sh", "-c", command], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout


def test_container_by_name_outlives_its_source_then_absent_force_and_prune(tmp_path):
    layers = busybox_layers(tmp_path)
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, layers, config=CONFIG)
    store = str(tmp_path / "state")        # the store is the state dir (the default)
    ids = [fx.sha(t) for t in layers]

    missing = run_playbook(tmp_path, [container("box", store, tmp_path)], expect_failure=True)[0]
    assert "no image 'app' in the store %s" % store in missing["msg"], missing
    assert "fromscratch.containerfs.image: {name: app, source: PATH" in missing["msg"], missing
    assert not os.path.exists(os.path.join(store, "containers")), tree(store)

    first = run_playbook(tmp_path, [image(store, source=layout), container("box", store, tmp_path)])
    assert first[0]["layers_added"] == ids
    assert first[1]["changed"] is True
    assert not [a for a in first[1]["actions"] if a.startswith("unpack layer")], first[1]["actions"]
    root = os.path.join(str(tmp_path / "run"), "box", "rootfs")
    assert inside(tmp_path, "box", "cat %s/srv/app; ls %s/bin/sh" % (root, root)) == "app\n%s/bin/sh\n" % root
    with open(os.path.join(store, "containers", "box", "image.json")) as f:
        assert json.load(f) == {"layers": ids}

    shutil.rmtree(layout)                 # the source is not needed any more
    before = tree(store)
    again = run_playbook(tmp_path, [container("box", store, tmp_path), info(store),
                                    info(store, name=["app", "nothing"]),
                                    failing(image(store, state="absent"))], expect_failure=True)
    assert tree(store) == before, "a no-op converge, image_info or a refused absent changed the store"
    assert again[0]["changed"] is False, again[0]["actions"]
    listed = again[1]["images"]
    assert [(i["name"], i["containers"], [la["diff_id"] for la in i["layers"]]) for i in listed] == [
        ("app", ["box"], ids)]
    assert all(la["present"] for la in listed[0]["layers"]) and listed[0]["source"] == layout
    assert listed[0]["size"] == sum(la["size"] for la in listed[0]["layers"]) > 0
    assert listed[0]["digest"].startswith("sha256:") and listed[0]["platform"] == "linux/amd64"
    assert again[2]["images"] == listed and again[1]["changed"] is False
    refused = again[3]
    assert refused["failed"] and "used by container(s) box" in refused["msg"], refused
    assert "force: true" in refused["msg"], refused

    # force: the record goes, the container's reference keeps the layers; a spec naming the
    # image fails clearly; the container goes by name; prune (check mode first) takes the
    # orphans; absent again and prune again change nothing
    res = run_playbook(tmp_path, [
        with_diff(image(store, state="absent", force=True)),
        failing(container("box", store, tmp_path)),
        container("box", store, tmp_path, state="absent", spec=False),
        checking(image(store, name=None, prune=True)),
        image(store, name=None, prune=True),
        image(store, name=None, prune=True),
        with_diff(image(store, state="absent")),
    ], expect_failure=True)
    forced, gone, removed, check, pruned, pruned_again, absent_again = res
    assert forced["changed"] is True and forced["layers_removed"] == [] and forced["users"] == ["box"]
    assert '"app"' in forced["diff"]["before"] and forced["diff"]["after"] == ""
    assert "no image 'app'" in gone["msg"], gone
    assert removed["changed"] is True
    assert check["changed"] is True and sorted(check["pruned_layers"]) == sorted(ids)
    assert pruned["changed"] is True and sorted(pruned["pruned_layers"]) == sorted(ids)
    assert pruned_again["changed"] is False and pruned_again["pruned_layers"] == []
    assert absent_again["changed"] is False
    assert absent_again["diff"]["before"] == absent_again["diff"]["after"] == ""
    assert stored_layers(store) == [] and os.listdir(os.path.join(store, "images")) == []
    assert os.listdir(os.path.join(store, "containers")) == []


def test_absent_removes_only_its_own_layers_and_prune_the_orphans_of_a_container(tmp_path):
    """A container's own source: its layers are no image's; `image absent` of an unrelated
    image leaves them, prune removes them once the container is gone."""
    layers = busybox_layers(tmp_path)
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, layers, config=CONFIG)
    other = str(tmp_path / "other.tar")
    with open(other, "wb") as f:
        f.write(make_tar([dir_("srv"), file_("srv/x", b"x\n")]))
    store = str(tmp_path / "state")
    run_playbook(tmp_path, [container("own", store, tmp_path, image={"source": layout}),
                            image(store, name="other", source=other),
                            container("own", store, tmp_path, state="absent", spec=False)])
    ids = [fx.sha(t) for t in layers]
    res = run_playbook(tmp_path, [image(store, name="other", state="absent"),
                                  image(store, name=None, prune=True)])
    assert res[0]["layers_removed"] == [fx.sha(make_tar([dir_("srv"), file_("srv/x", b"x\n")]))]
    assert sorted(res[1]["pruned_layers"]) == sorted(ids)
    assert os.listdir(os.path.join(store, "layers/sha256")) == []


def test_a_stored_directory_image_knows_its_containers(tmp_path):
    """An image of format dir (a rootfs directory used as it is) has no layers to keep; the
    container still writes a reference naming it, so image_info lists the container and
    absent refuses the image without force, as for a layered one."""
    root = fx.busybox_tree(str(tmp_path / "tree"))
    os.chmod(root, 0o755)
    store = str(tmp_path / "state")
    res = run_playbook(tmp_path, [image(store, name="plain", source=root, format="dir"),
                                  container("box", store, tmp_path, image={"name": "plain"}),
                                  info(store, name=["plain"]),
                                  failing(image(store, name="plain", state="absent"))], expect_failure=True)
    with open(os.path.join(store, "containers", "box", "image.json")) as f:
        assert json.load(f) == {"image": "plain", "layers": []}
    assert [(i["name"], i["containers"]) for i in res[2]["images"]] == [("plain", ["box"])]
    assert res[3]["failed"] and "used by container(s) box" in res[3]["msg"], res[3]
    res = run_playbook(tmp_path, [container("box", store, tmp_path, state="absent", spec=False),
                                  image(store, name="plain", state="absent")])
    assert res[1]["changed"] and os.path.isdir(root), "the directory is the user's: it stays"


def test_unchanged_source_is_not_hashed_again_a_changed_one_is(tmp_path):
    root = fx.busybox_tree(str(tmp_path / "tree"))
    os.chmod(root, 0o755)
    tarball = str(tmp_path / "rootfs.tar.gz")
    with open(tarball, "wb") as f:
        f.write(fx.compress(fx.tar_of_dir(root), "gzip"))
    store = str(tmp_path / "state")
    spec_image = {"source": tarball}
    first = run_playbook(tmp_path, [image(store, source=tarball),
                                    container("box", store, tmp_path, image=spec_image)])
    caches = os.listdir(os.path.join(store, "sources"))
    assert len(caches) == 1, caches
    with open(os.path.join(store, "sources", caches[0])) as f:
        cached = json.load(f)
    st = os.stat(tarball)
    assert cached["path"] == tarball
    assert cached["blobs"][""]["stat"] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    assert cached["blobs"][""]["diff_id"] == first[0]["image"]["layers"][0]
    assert run_playbook(tmp_path, [container("box", store, tmp_path, image=spec_image)])[0]["changed"] is False

    # another content at the same path: hashed again, a new layer, the container rebuilt
    with open(tarball, "wb") as f:
        f.write(fx.compress(fx.tar_of_dir(root) + b"\0" * 1024, "gzip"))
    changed = run_playbook(tmp_path, [container("box", store, tmp_path, image=spec_image)])[0]
    assert changed["changed"] is True
    assert [a for a in changed["actions"] if a.startswith("unpack layer")], changed["actions"]
    run_playbook(tmp_path, [container("box", store, tmp_path, state="absent", spec=False)])


def test_the_script_runs_a_stored_image_by_name_without_its_source(tmp_path, make_container):
    """The rendered script: the plan carries the stored layers; with them in the store the
    source is not needed."""
    layers = busybox_layers(tmp_path)
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, layers, config=CONFIG)
    store = str(tmp_path / "store")
    run_playbook(tmp_path, [image(store, source=layout)])
    ids = [fx.sha(t) for t in layers]
    shutil.rmtree(layout)
    before = stored_layers(store)
    scripted = make_container(name="named", rootfs={"image": {"name": "app", "store": store}},
                              state_dir=str(tmp_path / "script-state"))
    result = scripted.run("cat", "/srv/app")
    assert (result.rc, result.stdout) == (0, "app\n"), result
    assert stored_layers(store) == before == layer_entries(ids)
    refs = os.listdir(os.path.join(store, "refs"))
    assert len(refs) == 1 and refs[0].startswith("container-named-"), refs
