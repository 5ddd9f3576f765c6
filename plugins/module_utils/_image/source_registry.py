# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A registry image seen as an OCI image layout, so source.py's OCI reader resolves it.

`RegistryFS` answers `exists`/`size`/`open` like `source_fs.DirSource`: ``oci-layout`` and
``index.json`` are made up (one entry: the manifest or index the reference names, by the
digest it has now), ``blobs/ALGO/HEX`` is fetched from the registry (manifests from
``/manifests/``, configs and layers from ``/blobs/``). Platform selection, manifest and
config parsing and every digest check stay in source.py and blob.py: nothing is written
twice.

Standard library only. Private to the collection; may change without notice.
"""

import concurrent.futures
import io
import json
import shutil
import tempfile

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError

FORMAT = "docker"
PREFETCH = 3             # layers downloaded ahead of the one being unpacked
COPY_CHUNK = 1 << 20
INDEX_KINDS = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


class RegistryFS:
    """The files of an OCI layout holding the one image `ref` names, read from its registry."""

    def __init__(self, ref, options=None, client=None):
        self.ref = ref
        self.path = str(ref)     # what source.py's messages name
        self.client = client or _registry.RegistryClient(ref, options)
        self._manifests = {}     # digest -> bytes of manifests and indexes fetched
        self._manifest_digests = set()
        self.top = None          # the descriptor the reference resolved to

    def _fetch_top(self):
        if self.top is None:
            wanted = self.ref.digest or self.ref.tag
            data, media_type, digest = self.client.manifest(wanted)
            media_type = media_type or _sniff_media_type(data)
            self._remember(digest, data, media_type)
            self.top = {"mediaType": media_type, "digest": digest, "size": len(data)}
        return self.top

    def _remember(self, digest, data, media_type):
        self._manifests[digest] = data
        self._manifest_digests.add(digest)
        if media_type in INDEX_KINDS or _sniff_media_type(data) in INDEX_KINDS:
            try:
                children = json.loads(data.decode("utf-8")).get("manifests") or []
            except (ValueError, AttributeError):
                children = []
            for child in children:
                if isinstance(child, dict) and child.get("digest"):
                    self._manifest_digests.add(child["digest"])

    def _made_up(self, rel):
        if rel == "oci-layout":
            return json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
        if rel == "index.json":
            return json.dumps({"schemaVersion": 2, "manifests": [self._fetch_top()]}).encode()
        return None

    @staticmethod
    def _digest(rel):
        parts = rel.split("/")
        if len(parts) != 3 or parts[0] != "blobs":
            raise ImageInputError("%r is not a blob path" % rel)
        return "%s:%s" % (parts[1], parts[2])

    def exists(self, rel):
        # layers are checked when they are downloaded (a HEAD per layer costs a round trip)
        return rel in ("oci-layout", "index.json") or rel.startswith("blobs/")

    def size(self, rel):
        return len(self.open(rel).read())

    def open(self, rel):
        made = self._made_up(rel)
        if made is not None:
            return io.BytesIO(made)
        digest = self._digest(rel)
        if digest in self._manifests:
            return io.BytesIO(self._manifests[digest])
        if digest in self._manifest_digests:
            data, media_type, digest = self.client.manifest(digest)
            self._remember(digest, data, media_type)
            return io.BytesIO(data)
        return self.client.open_blob(digest)

    def close(self):
        pass


class Prefetcher:
    """Opens the layers a reader will ask for, in that order: the first is streamed, the
    next PREFETCH ones download meanwhile (in parallel, bounded) into unlinked temp files,
    so nothing half-written can be left behind. A layer not in the list is streamed."""

    def __init__(self, fs, layers, workers=PREFETCH, spool_dir=None):
        self.fs = fs
        self.order = [layer["path"] for layer in layers]
        self.workers = max(1, workers)
        self.spool_dir = spool_dir
        self.pool = concurrent.futures.ThreadPoolExecutor(self.workers)
        self.jobs = {}
        self.asked = 0

    def _fetch(self, rel):
        spool = tempfile.TemporaryFile(dir=self.spool_dir)
        try:
            with self.fs.open(rel) as blob:
                shutil.copyfileobj(blob, spool, COPY_CHUNK)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool

    def _start_window(self, position):
        for rel in self.order[position + 1:position + 1 + self.workers]:
            if rel not in self.jobs:
                self.jobs[rel] = self.pool.submit(self._fetch, rel)

    def open(self, layer):
        rel = layer["path"]
        position = self.order.index(rel) if rel in self.order else None
        if position is not None:
            self._start_window(position)
        job = self.jobs.pop(rel, None)
        if job is None:
            return self.fs.open(rel)
        return job.result()

    def close(self):
        for job in self.jobs.values():
            job.cancel()
        self.pool.shutdown(wait=True)
        for job in self.jobs.values():
            if job.done() and not job.cancelled() and job.exception() is None:
                job.result().close()
        self.jobs = {}


def _sniff_media_type(data):
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("mediaType"):
        return doc["mediaType"]
    if "manifests" in doc:
        return INDEX_KINDS[0]
    return None


def open_registry(image_or_ref, options=None):
    """A RegistryFS for a resolved image (reusing its client and token) or a reference."""
    if isinstance(image_or_ref, dict):
        fs = image_or_ref.get("_registry_fs")
        if fs is not None:
            return fs
        image_or_ref = image_or_ref["source"]
    ref = image_or_ref if isinstance(image_or_ref, _registry.Reference) else \
        _registry.parse_reference(image_or_ref)
    return RegistryFS(ref, options)
