# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images as a rootfs source: resolve ``rootfs.image`` before the spec is validated.

`with_image(raw, base_dir)` reads the image's metadata (never its layers' contents, but
for blobs whose digest or diff_id the source does not record, which are hashed once: the
image store keeps those hashes, with the size, mtime, ctime and inode of the file they
came from, and an unchanged file is not read again) and returns (raw spec, resolved).
With ``rootfs.image.name`` the image is the store's record of that name and its verified
layers: no source is read (nor needed).

A registry source (``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]``, with the registry fields
of _spec.registry) is resolved to a manifest digest, which the plan pins: every back-end
fetches the layer blobs by their digests and verifies them. The pull policy says when
the registry is asked:

- ``pull: missing`` (the default): an image the store holds for this exact reference
  (and platform), with all its layers, is used as recorded: no network at all, so a
  no-op converge never reaches the registry;
- ``pull: always``: the tag is resolved again; a tag moved to another digest gives
  another plan.

When the registry is asked, ``fetch_layers=True`` (the container module, out of check
mode: the Python back-end, which uses the layers next) pulls the image into the store
(ImageStore.pull: layers already stored are never downloaded again; the record is named
after the reference, as ``containerfs pull`` names it); ``fetch_layers=False`` (render,
plan, validate, check mode) reads only the manifest and config and writes nothing.

In every case:

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
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source as _image_source
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source_registry as _source_registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _image_store
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import DEFAULT_STATE_DIR
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import DEFAULT_ENV
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.platforms import (
    host_platform, parse_platform, platform_rank,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as _fields
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import registry as _spec_registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.rootfs import (
    IMAGE_FIELDS, IMAGE_FORMATS, IMAGE_NAME_RE, LAYER_FIELDS, SOURCE_ONLY_FIELDS,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import NAME_RE, USER_RE, bad_char, check_structure
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec


def with_image(raw, base_dir=None, fetch_layers=False):
    """Return (raw spec, resolved image): `raw` with the image defaults filled in (a copy)
    and what the image holds, or (`raw`, None) when it names no image the validator would
    accept. Bad image input raises SpecError. `fetch_layers`: a registry image that has to
    be asked for is pulled into the store (see above)."""
    image = _image_of(raw)
    if image is None:
        return raw, None
    store = _image_store.ImageStore(_store_of(raw, image))
    if image.get("name") is not None:
        meta, layers = _stored_image(store, image["name"])
        out_image = dict(image)
    elif _registry.is_reference(image["source"]):
        meta, layers = _registry_image(store, image, fetch_layers)
        out_image = dict(image, source=meta["source"])
    else:
        source = os.path.normpath(os.path.join(base_dir or os.getcwd(), image["source"]))
        try:
            meta = _image_source.resolve(source, format=image.get("format") or "auto",
                                         tag=image.get("tag"), digest=image.get("digest"),
                                         platform=image.get("platform"))
            layers = _complete_layers(meta, store, budget_of(image))
        except ImageError as exc:
            raise SpecError([("rootfs.image.source", str(exc))])
        out_image = dict(image, source=source)
    out = copy.deepcopy(raw)
    out["rootfs"]["image"] = out_image
    _apply_config_defaults(out, _config_of(meta))
    resolved = {"format": meta["format"], "manifest_digest": meta.get("manifest_digest"),
                "config_digest": meta.get("config_digest"), "rootfs": meta.get("rootfs"),
                "layers": layers}
    if image.get("name") is not None:
        resolved["source"] = meta["source"]
    return out, resolved


def _registry_image(store, image, fetch_layers):
    """(metadata like resolve's, layers) of a registry image, by the pull policy: the
    store's record of this reference, else the registry's answer (pulled into the store
    with `fetch_layers`). Registry errors name the reference and the HTTP status."""
    try:
        ref = _registry.parse_reference(image["source"], tag=image.get("tag"), digest=image.get("digest"))
    except ImageError as exc:
        raise SpecError([("rootfs.image.source", str(exc))])
    try:
        platform = image.get("platform")
        record = None
        if (image.get("pull") or _spec_registry.DEFAULT_PULL) == "missing":
            record = _recorded_pull(store, ref, platform)
        if record is None and fetch_layers:
            record = store.pull(ref.image_name, str(ref), platform=platform,
                                registry=_spec_registry.options_of(image), budget=budget_of(image))["image"]
        if record is not None:
            meta = {"manifest_digest": record.get("manifest_digest"), "config_digest": record.get("config_digest"),
                    "config": record.get("config"), "rootfs": None,
                    "layers": [dict(blob, diff_id=diff_id)
                               for blob, diff_id in zip(record["blobs"], record["layers"])]}
        else:
            meta = _image_source.resolve(str(ref), platform=platform, registry=_spec_registry.options_of(image))
    except ImageError as exc:
        raise SpecError([("rootfs.image.source", str(exc))])
    except OSError as exc:
        raise SpecError([("rootfs.image.source", "%s: the image store %s: %s" % (ref, store.root, exc))])
    meta.update(format=_source_registry.FORMAT, source=str(ref))
    layers = [_registry_layer(layer) for layer in meta["layers"]]
    return meta, layers


def budget_of(image):
    """The _budget.Budget of rootfs.image (its `limits`). Limits the validator will refuse
    count as the defaults here: it reports them, with every other error at once."""
    hint = _fields.IMAGE_LIMIT_FIELD
    try:
        return _budget.Budget(image.get("limits"), hint=hint)
    except ImageError:
        return _budget.Budget(hint=hint)


def _registry_layer(layer):
    """A layer of a registry image as the plan takes it, the same whether it came from
    the registry's manifest or from the store's record (so both give one plan)."""
    algo, hexpart = layer["digest"].split(":", 1)
    return {"digest": layer["digest"], "size": layer.get("size"), "diff_id": layer["diff_id"],
            "compression": layer.get("compression") or "", "path": "blobs/%s/%s" % (algo, hexpart),
            "media_type": layer.get("media_type")}


def _recorded_pull(store, ref, platform):
    """The store's record of an image pulled from `ref` (that very reference, after
    normalisation) for the platform asked (default this host's), whose layers are all
    present and whose blobs are recorded; else None. The record named after the
    reference is looked at first."""
    wanted = parse_platform(platform) if platform else host_platform()
    names = [ref.image_name] + [n for n in store.images() if n != ref.image_name]
    for name in names:
        try:
            record = store.image(name)
        except (ImageError, OSError):
            continue
        if _is_pull_of(record, ref) and _fits_platform(record.get("platform"), wanted, bool(platform)) \
                and all(store.has_layer(d) for d in record.get("layers") or []):
            return record
    return None


def _is_pull_of(record, ref):
    if not isinstance(record, dict) or record.get("format") != _source_registry.FORMAT:
        return False
    blobs, layers = record.get("blobs"), record.get("layers")
    if not (isinstance(blobs, list) and isinstance(layers, list) and len(blobs) == len(layers)
            and all(isinstance(b, dict) and isinstance(b.get("digest"), str)
                    and _registry.DIGEST_RE.fullmatch(b["digest"]) for b in blobs)):
        return False       # pulled before records kept their blobs: ask the registry
    try:
        return _registry.parse_reference((record.get("source") or {}).get("path")) == ref
    except ImageError:
        return False


def _fits_platform(recorded, wanted, explicit):
    try:
        return recorded is not None and platform_rank(parse_platform(recorded), wanted, explicit) is not None
    except ImageError:
        return False


def _store_of(raw, image):
    """The store the spec names (as the validator will take it: an absolute path), else
    the state dir's."""
    for value in (image.get("store"), raw.get("state_dir")):
        if isinstance(value, str) and value.startswith("/"):
            return value
    return DEFAULT_STATE_DIR


def _stored_image(store, name):
    """(metadata like resolve's, layers) of the image `name` of the store: its record and
    the metadata of its verified layers; no source is read."""
    try:
        record = store.image(name)
    except (ImageError, OSError) as exc:
        raise SpecError([("rootfs.image.name", "image %r: %s" % (name, exc))])
    hint = ("import it first, e.g. fromscratch.containerfs.image: {name: %s, source: PATH, store: %s}"
            % (name, store.root))
    if not isinstance(record, dict):
        raise SpecError([("rootfs.image.name", "no image %r in the store %s; %s" % (name, store.root, hint))])
    missing = [d for d in record.get("layers") or [] if not store.has_layer(d)]
    if missing:
        raise SpecError([("rootfs.image.name", "image %r: layer(s) missing from the store %s: %s; %s"
                          % (name, store.root, ", ".join(missing), hint.replace("first", "again")))])
    fmt = record.get("format") if record.get("format") in IMAGE_FORMATS[1:] else "oci"
    source = (record.get("source") or {}).get("path") if fmt == record.get("format") else None
    layers = [_stored_layer(store, diff_id, fmt) for diff_id in record.get("layers") or []]
    meta = {"format": fmt, "source": source if isinstance(source, str) else None,
            "manifest_digest": record.get("manifest_digest"), "config_digest": record.get("config_digest"),
            "rootfs": record.get("rootfs"), "config": record.get("config")}
    return meta, layers


def _stored_layer(store, diff_id, fmt):
    meta = store.layer(diff_id) or {}
    digest = meta.get("digest")
    # where its blob lies in the source it came from (an OCI layout names blobs by digest)
    path = "blobs/%s/%s" % tuple(digest.split(":", 1)) if fmt == "oci" and isinstance(digest, str) else None
    return {"digest": digest, "size": meta.get("size"), "diff_id": diff_id,
            "compression": meta.get("compression") or "", "path": path,
            "media_type": meta.get("media_type")}


def _image_of(raw):
    """raw's rootfs.image when it is worth reading: a mapping of known fields whose texts
    are clean, naming a source or a stored image (else the validator reports it, without
    the image being opened)."""
    check_structure(raw)
    rootfs = raw.get("rootfs") if isinstance(raw, dict) else None
    image = rootfs.get("image") if isinstance(rootfs, dict) else None
    if not isinstance(image, dict) or set(image) - set(IMAGE_FIELDS):
        return None
    if not all(value is None or isinstance(value, str) and bad_char(value) is None
               or key == "tls_verify" and isinstance(value, bool)
               or key == "limits" and isinstance(value, dict) for key, value in image.items()):
        return None
    if image.get("name") is not None:
        clean = IMAGE_NAME_RE.fullmatch(image["name"]) and ".." not in image["name"].split("/")
        alone = all(image.get(key) is None for key in ("source",) + SOURCE_ONLY_FIELDS)
        return image if clean and alone else None
    if not isinstance(image.get("source"), str) or not image["source"]:
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


def _complete_layers(meta, store, budget):
    """Every layer with digest, size, diff_id and compression known, bottom first: a blob
    the source does not describe is hashed, unless the store hashed it when it unpacked it
    and its file is unchanged since (size, mtime, ctime, inode: store.known_blob). `budget`
    (the image's _budget.Budget) bounds what hashing a bomb reads."""
    if meta.get("rootfs"):
        return []
    layers = []
    with _image_source.layer_opener(meta) as open_blob:
        for index, layer in enumerate(meta["layers"]):
            layer = dict(layer)
            if not (layer.get("digest") and layer.get("diff_id") and layer.get("size") is not None
                    and layer.get("compression") is not None):
                known = store.known_blob(meta["source"], layer.get("path"))
                if known is not None and all(layer.get(key) in (None, known[key]) for key in ("digest", "diff_id")):
                    layer.update(known)
                    layers.append({key: layer.get(key) for key in LAYER_FIELDS})
                    continue
                with open_blob(layer) as f:
                    with _blob.BlobStream(f, name="layer %d" % index) as stream:
                        layer_budget = budget.layer("%s layer %d" % (meta["source"], index))
                        for chunk in stream:
                            layer_budget.add_bytes(len(chunk))   # the time a bomb takes to hash
                        layer.update(digest=layer.get("digest") or stream.digest, size=stream.size,
                                     diff_id=layer.get("diff_id") or stream.diff_id,
                                     compression=stream.compression or "")
            layers.append({key: layer.get(key) for key in LAYER_FIELDS})
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


def load(raw, base_dir=None, fetch_layers=False):
    """The whole spec loader every entry point uses: read the image a spec names, then
    validate and normalise (see _spec.load_spec). `fetch_layers`: see with_image."""
    raw, resolved = with_image(raw, base_dir, fetch_layers)
    return load_spec(raw, base_dir=base_dir, resolved_image=resolved)
