#!/usr/bin/env python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the fixtures of the module targets in DEST; print what was built as JSON.

DEST/rootfs   a busybox rootfs from Debian's busybox-static (as tests/lib/make-busybox-rootfs)
DEST/layout   an OCI image layout (as tests/lib/oci_fixtures.py builds one) with two tags:
              "latest" (the rootfs as one layer) and "v2" (that layer and one more)
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile

MTIME = 1700000000
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())  # busybox's own
CONFIG = {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"], "Env": ["PATH=/bin"], "WorkingDir": "/"}


def busybox_rootfs(dest):
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.exit("busybox not found: apt-get install busybox-static")
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        os.makedirs(os.path.join(dest, d))
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    applets = subprocess.check_output([busybox, "--list"], universal_newlines=True).split()
    for applet in applets:
        if not os.path.lexists(os.path.join(dest, "bin", applet)):
            os.symlink("busybox", os.path.join(dest, "bin", applet))
    files = {"passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
             "group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
             "hostname": "image-hostname\n", "hosts": "127.0.0.1 localhost\n"}
    for name, text in files.items():
        with open(os.path.join(dest, "etc", name), "w") as f:
            f.write(text)
    os.chmod(dest, 0o755)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)


def tar_of_dir(root):
    """A deterministic tar of a directory: sorted names, numeric root owners, fixed mtimes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info(tar, root, "."))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                info = _info(tar, os.path.join(root, rel), rel)
                if info.isreg():
                    with open(os.path.join(root, rel), "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def _info(tar, path, arcname):
    info = tar.gettarinfo(path, arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = MTIME
    return info


def tar_of_files(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = MTIME, 0o755 if data is None else 0o644
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(layout, data, media_type):
    path = os.path.join(layout, "blobs", "sha256", digest(data)[7:])
    with open(path, "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": digest(data), "size": len(data)}


def add_image(layout, layers, tag):
    """Write the blobs of one image; return its tagged manifest descriptor."""
    descriptors = [put_blob(layout, gzip.compress(layer, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
                   for layer in layers]
    config = {"architecture": ARCH, "os": "linux", "config": CONFIG,
              "rootfs": {"type": "layers", "diff_ids": [digest(layer) for layer in layers]}}
    config_desc = put_blob(layout, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": descriptors}
    desc = put_blob(layout, json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    return desc


def oci_layout(layout, images):
    """An OCI layout holding `images` ({tag: [layer tar bytes]})."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    manifests = [add_image(layout, layers, tag) for tag, layers in sorted(images.items())]
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests}, f)


def main(dest):
    rootfs = os.path.join(dest, "rootfs")
    busybox_rootfs(rootfs)
    base = tar_of_dir(rootfs)
    top = tar_of_files({"srv": None, "srv/app": b"app\n"})
    oci_layout(os.path.join(dest, "layout"), {"latest": [base], "v2": [base, top]})
    print(json.dumps({"rootfs": rootfs, "layout": os.path.join(dest, "layout"),
                      "layers": {"latest": [digest(base)], "v2": [digest(base), digest(top)]}}))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
