"""The image store: sources (OCI layout, docker archive, tarball, dir), selection by tag,
digest and platform, the shared layer store, idempotence, check mode, garbage collection,
flatten == overlay mount == umoci, and errors that leave nothing behind."""
import ast
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as B
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as S
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import layers as L
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import platforms as P
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source_fs as FS
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import unpack as U
from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, hardlink, make_tar, opaque, symlink, whiteout

BASE = make_tar([dir_("etc"), file_("etc/os-release", b"ID=test\n"), dir_("bin"),
                 file_("bin/tool", b"#!/bin/sh\n", mode=0o755), dir_("var"),
                 dir_("var/lib"), file_("var/lib/old", b"old"), file_("etc/motd", b"hi")])
# Real layers list the parent directories of what they change (docker and buildkit do):
# an implicit parent takes the attributes overlayfs shows from the layer that has it.
APP = make_tar([dir_("etc"), whiteout("etc/motd"), dir_("var"), dir_("var/lib"), opaque("var/lib"),
                file_("var/lib/new", b"new"), dir_("app"), file_("app/run", b"run", mode=0o755),
                hardlink("app/run2", "app/run"), symlink("app/sh", "/bin/tool")])
OTHER = make_tar([dir_("srv"), file_("srv/data", b"other")])


@pytest.fixture
def store(tmp_path):
    return S.ImageStore(str(tmp_path / "store"))


def layout(tmp_path, layers=(BASE, APP), name="layout", **kw):
    path = str(tmp_path / name)
    fx.oci_layout(path, list(layers), **kw)
    return path


def layer_dirs(store):
    try:
        return sorted(n for n in os.listdir(store.layers_dir) if not n.endswith(".json"))
    except FileNotFoundError:
        return []


# --------------------------------------------------------------- sources

def test_pull_oci_layout(tmp_path, store):
    src = layout(tmp_path)
    r = store.pull("app", src, tag="latest")
    assert r["changed"] and r["layers_added"] == [fx.sha(BASE), fx.sha(APP)]
    rec = store.image("app")
    assert rec["layers"] == [fx.sha(BASE), fx.sha(APP)] and rec["format"] == "oci"
    assert rec["manifest_digest"].startswith("sha256:") and rec["platform"] == "linux/amd64"
    assert rec["config"]["Entrypoint"] == ["/bin/sh"] and rec["config"]["Volumes"] == ["/data"]
    assert rec["config"]["ExposedPorts"] == ["80/tcp"]
    lowers = store.lowerdirs("app")
    assert lowers == [store.layer_path(fx.sha(APP)), store.layer_path(fx.sha(BASE))]
    assert os.path.isfile(os.path.join(lowers[1], "etc/os-release"))
    assert oct(os.stat(os.path.dirname(store.layers_dir)).st_mode & 0o777) == "0o700"


def test_second_pull_is_unchanged_and_reads_no_layer(tmp_path, store, monkeypatch):
    src = layout(tmp_path)
    store.pull("app", src)
    monkeypatch.setattr(L, "apply_layer", lambda *a, **k: pytest.fail("layer read again"))
    r = store.pull("app", src)
    assert not r["changed"] and r["layers_added"] == []


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_oci_archive_tar(tmp_path, store, compression):
    src = layout(tmp_path, compression=compression)
    archive = str(tmp_path / "img.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname=".")
    assert FS.detect_format(archive) == "oci"
    assert store.pull("a", archive)["image"]["layers"] == [fx.sha(BASE), fx.sha(APP)]


def test_multi_platform_nested_index(tmp_path, store):
    path = str(tmp_path / "multi")
    amd = fx.add_image(path, [BASE], arch="amd64")
    arm = fx.add_image(path, [OTHER], arch="arm64", variant="v8")
    armv7 = fx.add_image(path, [APP], arch="arm", variant="v7")
    fx.write_index(path, [fx.nested_index(path, [amd, arm, armv7], tag="1.0")])
    host = P.host_platform()["architecture"]
    r = store.pull("m", path, tag="1.0", check_mode=True)
    if host == "amd64":
        assert r["image"]["layers"] == [fx.sha(BASE)]
    assert store.pull("m", path, tag="1.0", platform="linux/arm64",
                      check_mode=True)["image"]["layers"] == [fx.sha(OTHER)]
    assert store.pull("m", path, platform="linux/arm/v7",
                      check_mode=True)["image"]["layers"] == [fx.sha(APP)]
    with pytest.raises(S.ImageNotFoundError, match="linux/amd64, linux/arm/v7, linux/arm64/v8"):
        store.pull("m", path, platform="linux/s390x")
    with pytest.raises(S.ImageNotFoundError, match="arm/v6"):
        store.pull("m", path, platform="linux/arm/v6")
    # by digest: a manifest inside the nested index
    r = store.pull("m", path, digest=arm["digest"], check_mode=True)
    assert r["image"]["manifest_digest"] == arm["digest"]


def test_tag_and_digest_selection(tmp_path, store):
    path = str(tmp_path / "two")
    a = fx.add_image(path, [BASE])
    b = fx.add_image(path, [OTHER])
    fx.write_index(path, [fx.tagged(a, "a"), fx.tagged(b, "docker.io/library/b:2")])
    assert store.pull("x", path, tag="b:2", check_mode=True)["image"]["layers"] == [fx.sha(OTHER)]
    assert store.pull("x", path, tag="2", check_mode=True)["image"]["layers"] == [fx.sha(OTHER)]
    assert store.pull("x", path, digest=a["digest"], check_mode=True)["image"]["layers"] == \
        [fx.sha(BASE)]
    with pytest.raises(S.ImageInputError, match="holds 2 images.*choose one"):
        store.pull("x", path)
    with pytest.raises(S.ImageNotFoundError, match="no image tagged 'c'.*tags: a, docker"):
        store.pull("x", path, tag="c")
    with pytest.raises(S.ImageNotFoundError, match="digest"):
        store.pull("x", path, digest=fx.sha(b"nope"))
    with pytest.raises(S.ImageInputError, match="malformed digest"):
        store.pull("x", path, digest="sha256:zz")


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "oci-inside"])
@pytest.mark.parametrize("as_tar", [True, False], ids=["tar", "dir"])
def test_docker_archive(tmp_path, store, legacy, as_tar):
    src = fx.docker_archive(str(tmp_path / "saved.tar"), [BASE, APP, BASE + b""], legacy=legacy,
                            as_tar=as_tar)
    assert FS.detect_format(src) == "docker-archive"
    r = store.pull("d", src, tag="test:latest")
    assert r["image"]["layers"] == [fx.sha(BASE), fx.sha(APP), fx.sha(BASE)]
    assert r["layers_added"] == [fx.sha(BASE), fx.sha(APP)]
    assert r["image"]["format"] == "docker-archive" and r["image"]["config"]["Cmd"]
    assert not store.pull("d", src, tag="latest")["changed"]
    with pytest.raises(S.ImageNotFoundError, match="test:latest"):
        store.pull("d", src, tag="nope")


def test_docker_archive_paths_cannot_leave_the_source(tmp_path, store):
    src = fx.docker_archive(str(tmp_path / "evil"), [BASE], as_tar=False)
    (tmp_path / "outside.tar").write_bytes(BASE)
    with open(os.path.join(src, "manifest.json")) as f:
        m = json.load(f)
    m[0]["Layers"] = ["../outside.tar"]
    with open(os.path.join(src, "manifest.json"), "w") as f:
        json.dump(m, f)
    with pytest.raises(S.ImageInputError, match="leaves the source"):
        store.pull("e", src)
    assert layer_dirs(store) == []


@pytest.mark.parametrize("compression", [None, "gzip", "xz", "zstd"])
def test_tarball(tmp_path, store, compression, monkeypatch):
    path = tmp_path / "rootfs.tar"
    path.write_bytes(fx.compress(BASE, compression))
    assert FS.detect_format(str(path)) == "tarball"
    r = store.pull("t", str(path))
    assert r["changed"] and r["image"]["layers"] == [fx.sha(BASE)]
    assert r["image"]["config"] == {} and r["image"]["format"] == "tarball"
    # unchanged file: not even opened again
    monkeypatch.setattr(B, "BlobStream", None)
    assert not store.pull("t", str(path))["changed"]


def test_tarball_check_mode_knows_its_diff_id(tmp_path, store):
    path = tmp_path / "rootfs.tgz"
    path.write_bytes(fx.compress(BASE, "gzip"))
    r = store.pull("t", str(path), check_mode=True)
    assert r["changed"] and r["layers_added"] == [fx.sha(BASE)]
    assert not os.path.exists(store.root)


def test_dir_is_used_as_is(tmp_path, store):
    rootfs = fx.busybox_tree(str(tmp_path / "rootfs"))
    assert FS.detect_format(rootfs) == "dir"
    r = store.pull("b", rootfs)
    assert r["changed"] and store.lowerdirs("b") == [os.path.realpath(rootfs)]
    assert not store.pull("b", rootfs)["changed"]
    out = str(tmp_path / "flat")
    store.flatten("b", out)
    assert fx.snapshot(out) == fx.snapshot(rootfs)


def test_bad_sources(tmp_path, store):
    with pytest.raises(S.ImageInputError, match="does not exist"):
        store.pull("x", str(tmp_path / "missing"))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an image" * 100)
    with pytest.raises(S.ImageInputError, match="neither a directory nor a tar"):
        store.pull("x", str(junk))
    with pytest.raises(S.ImageInputError, match="unknown image format"):
        store.pull("x", str(junk), format="qcow2")
    with pytest.raises(S.ImageInputError, match="invalid image name"):
        store.pull("../x", str(junk))
    with pytest.raises(S.ImageInputError, match="malformed platform"):
        store.pull("x", layout(tmp_path), platform="linux//")
    assert not os.path.exists(store.root)


# --------------------------------------------------------------- verification

@pytest.mark.parametrize("tamper", [{"digest": 1}, {"size": 1}, {"diff_id": 1}],
                         ids=["digest", "size", "diff_id"])
def test_mismatch_leaves_nothing_behind(tmp_path, store, tamper):
    src = layout(tmp_path, tamper=tamper)
    with pytest.raises(S.LayerVerifyError) as err:
        store.pull("bad", src)
    msg = str(err.value)
    assert "layer 1" in msg and list(tamper)[0].replace("_", "") in msg.replace("_", "")
    assert store.image("bad") is None
    # the good first layer may stay (verified, reusable; or cancelled, as the layers are
    # unpacked side by side); the bad one and temps do not
    assert layer_dirs(store) in ([], [fx.sha(BASE)[7:]])
    assert store.layers() == ["sha256:" + d for d in layer_dirs(store)]


def test_incomplete_layer_is_redone(tmp_path, store):
    src = layout(tmp_path)
    store.pull("app", src)
    os.unlink(store.layer_meta_path(fx.sha(APP)))
    os.mkdir(os.path.join(store.layers_dir, ".tmp-leftover"))
    r = store.pull("app", src)
    assert r["layers_added"] == [fx.sha(APP)] and store.has_layer(fx.sha(APP))
    assert not os.path.exists(os.path.join(store.layers_dir, ".tmp-leftover"))


# --------------------------------------------------------------- sharing, removal, gc

def test_shared_base_layer_is_stored_once(tmp_path, store):
    store.pull("one", layout(tmp_path, [BASE, APP], name="l1"))
    r = store.pull("two", layout(tmp_path, [BASE, OTHER], name="l2"))
    assert r["layers_added"] == [fx.sha(OTHER)]
    assert len(layer_dirs(store)) == 3
    r = store.remove("one")
    assert r["changed"] and r["layers_removed"] == [fx.sha(APP)]
    assert store.has_layer(fx.sha(BASE))
    assert store.remove("two")["layers_removed"] == sorted([fx.sha(BASE), fx.sha(OTHER)])
    assert layer_dirs(store) == [] and store.images() == []
    assert store.remove("two") == {"changed": False, "before": None, "layers_removed": [], "users": []}


def test_remove_keep_layers_and_check_mode(tmp_path, store):
    store.pull("one", layout(tmp_path))
    r = store.remove("one", check_mode=True)
    assert r["changed"] and len(r["layers_removed"]) == 2 and store.image("one")
    r = store.remove("one", keep_layers=True)
    assert r["changed"] and r["layers_removed"] == [] and len(layer_dirs(store)) == 2
    assert sorted(store.gc(check_mode=True)) == sorted([fx.sha(BASE), fx.sha(APP)])
    assert len(store.gc()) == 2 and layer_dirs(store) == []


def test_containers_and_refs_keep_layers(tmp_path, store):
    store.pull("one", layout(tmp_path))
    os.makedirs(os.path.join(store.root, "containers", "c1"))
    with open(os.path.join(store.root, "containers", "c1", "image.json"), "w") as f:
        json.dump({"image": "one"}, f)
    os.makedirs(store.refs_dir)
    with open(os.path.join(store.refs_dir, "pin.json"), "w") as f:
        json.dump({"layers": [fx.sha(BASE)]}, f)
    with pytest.raises(S.ImageInUseError, match="used by container.*c1.*force"):
        store.remove("one")
    assert store.image("one") is not None
    r = store.remove("one", force=True)
    assert r["layers_removed"] == [] and r["users"] == ["c1"]
    assert len(layer_dirs(store)) == 2


def test_check_mode_pull_writes_nothing(tmp_path, store):
    r = store.pull("app", layout(tmp_path), check_mode=True)
    assert r["changed"] and len(r["layers_added"]) == 2 and r["before"] is None
    assert not os.path.exists(store.root)


# --------------------------------------------------------------- flatten and unpack

def overlay_snapshot(tmp_path, lowerdirs):
    """Mount the layers with overlayfs in a private mount namespace; snapshot the view."""
    for d in ("ovl-upper", "ovl-work", "ovl-mnt"):
        (tmp_path / d).mkdir()
    script = (
        "import subprocess, sys; sys.path.insert(0, %r)\n"
        "from tests.lib import oci_fixtures as fx\n"
        "subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o', %r, %r], check=True)\n"
        "print(repr(fx.snapshot(%r)))\n" % (
            os.getcwd(), "lowerdir=%s,upperdir=%s,workdir=%s" % (
                ":".join(lowerdirs), tmp_path / "ovl-upper", tmp_path / "ovl-work"),
            str(tmp_path / "ovl-mnt"), str(tmp_path / "ovl-mnt")))
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=os.getcwd(), check=False)
    assert proc.returncode == 0, proc.stderr
    return ast.literal_eval(proc.stdout)


def test_flatten_equals_overlay_mount_and_streamed_unpack(tmp_path, store):
    src = layout(tmp_path, [BASE, APP, make_tar([dir_("app"), whiteout("app/sh"),
                                                 dir_("etc"), file_("etc/os-release", b"v2")])])
    store.pull("app", src)
    flat = str(tmp_path / "flat")
    store.flatten("app", flat)
    streamed = str(tmp_path / "streamed")
    U.unpack(src, streamed)
    ours = fx.snapshot(flat)
    seen = overlay_snapshot(tmp_path, store.lowerdirs("app"))
    for snap in (ours, seen):
        snap.pop("")       # the root's own attributes come from the upper dir
    assert ours == seen
    other = fx.snapshot(streamed)
    other.pop("")
    assert other == ours
    assert "etc/motd" not in ours and "var/lib/old" not in ours and "app/sh" not in ours
    assert open(os.path.join(flat, "etc/os-release")).read() == "v2"
    assert not any(".tmp-" in n for n in os.listdir(str(tmp_path)))
    assert "ovl-mnt" in os.listdir(str(tmp_path)) and os.listdir(str(tmp_path / "ovl-mnt")) == []


def test_busybox_image_runs_from_the_flattened_tree(tmp_path):
    tree = fx.busybox_tree(str(tmp_path / "tree"))
    src = layout(tmp_path, [fx.tar_of_dir(tree)])
    out = str(tmp_path / "rootfs")
    r = U.unpack(src, out)
    assert r["layers"] and os.path.islink(os.path.join(out, "bin/sh"))
    assert oct(os.lstat(os.path.join(out, "tmp")).st_mode & 0o7777) == "0o1777"
    proc = subprocess.run(["chroot", out, "/bin/sh", "-c", "echo hello from $0"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.stdout.strip() == "hello from /bin/sh"


def test_unpack_destination_rules_and_failure_leaves_nothing(tmp_path):
    src = layout(tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(S.ImageInputError, match="not empty"):
        U.unpack(src, str(busy))
    bad = layout(tmp_path, tamper={"diff_id": 1}, name="bad")
    with pytest.raises(S.LayerVerifyError):
        U.unpack(bad, str(tmp_path / "out"))
    assert not os.path.exists(str(tmp_path / "out"))
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".out")]
    empty = tmp_path / "empty"
    empty.mkdir()
    seen = []
    U.unpack(src, str(empty), progress=lambda done, total: seen.append((done, total)))
    assert (empty / "app/run").exists() and seen[-1][0] == seen[-1][1] > 0


def test_unpack_through_a_store(tmp_path):
    src = layout(tmp_path)
    r = U.unpack(src, str(tmp_path / "out"), store=str(tmp_path / "st"), name="x")
    assert r["name"] == "x" and S.ImageStore(str(tmp_path / "st")).image("x")


@pytest.mark.skipif(not shutil.which("umoci"), reason="umoci (yardstick only) not installed")
def test_parity_with_umoci(tmp_path):
    tree = fx.busybox_tree(str(tmp_path / "tree"))
    layers = [fx.tar_of_dir(tree), APP,
              make_tar([dir_("var"), dir_("var/lib"), whiteout("var/lib/new"),
                        file_("bin/tool", b"v2", mode=0o4711, uid=12)])]
    src = layout(tmp_path, layers, tag="t")
    ours = str(tmp_path / "ours")
    U.unpack(src, ours)
    proc = subprocess.run(["umoci", "unpack", "--image", src + ":t", str(tmp_path / "bundle")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    theirs = fx.snapshot(str(tmp_path / "bundle/rootfs"), dir_mtimes=False)
    mine = fx.snapshot(ours, dir_mtimes=False)
    for snap in (mine, theirs):
        snap.pop("")
    assert mine == theirs


# --------------------------------------------------------------- the unpack subcommand

def run_cli(argv, tty=False):
    import argparse
    from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _unpack_cli

    class Err(io.StringIO):
        def isatty(self):
            return tty
    parser = argparse.ArgumentParser(prog="containerfs")
    _unpack_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["unpack"] + argv)
    err, out = Err(), io.StringIO()
    return args.func(args, stderr=err, stdout=out), out.getvalue(), err.getvalue()


def test_cli_unpack_exit_codes_and_progress(tmp_path):
    src = layout(tmp_path, tag="v1")
    rc, out, err = run_cli([src, str(tmp_path / "a"), "--tag", "v1"], tty=True)
    assert rc == 0 and "2 layers" in out and "100%" in err and "\r[" in err
    rc, out, err = run_cli([src, str(tmp_path / "b"), "--no-progress"], tty=True)
    assert rc == 0 and err == ""
    rc, out, err = run_cli([src, str(tmp_path / "c")])
    assert rc == 0 and err == ""                      # not a terminal: no bar
    rc, out, err = run_cli([src, str(tmp_path / "d"), "--tag", "nope"])
    assert rc == 2 and "no image tagged 'nope'" in err
    rc, out, err = run_cli([str(tmp_path / "missing"), str(tmp_path / "e")])
    assert rc == 2 and "does not exist" in err
    bad = layout(tmp_path, tamper={"digest": 0}, name="bad")
    rc, out, err = run_cli([bad, str(tmp_path / "f")])
    assert rc == 2 and "digest mismatch" in err and not os.path.exists(str(tmp_path / "f"))
    rc, out, err = run_cli([src, str(tmp_path / "no/such/parent/g")])
    assert rc == 2 and "parent" in err


def test_every_image_error_is_a_containerfs_error():
    """The modules and the CLI tell our errors from bugs by this one base class."""
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import errors as E
    for cls in (E.ImageError, E.ImageInputError, E.LayerVerifyError, E.UnsafeLayerError,
                E.ImageNotFoundError):
        assert issubclass(cls, ContainerfsError), cls


# --------------------------------------------------------------- GC against containers (issue 7)

def test_gc_between_a_reference_and_its_unpack_keeps_the_layer(tmp_path, store):
    """A container writes its reference, then asks for its layers; a collection that read
    the references just before must not take a layer the container was told is there."""
    import threading
    import time
    path = layout(tmp_path, layers=(OTHER,))
    store.pull("gone", path)
    store.remove("gone", keep_layers=True)  # the layer stays, referenced by nothing
    layer = S.resolve(path)["layers"][0]
    ref_written = threading.Event()
    gc_store = S.ImageStore(store.root)
    unused = gc_store.unused_layers

    def unused_then_wait(exclude=None):
        doomed = unused(exclude)
        ref_written.wait(10)
        time.sleep(0.5)  # the container's add_layer runs now
        return doomed

    gc_store.unused_layers = unused_then_wait
    gc = threading.Thread(target=gc_store.gc)
    gc.start()
    time.sleep(0.2)  # the collection has read the (empty) references
    os.makedirs(store.refs_dir)
    with open(os.path.join(store.refs_dir, "container-box.json"), "w") as f:
        json.dump({"layers": [layer["diff_id"]]}, f)
    ref_written.set()
    store.add_layer(path, "oci", layer["path"], layer["digest"], layer["size"], layer["diff_id"],
                    compression=layer["compression"], media_type=layer["media_type"])
    gc.join()
    assert store.has_layer(layer["diff_id"])


@pytest.mark.parametrize("text", ['{"layers": ["sha256:', '["not", "a", "mapping"]', '{"layers": 5}'])
def test_gc_stops_on_a_reference_it_cannot_parse(tmp_path, store, text):
    store.pull("one", layout(tmp_path))
    store.remove("one", keep_layers=True)
    os.makedirs(store.refs_dir)
    with open(os.path.join(store.refs_dir, "half.json"), "w") as f:
        f.write(text)
    with pytest.raises(S.ImageError, match="half.json.*garbage collection stopped"):
        store.gc()
    assert len(layer_dirs(store)) == 2


def test_temp_cleaner_unlinks_a_planted_symlink(tmp_path, store):
    store.pull("one", layout(tmp_path))
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "precious").write_text("keep")
    os.symlink(str(victim), os.path.join(store.layers_dir, ".tmp-x"))
    os.symlink(str(victim), os.path.join(store.layers_dir, "f" * 64))  # a "layer without metadata"
    store.gc()
    assert (victim / "sub" / "precious").read_text() == "keep"
    assert not os.path.lexists(os.path.join(store.layers_dir, ".tmp-x"))
    assert not os.path.lexists(os.path.join(store.layers_dir, "f" * 64))


def test_records_are_written_atomically_never_through_a_link(tmp_path, store):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.makedirs(store.images_dir)
    os.symlink(str(victim), store.record_path("one") + ".tmp-%d" % os.getpid())  # the old temp name
    store.pull("one", layout(tmp_path))
    assert victim.read_text() == "keep"
    assert not os.path.islink(store.record_path("one"))
    assert sorted(os.listdir(store.images_dir)) == ["one.json", "one.json.tmp-%d" % os.getpid()]
