"""fromscratch.containerfs.image through a real ansible-playbook on localhost: check mode
changes nothing, a second run is unchanged, diff mode shows the record, absent removes
the record and the layers nothing else uses, bad input fails clearly and touches
nothing."""
import os

from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, make_tar, whiteout
from tests.lib.playbook import run_playbook

BASE = make_tar([dir_("etc"), file_("etc/motd", b"hi\n"), dir_("bin"),
                 file_("bin/tool", b"t", mode=0o4755)])
TOP = make_tar([dir_("etc"), whiteout("etc/motd"), file_("etc/hostname", b"box\n")])


def image_task(title, **args):
    return {"name": title, "fromscratch.containerfs.image": args}


def files_under(path):
    out = []
    for base, dirs, files in os.walk(path):
        out += [os.path.join(base, n) for n in dirs + files]
    return sorted(out)


def test_present_check_diff_idempotent_absent(tmp_path):
    src = str(tmp_path / "layout")
    fx.oci_layout(src, [BASE, TOP], tag="1.0")
    other = str(tmp_path / "other.tar")
    with open(other, "wb") as f:
        f.write(fx.compress(BASE, "gzip"))
    store = str(tmp_path / "store")
    args = dict(name="app:1.0", source=src, tag="1.0", store=store)

    check = run_playbook(tmp_path, [image_task("import (check)", **args)], check=True, diff=True)
    assert check[0]["changed"] and len(check[0]["layers_added"]) == 2
    assert check[0]["diff"]["before"] == "" and '"app:1.0"' in check[0]["diff"]["after"]
    assert not os.path.exists(store), "check mode wrote to the store"

    res = run_playbook(tmp_path, [
        image_task("import", **args),
        image_task("import again", **args),
        image_task("same base layer, as a tarball", name="base", source=other, store=store),
    ], diff=True)
    first, again, base = res
    assert first["changed"] and first["image"]["layers"] == [fx.sha(BASE), fx.sha(TOP)]
    assert first["lowerdirs"] == [os.path.join(store, "layers/sha256", fx.sha(TOP)[7:]),
                                  os.path.join(store, "layers/sha256", fx.sha(BASE)[7:])]
    assert first["image"]["config"]["Entrypoint"] == ["/bin/sh"]
    assert os.lstat(os.path.join(first["lowerdirs"][0], "etc/motd")).st_rdev == 0
    assert not again["changed"] and again["layers_added"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert base["changed"] and base["layers_added"] == []      # shared: stored once
    layers_before = files_under(os.path.join(store, "layers"))

    res = run_playbook(tmp_path, [image_task("remove (check)", name="app:1.0", store=store,
                                             state="absent")], check=True, diff=True)
    assert res[0]["changed"] and res[0]["layers_removed"] == [fx.sha(TOP)]
    assert '"app:1.0"' in res[0]["diff"]["before"] and res[0]["diff"]["after"] == ""
    assert files_under(os.path.join(store, "layers")) == layers_before

    res = run_playbook(tmp_path, [
        image_task("remove", name="app:1.0", store=store, state="absent"),
        image_task("remove again", name="app:1.0", store=store, state="absent"),
        image_task("remove base, keep layers", name="base", store=store, state="absent",
                   keep_layers=True),
    ])
    assert res[0]["changed"] and res[0]["layers_removed"] == [fx.sha(TOP)]
    assert not res[1]["changed"]
    assert res[2]["changed"] and res[2]["layers_removed"] == []
    assert os.listdir(os.path.join(store, "images")) == []
    assert sorted(os.listdir(os.path.join(store, "layers/sha256"))) == [
        fx.sha(BASE)[7:], fx.sha(BASE)[7:] + ".json"]


def test_bad_input_fails_clearly_and_touches_nothing(tmp_path):
    src = str(tmp_path / "layout")
    fx.oci_layout(src, [BASE, TOP], tamper={"diff_id": 1})
    store = str(tmp_path / "store")
    res = run_playbook(tmp_path, [
        image_task("missing source", name="x", source=str(tmp_path / "nope"), store=store),
    ], expect_failure=True)
    assert res[0]["failed"] and "does not exist" in res[0]["msg"]
    assert not os.path.exists(store)
    res = run_playbook(tmp_path, [
        image_task("tampered layer", name="x", source=src, store=store),
    ], expect_failure=True)
    assert res[0]["failed"] and "diff_id mismatch" in res[0]["msg"] and "layer 1" in res[0]["msg"]
    assert not os.listdir(os.path.join(store, "images"))
    assert not [n for n in os.listdir(os.path.join(store, "layers/sha256"))
                if n.startswith(".tmp") or n.startswith(fx.sha(TOP)[7:])]
    res = run_playbook(tmp_path, [
        image_task("no source", name="x", store=store),
    ], expect_failure=True)
    assert res[0]["failed"] and "source" in res[0]["msg"]


def test_flatten_writes_the_merged_tree_once(tmp_path):
    """flatten: the image as one directory, whiteouts applied; rewritten only on change."""
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, [BASE, TOP])
    store = str(tmp_path / "store")
    flat = str(tmp_path / "flat")
    task = image_task("flatten", name="web", source=layout, store=store, flatten=flat)
    first = run_playbook(tmp_path, [task])[0]
    assert first["changed"] is True
    assert sorted(os.listdir(os.path.join(flat, "etc"))) == ["hostname"]  # motd whited out
    assert os.stat(os.path.join(flat, "bin", "tool")).st_mode & 0o7777 == 0o4755
    assert run_playbook(tmp_path, [task])[0]["changed"] is False
    # a changed image rewrites it
    fx.oci_layout(layout, [BASE])
    again = run_playbook(tmp_path, [task])[0]
    assert again["changed"] is True
    assert os.path.exists(os.path.join(flat, "etc", "motd"))
