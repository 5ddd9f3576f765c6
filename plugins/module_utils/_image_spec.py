# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images as a rootfs source: resolve ``rootfs.image`` before the spec is validated.

`with_image(raw, base_dir)` reads the image's metadata (never its layers' contents, but
for blobs whose digest or diff_id the source does not record, which are hashed once) and
returns a raw spec where:

- ``rootfs.image.resolved`` holds the ordered layers (digest, size, diff_id,
  compression, where the blob is) and the manifest and config digests, so the plan is a
  pure function of the spec and every back-end verifies the same digests;
- the image config gives the defaults the spec leaves out: process.args (Entrypoint +
  Cmd), process.env (Env), process.cwd (WorkingDir), process.user (a numeric User), and
  one persistent bind volume per image Volume (under the container's state dir).

Private to the collection; may change without notice. Standard library only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import os
import re

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _blob
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _image_source
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image_errors import ImageError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import (
    DEFAULT_ENV, DEFAULT_STATE_DIR, SpecError)

IMAGE_FIELDS = ("source", "format", "tag", "digest", "platform", "store", "resolved")


def with_image(raw, base_dir=None):
    """Return `raw` with its image resolved and the image defaults filled in (a copy), or
    `raw` itself when it names no image. Bad image input raises SpecError."""
    if not isinstance(raw, dict) or not isinstance(raw.get("rootfs"), dict):
        return raw
    image = raw["rootfs"].get("image")
    if not isinstance(image, dict) or image.get("resolved"):
        return raw
    source = image.get("source")
    if not isinstance(source, str) or not source:
        return raw  # the spec validator reports it
    source = os.path.normpath(os.path.join(base_dir or os.getcwd(), source))
    try:
        meta = _image_source.resolve(source, format=image.get("format") or "auto",
                                     tag=image.get("tag"), digest=image.get("digest"),
                                     platform=image.get("platform"))
        layers = _complete_layers(meta)
    except ImageError as exc:
        raise SpecError([("rootfs.image.source", str(exc))])
    out = copy.deepcopy(raw)
    out["rootfs"]["image"] = dict(image, source=source, resolved={
        "format": meta["format"],
        "manifest_digest": meta.get("manifest_digest"),
        "config_digest": meta.get("config_digest"),
        "rootfs": meta.get("rootfs"),
        "layers": layers,
    })
    _apply_config_defaults(out, meta.get("config") or {})
    return out


def _complete_layers(meta):
    """Every layer with digest, size, diff_id and compression known (hashing a blob the
    source does not describe), bottom first."""
    if meta.get("rootfs"):
        return []
    layers = []
    with _image_source.layer_opener(meta) as open_blob:
        for index, layer in enumerate(meta["layers"]):
            layer = dict(layer)
            if not (layer.get("digest") and layer.get("diff_id") and layer.get("size") is not None
                    and layer.get("compression") is not None):
                with open_blob(layer) as f:
                    with _blob.BlobStream(f, name="layer %d" % index) as stream:
                        for _chunk in stream:
                            pass
                        layer.update(digest=layer.get("digest") or stream.digest, size=stream.size,
                                     diff_id=layer.get("diff_id") or stream.diff_id,
                                     compression=stream.compression or "")
            layers.append({key: layer.get(key) for key in
                           ("digest", "size", "diff_id", "compression", "path", "media_type")})
    return layers


def _apply_config_defaults(raw, config):
    process = raw.setdefault("process", {})
    if not isinstance(process, dict):
        return
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if "args" not in process and args:
        process["args"] = args
    env = list(config.get("Env") or [])
    if "env" not in process and env:
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_ENV[0])
        process["env"] = env
    if "cwd" not in process and config.get("WorkingDir"):
        process["cwd"] = config["WorkingDir"]
    user = config.get("User") or ""
    if "user" not in process and re.match(r"^\d+(:\d+)?$", user):
        process["user"] = user
    _image_volumes(raw, config.get("Volumes") or [])


def _image_volumes(raw, targets):
    """An image Volume becomes a persistent bind volume of a per-container directory,
    unless the spec mounts something there already."""
    volumes = raw.setdefault("volumes", [])
    if not isinstance(volumes, list):
        return
    taken = set(v.get("target", "").rstrip("/") for v in volumes if isinstance(v, dict))
    taken.update(m.get("target", "").rstrip("/") for m in raw.get("mounts") or [] if isinstance(m, dict))
    state = raw.get("state_dir", DEFAULT_STATE_DIR)
    for target in sorted(targets):
        clean = "/" + "/".join(p for p in target.split("/") if p)
        if clean in taken or clean == "/" or ".." in clean.split("/"):
            continue
        name = re.sub(r"[^A-Za-z0-9._-]", "_", clean.strip("/"))
        volumes.append({"source": os.path.join(state, "containers", str(raw.get("name")),
                                               "volumes", name),
                        "target": clean, "create": True})


def load(raw, base_dir=None):
    """The whole spec loader every entry point uses: read the image a spec names, then
    validate and normalise (see _spec.load_spec)."""
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import load_spec
    return load_spec(with_image(raw, base_dir), base_dir=base_dir)
