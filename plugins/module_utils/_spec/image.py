# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images as a rootfs source: resolve ``rootfs.image`` before the spec is validated.

`with_image(raw, base_dir)` reads the image's metadata (never its layers' contents, but
for blobs whose digest or diff_id the source does not record, which are hashed once) and
returns (raw spec, resolved) where:

- `resolved` holds the ordered layers (digest, size, diff_id, compression, where the blob
  is) and the manifest and config digests. It is internal: `load` hands it to
  `_spec.load_spec(..., resolved_image=)`, which checks it and puts it at
  ``rootfs.image.resolved`` of the normalised spec (a spec that names that field itself
  is refused), so the plan is a pure function of the spec and every back-end verifies the
  same digests;
- the raw spec is a copy with the defaults of the image config the spec leaves out:
  process.args (Entrypoint + Cmd), process.env (Env), process.cwd (WorkingDir),
  process.user (a numeric User), and one persistent bind volume per image Volume (under
  the container's state dir).

Standard library only.
Private to the collection; may change without notice.
"""

import copy
import os
import re

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as _blob
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source as _image_source
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import DEFAULT_STATE_DIR
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import DEFAULT_ENV
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.rootfs import IMAGE_FIELDS
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import NAME_RE, USER_RE, bad_char, check_structure
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec


def with_image(raw, base_dir=None):
    """Return (raw spec, resolved image): `raw` with the image defaults filled in (a copy)
    and what the image holds, or (`raw`, None) when it names no image the validator would
    accept. Bad image input raises SpecError."""
    image = _image_of(raw)
    if image is None:
        return raw, None
    source = os.path.normpath(os.path.join(base_dir or os.getcwd(), image["source"]))
    try:
        meta = _image_source.resolve(source, format=image.get("format") or "auto",
                                     tag=image.get("tag"), digest=image.get("digest"),
                                     platform=image.get("platform"))
        layers = _complete_layers(meta)
    except ImageError as exc:
        raise SpecError([("rootfs.image.source", str(exc))])
    out = copy.deepcopy(raw)
    out["rootfs"]["image"] = dict(image, source=source)
    _apply_config_defaults(out, _config_of(meta))
    return out, {"format": meta["format"], "manifest_digest": meta.get("manifest_digest"),
                 "config_digest": meta.get("config_digest"), "rootfs": meta.get("rootfs"),
                 "layers": layers}


def _image_of(raw):
    """raw's rootfs.image when it is worth reading: a mapping of known fields whose texts
    are clean (else the validator reports it, without the image being opened)."""
    check_structure(raw)
    rootfs = raw.get("rootfs") if isinstance(raw, dict) else None
    image = rootfs.get("image") if isinstance(rootfs, dict) else None
    if not isinstance(image, dict) or set(image) - set(IMAGE_FIELDS):
        return None
    if not isinstance(image.get("source"), str) or not image["source"]:
        return None
    if not all(value is None or isinstance(value, str) and bad_char(value) is None
               for value in image.values()):
        return None
    return image


def _config_of(meta):
    """The image config's defaults, each of the type the spec wants (else left out): an
    image is input as hostile as a spec."""
    config = meta.get("config")
    config = config if isinstance(config, dict) else {}
    out = {}
    for key in ("Entrypoint", "Cmd", "Env"):
        value = config.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = value
    for key in ("WorkingDir", "User"):
        if isinstance(config.get(key), str):
            out[key] = config[key]
    volumes = config.get("Volumes")
    if isinstance(volumes, (dict, list)):
        out["Volumes"] = [v for v in volumes if isinstance(v, str)]
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
    if "user" not in process and USER_RE.fullmatch(user):
        process["user"] = user
    _image_volumes(raw, config.get("Volumes") or [])


def _image_volumes(raw, targets):
    """An image Volume becomes a persistent bind volume of a per-container directory,
    unless the spec mounts something there already."""
    volumes = raw.setdefault("volumes", [])
    mounts = raw.get("mounts") or []
    name, state = raw.get("name"), raw.get("state_dir", DEFAULT_STATE_DIR)
    # No path is built from a name or state dir the validator will refuse.
    if not (isinstance(volumes, list) and isinstance(mounts, list) and isinstance(name, str)
            and NAME_RE.fullmatch(name) and isinstance(state, str)):
        return
    taken = set(_target_of(item) for item in volumes + mounts)
    for target in sorted(targets):
        clean = "/" + "/".join(p for p in target.split("/") if p)
        if clean in taken or clean == "/" or ".." in clean.split("/"):
            continue
        dirname = re.sub(r"[^A-Za-z0-9._-]", "_", clean.strip("/"))
        volumes.append({"source": _layout.image_volume(state, name, dirname),
                        "target": clean, "create": True})


def _target_of(item):
    target = item.get("target") if isinstance(item, dict) else None
    return target.rstrip("/") if isinstance(target, str) else None


def load(raw, base_dir=None):
    """The whole spec loader every entry point uses: read the image a spec names, then
    validate and normalise (see _spec.load_spec)."""
    raw, resolved = with_image(raw, base_dir)
    return load_spec(raw, base_dir=base_dir, resolved_image=resolved)
