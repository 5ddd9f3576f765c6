#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: image
short_description: Import a container image into the host's layer store, or remove it
version_added: "0.1.0"
description:
  - Reads a container image that is already on the target (an OCI image layout, a
    C(docker save) archive, a root filesystem tarball or a directory) and unpacks its
    layers into a content-addressed store, C(<state_dir>/layers/sha256/<diff_id>/), where
    every container and every image that uses a layer shares one copy.
  - Layer directories are ready to serve as overlayfs lower directories (whiteouts are
    0:0 character devices, opaque directories carry C(trusted.overlay.opaque=y)).
  - Every blob is verified while it is read, in one pass - its digest and size against the
    manifest's descriptor and its uncompressed stream against the config's
    C(rootfs.diff_ids). A mismatch fails the task and leaves nothing behind.
  - Tar entries never write outside their layer - names with C(..) are refused, absolute
    names are re-rooted, and nothing is written through a symlink, hardlinked from outside,
    or whited-out outside its directory.
  - Needs no container runtime, no Go binary and no network; the image must already be on
    the target (copy it there, for example with M(ansible.builtin.copy)).
author:
  - fromscratch.containerfs developers (@fromscratch)
requirements:
  - Linux, as root on the target (layers keep their owners, device nodes and extended
    attributes such as C(trusted.overlay.opaque))
  - Python 3.9 or later on the target
  - The C(zstd) command or the Python C(zstandard) package for zstd-compressed layers
  - Optionally the Python C(isal) package, which inflates gzip layers in about half the CPU of zlib (used otherwise)
extends_documentation_fragment:
  - fromscratch.containerfs._dirs
  - fromscratch.containerfs._dirs.run_dir
  - fromscratch.containerfs._registry
  - fromscratch.containerfs._attributes
  - fromscratch.containerfs._attributes.actiongroup
options:
  name:
    description:
      - Name of the image in the store, for example V(debian:12) or V(web).
      - Letters, digits and the characters C(._:@+/-), at most 255 characters.
      - A container uses the stored image by this name with C(rootfs.image.name) in its spec;
        the source is not read again (and may be deleted).
      - Required unless O(prune=true) is given alone.
    type: str
  source:
    description:
      - Path on the target of the image to import, or
        C(docker://HOST[:PORT]/REPO[:TAG|@DIGEST]), pulled from that OCI registry (Docker
        Hub short names expand to C(docker.io/library/)); the tag resolves to a digest,
        which is recorded, and every blob is verified by digest and size while it streams.
      - An OCI image layout (a directory with C(oci-layout) and C(index.json), or a tar of
        one), a C(docker save) archive (a C(.tar) file or its unpacked directory, legacy
        or OCI form), a root filesystem tarball as C(docker export) writes it (plain,
        gzip, xz or zstd), or a root filesystem directory.
      - Required when O(state=present).
    type: path
  format:
    description:
      - The kind of O(source). V(auto) detects it.
      - V(dir) uses the directory as-is (it becomes the only lower directory; it is not
        copied and not checked for changes).
    type: str
    default: auto
    choices: [auto, dir, docker-archive, oci, tarball]
  tag:
    description:
      - Which image of a layout or archive to import, by tag
        (C(org.opencontainers.image.ref.name) of an OCI layout, C(RepoTags) of a
        C(docker save) archive). V(latest) matches V(docker.io/library/busybox:latest).
      - Needed when the source holds more than one image.
    type: str
  digest:
    description:
      - Which image of an OCI layout to import, by the digest of its manifest or index
        (at any nesting level), or of a C(docker save) archive by its config digest.
    type: str
  platform:
    description:
      - For multi-platform images, the platform to pick, as C(os/arch[/variant]), for
        example V(linux/arm64) or V(linux/arm/v7).
      - Defaults to the target's own platform.
    type: str
  state:
    description:
      - V(present) imports the image (layers already in the store are not read again).
      - V(absent) removes the image record and, unless O(keep_layers=true), those of its
        layers that no other image or container uses. An image already gone is no change.
      - V(absent) refuses to remove an image a container still uses (the task fails naming
        the containers) unless O(force=true).
    type: str
    default: present
    choices: [present, absent]
  state_dir:
    aliases: [store]
  flatten:
    description:
      - With O(state=present), also write the image as one flattened root filesystem
        directory at this path, whiteouts applied, for hosts without overlayfs. The tree
        equals what an overlay mount of the layers shows.
      - Rewritten when the image changes; a sidecar file C(<flatten>.image.json) records
        which layers it holds and which directory it made. An existing non-empty directory
        the sidecar does not name is never replaced (the task fails). Left alone by
        O(state=absent).
    type: path
  keep_layers:
    description:
      - With O(state=absent), keep the layers even when nothing uses them any more.
    type: bool
    default: false
  force:
    description:
      - With O(state=absent), remove the image even when containers still use it. Their
        references keep its layers; once the containers are removed, O(prune=true) removes
        the layers.
    type: bool
    default: false
  limits:
    description:
      - Budgets that stop a hostile image (a decompression bomb, millions of empty files,
        absurdly deep paths) before it fills the store's filesystem or runs for hours. They
        are checked while the layers stream; a layer that goes over one fails the task with
        a message naming the layer's digest, the limit and this option, and the import
        leaves nothing behind (the layers it added go too).
      - Only layers unpacked by this run count; a layer the store holds already is not read.
      - The defaults fit real images with a wide margin (see C(docs/image-hazards.md)); raise one
        for a trusted image that needs more.
      - A layer that is not a tar (random bytes, or a stream of zeros that never ends) is
        refused whatever the limits.
    type: dict
    suboptions:
      bytes:
        description:
          - The uncompressed size of the image's layers (their tar streams, file data and
            headers) in bytes. Default 10 GiB (V(10737418240)).
        type: int
      entries:
        description:
          - Tar entries (files, directories, links, whiteouts) of the image. Default V(2000000).
        type: int
      depth:
        description:
          - Path components of an entry's name (C(usr/bin/sh) is 3). Default V(255).
        type: int
      layer_bytes:
        description:
          - Like O(limits.bytes), for each layer alone. Default O(limits.bytes).
        type: int
      layer_entries:
        description:
          - Like O(limits.entries), for each layer alone. Default O(limits.entries).
        type: int
  prune:
    description:
      - Also remove every layer of the store that no image record and no container uses
        (for example the layers of an image removed while a container used it, or of a
        container's own source), after the import or removal asked for; listed in
        RV(pruned_layers).
      - Alone (no O(name)), with just O(state_dir), only prunes.
      - Also forgets the hashes the store keeps of image sources that changed or went.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reads the source's metadata only (a rootfs tarball is hashed, read-only, to
      know its layer); writes nothing.
  diff_mode:
    support: full
    details: Shows the image record before and after.
  idempotent:
    support: full
    details: A second run with the same source reports no change and reads no layer.
notes:
  - O(run_dir) is not used (it is taken so that C(module_defaults) for the group can set it
    for every module).
  - Run as root; layers keep their owners, setuid bits, device nodes and file
    capabilities. In a user namespace device nodes are skipped with a warning.
  - Directories a layer does not list are created with mode 0755, owned by root.
seealso:
  - name: OCI image layout
    description: The layout and layer formats this module reads.
    link: https://github.com/opencontainers/image-spec/blob/main/image-layout.md
"""

EXAMPLES = r"""
- name: Import busybox from an OCI layout (skopeo copy docker://busybox oci:/srv/busybox:1)
  fromscratch.containerfs.image:
    name: busybox
    source: /srv/busybox
    tag: "1"

- name: Import an image saved with docker save, for the target's platform
  fromscratch.containerfs.image:
    name: web:2.4
    source: /srv/images/web.tar
    tag: registry.example.com/web:2.4

- name: Import the arm64 variant of a multi-platform layout, pinned by digest
  fromscratch.containerfs.image:
    name: app
    source: /srv/app-oci
    digest: sha256:4b4b5fa9cf0fe8a7b2d9d2cb2a1d4c0b3f7e0b0f3d7b9a5c5c2a8c9e0d1f2a3b
    platform: linux/arm64

- name: Import a root filesystem tarball (docker export, debootstrap | tar)
  fromscratch.containerfs.image:
    name: debian-minbase
    source: /srv/rootfs.tar.zst

- name: Import a trusted image bigger than the default budget of 10 GiB
  fromscratch.containerfs.image:
    name: big
    source: /srv/images/big.oci
    limits:
      bytes: 32212254720      # 30 GiB

- name: Remove an image and the layers nothing else uses
  fromscratch.containerfs.image:
    name: debian-minbase
    state: absent

- name: Use the stored image by name in a container (the source is not read again)
  fromscratch.containerfs.container:
    name: web
    spec:
      rootfs:
        image:
          name: busybox

- name: Remove an image still used by a container, then every orphaned layer later
  fromscratch.containerfs.image:
    name: busybox
    state: absent
    force: true

- name: Remove the layers nothing uses
  fromscratch.containerfs.image:
    prune: true
"""

RETURN = r"""
image:
  description: The image record (empty when O(state=absent)).
  returned: always
  type: dict
  contains:
    name:
      description: The image name.
      type: str
    format:
      description: The source format that was read.
      type: str
      sample: oci
    layers:
      description: The layer diff_ids, bottom layer first.
      type: list
      elements: str
    manifest_digest:
      description: Digest of the chosen manifest (OCI sources).
      type: str
    config_digest:
      description: Digest of the image config.
      type: str
    platform:
      description: Platform of the image, C(os/arch[/variant]).
      type: str
      sample: linux/amd64
    config:
      description: Defaults of the image config - C(Entrypoint), C(Cmd), C(Env),
        C(WorkingDir), C(User), C(Volumes), C(ExposedPorts), C(Labels), C(StopSignal).
      type: dict
    rootfs:
      description: For O(format=dir), the directory used as-is.
      type: str
    source:
      description: Where the image was read from.
      type: dict
  sample:
    name: busybox
    format: oci
    layers: [sha256:65014c70e84b6817fac42bb201ec5c1ea460a8da246cac0e481f5c9a9491eac0]
    platform: linux/amd64
    config: {Cmd: [sh], Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
lowerdirs:
  description: The layer directories for overlayfs C(lowerdir=), top layer first.
  returned: when O(state=present) and not in check mode
  type: list
  elements: str
layers_added:
  description: diff_ids of the layers unpacked by this run (or that would be, in check mode).
  returned: when O(state=present)
  type: list
  elements: str
layers_removed:
  description: diff_ids of the layers removed by this run (or that would be).
  returned: when O(state=absent)
  type: list
  elements: str
users:
  description: Containers that use the image removed with O(force=true).
  returned: when O(state=absent)
  type: list
  elements: str
pruned_layers:
  description: diff_ids of the layers O(prune=true) removed (or would remove).
  returned: when O(prune=true)
  type: list
  elements: str
"""

import json
import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _module_args
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageError, ImageInputError,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import (
    IMAGE_ARGUMENT_SPEC, ImageStore,
)


def _diff(store, name, before, after):
    def text(record):
        ident = store.identity(record)
        return json.dumps(ident, indent=2, sort_keys=True) + "\n" if ident else ""
    return {"before": text(before), "after": text(after),
            "before_header": "image %s (before)" % name, "after_header": "image %s (after)" % name}


def run_module(module):
    p = module.params
    if p["name"] is None and not p["prune"]:
        raise ImageInputError("name is required (unless prune: true is given alone)")
    store = ImageStore(p["state_dir"])
    result = {"changed": False}
    if p["name"] is not None:
        result = _present(module, store) if p["state"] == "present" else _absent(module, store)
    if p["prune"]:
        pruned = store.prune(check_mode=module.check_mode)
        result["pruned_layers"] = pruned["layers"]
        result["changed"] |= bool(pruned["layers"] or pruned["blob_caches"])
    return result


def _present(module, store):
    p = module.params
    if not p["source"]:
        raise ImageInputError("state=present needs source (the image to import as %r)" % p["name"])
    r = store.pull(p["name"], p["source"], format=p["format"], tag=p["tag"],
                   digest=p["digest"], platform=p["platform"], check_mode=module.check_mode,
                   registry=_registry.options_from_params(p),
                   budget=_budget.Budget(p["limits"], hint="the option limits.%(name)s"))
    result = {"changed": r["changed"], "image": r["image"], "layers_added": r["layers_added"]}
    if not module.check_mode:
        result["lowerdirs"] = store.lowerdirs(p["name"])
    if p["flatten"]:
        result["changed"] |= _flatten(store, p["name"], p["flatten"], r["image"], module.check_mode)
    _report(module, store, r, r["image"], result)
    return result


def _absent(module, store):
    p = module.params
    r = store.remove(p["name"], keep_layers=p["keep_layers"], force=p["force"],
                     check_mode=module.check_mode)
    result = {"changed": r["changed"], "image": {}, "layers_removed": r["layers_removed"],
              "users": r["users"]}
    _report(module, store, r, None, result)
    return result


def _report(module, store, r, after, result):
    for warning in r.get("warnings") or []:
        module.warn(warning)
    if module._diff:
        result["diff"] = _diff(store, module.params["name"], r["before"], after)


def _flatten(store, name, dest, image, check_mode):
    """Keep `dest` the flattened tree of `image`; return True when it had to be (re)written.

    The sidecar `<dest>.image.json` marks a tree as ours: it records what was flattened and
    the directory (device and inode) it went to. A non-empty `dest` it does not name is
    never replaced."""
    dest = os.path.abspath(dest)
    sidecar = _layout.flatten_sidecar(dest)
    wanted = {"layers": image.get("layers"), "rootfs": image.get("rootfs")}
    recorded = _read_sidecar(sidecar)
    ours = recorded is not None and recorded.get("dir") == _dir_identity(dest)
    if ours and dict((k, recorded.get(k)) for k in wanted) == wanted:
        return False
    if not ours and _occupied(dest):
        raise ImageInputError("flatten: %s exists, is not empty and was not made by flatten "
                              "(%s does not name it); refusing to replace it: remove it or "
                              "flatten elsewhere" % (dest, sidecar))
    if check_mode:
        return True
    if ours:
        _hostfs.remove_tree(dest)
    store.flatten(name, dest)
    wanted["dir"] = _dir_identity(dest)
    _hostfs.write_file(sidecar, json.dumps(wanted, sort_keys=True) + "\n")
    return True


def _read_sidecar(path):
    try:
        data = json.loads(_hostfs.read_file(path))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _dir_identity(path):
    """[device, inode] of a real directory (never through a symlink), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino] if stat.S_ISDIR(st.st_mode) else None


def _occupied(path):
    """Something other than nothing or an empty real directory is at `path`."""
    if not os.path.lexists(path):
        return False
    return _dir_identity(path) is None or bool(os.listdir(path))


def main():
    spec = dict(IMAGE_ARGUMENT_SPEC, required_together=[("username", "password")])
    spec["argument_spec"] = dict(IMAGE_ARGUMENT_SPEC["argument_spec"], **_registry.REGISTRY_ARGUMENT_SPEC)
    spec["argument_spec"].update(_module_args.host_dirs(state_dir={"aliases": ["store"]}))
    module = AnsibleModule(supports_check_mode=True, **spec)
    try:
        module.exit_json(**run_module(module))
    except ImageError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="image store %s: %s: %s" % (
            module.params["state_dir"], exc.filename or "", exc.strerror or exc))


if __name__ == "__main__":
    main()
