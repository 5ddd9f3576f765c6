"""Build crafted image sources at test time: layer tars, OCI layouts, docker archives.

Everything is made with Python's tarfile in a tmp dir; nothing is committed. Entries are
small tuples so a hostile layer reads like its description:

    layer = make_tar([
        dir_("etc"),
        symlink("evil", "/tmp/outside"),
        file_("evil/x", b"boom"),
    ])
"""
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import stat
import subprocess
import tarfile

MTIME = 1700000000


def file_(name, data=b"", mode=0o644, uid=0, gid=0, mtime=MTIME, xattrs=None):
    return ("file", name, dict(data=data, mode=mode, uid=uid, gid=gid, mtime=mtime,
                               xattrs=xattrs))


def dir_(name, mode=0o755, uid=0, gid=0, mtime=MTIME, xattrs=None):
    return ("dir", name, dict(mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs))


def symlink(name, target, uid=0, gid=0, mtime=MTIME):
    return ("symlink", name, dict(target=target, uid=uid, gid=gid, mtime=mtime))


def hardlink(name, target, mtime=MTIME):
    return ("hardlink", name, dict(target=target, mtime=mtime))


def chardev(name, major, minor, mode=0o666, mtime=MTIME):
    return ("char", name, dict(major=major, minor=minor, mode=mode, mtime=mtime))


def fifo(name, mode=0o644, mtime=MTIME):
    return ("fifo", name, dict(mode=mode, mtime=mtime))


def whiteout(name, mtime=MTIME):
    """`name` is the path being deleted; the entry is `dir/.wh.base`."""
    d, _s, base = name.rpartition("/")
    return file_((d + "/" if d else "") + ".wh." + base, mtime=mtime)


def opaque(dirname, mtime=MTIME):
    return file_((dirname.rstrip("/") + "/" if dirname else "") + ".wh..wh..opq", mtime=mtime)


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for kind, name, o in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = o.get("mtime", MTIME)
            ti.uid = o.get("uid", 0)
            ti.gid = o.get("gid", 0)
            ti.mode = o.get("mode", 0o644)
            data = None
            if kind == "file":
                data = o["data"]
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = o["target"]
                ti.mode = 0o777
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = o["target"]
            elif kind == "char":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = o["major"], o["minor"]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            if o.get("xattrs"):
                ti.pax_headers = dict(("SCHILY.xattr." + k, v) for k, v in o["xattrs"].items())
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tar_of_dir(path):
    """A deterministic tar of a directory (sorted, numeric owners, xattrs kept)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk(path):
            full = os.path.join(path, rel) if rel else path
            ti = tar.gettarinfo(full, arcname=rel or ".")
            ti.uname = ti.gname = ""
            try:
                names = os.listxattr(full, follow_symlinks=False)
            except OSError:
                names = []
            if names:
                ti.pax_headers = dict(
                    ("SCHILY.xattr." + n, os.getxattr(full, n, follow_symlinks=False).decode(
                        "utf-8", "surrogateescape")) for n in names)
            if ti.isreg():
                with open(full, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
    return buf.getvalue()


def _walk(path, rel=""):
    yield rel
    full = os.path.join(path, rel) if rel else path
    if os.path.isdir(full) and not os.path.islink(full):
        for n in sorted(os.listdir(full)):
            yield from _walk(path, (rel + "/" + n) if rel else n)


def compress(data, kind):
    if kind in (None, "none"):
        return data
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "xz":
        return lzma.compress(data)
    if kind == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE,
                              check=True).stdout
    raise ValueError(kind)


MEDIA = {None: "application/vnd.oci.image.layer.v1.tar",
         "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
         "xz": "application/vnd.oci.image.layer.v1.tar"}


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(layout, data):
    d = sha(data)
    path = os.path.join(layout, "blobs", "sha256", d[7:])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": d, "size": len(data)}


def make_config(diff_ids, arch="amd64", os_="linux", variant=None, config=None):
    cfg = {"architecture": arch, "os": os_,
           "config": config if config is not None else {
               "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"],
               "Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/",
               "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if variant:
        cfg["variant"] = variant
    return cfg


def add_image(layout, layers, compression="gzip", arch="amd64", variant=None, config=None,
              tamper=None):
    """Write the blobs of one image into `layout`; return its manifest descriptor.

    `layers` are uncompressed tar bytes. `tamper` may alter the built pieces:
    {"diff_id": i} (wrong diff_id for layer i), {"size": i}, {"digest": i}.
    """
    tamper = tamper or {}
    diff_ids = [sha(t) for t in layers]
    descs = []
    for i, t in enumerate(layers):
        blob = compress(t, compression)
        desc = dict(_put_blob(layout, blob), mediaType=MEDIA[compression])
        if tamper.get("size") == i:
            desc["size"] += 1
        if tamper.get("digest") == i:
            desc["digest"] = sha(b"something else")
            os.rename(os.path.join(layout, "blobs/sha256", sha(blob)[7:]),
                      os.path.join(layout, "blobs/sha256", desc["digest"][7:]))
        descs.append(desc)
    if "diff_id" in tamper:
        diff_ids[tamper["diff_id"]] = sha(b"not this layer")
    cfg = json.dumps(make_config(diff_ids, arch=arch, variant=variant, config=config),
                     sort_keys=True).encode()
    cdesc = dict(_put_blob(layout, cfg), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": cdesc, "layers": descs}, sort_keys=True).encode()
    mdesc = dict(_put_blob(layout, manifest),
                 mediaType="application/vnd.oci.image.manifest.v1+json")
    mdesc["platform"] = {"os": "linux", "architecture": arch}
    if variant:
        mdesc["platform"]["variant"] = variant
    return mdesc


def write_index(layout, descriptors):
    os.makedirs(layout, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": descriptors}, f)


def tagged(desc, tag):
    d = dict(desc)
    d["annotations"] = {"org.opencontainers.image.ref.name": tag}
    return d


def nested_index(layout, manifests, tag=None):
    """An index blob holding `manifests` (multi-platform); returns its descriptor."""
    data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": manifests}, sort_keys=True).encode()
    desc = dict(_put_blob(layout, data), mediaType="application/vnd.oci.image.index.v1+json")
    return tagged(desc, tag) if tag else desc


def oci_layout(layout, layers, tag="latest", compression="gzip", **kw):
    """A one-image OCI layout; returns the manifest descriptor."""
    desc = add_image(layout, layers, compression=compression, **kw)
    write_index(layout, [tagged(desc, tag)] if tag else [desc])
    return desc


def docker_archive(path, layers, repotag="test:latest", legacy=True, as_tar=True):
    """What `docker save` writes: legacy `<id>/layer.tar` form or the OCI-inside form."""
    root = path + ".d" if as_tar else path
    os.makedirs(root)
    diff_ids = [sha(t) for t in layers]
    cfg = json.dumps(make_config(diff_ids), sort_keys=True).encode()
    cfg_hex = sha(cfg)[7:]
    paths = []
    if legacy:
        with open(os.path.join(root, cfg_hex + ".json"), "wb") as f:
            f.write(cfg)
        seen = {}
        for i, t in enumerate(layers):
            h = sha(t + b"id%d" % i)[7:]
            os.makedirs(os.path.join(root, h))
            if sha(t) in seen:   # docker links duplicate layers
                os.symlink("../%s/layer.tar" % seen[sha(t)], os.path.join(root, h, "layer.tar"))
            else:
                with open(os.path.join(root, h, "layer.tar"), "wb") as f:
                    f.write(t)
                seen[sha(t)] = h
            paths.append(h + "/layer.tar")
        config_rel = cfg_hex + ".json"
    else:
        descs = [dict(_put_blob(root, t), mediaType="application/vnd.oci.image.layer.v1.tar")
                 for t in layers]
        _put_blob(root, cfg)
        paths = ["blobs/sha256/" + d["digest"][7:] for d in descs]
        config_rel = "blobs/sha256/" + cfg_hex
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump([{"Config": config_rel, "RepoTags": [repotag], "Layers": paths}], f)
    if as_tar:
        with tarfile.open(path, "w") as tar:
            for n in sorted(os.listdir(root)):
                tar.add(os.path.join(root, n), arcname=n)
        shutil.rmtree(root)
    return path


def busybox_tree(root, applets=("sh", "ls", "cat", "echo", "true")):
    """A tiny rootfs: /bin/busybox (Debian's busybox-static) and a few applet links."""
    os.makedirs(os.path.join(root, "bin"))
    for d in ("etc", "tmp", "usr/bin", "var/empty"):
        os.makedirs(os.path.join(root, d))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for a in applets:
        os.symlink("busybox", os.path.join(root, "bin", a))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    return root


SNAPSHOT_SKIP_XATTRS = ("trusted.overlay.", "security.selinux")


def snapshot(root, mtimes=True, dir_mtimes=True, skip_xattrs=SNAPSHOT_SKIP_XATTRS):
    """Everything a tree holds, as comparable data: rel -> tuple.

    skip_xattrs: prefixes of xattr names left out (pass () to compare the overlay ones,
    e.g. the opaque marker of an unpacked layer)."""
    out = {}
    for rel in _walk(root):
        full = os.path.join(root, rel) if rel else root
        st = os.lstat(full)
        mode = st.st_mode
        try:
            xattrs = sorted((n, os.getxattr(full, n, follow_symlinks=False))
                            for n in os.listxattr(full, follow_symlinks=False)
                            if not n.startswith(tuple(skip_xattrs)))
        except OSError:
            xattrs = []
        if stat.S_ISREG(mode):
            with open(full, "rb") as f:
                extra = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(mode):
            extra = os.readlink(full)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
        else:
            extra = None
        t = st.st_mtime_ns if mtimes and (dir_mtimes or not stat.S_ISDIR(mode)) else None
        if stat.S_ISLNK(mode):
            t = None if not mtimes else t
        perm = None if stat.S_ISLNK(mode) else stat.S_IMODE(mode)
        out[rel] = (stat.S_IFMT(mode), perm, st.st_uid, st.st_gid, extra, tuple(xattrs), t)
    return out


def listing(root):
    return sorted(_walk(root))


def hardlink_groups(root):
    """Sets of paths (2 or more) that are one inode: what snapshot() cannot see."""
    inodes = {}
    for rel in _walk(root):
        st = os.lstat(os.path.join(root, rel) if rel else root)
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    return sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1)


def tar_members(data):
    """The entries of an uncompressed tar as (kind, name, options) tuples, for make_tar."""
    kinds = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
             tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
             tarfile.FIFOTYPE: "fifo"}
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for ti in tar.getmembers():
            o = dict(mode=ti.mode, uid=ti.uid, gid=ti.gid, mtime=ti.mtime,
                     xattrs=dict((k[13:], v) for k, v in ti.pax_headers.items()
                                 if k.startswith("SCHILY.xattr.")) or None)
            kind = kinds[ti.type]
            if kind == "file":
                o["data"] = tar.extractfile(ti).read()
            elif kind in ("symlink", "hardlink"):
                o["target"] = ti.linkname
            elif kind == "char":
                o["major"], o["minor"] = ti.devmajor, ti.devminor
            out.append((kind, ti.name, o))
    return out
