# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading an image source: which image it holds, its config and its layers.

Standard library only, no ``ansible.*`` import: the module on the targets and the CLI (Python 3 + jinja2 +
pyyaml) both import it. Errors are typed (`ImageError` and subclasses), never exits.

Sources (``format``, ``auto`` detects; each reader is one entry of `SOURCE_FORMATS`):

* ``oci``: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``), as a
  directory or a tar of one (``oci-archive``); nested indexes; pick by ``tag``
  (``org.opencontainers.image.ref.name``), ``digest`` and ``platform``.
* ``docker-archive``: what ``docker save`` writes (``manifest.json``; legacy
  ``<id>/layer.tar`` or the newer OCI-inside form), as a .tar or an unpacked directory.
* ``tarball``: a root filesystem tar (``docker export``), plain/gz/xz/zst: one layer.
* ``dir``: a root filesystem directory, used as-is (its path is the only lowerdir).
* ``docker``: ``docker://HOST/REPO[:TAG|@DIGEST]``, read from an OCI registry
  (source_registry.RegistryFS looks like an OCI layout holding that one image, so the
  OCI reader below resolves it; `registry=` gives credentials and TLS options).

`resolve()` reads the metadata only (manifests and config, verified against their
digests); `layer_opener()` then opens the layer blobs of the image it returned.

Private to the collection; may change without notice.
"""

import contextlib
import json
import os
import re

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as _blob
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source_registry as _source_registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageError, ImageInputError, ImageNotFoundError, LayerVerifyError,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.platforms import (
    format_platform, host_platform, parse_platform, platform_rank,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.source_fs import (
    clean_rel, detect_format, open_source,
)

MAX_JSON_BLOB = 16 << 20

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": None,
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": None,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": None,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CONFIG_KEYS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "Volumes", "ExposedPorts",
               "Labels", "StopSignal")


def _blob_path(digest):
    algo, hexpart = _blob.split_digest(digest)
    return "blobs/%s/%s" % (algo, hexpart)


def _read_json(fs, rel, what):
    try:
        with fs.open(rel) as f:
            data = f.read(MAX_JSON_BLOB + 1)
    except ImageError:
        raise
    except OSError as exc:
        raise ImageInputError("%s: cannot read %s %r: %s" % (fs.path, what, rel, exc))
    return _parse_json(data, fs, what, rel)


def _parse_json(data, fs, what, rel):
    if len(data) > MAX_JSON_BLOB:
        raise ImageInputError("%s: %s %r is larger than %d bytes" % (
            fs.path, what, rel, MAX_JSON_BLOB))
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ImageInputError("%s: %s %r is not valid JSON: %s" % (fs.path, what, rel, exc))


def _read_json_blob(fs, desc, what):
    """Read a small JSON blob named by a descriptor and verify its size and digest."""
    import hashlib
    digest = desc.get("digest")
    rel = _blob_path(digest)
    if not fs.exists(rel):
        raise ImageInputError("%s: %s blob %s is missing from the source" % (fs.path, what, digest))
    with fs.open(rel) as f:
        data = f.read(MAX_JSON_BLOB + 1)
    algo = _blob.split_digest(digest)[0]
    actual = "%s:%s" % (algo, hashlib.new(algo, data).hexdigest())
    if desc.get("size") is not None and len(data) != desc["size"]:
        raise LayerVerifyError("%s: %s blob %s: size mismatch: the descriptor says %d bytes, "
                               "the blob has %d" % (fs.path, what, digest, desc["size"], len(data)))
    if actual != digest:
        raise LayerVerifyError("%s: %s blob %s: digest mismatch (the blob is %s)" % (
            fs.path, what, digest, actual))
    return _parse_json(data, fs, what, rel), actual


def _ref_matches(wanted, ref):
    if not ref:
        return False
    return ref == wanted or ref.endswith("/" + wanted) or (
        ":" not in wanted and "/" not in wanted and ref.rpartition(":")[2] == wanted
        and "/" not in ref.rpartition(":")[2])


def _kind(desc, doc=None):
    mt = desc.get("mediaType") or (doc or {}).get("mediaType")
    if mt in INDEX_TYPES:
        return "index"
    if mt in MANIFEST_TYPES:
        return "manifest"
    if doc is not None:
        if "manifests" in doc:
            return "index"
        if "layers" in doc:
            return "manifest"
    return None


def _select_platform(fs, index, wanted, explicit, where):
    best = None
    seen = []
    for d in index.get("manifests") or []:
        p = d.get("platform")
        if p:
            seen.append(format_platform(p))
        rank = platform_rank(p, wanted, explicit)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, d)
    if best is None:
        raise ImageNotFoundError("%s: no manifest for platform %s in %s (available: %s)" % (
            fs.path, format_platform(wanted), where, ", ".join(sorted(set(seen))) or "none"))
    return best[1]


def _descend(fs, desc, wanted, explicit, depth=0):
    """From a descriptor (index or manifest) to (manifest descriptor, manifest)."""
    if depth > 8:
        raise ImageInputError("%s: indexes nested too deeply" % fs.path)
    doc, _digest = _read_json_blob(fs, desc, "manifest")
    kind = _kind(desc, doc)
    if kind == "manifest":
        return desc, doc
    if kind == "index":
        child = _select_platform(fs, doc, wanted, explicit, "index %s" % desc["digest"])
        return _descend(fs, child, wanted, explicit, depth + 1)
    raise ImageInputError("%s: %s has an unsupported media type %r (docker schema 1 "
                          "manifests and artifacts are not images)" % (
                              fs.path, desc.get("digest"), desc.get("mediaType")))


def _find_digest(fs, index, digest, depth=0):
    for d in index.get("manifests") or []:
        if d.get("digest") == digest:
            return d
    if depth < 4:
        for d in index.get("manifests") or []:
            if _kind(d) == "index":
                doc, _unused = _read_json_blob(fs, d, "index")
                found = _find_digest(fs, doc, digest, depth + 1)
                if found:
                    return found
    return None


def _config_defaults(config):
    c = (config or {}).get("config") or {}
    out = {}
    for key in CONFIG_KEYS:
        value = c.get(key)
        if value is None:
            continue
        if key in ("Volumes", "ExposedPorts") and isinstance(value, dict):
            value = sorted(value)
        out[key] = value
    return out


def _image_from_manifest(fs, mdesc, manifest, where):
    cdesc = manifest.get("config") or {}
    if not cdesc.get("digest"):
        raise ImageInputError("%s: manifest %s has no config" % (fs.path, where))
    config, config_digest = _read_json_blob(fs, cdesc, "config")
    diff_ids = ((config.get("rootfs") or {}).get("diff_ids")) or []
    descs = manifest.get("layers") or []
    if len(diff_ids) != len(descs):
        raise ImageInputError("%s: manifest %s lists %d layers but its config has %d "
                              "diff_ids" % (fs.path, where, len(descs), len(diff_ids)))
    layers = []
    for i, (d, diff_id) in enumerate(zip(descs, diff_ids)):
        mt = d.get("mediaType")
        if mt not in LAYER_TYPES:
            raise ImageInputError("%s: layer %d (%s) has an unsupported media type %r" % (
                fs.path, i, d.get("digest"), mt))
        _blob.split_digest(diff_id)
        rel = _blob_path(d.get("digest"))
        if not fs.exists(rel):
            raise ImageInputError("%s: layer blob %s is missing from the source%s" % (
                fs.path, d.get("digest"), " (a foreign layer with urls)" if d.get("urls") else ""))
        layers.append({"diff_id": diff_id, "digest": d["digest"], "size": d.get("size"),
                       "media_type": mt, "path": rel, "compression": LAYER_TYPES[mt]})
    plat = {"os": config.get("os"), "architecture": config.get("architecture"),
            "variant": config.get("variant")}
    return {"manifest_digest": mdesc.get("digest"), "config_digest": config_digest,
            "config": _config_defaults(config), "platform": format_platform(plat),
            "layers": layers, "rootfs": None}


def _one_per_platform(descs):
    plats = [format_platform(d.get("platform")) for d in descs]
    return all(plats) and len(set(plats)) == len(plats) and all(
        _kind(d) == "manifest" for d in descs)


def resolve_oci(fs, tag=None, digest=None, platform=None):
    """Pick one image of an OCI layout: by digest, by tag, or the only one."""
    layout = _read_json(fs, "oci-layout", "oci-layout")
    if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
        raise ImageInputError("%s: oci-layout has no imageLayoutVersion" % fs.path)
    index = _read_json(fs, "index.json", "index")
    wanted = parse_platform(platform) if platform else host_platform()
    tops = index.get("manifests") or []
    if digest:
        _blob.split_digest(digest)
        desc = _find_digest(fs, index, digest)
        if desc is None:
            raise ImageNotFoundError("%s: no manifest or index with digest %s" % (fs.path, digest))
    elif tag:
        found = {}
        for d in tops:
            ann = d.get("annotations") or {}
            if _ref_matches(tag, ann.get(REF_NAME)) or _ref_matches(tag, ann.get(CONTAINERD_NAME)):
                found[d.get("digest")] = d
        if not found:
            tags = sorted(set((d.get("annotations") or {}).get(REF_NAME) or "?" for d in tops))
            raise ImageNotFoundError("%s: no image tagged %r (tags: %s)" % (
                fs.path, tag, ", ".join(tags) or "none"))
        if len(found) > 1:
            raise ImageInputError("%s: tag %r is ambiguous (%s); give the full reference or "
                                  "a digest" % (fs.path, tag, ", ".join(sorted(found))))
        desc = list(found.values())[0]
    elif len(tops) == 1:
        desc = tops[0]
    elif _one_per_platform(tops):
        # index.json itself is the multi-platform index (one manifest per platform)
        desc = _select_platform(fs, index, wanted, bool(platform), "index.json")
    else:
        tags = sorted(set((d.get("annotations") or {}).get(REF_NAME) or d.get("digest")
                          for d in tops))
        raise ImageInputError("%s: the layout holds %d images (%s); choose one with tag or "
                              "digest" % (fs.path, len(tops), ", ".join(tags) or "none"))
    mdesc, manifest = _descend(fs, desc, wanted, bool(platform))
    image = _image_from_manifest(fs, mdesc, manifest, mdesc.get("digest"))
    if platform and image["platform"] and platform_rank(
            parse_platform(image["platform"]), wanted, True) is None:
        raise ImageNotFoundError("%s: the selected image is for %s, not %s" % (
            fs.path, image["platform"], platform))
    return image


def resolve_docker_archive(fs, tag=None, digest=None, platform=None):
    """Pick one image of a `docker save` archive (manifest.json)."""
    import hashlib
    entries = _read_json(fs, "manifest.json", "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageInputError("%s: manifest.json lists no images" % fs.path)
    if digest:
        _blob.split_digest(digest)
        picked = [e for e in entries if "sha256:" + os.path.basename(
            e.get("Config", "")).split(".")[0] == digest]
    elif tag:
        picked = [e for e in entries if any(_ref_matches(tag, t) for t in e.get("RepoTags") or [])]
    else:
        picked = entries
    if not picked:
        tags = sorted(t for e in entries for t in (e.get("RepoTags") or []))
        raise ImageNotFoundError("%s: no image %s (tags: %s)" % (
            fs.path, ("with digest %s" % digest) if digest else ("tagged %r" % tag),
            ", ".join(tags) or "none"))
    if len(picked) > 1:
        tags = sorted(t for e in picked for t in (e.get("RepoTags") or ["<untagged>"]))
        raise ImageInputError("%s: the archive holds %d images (%s); choose one with tag" % (
            fs.path, len(picked), ", ".join(tags)))
    entry = picked[0]
    cfg_rel = entry.get("Config") or ""
    with fs.open(cfg_rel) as f:
        data = f.read(MAX_JSON_BLOB + 1)
    config = _parse_json(data, fs, "config", cfg_rel)
    config_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    named = os.path.basename(cfg_rel).split(".")[0]
    if re.fullmatch(r"[0-9a-f]{64}", named) and "sha256:" + named != config_digest:
        raise LayerVerifyError("%s: config %s: digest mismatch (the file is %s)" % (
            fs.path, cfg_rel, config_digest))
    diff_ids = ((config.get("rootfs") or {}).get("diff_ids")) or []
    paths = entry.get("Layers") or []
    if len(diff_ids) != len(paths):
        raise ImageInputError("%s: manifest.json lists %d layers but the config has %d "
                              "diff_ids" % (fs.path, len(paths), len(diff_ids)))
    sources = entry.get("LayerSources") or {}
    layers = []
    for rel, diff_id in zip(paths, diff_ids):
        _blob.split_digest(diff_id)
        if not fs.exists(rel):
            raise ImageInputError("%s: layer %r is missing from the archive" % (fs.path, rel))
        blob_digest = size = None
        m = re.fullmatch(r"blobs/(sha256|sha512)/([0-9a-f]+)", clean_rel(rel, fs.path))
        if m:
            blob_digest = "%s:%s" % m.groups()
        src = sources.get(diff_id) or {}
        if src.get("digest") and src.get("size") and not blob_digest:
            pass   # foreign layers list their registry digest; the file here is the tar
        layers.append({"diff_id": diff_id, "digest": blob_digest, "size": size,
                       "media_type": None, "path": rel, "compression": None})
    plat = {"os": config.get("os"), "architecture": config.get("architecture"),
            "variant": config.get("variant")}
    if platform and platform_rank(plat, parse_platform(platform), True) is None:
        raise ImageNotFoundError("%s: the image is for %s, not %s" % (
            fs.path, format_platform(plat), platform))
    return {"manifest_digest": None, "config_digest": config_digest,
            "config": _config_defaults(config), "platform": format_platform(plat),
            "layers": layers, "rootfs": None}


def resolve_tarball(path, tag=None, digest=None, platform=None):
    if tag or digest:
        raise ImageInputError("%s: a rootfs tarball has no tags or digests to choose from; "
                              "drop tag/digest" % path)
    return {"manifest_digest": None, "config_digest": None, "config": {},
            "platform": format_platform(parse_platform(platform)) if platform else None,
            "layers": [{"diff_id": None, "digest": None, "size": os.path.getsize(path),
                        "media_type": None, "path": None, "compression": None}],
            "rootfs": None}


def resolve_dir(path, tag=None, digest=None, platform=None):
    if tag or digest:
        raise ImageInputError("%s: a rootfs directory has no tags or digests to choose "
                              "from; drop tag/digest" % path)
    return {"manifest_digest": None, "config_digest": None, "config": {},
            "platform": format_platform(parse_platform(platform)) if platform else None,
            "layers": [], "rootfs": os.path.realpath(path)}


# One entry per source format: how to read it (house rule: a registry, not an if-chain).
SOURCE_FORMATS = {
    "oci": lambda path, **kw: _with_fs(path, resolve_oci, **kw),
    "docker-archive": lambda path, **kw: _with_fs(path, resolve_docker_archive, **kw),
    "tarball": resolve_tarball,
    "dir": resolve_dir,
}
FORMATS = ("auto",) + tuple(sorted(SOURCE_FORMATS))


def _with_fs(path, resolver, **kw):
    fs = open_source(path)
    try:
        image = resolver(fs, **kw)
    finally:
        fs.close()
    return image


def source_path(source):
    """The canonical form of a source: an absolute path, or a registry reference as given."""
    if not source or _registry.is_reference(source):
        return source
    return os.path.abspath(source)


def resolve_registry(source, format="auto", tag=None, digest=None, platform=None, registry=None):
    """Resolve `docker://...` through a RegistryFS with the OCI reader. The image keeps
    its RegistryFS (key ``_registry_fs``, not part of any record) for layer_opener."""
    if format not in (None, "auto", _source_registry.FORMAT):
        raise ImageInputError("%s: a registry reference is format %s, not %s" % (
            source, _source_registry.FORMAT, format))
    ref = _registry.parse_reference(source, tag=tag, digest=digest)
    fs = _source_registry.RegistryFS(ref, registry)
    image = resolve_oci(fs, platform=platform)
    image["format"] = _source_registry.FORMAT
    image["source"] = str(ref)
    image["reference"] = str(ref)
    image["top_digest"] = fs.top["digest"]
    image["_registry_fs"] = fs
    return image


def resolve(source, format="auto", tag=None, digest=None, platform=None, registry=None):
    """Read the metadata of the image at `source`: a dict with the format, manifest and
    config digests, config defaults, platform, and the layers (bottom first).
    `registry` (registry.RegistryOptions) is used for ``docker://`` references only."""
    if not source:
        raise ImageInputError("no image source given")
    if _registry.is_reference(source):
        return resolve_registry(source, format, tag, digest, platform, registry)
    source = os.path.abspath(source)
    if not os.path.exists(source):
        raise ImageInputError("image source %r does not exist" % source)
    if format in (None, "auto"):
        format = detect_format(source)
    if format not in SOURCE_FORMATS:
        raise ImageInputError("unknown image format %r (one of: %s)" % (format, ", ".join(FORMATS)))
    if format == "dir" and not os.path.isdir(source):
        raise ImageInputError("format dir needs a directory; %r is not one" % source)
    if format == "tarball" and not os.path.isfile(source):
        raise ImageInputError("format tarball needs a file; %r is not one" % source)
    image = SOURCE_FORMATS[format](source, tag=tag, digest=digest, platform=platform)
    image["format"] = format
    image["source"] = source
    return image


@contextlib.contextmanager
def layer_opener(image, layers=None):
    """A function opening the blobs of a resolved image. `layers`: those that will be
    opened, in that order (lets a registry source download the next ones meanwhile)."""
    if image["format"] == "tarball":
        yield lambda layer: open(image["source"], "rb", buffering=0)
        return
    if image["format"] == _source_registry.FORMAT:
        fs = _source_registry.open_registry(image, image.get("registry"))
        if not layers:
            yield lambda layer: fs.open(layer["path"])
            return
        prefetcher = _source_registry.Prefetcher(fs, layers)
        try:
            yield prefetcher.open
        finally:
            prefetcher.close()
        return
    fs = open_source(image["source"])
    try:
        yield lambda layer: fs.open(layer["path"])
    finally:
        fs.close()


def layer_name(image, layer, index):
    ident = layer.get("digest") or layer.get("path") or image["source"]
    return "%s layer %d (%s)" % (image["source"], index, ident)
