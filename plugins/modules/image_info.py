#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: image_info
short_description: List the images of a host's image store, or one of them
version_added: "0.1.0"
description:
  - Lists the images imported into an image store by M(fromscratch.containerfs.image) (the
    records C(<state_dir>/images/*.json)), each with its digests, platform, size, layers and the
    containers that use it, as C(containers.podman.podman_image_info) does for podman.
  - A container uses an image when its reference in the store (C(containers/<name>/image.json),
    or C(refs/container-<name>-<key>.json) for a container whose state dir is elsewhere)
    names the image or lists exactly its layers.
  - Read-only; takes no lock.
author:
  - fromscratch.containerfs developers (@fromscratch)
requirements:
  - Linux (it reads the store's files only; no root needed where they are readable)
  - Python 3.9 or later on the target
extends_documentation_fragment:
  - fromscratch.containerfs._dirs
  - fromscratch.containerfs._dirs.run_dir
  - fromscratch.containerfs._attributes
  - fromscratch.containerfs._attributes.info_module
  - fromscratch.containerfs._attributes.actiongroup
options:
  name:
    description:
      - Names of the images to report. Without it, every image of the store.
      - A name the store does not hold is left out of RV(images) (no failure).
    type: list
    elements: str
  state_dir:
    aliases: [store]
notes:
  - O(run_dir) is not used (it is taken so that C(module_defaults) for the group can set it
    for every module).
seealso:
  - module: fromscratch.containerfs.image
"""

EXAMPLES = r"""
- name: List every stored image
  fromscratch.containerfs.image_info:
  register: stored

- name: Show which containers use busybox
  fromscratch.containerfs.image_info:
    name: busybox
  register: busybox

- ansible.builtin.debug:
    msg: "{{ busybox.images[0].containers | default([]) }}"
"""

RETURN = r"""
images:
  description: The images, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The image name in the store.
      type: str
      sample: busybox
    format:
      description: The source format it was imported from.
      type: str
      sample: oci
    digest:
      description: The manifest digest, else (for sources without a manifest) the config digest.
      type: str
    manifest_digest:
      description: Digest of the image manifest (OCI sources).
      type: str
    config_digest:
      description: Digest of the image config.
      type: str
    platform:
      description: Platform of the image, C(os/arch[/variant]).
      type: str
      sample: linux/amd64
    size:
      description: Bytes of the layer blobs, as imported (compressed when they were).
      type: int
    layers:
      description: The layers, bottom first.
      type: list
      elements: dict
      contains:
        diff_id:
          description: Digest of the uncompressed layer (its name in the store).
          type: str
        digest:
          description: Digest of the layer blob.
          type: str
        size:
          description: Size of the layer blob.
          type: int
        present:
          description: Whether the layer is in the store, complete and verified.
          type: bool
    containers:
      description: Names of the containers that use the image.
      type: list
      elements: str
    source:
      description: The path the image was imported from (it may be gone since).
      type: str
    config:
      description: Defaults of the image config (C(Entrypoint), C(Cmd), C(Env), ...).
      type: dict
    rootfs:
      description: For an image of format C(dir), the directory used as-is.
      type: str
  sample:
    - name: busybox
      format: oci
      digest: sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
      platform: linux/amd64
      size: 2152262
      layers:
        - diff_id: sha256:65014c70e84b6817fac42bb201ec5c1ea460a8da246cac0e481f5c9a9491eac0
          digest: sha256:9ad63333ebc97e32b987ae66aa3cff81300e4c2e6d2f2395cef8a3ae18b249fe
          size: 2152262
          present: true
      containers: [web]
      source: /srv/busybox
      config: {Cmd: [sh]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageError
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _module_args
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import ImageStore


def describe(store, name, record, references):
    """One image as image_info reports it."""
    layers = [_layer(store, diff_id) for diff_id in record.get("layers") or []]
    return {"name": name, "format": record.get("format"),
            "digest": record.get("manifest_digest") or record.get("config_digest"),
            "manifest_digest": record.get("manifest_digest"), "config_digest": record.get("config_digest"),
            "platform": record.get("platform"), "size": sum(layer["size"] or 0 for layer in layers),
            "layers": layers, "containers": store.users(name, record, references), "source": (record.get("source") or {}).get("path"),
            "config": record.get("config") or {}, "rootfs": record.get("rootfs")}


def _layer(store, diff_id):
    meta = store.layer(diff_id) if store.has_layer(diff_id) else None
    meta = meta if isinstance(meta, dict) else {}
    return {"diff_id": diff_id, "digest": meta.get("digest"), "size": meta.get("size"),
            "present": bool(meta)}


def list_images(store, names=None):
    wanted = sorted(set(names)) if names else store.images()
    references = store.container_references()
    images = []
    for name in wanted:
        record = store.image(name)
        if isinstance(record, dict):
            images.append(describe(store, name, record, references))
    return images


def main():
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="list", elements="str"),
                           **_module_args.host_dirs(state_dir={"aliases": ["store"]})),
        supports_check_mode=True)
    store = ImageStore(module.params["state_dir"])
    try:
        module.exit_json(changed=False, images=list_images(store, module.params["name"]))
    except ImageError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="image store %s: %s: %s" % (store.root, exc.filename or "", exc.strerror or exc))


if __name__ == "__main__":
    main()
