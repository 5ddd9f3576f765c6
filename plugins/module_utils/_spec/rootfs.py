# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rootfs section of a spec: a directory, or an image (and what the image holds).

Private to the collection; may change without notice.
"""

import copy
import os
import re

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import DEFAULT_STATE_DIR
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as _fields
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import registry as _spec_registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import IMAGE_FORMATS, ROOT_PROPAGATIONS
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import bad_char, is_digest, is_relative_path

ROOTFS_FIELDS = _fields.names("rootfs")
IMAGE_FIELDS = _fields.names("rootfs.image")
LIMIT_FIELDS = _fields.names(_fields.IMAGE_LIMITS_PATH)
# What picks an image inside a source: the name form takes the stored image as imported.
SOURCE_ONLY_FIELDS = ("format", "tag", "digest", "platform") + _spec_registry.REGISTRY_FIELDS
RESOLVED_FIELDS = ("format", "manifest_digest", "config_digest", "rootfs", "layers", "source")
# What an image was read from: a format of the spec's, or a registry (a docker:// source,
# whose layer blobs a back-end fetches by digest)
RESOLVED_FORMATS = IMAGE_FORMATS[1:] + ("docker",)
LAYER_FIELDS = ("digest", "size", "diff_id", "compression", "path", "media_type")
# The image store's names (_image.store.NAME_RE; the spec does not import the store)
IMAGE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,254}")
LAYER_COMPRESSIONS = (None, "", "gzip", "zstd", "xz", "bzip2")   # what _blob reads


def _check_image(c, image, state_dir, resolved):
    """rootfs.image: where the image comes from (a source, or the name of an image in the
    store). What the image holds (`resolved`) comes from _image_spec through load_spec's
    own argument, never from the spec."""
    image = c.fields("rootfs.image", image, IMAGE_FIELDS)
    out = {"name": None, "source": None, "format": "auto", "tag": None, "digest": None, "platform": None,
           "store": state_dir, "resolved": None}
    if image.get("name") is not None:
        out["name"] = _check_image_name(c, image)
    elif not isinstance(image.get("source"), str) or not image.get("source"):
        c.error("rootfs.image.source", "is required (or rootfs.image.name): the path of an OCI layout, a "
                "docker save archive, a rootfs tarball or a directory")
    elif c.text("rootfs.image.source", image["source"]):
        out["source"] = image["source"]
    for key in ("format", "tag", "digest", "platform"):
        if image.get(key) is not None and c.text("rootfs.image." + key, image[key], refuse=" ,#"):
            out[key] = image[key]
    if out["name"] is None:
        # a registry source: how its layers are fetched (absent for other sources)
        registry = _spec_registry.check_registry(c, image, out["source"])
        if registry is not None:
            out["registry"] = registry
    if out["digest"] is not None and not is_digest(out["digest"]):
        c.error("rootfs.image.digest", "must be sha256:<64 hex digits>, got %r" % out["digest"])
    if out["format"] not in IMAGE_FORMATS:
        c.error("rootfs.image.format", "must be one of %s, got %r" % (", ".join(IMAGE_FORMATS),
                                                                      out["format"]))
    if "store" in image:
        out["store"] = c.host_dir("rootfs.image.store", image["store"], state_dir)
    if image.get("limits") is not None:
        # only when given: the normalised spec of an image without limits stays as it was
        out["limits"] = _check_limits(c, image["limits"])
    if (out["source"] or out["name"]) and not isinstance(resolved, dict) and "resolved" not in image:
        c.error("rootfs.image", "the image was not read (load the spec with _image_spec.load)")
    elif isinstance(resolved, dict) and _resolved_ok(resolved):
        out["resolved"] = copy.deepcopy(resolved)
        if out["name"]:
            # the source it was imported from: the script unpacks a layer gone from the store
            out["source"] = resolved.get("source") or ""
    elif resolved is not None:
        c.error("rootfs.image", "the image's metadata is not usable (bad format, digest, size, "
                "compression or path of a layer)")
    if out["name"] is None:
        del out["name"]   # a spec by source normalises (and digests) as it always did
    return out


def _check_limits(c, limits):
    """rootfs.image.limits: the budgets of the image's unpacking (_image.budget), as given."""
    limits = c.fields(_fields.IMAGE_LIMITS_PATH, limits, LIMIT_FIELDS)
    out = {}
    for name, value in limits.items():
        problem = _budget.limit_problem(name, value) if name in LIMIT_FIELDS else None
        if problem:
            c.error(_fields.IMAGE_LIMIT_FIELD % {"name": name}, problem)
        elif name in LIMIT_FIELDS and value is not None:
            out[name] = value
    return out


def _check_image_name(c, image):
    """rootfs.image.name: an image of the store, taken as imported (no source, no choice)."""
    if image.get("source") is not None:
        c.error("rootfs.image.source", "give either rootfs.image.name (an image in the store) or "
                "rootfs.image.source, not both")
    for key in SOURCE_ONLY_FIELDS:
        if image.get(key) is not None:
            c.error("rootfs.image." + key, "goes with rootfs.image.source: the image named by "
                    "rootfs.image.name is used as it was imported")
    name = image["name"]
    if not c.text("rootfs.image.name", name, refuse=" ,#"):
        return None
    if not IMAGE_NAME_RE.fullmatch(name) or ".." in name.split("/"):
        c.error("rootfs.image.name", "must be an image name of the store (letters, digits and . _ : @ + / -, "
                "at most 255 characters, starting with a letter or digit), got %r" % name)
        return None
    return name


def _resolved_ok(resolved):
    """The internal description of an image (from _image_spec) holds only what the plan
    can write safely: known words, digests, sizes and clean relative paths."""
    if set(resolved) - set(RESOLVED_FIELDS) or resolved.get("format") not in RESOLVED_FORMATS:
        return False
    source = resolved.get("source")
    if source is not None and not (isinstance(source, str) and bad_char(source) is None):
        return False
    if not all(resolved.get(key) is None or is_digest(resolved[key])
               for key in ("manifest_digest", "config_digest")):
        return False
    rootfs, layers = resolved.get("rootfs"), resolved.get("layers")
    if rootfs is not None and not (isinstance(rootfs, str) and rootfs.startswith("/")
                                   and bad_char(rootfs) is None):
        return False
    return isinstance(layers, list) and all(_layer_ok(layer) for layer in layers)


def _layer_ok(layer):
    if not isinstance(layer, dict) or set(layer) - set(LAYER_FIELDS):
        return False
    size, path, media_type = layer.get("size"), layer.get("path"), layer.get("media_type")
    return (is_digest(layer.get("digest")) and is_digest(layer.get("diff_id"))
            and isinstance(size, int) and not isinstance(size, bool) and size >= 0
            and layer.get("compression") in LAYER_COMPRESSIONS
            and (media_type is None or isinstance(media_type, str) and bad_char(media_type) is None)
            and (path is None or is_relative_path(path)))


def check_rootfs(c, spec, base_dir, resolved_image):
    """rootfs: a directory (`path`, relative to `base_dir`) or an image, with its flags."""
    rootfs = c.fields("rootfs", spec.get("rootfs"), ROOTFS_FIELDS)
    if "rootfs" not in spec:
        c.error("rootfs", "is required (rootfs.path: the directory to use as the container root, "
                "or rootfs.image)")
    out = dict({"path": None, "image": None, "propagation": None}, **_fields.defaults("rootfs"))
    path = rootfs.get("path")
    if rootfs.get("image") is not None:
        state_dir = spec.get("state_dir", DEFAULT_STATE_DIR)
        out["image"] = _check_image(c, rootfs["image"], state_dir if isinstance(state_dir, str) else
                                    DEFAULT_STATE_DIR, resolved_image)
        out["overlay"] = True
        if path is not None:
            c.error("rootfs.path", "give either rootfs.path or rootfs.image, not both")
        if rootfs.get("overlay") is False:
            c.error("rootfs.overlay", "an image rootfs is mounted as overlayfs layers: it must "
                    "be true (or left out)")
    elif path is None:
        if "rootfs" in spec:
            c.error("rootfs.path", "is required (or rootfs.image)")
    else:
        out["path"] = _check_rootfs_path(c, path, base_dir)
    for key in ("overlay", "readonly"):
        if key in rootfs and c.typed("rootfs." + key, rootfs[key], (bool,), "a boolean"):
            out[key] = rootfs[key]
    if out["overlay"] and out["path"] and any(ch in out["path"] for ch in ",:\\"):
        c.error("rootfs.path", "with overlay, must not contain ',', ':' or '\\' "
                "(overlayfs option syntax), got %r" % out["path"])
    out["propagation"] = _check_root_propagation(c, rootfs.get("propagation"))
    return out


def _check_rootfs_path(c, path, base_dir):
    """rootfs.path made absolute against the spec file's directory, or None (reported)."""
    if not c.text("rootfs.path", path):
        return None
    if not path:
        c.error("rootfs.path", "must not be empty")
        return None
    full = os.path.normpath(os.path.join(base_dir, path)) if base_dir else path
    if not c.text("rootfs.path", full, why=" (in the spec file's directory)"):
        return None
    if not os.path.isabs(full):
        c.error("rootfs.path", "must be an absolute path (or relative to the spec file), "
                "got %r" % path)
    return full


def _check_root_propagation(c, propagation):
    if propagation is None or not c.text("rootfs.propagation", propagation):
        return None
    if propagation not in ROOT_PROPAGATIONS:
        c.error("rootfs.propagation", "must be one of %s, got %r"
                % (", ".join(ROOT_PROPAGATIONS), propagation))
        return None
    return propagation
