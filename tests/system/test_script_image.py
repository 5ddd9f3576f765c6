"""rootfs.image through the rendered script, for real (issue 4 point 8; runtimes.md 5.4, 8.19-29).

The script verifies each layer blob (digest, then diff_id) with sha256sum, unpacks it with
GNU tar into `<store>/layers/sha256/<diff_id hex>/` and turns OCI whiteouts into what
overlayfs reads. The image module (ImageStore.pull) does the same in Python. Here:

- the two unpacked trees are equal entry by entry (types, modes, owners, sizes, link
  targets, hardlinks, xattrs; not mtimes), for every source format and compression;
- the container sees the image: files, whiteouts, opaque dirs, Cmd/Env/WorkingDir and
  image Volumes;
- a corrupted blob or a wrong diff_id stops the script, naming the layer, with nothing
  half-unpacked left in the store;
- hostile layers never touch the host (a watched dir is compared before and after), and
  the script refuses them clearly or keeps them inside the layer;
- a second run verifies nothing again, and containers of one image share its layer dirs.

Every script run is wrapped in `unshare --mount --propagation private` (conftest).
"""
import json
import os
import re
import shutil
import stat
import tarfile

import pytest

from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import (chardev, dir_, fifo, file_, hardlink, make_tar, opaque,
                                    symlink, whiteout)

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import ImageStore
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import LAYER_METADATA_KEYS

APPLETS = ("sh", "ls", "cat", "echo", "true", "pwd", "env", "stat", "grep", "touch", "test",
           "readlink", "head")

# security.capability v2 (VFS_CAP_REVISION_2, 20 bytes): cap_net_bind_service permitted.
CAP_NET_BIND = "\x01\x00\x00\x02" + "\x00\x04\x00\x00" + "\x00" * 12


def base_tree(root):
    """The bottom layer's tree: a busybox rootfs plus what the top layer deletes/hides."""
    fx.busybox_tree(root, applets=APPLETS)
    os.chmod(root, 0o755)
    for d in ("usr/lib", "opt", "srv"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for rel, text in (("usr/lib/lower-only", "lower\n"), ("opt/old", "old\n"),
                      ("etc/motd", "lower motd\n")):
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    return root


def crafted_entries(whiteouts=True):
    """The top layer: every kind of entry a layer may hold (runtimes.md 5.4)."""
    entries = [
        dir_("etc"),
        file_("etc/motd", b"upper motd\n", mode=0o640, uid=1234, gid=1234),
        dir_("srv", mode=0o2775, uid=1234, gid=1234),
        # setuid survives the chown (8.27), setgid too
        file_("srv/suid", b"#!/bin/sh\necho suid\n", mode=0o4755, uid=1234, gid=1234),
        file_("srv/sgid", b"sgid", mode=0o2711, uid=0, gid=1234),
        hardlink("srv/suid-link", "srv/suid"),
        file_("srv/xattr", b"x", xattrs={"user.color": "blue", "user.empty": ""}),
        file_("srv/cap", b"cap", mode=0o755, xattrs={"security.capability": CAP_NET_BIND}),
        # a layer may not mark a dir opaque by an xattr of its own: both paths drop it
        dir_("srv/xdir", mode=0o750, uid=1234, gid=4321,
             xattrs={"user.dir": "d", "trusted.overlay.opaque": "y"}),
        file_("srv/xdir/big", b"0123456789abcdef" * 8192, uid=1234),
        symlink("srv/abs-link", "/etc/motd"),
        symlink("srv/rel-link", "../etc/motd"),
        symlink("srv/dangling", "/nonexistent/x", uid=1234, gid=1234),
        symlink("srv/up-link", "../../../../.."),
        fifo("srv/fifo", mode=0o600),
        chardev("srv/null", 1, 3, mode=0o666),
        chardev("srv/tty0", 4, 0, mode=0o620),
        dir_("srv/empty", mode=0o700),
        dir_("usr"),
        opaque("usr"),                 # hides the lower usr/*
        dir_("usr/local"),
        file_("usr/local/only", b"upper\n"),
        dir_("opt"),
        file_("opt/new", b"new\n"),
        opaque("opt"),                 # placed after its siblings (8.23)
    ]
    if whiteouts:
        entries.insert(1, whiteout("etc/passwd"))
    return entries


def layers(tmp_path):
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    return [base, make_tar(crafted_entries())]


def tar_dir(src, dest):
    with tarfile.open(dest, "w") as tar:
        for n in sorted(os.listdir(src)):
            tar.add(os.path.join(src, n), arcname=n)
    return dest


def rootfs_tarball(tmp_path, compression):
    """One tar holding the base tree and the crafted entries (no duplicate paths, and no
    whiteout of a path of the same layer: that case has its own test)."""
    base = fx.tar_members(fx.tar_of_dir(base_tree(str(tmp_path / "base-tree"))))
    names = set(n.strip("./") for _k, n, _o in base)
    merged = base + [e for e in crafted_entries(whiteouts=False) if e[1] not in names]
    path = str(tmp_path / ("rootfs.tar" + {"gzip": ".gz", "xz": ".xz", "zstd": ".zst"}[compression]))
    with open(path, "wb") as f:
        f.write(fx.compress(make_tar(merged), compression))
    return path


def make_source(tmp_path, kind):
    """An image source of the given kind holding layers(); returns its path."""
    if kind.startswith("tarball-"):
        return rootfs_tarball(tmp_path, kind.split("-", 1)[1])
    ls = layers(tmp_path)
    if kind.startswith("oci-dir-"):
        comp = kind.split("-", 2)[2]
        path = str(tmp_path / "layout")
        fx.oci_layout(path, ls, compression=None if comp == "none" else comp)
        return path
    if kind == "oci-tar":
        layout = str(tmp_path / "layout")
        fx.oci_layout(layout, ls, compression="gzip")
        return tar_dir(layout, str(tmp_path / "layout.tar"))
    if kind.startswith("docker-"):
        legacy = "legacy" in kind
        as_tar = not kind.endswith("-dir")
        return fx.docker_archive(str(tmp_path / ("docker.tar" if as_tar else "docker")), ls,
                                 legacy=legacy, as_tar=as_tar)
    raise ValueError(kind)


def image_container(make_container, tmp_path, source, name="img", store="store", **fields):
    image = {"source": source, "store": str(tmp_path / store)}
    image.update(fields.pop("image", {}))
    return make_container(name=name, hostname=name, rootfs={"image": image}, **fields)


def layer_dirs(store):
    d = os.path.join(store, "layers", "sha256")
    return sorted(n for n in os.listdir(d) if len(n) == 64) if os.path.isdir(d) else []


def store_leftovers(store):
    """Half-unpacked or temporary entries anywhere in the store."""
    out = []
    for base, dirs, files in os.walk(store):
        out += [os.path.join(base, n) for n in dirs + files if ".tmp" in n]
        dirs[:] = [d for d in dirs if ".tmp" not in d]
    return out


META_KEYS = ("diff_id", "digest", "size", "compression", "media_type")


def assert_same_layers(store_a, store_b, diff_ids):
    for diff_id in diff_ids:
        a = os.path.join(store_a, "layers/sha256", diff_id[7:])
        b = os.path.join(store_b, "layers/sha256", diff_id[7:])
        snap_a = fx.snapshot(a, mtimes=False, skip_xattrs=("security.selinux",))
        snap_b = fx.snapshot(b, mtimes=False, skip_xattrs=("security.selinux",))
        only_a = sorted(set(snap_a) - set(snap_b))
        only_b = sorted(set(snap_b) - set(snap_a))
        differ = sorted((k, snap_a[k], snap_b[k]) for k in set(snap_a) & set(snap_b)
                        if snap_a[k] != snap_b[k])
        assert not (only_a or only_b or differ), (
            "layer %s: script (A) and module (B) trees differ\nonly in A: %s\nonly in B: %s\n"
            "different (path, A, B):\n%s" % (diff_id, only_a, only_b,
                                             "\n".join(repr(d) for d in differ)))
        assert fx.hardlink_groups(a) == fx.hardlink_groups(b), diff_id
        with open(a + ".json") as f:
            meta_a = json.load(f)
        with open(b + ".json") as f:
            meta_b = json.load(f)
        assert dict((k, meta_a.get(k)) for k in META_KEYS) == \
            dict((k, meta_b.get(k)) for k in META_KEYS), diff_id
        assert_one_metadata_schema(meta_a, meta_b)


def assert_one_metadata_schema(script_meta, store_meta):
    """The script and the store write one schema (_layout.layer_metadata): same keys, same
    types, a UTC time in "created"."""
    assert sorted(script_meta) == sorted(store_meta) == sorted(LAYER_METADATA_KEYS), (script_meta, store_meta)
    types = dict((k, type(v).__name__) for k, v in script_meta.items())
    assert types == dict((k, type(v).__name__) for k, v in store_meta.items()), (script_meta, store_meta)
    for meta in (script_meta, store_meta):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created"]), meta


FORMATS = ["oci-dir-gzip", "oci-dir-zstd", "oci-dir-none", "oci-tar", "docker-legacy",
           "docker-legacy-dir", "docker-oci", "tarball-gzip", "tarball-xz", "tarball-zstd"]


# --------------------------------------------------------------------------------------
# 1. The tree the script unpacks equals the module's
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FORMATS)
def test_script_tree_equals_module_tree(make_container, tmp_path, kind):
    source = make_source(tmp_path, kind)
    container = image_container(make_container, tmp_path, source, store="store-a")
    result = container.run("true")
    assert result.rc == 0, result

    pulled = ImageStore(str(tmp_path / "store-b")).pull("img", source)
    diff_ids = pulled["image"]["layers"]
    assert layer_dirs(str(tmp_path / "store-a")) == sorted(d[7:] for d in diff_ids)
    assert_same_layers(str(tmp_path / "store-a"), str(tmp_path / "store-b"), diff_ids)

    top = os.path.join(str(tmp_path / "store-a"), "layers/sha256", diff_ids[-1][7:])
    # the properties the comparison relies on, checked once against the crafted layer
    st = os.lstat(os.path.join(top, "srv/suid"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 1234, 1234)
    assert os.path.samestat(st, os.lstat(os.path.join(top, "srv/suid-link")))
    assert os.getxattr(os.path.join(top, "srv/xattr"), "user.color") == b"blue"
    assert os.getxattr(os.path.join(top, "srv/cap"), "security.capability") == \
        CAP_NET_BIND.encode("latin-1")
    assert "trusted.overlay.opaque" not in os.listxattr(os.path.join(top, "srv/xdir"))
    assert stat.S_ISFIFO(os.lstat(os.path.join(top, "srv/fifo")).st_mode)
    assert os.lstat(os.path.join(top, "srv/null")).st_rdev == os.makedev(1, 3)
    assert os.readlink(os.path.join(top, "srv/up-link")) == "../../../../.."
    for d in ("usr", "opt"):
        assert os.getxattr(os.path.join(top, d), "trusted.overlay.opaque") == b"y", d
    if not kind.startswith("tarball-"):
        wh = os.lstat(os.path.join(top, "etc/passwd"))
        assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0 and stat.S_IMODE(wh.st_mode) == 0
    assert not [n for n in fx.listing(top) if os.path.basename(n).startswith(".wh.")]


# --------------------------------------------------------------------------------------
# 2. The container sees the image
# --------------------------------------------------------------------------------------

CMD = ("echo cmd-ran; echo cwd=$(pwd); echo greeting=$GREETING; echo usr=$(ls -A /usr);"
       " echo opt=$(ls -A /opt); test -e /etc/passwd || echo passwd-gone;"
       " cat /etc/motd; cat /usr/local/only; grep -E ' /data | /var/cache/app ' /proc/self/mountinfo;"
       " echo from-container > /data/f; echo cache > /var/cache/app/c")


def test_container_sees_the_image(make_container, tmp_path):
    layout = str(tmp_path / "layout")
    config = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": [CMD],
              "Env": ["PATH=/bin:/usr/bin", "GREETING=hello image"],
              "WorkingDir": "/srv", "Volumes": {"/data": {}, "/var/cache/app": {}}}
    fx.oci_layout(layout, layers(tmp_path), config=config)
    container = image_container(make_container, tmp_path, layout, name="seer")
    result = container.run()      # no command: the image's Entrypoint + Cmd
    assert result.rc == 0, result
    lines = result.stdout.splitlines()
    assert lines[:8] == ["cmd-ran", "cwd=/srv", "greeting=hello image", "usr=local",
                         "opt=new", "passwd-gone", "upper motd", "upper"], result
    mounts = dict((l.split()[4], l.split()[3]) for l in lines[8:])
    vols = os.path.join(container.state_dir, "containers", "seer", "volumes")
    assert set(mounts) == {"/data", "/var/cache/app"}, result
    for target, name in (("/data", "data"), ("/var/cache/app", "var_cache_app")):
        assert mounts[target].endswith(os.path.join(vols, name)) or \
            os.path.join(vols, name).endswith(mounts[target]), (target, mounts)
    with open(os.path.join(vols, "data", "f")) as f:
        assert f.read() == "from-container\n"
    with open(os.path.join(vols, "var_cache_app", "c")) as f:
        assert f.read() == "cache\n"
    # a command given on the command line replaces Entrypoint + Cmd
    assert container.run("cat", "/data/f").stdout == "from-container\n"


# --------------------------------------------------------------------------------------
# 3. Verification
# --------------------------------------------------------------------------------------

def flip_byte(path):
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0x01]))
    assert os.path.getsize(path) == size


@pytest.mark.parametrize("compression", ["gzip", None])
def test_corrupted_blob_stops_the_script(make_container, tmp_path, compression):
    layout = str(tmp_path / "layout")
    ls = layers(tmp_path)
    desc = fx.oci_layout(layout, ls, compression=compression)
    container = image_container(make_container, tmp_path, layout)
    with open(os.path.join(layout, "blobs/sha256", desc["digest"][7:])) as f:
        manifest = json.load(f)
    top = manifest["layers"][1]["digest"]
    flip_byte(os.path.join(layout, "blobs/sha256", top[7:]))
    result = container.run("true")
    assert result.rc != 0, result
    assert "blobs/sha256/%s" % top[7:] in result.stderr and "digest" in result.stderr, result
    assert "expected %s" % top in result.stderr, result
    store = str(tmp_path / "store")
    assert store_leftovers(store) == []
    assert fx.sha(ls[1])[7:] not in layer_dirs(store)
    assert not os.path.exists(os.path.join(container.run_dir, container.name, "rootfs", "srv"))


def test_wrong_diff_id_stops_the_script(make_container, tmp_path):
    layout = str(tmp_path / "layout")
    ls = layers(tmp_path)
    fx.oci_layout(layout, ls, tamper={"diff_id": 1})
    container = image_container(make_container, tmp_path, layout)
    result = container.run("true")
    assert result.rc != 0, result
    wrong = fx.sha(b"not this layer")
    assert "expected diff_id %s" % wrong in result.stderr, result
    assert fx.sha(ls[1]) in result.stderr, result     # what the content really is
    store = str(tmp_path / "store")
    assert store_leftovers(store) == []
    assert layer_dirs(store) == [fx.sha(ls[0])[7:]]    # the good bottom layer stays


def test_a_layer_over_its_byte_budget_stops_the_script(make_container, tmp_path):
    """rootfs.image.limits: the script reads a layer's content at most its budget far, so
    a bigger one (a decompression bomb) fails its diff_id check before anything is written;
    a raised limit lets it in."""
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    limit = len(base) + 4096
    bomb = make_tar([file_("zeros", b"\0" * (limit + (1 << 20)))])
    desc = fx.oci_layout(layout, [base, bomb])
    container = image_container(make_container, tmp_path, layout,
                                image={"limits": {"layer_bytes": limit}})
    result = container.run("true")
    assert result.rc != 0, result
    with open(os.path.join(layout, "blobs/sha256", desc["digest"][7:])) as f:
        top = json.load(f)["layers"][1]["digest"]
    assert "layer %s" % top in result.stderr, result
    assert "more than %d bytes" % limit in result.stderr and "limits.layer_bytes" in result.stderr, result
    store = str(tmp_path / "store")
    assert store_leftovers(store) == []
    assert layer_dirs(store) == []    # the base layer this run added goes too (nothing uses it)
    container = image_container(make_container, tmp_path, layout, name="img2",
                                image={"limits": {"layer_bytes": 2 * len(bomb)}})
    assert container.run("true").rc == 0
    assert sorted(layer_dirs(store)) == sorted([fx.sha(base)[7:], fx.sha(bomb)[7:]])


def many_files(count, prefix="many"):
    return make_tar([file_("%s/f%d" % (prefix, i), b"") for i in range(count)])


def deep_file(depth):
    return make_tar([file_("/".join("d%d" % i for i in range(depth - 1)) + "/leaf", b"x")])


def budget_refusal(make_container, tmp_path, top, limits, before_run=None):
    """Run a container of [base, top] under `limits` (before_run(base) first): the script
    must fail. Returns (result, the base's bytes, the top layer's digest, the store)."""
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    desc = fx.oci_layout(layout, [base, top])
    container = image_container(make_container, tmp_path, layout, image={"limits": limits})
    if before_run:
        before_run(base)
    result = container.run("true")
    assert result.rc != 0, result
    with open(os.path.join(layout, "blobs/sha256", desc["digest"][7:])) as f:
        digest = json.load(f)["layers"][1]["digest"]
    return result, base, digest, str(tmp_path / "store")


def base_entries(tmp_path):
    return len(fx.tar_members(fx.tar_of_dir(base_tree(str(tmp_path / "count-tree")))))


@pytest.mark.parametrize("limit, scope", [("layer_entries", "layer"), ("entries", "image")])
def test_a_layer_over_its_entry_budget_stops_the_script(make_container, tmp_path, limit, scope):
    """The entries of a layer (limits.layer_entries) and of the image (limits.entries) are
    counted as tar lists them while it unpacks: over the limit, tar stops, the layer names
    its digest, the limit and the field to raise, and nothing of the set-up stays."""
    count = base_entries(tmp_path) + 10
    result, _base, digest, store = budget_refusal(make_container, tmp_path, many_files(3 * count),
                                                  {limit: count})
    what = "the %s has more than %d entries" % (scope, count)
    assert "layer %s" % digest in result.stderr and what in result.stderr, result
    assert "rootfs.image.limits.%s" % limit in result.stderr and "(limit %s)" % limit in result.stderr, result
    assert store_leftovers(store) == [] and layer_dirs(store) == []


def test_an_entry_deeper_than_the_depth_budget_stops_the_script(make_container, tmp_path):
    result, _base, digest, store = budget_refusal(make_container, tmp_path, deep_file(12), {"depth": 11})
    assert "layer %s" % digest in result.stderr, result
    assert "is 12 levels deep, more than 11" in result.stderr and "limits.depth" in result.stderr, result
    assert "d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/leaf" in result.stderr, result
    assert store_leftovers(store) == [] and layer_dirs(store) == []


def test_the_image_byte_budget_holds_for_the_sum_of_the_layers(make_container, tmp_path):
    """limits.bytes: each layer fits on its own, not both: the second one stops the script
    and the first, added by this run and used by nothing else, goes too."""
    base_size = len(fx.tar_of_dir(base_tree(str(tmp_path / "size-tree"))))
    top = make_tar([file_("blob", b"z" * (256 * 1024))])
    result, _base, digest, store = budget_refusal(make_container, tmp_path, top,
                                                  {"bytes": base_size + 128 * 1024})
    assert "layer %s" % digest in result.stderr, result
    assert "the image unpacks more than %d bytes" % (base_size + 128 * 1024) in result.stderr, result
    assert "limits.bytes" in result.stderr
    assert store_leftovers(store) == [] and layer_dirs(store) == []


def test_a_layer_the_store_names_stays_when_the_budget_stops_the_script(make_container, tmp_path):
    """A layer this run added that an image record names (another pull took it meanwhile)
    is not undone: only what nothing uses goes."""
    def another_record_names(base):
        images = tmp_path / "store" / "images"
        images.mkdir(parents=True)
        (images / "other.json").write_text(json.dumps({"layers": [fx.sha(base)]}))
    result, base, _digest, store = budget_refusal(make_container, tmp_path, many_files(200),
                                                  {"layer_entries": 150}, before_run=another_record_names)
    assert "the layer has more than 150 entries" in result.stderr, result
    assert layer_dirs(store) == [fx.sha(base)[7:]] and store_leftovers(store) == []


@pytest.mark.parametrize("content, needle", [
    (b"\0" * (3 << 20), "not a tar layer (a stream of zeros?)"),
    (bytes(range(256)) * 4096, "tar cannot unpack it (not a tar"),
])
def test_a_layer_that_is_not_a_tar_stops_the_script(make_container, tmp_path, content, needle):
    """A gzip of zeros is "end of archive" and padding to GNU tar, which unpacks nothing
    and succeeds; the script compares what tar read with the content's length. Other
    bytes tar refuses. The digest is named; the verified base layer stays (not a budget)."""
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    desc = fx.oci_layout(layout, [base, content])
    with open(os.path.join(layout, "blobs/sha256", desc["digest"][7:])) as f:
        digest = json.load(f)["layers"][1]["digest"]
    result = image_container(make_container, tmp_path, layout).run("true")
    assert result.rc != 0 and needle in result.stderr and "layer %s" % digest in result.stderr, result
    store = str(tmp_path / "store")
    assert store_leftovers(store) == [] and layer_dirs(store) == [fx.sha(base)[7:]]


def test_each_layer_blob_is_read_once(make_container, tmp_path):
    """What is checked is what is unpacked: the script reads a blob once (digest, diff_id,
    budget and unpack from one stream), so a source that changes between two reads cannot
    slip unverified content in. Here the top blob is a fifo that gives its bytes once: a
    second read would wait forever."""
    import threading
    layout = str(tmp_path / "layout")
    ls = layers(tmp_path)
    desc = fx.oci_layout(layout, ls)
    container = image_container(make_container, tmp_path, layout)
    with open(os.path.join(layout, "blobs/sha256", desc["digest"][7:])) as f:
        top = json.load(f)["layers"][1]["digest"]
    path = os.path.join(layout, "blobs/sha256", top[7:])
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    os.mkfifo(path)

    def feed_once():
        with open(path, "wb") as fifo:
            fifo.write(data)
    feeder = threading.Thread(target=feed_once, daemon=True)
    feeder.start()
    result = container.run("cat", "/usr/local/only", timeout=30)
    assert result.rc == 0 and result.stdout == "upper\n", result
    feeder.join(5)
    assert not feeder.is_alive()


# --------------------------------------------------------------------------------------
# 4. Hostile layers through the script's tar path (runtimes.md 5.4, 8.19-25)
# --------------------------------------------------------------------------------------

def watched_host_dir(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("secret\n")
    (host / ".wh.keep").write_text("a host file whose name starts with .wh.\n")
    (host / "sub").mkdir()
    return str(host)


def host_snapshot(host):
    return fx.snapshot(host, mtimes=True, skip_xattrs=())


def hazards(host, rel_host):
    """name -> (entries, must_refuse). rel_host: the host dir relative to a layer's
    temporary dir (<store>/layers/sha256/.tmp-<hex>-PID)."""
    return {
        "dotdot": ([dir_("a"), file_(rel_host + "/dotdot", b"boom"),
                    file_("a/../../../../../host/dotdot2", b"boom")], True),
        "absolute-name": ([file_(host + "/abs", b"boom"), dir_(host + "/absdir")], False),
        "symlink-parent-file": ([symlink("evil", host), file_("evil/x", b"boom")], True),
        "symlink-parent-dir": ([symlink("evil", host), dir_("evil/d")], True),
        "symlink-relative-parent": ([symlink("evil", rel_host), file_("evil/x", b"boom")], True),
        "symlink-then-chmod-dir": ([symlink("evil", host + "/sub"), dir_("evil", mode=0o777)],
                                   False),
        "hardlink-dotdot": ([hardlink("h", rel_host + "/passwd")], True),
        "hardlink-absolute": ([hardlink("h", host + "/passwd")], True),
        "hardlink-through-symlink": ([symlink("evil", host), hardlink("h", "evil/passwd")], True),
        "root-is-symlink": ([symlink("./", host), file_("z", b"boom")], True),
        "root-is-symlink-dot": ([symlink(".", host), file_("z", b"boom")], True),
        "whiteout-empty-name": ([dir_("d"), file_("d/.wh.")], True),
        "whiteout-dotdot": ([dir_("d"), file_("d/.wh..")], True),
        "whiteout-dotdotdot": ([dir_("d"), file_("d/.wh...")], True),
        # find | while read splits a name with a newline into two paths: the second one is
        # an absolute host path the whiteout code then acts on.
        "newline-whiteout-mknod": ([file_("a\n" + host + "/.wh.victim")], False),
        "newline-opaque-setfattr": ([file_("b\n" + host + "/sub/.wh..wh..opq")], False),
        "newline-whiteout-rm": ([file_("c\n" + host + "/.wh..wh.keep")], False),
    }


HAZARDS = sorted(hazards("/h", "../h"))


@pytest.mark.parametrize("case", HAZARDS)
def test_hostile_layer_never_touches_the_host(make_container, tmp_path, case):
    host = watched_host_dir(tmp_path)
    store = str(tmp_path / "store")
    # <store>/layers/sha256/.tmp-<hex>-PID -> ../../../../host
    rel_host = "../../../../host"
    entries, must_refuse = hazards(host, rel_host)[case]
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    fx.oci_layout(layout, [base, make_tar(entries)])
    before = host_snapshot(host)
    container = image_container(make_container, tmp_path, layout)
    result = container.run("sh", "-c", "ls -A /; ls -A /d 2>/dev/null; true")
    assert host_snapshot(host) == before, ("the host dir changed", result)
    assert store_leftovers(store) == [], result
    if must_refuse:
        assert result.rc != 0, ("the script accepted a layer it must refuse", result)
        assert "layer" in result.stderr and "error" in result.stderr, result
        assert len(layer_dirs(store)) == 1, "the refused layer is in the store"
    elif result.rc == 0:
        top = os.path.join(store, "layers/sha256", layer_dirs(store)[0])
        for rel in fx.listing(os.path.join(store, "layers/sha256")):
            full = os.path.join(store, "layers/sha256", rel)
            assert os.path.realpath(os.path.dirname(full)).startswith(
                os.path.realpath(store)), rel
        assert top
    else:
        assert "error" in result.stderr and "layer" in result.stderr, result


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox-ash"])
def test_whiteout_of_a_path_of_the_same_layer_keeps_it(make_container, tmp_path, shell):
    """image-spec: a whiteout deletes from lower layers only (runtimes.md 8.24); the image
    module keeps the path. The script must agree with it."""
    layout = str(tmp_path / "layout")
    tree = base_tree(str(tmp_path / "base-tree"))
    os.makedirs(os.path.join(tree, "opt/d"))
    with open(os.path.join(tree, "opt/d/lower"), "w") as f:
        f.write("lower\n")
    base = fx.tar_of_dir(tree)
    top = make_tar([dir_("etc"), file_("etc/same", b"same layer\n"), whiteout("etc/same"),
                    dir_("opt"), whiteout("opt/d"), dir_("opt/d"), file_("opt/d/f", b"f\n")])
    fx.oci_layout(layout, [base, top])
    container = image_container(make_container, tmp_path, layout, store="store-a")
    result = container.run("sh", "-c", "cat /etc/same /opt/d/f; ls -A /opt; ls -A /opt/d",
                           shell=shell)
    pulled = ImageStore(str(tmp_path / "store-b")).pull("img", layout)
    assert result.rc == 0, result
    # the file stays; the dir stays and hides the lower opt/d/lower (opaque)
    assert result.stdout == "same layer\nf\nd\nold\nf\n", result
    assert_same_layers(str(tmp_path / "store-a"), str(tmp_path / "store-b"),
                       pulled["image"]["layers"])


def test_aufs_metadata_whiteouts_are_not_content(make_container, tmp_path):
    """.wh..wh.plnk / .wh..wh.aufs are aufs bookkeeping: the module skips them; the script
    must not turn them into whiteout devices named .wh.plnk."""
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    top = make_tar([dir_(".wh..wh.plnk"), file_(".wh..wh.aufs"), dir_("etc"),
                    file_("etc/hostname", b"x\n")])
    fx.oci_layout(layout, [base, top])
    container = image_container(make_container, tmp_path, layout, store="store-a")
    result = container.run("true")
    pulled = ImageStore(str(tmp_path / "store-b")).pull("img", layout)
    assert result.rc == 0, result
    assert_same_layers(str(tmp_path / "store-a"), str(tmp_path / "store-b"),
                       pulled["image"]["layers"])


def test_layer_may_not_set_user_overlay_xattrs(make_container, tmp_path):
    """user.overlay.* would steer an overlay mounted with userxattr: the module drops them
    (with a warning); the script must not set them either."""
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    top = make_tar([dir_("opt", xattrs={"user.overlay.opaque": "y", "user.keep": "1"})])
    fx.oci_layout(layout, [base, top])
    container = image_container(make_container, tmp_path, layout, store="store-a")
    result = container.run("true")
    assert result.rc == 0, result
    pulled = ImageStore(str(tmp_path / "store-b")).pull("img", layout)
    assert_same_layers(str(tmp_path / "store-a"), str(tmp_path / "store-b"),
                       pulled["image"]["layers"])


# --------------------------------------------------------------------------------------
# 5. Idempotence and sharing
# --------------------------------------------------------------------------------------

def overlay_lowerdirs(result_stdout):
    for line in result_stdout.splitlines():
        f = line.split()
        if len(f) > 4 and f[4] == "/" and " - overlay " in line:
            opts = line.split(" - ", 1)[1].split()[2]
            return [o for o in opts.split(",") if o.startswith("lowerdir=")][0][9:].split(":")
    raise AssertionError("no overlay root in:\n" + result_stdout)


def test_second_run_does_not_verify_again_and_containers_share_layers(make_container, tmp_path):
    layout = str(tmp_path / "layout")
    ls = layers(tmp_path)
    fx.oci_layout(layout, ls, compression="zstd")
    store = str(tmp_path / "store")
    one = image_container(make_container, tmp_path, layout, name="one")
    first = one.run("cat", "/proc/self/mountinfo")
    assert first.rc == 0, first
    assert first.stderr.count("verifying and unpacking layer") == 2, first
    inodes = dict((d, os.lstat(os.path.join(store, "layers/sha256", d)).st_ino)
                  for d in layer_dirs(store))
    again = one.run("cat", "/proc/self/mountinfo")
    assert again.rc == 0 and "verifying" not in again.stderr, again
    two = image_container(make_container, tmp_path, layout, name="two")
    other = two.run("cat", "/proc/self/mountinfo")
    assert other.rc == 0 and "verifying" not in other.stderr, other
    # one copy on disk, used by both
    assert layer_dirs(store) == sorted(fx.sha(t)[7:] for t in ls)
    assert dict((d, os.lstat(os.path.join(store, "layers/sha256", d)).st_ino)
                for d in layer_dirs(store)) == inodes
    want = [os.path.join(store, "layers/sha256", fx.sha(t)[7:]) for t in reversed(ls)]
    assert overlay_lowerdirs(first.stdout) == want
    assert overlay_lowerdirs(other.stdout) == want
    # each container lists its layers for the store's garbage collection, in the store's
    # refs/ (their state dir is not the store)
    refs = sorted(os.listdir(os.path.join(store, "refs")))
    assert [r.split("-")[1] for r in refs] == ["one", "two"], refs
    for ref in refs:
        with open(os.path.join(store, "refs", ref)) as f:
            assert json.load(f)["layers"] == [fx.sha(t) for t in ls]
    assert ImageStore(store).referenced_layers() >= set(fx.sha(t) for t in ls)
    # the module pulling the same image into that store reads nothing again
    pulled = ImageStore(store).pull("img", layout)
    assert pulled["layers_added"] == [], pulled


def test_interrupted_unpack_is_redone(make_container, tmp_path):
    """A layer dir without its metadata (an interrupted run) is not trusted."""
    layout = str(tmp_path / "layout")
    ls = layers(tmp_path)
    fx.oci_layout(layout, ls)
    container = image_container(make_container, tmp_path, layout)
    store = str(tmp_path / "store")
    assert container.run("true").rc == 0
    top = os.path.join(store, "layers/sha256", fx.sha(ls[1])[7:])
    os.unlink(top + ".json")
    shutil.rmtree(os.path.join(top, "srv"))
    result = container.run("cat", "/srv/suid")
    assert result.rc == 0 and result.stdout == "#!/bin/sh\necho suid\n", result
    assert result.stderr.count("verifying and unpacking layer") == 1, result
    assert store_leftovers(store) == []


def test_file_then_directory_conflict_agrees_with_the_module(make_container, tmp_path):
    """runtimes.md 8.26: a non-directory in the middle of a path, in the same layer, and a
    lower file that this layer turns into a directory. The script and the store must end
    up with the same tree, or both refuse the layer."""
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(base_tree(str(tmp_path / "base-tree")))
    top = make_tar([dir_("etc"), dir_("etc/motd"), file_("etc/motd/inner", b"inner\n"),
                    file_("conf", b"file first\n"), dir_("conf"), file_("conf/f", b"f\n")])
    fx.oci_layout(layout, [base, top])
    container = image_container(make_container, tmp_path, layout, store="store-a")
    result = container.run("sh", "-c", "cat /etc/motd/inner /conf/f")
    try:
        pulled = ImageStore(str(tmp_path / "store-b")).pull("img", layout)
    except Exception as exc:   # the store refused it: so must the script
        assert result.rc != 0 and "error" in result.stderr, (exc, result)
        assert store_leftovers(str(tmp_path / "store-a")) == []
        return
    assert result.rc == 0 and result.stdout == "inner\nf\n", result
    assert_same_layers(str(tmp_path / "store-a"), str(tmp_path / "store-b"),
                       pulled["image"]["layers"])


@pytest.mark.parametrize("where", ["store", "layers", "lock"])
def test_planted_symlink_in_the_store_is_refused(make_container, tmp_path, where):
    """A link planted at the store, its layers dir or its lock file: the run stops and the
    link's target stays as it was."""
    layout = str(tmp_path / "layout")
    ls = layers(tmp_path)
    fx.oci_layout(layout, ls)
    container = image_container(make_container, tmp_path, layout)
    assert container.run("true").rc == 0
    store = str(tmp_path / "store")
    os.unlink(os.path.join(store, "layers/sha256", fx.sha(ls[1])[7:]) + ".json")  # unpack again
    target = watched_host_dir(tmp_path)
    path = {"store": store, "layers": os.path.join(store, "layers", "sha256"),
            "lock": os.path.join(store, ".lock")}[where]
    if os.path.isdir(path):
        shutil.move(path, str(tmp_path / "moved"))
    elif os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)
    before = host_snapshot(target)
    result = container.run("echo", "ran")
    assert result.rc != 0 and "ran" not in result.stdout, result
    assert "is a symlink; refusing" in result.stderr, result
    assert host_snapshot(target) == before
