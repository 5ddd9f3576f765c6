# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unpacking an image into one root filesystem directory (the CLI's ``unpack``).

Standard library only, no ``ansible.*`` import: the CLI (Python 3 + jinja2 + pyyaml) imports it.

Private to the collection; may change without notice.
"""

import concurrent.futures
import os
import re

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as _blob
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import flatten as _flatten
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import layers as _layers
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.source import (
    layer_name, layer_opener, resolve,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import ImageStore


def unpack(source, dest, format="auto", tag=None, digest=None, platform=None,
           progress=None, store=None, name=None, registry=None, budget=None):
    """Unpack the image at `source` into `dest` as one flattened root filesystem.

    Without `store`, the layers are read from the source and applied in order directly
    (nothing cached). With `store` (a store root), the image is pulled into the store
    under `name` (default: the source's base name) and flattened from there.
    `dest` must not exist or be an empty directory; it appears complete or not at all.
    `progress(done_bytes, total_bytes)` is called while blobs are read. `budget`: the
    _budget.Budget the layers share (default: the default limits).
    Returns a dict: dest, format, manifest_digest, config_digest, platform, layers
    (diff_ids), config, warnings.
    """
    dest = _flatten.check_dest(dest)
    budget = budget if budget is not None else _budget.Budget()
    if store:
        s = ImageStore(store)
        name = name or _default_name(source)
        result = s.pull(name, source, format=format, tag=tag, digest=digest,
                        platform=platform, progress=progress, registry=registry, budget=budget)
        s.flatten(name, dest)
        image = result["image"]
        out = dict((k, image.get(k)) for k in ("format", "manifest_digest", "config_digest",
                                               "platform", "layers", "config"))
        out.update(dest=dest, warnings=result["warnings"], name=name)
        return out
    image = resolve(source, format=format, tag=tag, digest=digest, platform=platform,
                    registry=registry)
    warnings = []
    diff_ids = []
    with _flatten.temp_next_to(dest) as tmp:
        if image["rootfs"]:
            _flatten.apply_layer_dir(image["rootfs"], tmp, whiteouts=False, warnings=warnings)
        else:
            total = sum(layer["size"] or 0 for layer in image["layers"])
            step = _blob.progress_adapter(progress, total)
            applier = _layers.LayerApplier(tmp, flatten=True, warnings=warnings)
            with layer_opener(image, layers=image["layers"]) as opener:
                diff_ids = _apply_in_order(image, opener, tmp, applier, step, budget)
    return {"dest": dest, "format": image["format"], "manifest_digest": image["manifest_digest"],
            "config_digest": image["config_digest"], "platform": image["platform"],
            "layers": diff_ids, "config": image["config"], "warnings": warnings}


def _apply_in_order(image, opener, root, applier, step, budget):
    """Apply the layers of `image` in order onto `root`; returns their diff_ids. While one
    is written, the next one is opened, read, hashed and decompressed ahead (at most
    blob.READ_AHEAD_DEPTH chunks) by threads of its own: a second core, and a registry
    download awaited meanwhile. A failure closes the one read ahead too."""
    layers = image["layers"]

    def layer_args(i):
        layer = layers[i]
        return dict(name=layer_name(image, layer, i), digest=layer["digest"],
                    size=layer["size"] if layer["digest"] else None,
                    diff_id=layer["diff_id"], compression=layer["compression"])

    def read_ahead(i):
        f = opener(layers[i])
        try:
            stream = _blob.layer_stream(f, progress=step, depth=_blob.READ_AHEAD_DEPTH, **layer_args(i))
            return f, stream.start()
        except BaseException:
            f.close()
            raise

    def close(opened):
        f, stream = opened
        stream.close()
        f.close()

    diff_ids = []
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="layer-ahead") as ahead:
        upcoming = ahead.submit(read_ahead, 0) if layers else None
        try:
            for i in range(len(layers)):
                current, upcoming = upcoming.result(), None
                try:
                    if i + 1 < len(layers):
                        upcoming = ahead.submit(read_ahead, i + 1)
                    got = _layers.apply_layer(current[0], root, applier=applier, budget=budget,
                                              stream=current[1], **layer_args(i))
                finally:
                    close(current)
                diff_ids.append(got["diff_id"])
        finally:
            if upcoming is not None and upcoming.exception() is None:
                close(upcoming.result())
    return diff_ids


def _default_name(source):
    base = os.path.basename(os.path.abspath(source).rstrip("/"))
    for suffix in (".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".tar", ".oci"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
            break
    base = re.sub(r"[^A-Za-z0-9._:@+-]", "_", base).lstrip("._-:@+") or "image"
    return base
