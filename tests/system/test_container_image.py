"""fromscratch.containerfs.container with rootfs.image, through real playbooks, and its
image store shared with the rendered script and the image module.

- present builds an overlay whose lowerdirs are the store's layer dirs; a second run is
  unchanged; absent removes the container, never the store's layers;
- after the script unpacked an image into a store, the module finds its layers there
  (no unpack, same inodes) and only adds its own container files;
- `fromscratch.containerfs.image` state=absent refuses an image a container uses (force
  removes the record, the container's reference keeps the layers); prune removes the
  layers nothing references.
"""
import os
import subprocess

import pytest

from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, make_tar, opaque, whiteout
from tests.lib.playbook import run_playbook

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CONFIG = {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"], "Env": ["PATH=/bin", "A=1"],
          "WorkingDir": "/srv", "Volumes": {"/data": {}}}


def image_layers(tmp_path):
    root = fx.busybox_tree(str(tmp_path / "base-tree"))
    os.chmod(root, 0o755)
    os.makedirs(os.path.join(root, "opt"))
    with open(os.path.join(root, "opt", "old"), "w") as f:
        f.write("old\n")
    base = fx.tar_of_dir(root)
    top = make_tar([dir_("etc"), whiteout("etc/passwd"), dir_("srv"),
                    file_("srv/app", b"app\n", uid=1234, gid=1234, mode=0o4755),
                    dir_("opt"), opaque("opt"), file_("opt/new", b"new\n")])
    return [base, top]


def layout_of(tmp_path):
    ls = image_layers(tmp_path)
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, ls, config=CONFIG)
    return layout, ls


def spec_of(tmp_path, layout, store, name="box"):
    return {"name": name, "hostname": name,
            "rootfs": {"image": {"source": layout, "store": store}},
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}


def task(spec, state="present"):
    return {"name": "container %s" % state,
            "fromscratch.containerfs.container": {"spec": spec, "state": state}}


def image_task(store, name="app", state="present", source=None, **extra):
    args = dict(extra, name=name, store=store, state=state)
    if source:
        args["source"] = source
    return {"name": "image %s %s" % (name, state), "fromscratch.containerfs.image": args}


def prune_task(store):
    return {"name": "prune", "fromscratch.containerfs.image": {"store": store, "prune": True}}


def inside(spec, command):
    ns = os.path.join(spec["run_dir"], spec["name"], "ns")
    return subprocess.run(["nsenter", "--mount=%s/mnt" % ns, "sh", "-c", command],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout


def root_lowerdirs(spec):
    root = os.path.join(spec["run_dir"], spec["name"], "rootfs")
    for line in inside(spec, "cat /proc/self/mountinfo").splitlines():
        fields = line.split()
        if fields[4] == root:
            fstype, _src, opts = line.split(" - ", 1)[1].split()[:3]
            assert fstype == "overlay", line
            return [o for o in opts.split(",") if o.startswith("lowerdir=")][0][9:].split(":")
    raise AssertionError("no rootfs mount at %s" % root)


def layer_paths(store, ls):
    return [os.path.join(store, "layers/sha256", fx.sha(t)[7:]) for t in reversed(ls)]


def inodes(paths):
    return [os.lstat(p).st_ino for p in paths]


def test_module_after_script_on_one_store_then_absent_and_image_gc(tmp_path, make_container):
    layout, ls = layout_of(tmp_path)
    store = str(tmp_path / "store")
    # the script first (its own state dir: its reference goes to the store's refs/)
    scripted = make_container(name="scripted", hostname="scripted",
                              rootfs={"image": {"source": layout, "store": store}},
                              state_dir=str(tmp_path / "script-state"))
    result = scripted.run("true")
    assert result.rc == 0, result
    lowers = layer_paths(store, ls)
    before = inodes(lowers)

    spec = spec_of(tmp_path, layout, store)
    first = run_playbook(tmp_path, [task(spec)])[0]
    assert first["changed"] is True
    assert not [a for a in first["actions"] if a.startswith("unpack layer")], first["actions"]
    assert inodes(lowers) == before, "the module unpacked the layers again"
    assert root_lowerdirs(spec) == lowers
    root = os.path.join(spec["run_dir"], "box", "rootfs")
    assert inside(spec, "cat %s/srv/app %s/opt/new; ls -A %s/opt; test -e %s/etc/passwd || "
                        "echo passwd-gone" % (root, root, root, root)) == \
        "app\nnew\nnew\npasswd-gone\n"
    st = os.stat(os.path.join(lowers[0], "srv/app"))
    assert (st.st_mode & 0o7777, st.st_uid) == (0o4755, 1234)

    second = run_playbook(tmp_path, [task(spec)])[0]
    assert second["changed"] is False, second["actions"]

    # the image module finds every layer there already
    pulled = run_playbook(tmp_path, [image_task(store, source=layout)])[0]
    assert pulled["layers_added"] == [], pulled
    assert inodes(lowers) == before

    # the container module's absent: the container goes, the store's layers stay
    gone = run_playbook(tmp_path, [task(spec, "absent")])[0]
    assert gone["changed"] is True
    assert not os.path.exists(os.path.join(spec["run_dir"], "box"))
    assert not os.path.exists(os.path.join(spec["state_dir"], "containers", "box"))
    assert inodes(lowers) == before
    assert run_playbook(tmp_path, [task(spec, "absent")])[0]["changed"] is False

    # the script's container still lists the layers (a reference in the store's refs/,
    # its state dir being another): image absent refuses, forced it keeps them...
    refused = run_playbook(tmp_path, [image_task(store, state="absent")], expect_failure=True)[0]
    assert "used by container(s) scripted" in refused["msg"], refused
    kept = run_playbook(tmp_path, [image_task(store, state="absent", force=True)])[0]
    assert kept["layers_removed"] == [] and kept["users"] == ["scripted"], kept
    assert inodes(lowers) == before
    refs = [os.path.join(store, "refs", n) for n in os.listdir(os.path.join(store, "refs"))]
    assert len(refs) == 1 and "container-" in refs[0], refs
    # ...until that container goes too (the script has no absent: drop its reference)
    os.unlink(refs[0])
    run_playbook(tmp_path, [image_task(store, source=layout)])  # the record again, to remove it
    removed = run_playbook(tmp_path, [image_task(store, state="absent")])[0]
    assert removed["changed"] is True
    assert sorted(removed["layers_removed"]) == sorted(fx.sha(t) for t in ls)
    assert not [p for p in lowers if os.path.exists(p) or os.path.exists(p + ".json")]


def test_image_absent_keeps_the_layers_of_a_live_container(tmp_path):
    """The store is the state dir (the default): the container's image.json is where the
    store's garbage collection looks."""
    layout, ls = layout_of(tmp_path)
    store = str(tmp_path / "state")
    spec = spec_of(tmp_path, layout, store)
    check = run_playbook(tmp_path, [task(spec)], check=True)[0]
    assert check["changed"] is True
    assert len([a for a in check["actions"] if a.startswith("unpack layer")]) == 2, check
    assert not os.path.exists(os.path.join(store, "layers")), "check mode unpacked layers"

    first = run_playbook(tmp_path, [task(spec)])[0]
    assert len([a for a in first["actions"] if a.startswith("unpack layer")]) == 2, first
    lowers = layer_paths(store, ls)
    assert root_lowerdirs(spec) == lowers
    run_playbook(tmp_path, [image_task(store, source=layout)])
    removed = run_playbook(tmp_path, [image_task(store, state="absent", force=True)])[0]
    assert removed["layers_removed"] == [] and removed["users"] == ["box"], removed
    assert all(os.path.isdir(p) for p in lowers)
    assert run_playbook(tmp_path, [task(spec)])[0]["changed"] is False

    run_playbook(tmp_path, [task(spec, "absent")])
    assert all(os.path.isdir(p) for p in lowers), "container absent removed store layers"
    pruned = run_playbook(tmp_path, [prune_task(store)])[0]
    assert sorted(pruned["pruned_layers"]) == sorted(fx.sha(t) for t in ls)
    assert not [p for p in lowers if os.path.exists(p) or os.path.exists(p + ".json")]


def test_image_absent_keeps_the_layers_of_a_live_container_with_its_own_store(tmp_path):
    """rootfs.image.store outside the state dir: the container still holds its layers."""
    layout, ls = layout_of(tmp_path)
    store = str(tmp_path / "store")
    spec = spec_of(tmp_path, layout, store)
    run_playbook(tmp_path, [task(spec)])
    lowers = layer_paths(store, ls)
    removed = run_playbook(tmp_path, [image_task(store, state="absent")])[0]
    try:
        assert removed["layers_removed"] == [], (
            "the layers of a live container were garbage-collected", removed)
        assert all(os.path.isdir(p) for p in lowers)
    finally:
        run_playbook(tmp_path, [task(spec, "absent")])


def test_absent_by_a_spec_whose_image_is_gone_uses_the_recorded_plan(tmp_path):
    """A container of a stored image by name; the image is force-removed: the spec no
    longer loads, yet absent with that spec removes the container (its recorded plan says
    what), and again, or with a spec never set up, it is no change (absent needs no image)."""
    layout, ls = layout_of(tmp_path)
    store = str(tmp_path / "store")
    run_playbook(tmp_path, [image_task(store, source=layout)])
    spec = spec_of(tmp_path, layout, store)
    spec["rootfs"]["image"] = {"name": "app", "store": store}
    assert run_playbook(tmp_path, [task(spec)])[0]["changed"] is True
    run_playbook(tmp_path, [image_task(store, state="absent", force=True)])
    gone = run_playbook(tmp_path, [task(spec, "absent")])[0]
    assert gone["changed"] is True and not os.path.exists(str(tmp_path / "state" / "containers" / "box"))
    assert not os.path.exists(str(tmp_path / "run" / "box"))
    for again in (spec, dict(spec, name="never")):
        result = run_playbook(tmp_path, [task(again, "absent")])[0]
        assert result["changed"] is False and result["actions"] == [], result
    present = run_playbook(tmp_path, [task(dict(spec, name="never"))], expect_failure=True)[0]
    assert present["failed"] is True and "app" in present["msg"] + str(present.get("errors")), present
