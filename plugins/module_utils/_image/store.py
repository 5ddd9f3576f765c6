# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image store: the content-addressed layer store and named image records.

Standard library only, no ``ansible.*`` import: the module on the targets and the CLI (Python 3 + jinja2 +
pyyaml) both import it. Errors are typed (`ImageError` and subclasses), never exits.

Store layout (root defaults to /var/lib/containerfs; the paths: _layout.StoreLayout)::

    layers/sha256/<diff_id hex>/       unpacked layer, shared by every image (0700 parent)
    layers/sha256/<diff_id hex>.json   metadata (_layout.layer_metadata); its presence
                                       means "complete and verified"
    images/<name>.json                 image record: layers (bottom first), manifest and
                                       config digests, config defaults
    refs/*.json, containers/*/image.json  other users of layers (never garbage-collected)

Private to the collection; may change without notice.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as _blob
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import flatten as _flatten
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import layers as _layers
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import parallel as _parallel
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    BudgetExceededError, ImageError, ImageInputError,
)
# Re-exported: callers catch every image error from this module.
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (  # noqa: F401 pylint: disable=unused-import
    ImageNotFoundError, LayerVerifyError,
)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.source import (
    FORMATS, layer_name, layer_opener, resolve, source_path,
)

DEFAULT_ROOT = _layout.DEFAULT_STATE_DIR  # the store is the state dir unless told otherwise
RECORD_SCHEMA = 1
# The argument spec of the image module, beside the model it feeds (the CLI reuses the
# format list): options and their rules in one place. The store's directory is the
# module's state_dir (alias store), which every module takes (_module_args.host_dirs).
IMAGE_ARGUMENT_SPEC = {
    "argument_spec": {
        "name": {"type": "str"},
        "source": {"type": "path"},
        "format": {"type": "str", "default": "auto", "choices": list(FORMATS)},
        "tag": {"type": "str"},
        "digest": {"type": "str"},
        "platform": {"type": "str"},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "keep_layers": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "prune": {"type": "bool", "default": False},
        "flatten": {"type": "path"},
        "limits": _budget.ARGUMENT_SPEC,
    },
    # name and source are checked by the module: `prune` alone needs neither
    "required_by": {"source": ("name",), "flatten": ("name",)},
    "mutually_exclusive": [("tag", "digest")],
}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,254}")  # fullmatch: `$` takes "x\n"
CONTAINER_REF_RE = re.compile(r"container-(.+)-[0-9a-f]{12}\.json")   # _layout.container_ref


class ImageInUseError(ImageInputError):
    """An image a container still uses was asked to go (without force)."""


# --------------------------------------------------------------------------- helpers

def _write_json(path, data):
    """Atomically (_hostfs.write_file: a unique temp name whose end is not .json, so no
    reader lists it; fsynced)."""
    _hostfs.write_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    except ValueError as exc:
        raise ImageError("%s: corrupt JSON (%s); remove the file to recover" % (path, exc))


def _hex(diff_id):
    return _blob.split_digest(diff_id)[1]


def _same_path(path, other):
    return other is not None and os.path.normpath(path) == os.path.normpath(other)


def blob_stat(source, blob):
    """What says a blob's bytes are unchanged since they were hashed: size, mtime, ctime,
    inode and device of the file holding them (the tarball, the archive, or the blob's own
    file in a directory). None when it cannot be read."""
    try:
        path = os.path.join(source, blob) if blob and os.path.isdir(source) else source
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


# --------------------------------------------------------------------------- the store

class ImageStore:
    """Content-addressed store of unpacked layers plus named image records."""

    IDENTITY_KEYS = ("name", "format", "manifest_digest", "config_digest", "platform",
                     "layers", "rootfs", "config")

    def __init__(self, root=DEFAULT_ROOT):
        self.layout = _layout.StoreLayout(root or DEFAULT_ROOT)
        self.root = self.layout.root
        self.layers_dir = self.layout.layers_dir
        self.images_dir = self.layout.images_dir
        self.refs_dir = self.layout.refs_dir
        self.containers_dir = self.layout.containers_dir
        # the layers of a pull finish side by side (_parallel): one at a time takes its place
        self._commit_lock = threading.Lock()

    # -- naming
    @staticmethod
    def check_name(name):
        if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name.split("/"):
            raise ImageInputError("invalid image name %r: use letters, digits and . _ : @ + "
                                  "/ - (at most 255 characters, starting with a letter or "
                                  "digit)" % (name,))
        return name

    def record_path(self, name):
        return self.layout.image_record(self.check_name(name))

    def layer_path(self, diff_id):
        return self.layout.layer(diff_id)

    def layer_meta_path(self, diff_id):
        return self.layout.layer_meta(diff_id)

    # -- queries
    def image(self, name):
        """The image record of `name`, or None."""
        return _load_json(self.record_path(name))

    def images(self):
        try:
            files = sorted(os.listdir(self.images_dir))
        except FileNotFoundError:
            return []
        names = [self.layout.image_name(f) for f in files]
        return [n for n in names if n is not None]

    def has_layer(self, diff_id):
        """A layer counts as present (and verified) when its dir and its metadata exist."""
        return os.path.isdir(self.layer_path(diff_id)) and os.path.isfile(
            self.layer_meta_path(diff_id))

    def layer(self, diff_id):
        return _load_json(self.layer_meta_path(diff_id))

    def layers(self):
        try:
            names = os.listdir(self.layers_dir)
        except FileNotFoundError:
            return []
        return sorted("sha256:" + n[:-5] for n in names
                      if n.endswith(".json") and re.fullmatch(r"[0-9a-f]{64}\.json", n))

    def lowerdirs(self, name):
        """Directories for overlayfs `lowerdir=`, top layer first."""
        record = self._need(name)
        if record.get("rootfs"):
            return [record["rootfs"]]
        missing = [d for d in record["layers"] if not self.has_layer(d)]
        if missing:
            raise ImageError("image %r: layer(s) missing from the store %s: %s; pull the "
                             "image again" % (name, self.root, ", ".join(missing)))
        return [self.layer_path(d) for d in reversed(record["layers"])]

    def _need(self, name):
        record = self.image(name)
        if record is None:
            raise ImageInputError("no image %r in the store %s" % (name, self.root))
        return record

    def referenced_layers(self, exclude=None, exclude_reference=None):
        """diff_ids in use: by image records (except `exclude`), and - whatever the
        records say - by refs/*.json and containers/*/image.json (except the file
        `exclude_reference`), which list their own `layers` or name the `image` they use
        (a container keeps its image's layers even when the image record goes). This is
        the hook for the container code."""
        used = set()
        records = {}
        for name in self.images():
            rec = self.image(name)
            if rec:
                records[name] = rec
                if name != exclude:
                    used.update(rec.get("layers") or [])
        for path in self._reference_files():
            data = None if _same_path(path, exclude_reference) else self._reference(path)
            if data is None:
                continue
            used.update(data.get("layers") or [])
            if data.get("image") in records:
                used.update(records[data["image"]].get("layers") or [])
        return used

    @staticmethod
    def _reference(path):
        """A reference file's data, None when there is none. One we cannot read or parse
        stops the collection: the layers it lists are not known, so none may go."""
        try:
            data = _load_json(path)
        except ImageError as exc:
            raise ImageError("%s; garbage collection stopped: it cannot tell which layers "
                             "that reference keeps" % exc)
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:  # containers/<file>: no container there
                return None
            raise ImageError("reference %s cannot be read (%s); garbage collection stopped"
                             % (path, exc.strerror or exc))
        layers = data.get("layers") if isinstance(data, dict) else None
        if data is not None and not (isinstance(data, dict) and isinstance(layers or [], list)
                                     and all(isinstance(d, str) for d in layers or [])):
            raise ImageError("reference %s is not {\"layers\": [diff_id, ...]} or {\"image\": name}; "
                             "garbage collection stopped (fix or remove that file)" % path)
        return data

    def _reference_files(self):
        files = []
        try:
            files += [os.path.join(self.refs_dir, f) for f in sorted(os.listdir(self.refs_dir))
                      if f.endswith(".json")]
        except FileNotFoundError:
            pass
        try:
            files += [self.layout.container_image_ref(c) for c in sorted(os.listdir(self.containers_dir))]
        except FileNotFoundError:
            pass
        return files

    def container_references(self):
        """[(container, reference data)] of every container whose reference lies in this
        store (STORE/containers/<name>/image.json, STORE/refs/container-<name>-<key>.json);
        a reference that cannot be parsed raises (nobody can tell what it keeps)."""
        out = []
        for path in self._reference_files():
            parent, base = os.path.split(path)
            if parent == self.refs_dir:
                match = CONTAINER_REF_RE.fullmatch(base)
                if not match:
                    continue           # a pin of the user's, no container
                container = match.group(1)
            else:
                container = os.path.basename(parent)
            data = self._reference(path)
            if data is not None:
                out.append((container, data))
        return out

    def users(self, name, record=None, references=None):
        """Containers using image `name`: their reference names it or lists its layers
        (references: container_references(), when already read)."""
        record = self.image(name) if record is None else record
        layers = (record or {}).get("layers") or []
        references = self.container_references() if references is None else references
        return sorted(set(container for container, data in references
                          if data.get("image") == name or (layers and data.get("layers") == layers)))

    def blob_cache_path(self, source):
        """Where the hashes of an image source's blobs are kept (one file per source path)."""
        return self.layout.source_blobs(source)

    def known_blob(self, source, blob):
        """What an earlier unpack measured of a blob ({digest, size, diff_id, compression}),
        when the file holding it is unchanged since (blob_stat); else None. Read-only."""
        try:
            data = _load_json(self.blob_cache_path(source))
        except (ImageError, OSError):
            return None
        if not isinstance(data, dict) or data.get("path") != os.path.abspath(source):
            return None
        known = (data.get("blobs") or {}).get(blob or "")
        if not isinstance(known, dict) or known.get("stat") is None or known["stat"] != blob_stat(source, blob):
            return None
        return dict((k, known.get(k)) for k in ("digest", "size", "diff_id", "compression"))

    def _remember_blob(self, source, blob, stat_before, got):
        """Keep what the unpack of a blob measured (under the lock), when its file did not
        change while it was read: a spec naming this source reads it without hashing. Only
        a shortcut: a cache that cannot be read is replaced, one that cannot be written is
        done without."""
        if stat_before is None or blob_stat(source, blob) != stat_before:
            return
        path = self.blob_cache_path(source)
        try:
            data = _load_json(path)
        except (ImageError, OSError):
            data = None
        if not (isinstance(data, dict) and isinstance(data.get("blobs"), dict)
                and data.get("path") == os.path.abspath(source)):
            data = {"path": os.path.abspath(source), "blobs": {}}
        data["blobs"][blob or ""] = {"stat": stat_before, "digest": got["digest"], "size": got["size"],
                                     "diff_id": got["diff_id"], "compression": got["compression"] or ""}
        try:
            _hostfs.make_dirs(os.path.dirname(path), 0o755, trusted=self.root)
            _write_json(path, data)
        except OSError:
            pass

    def _stale_blob_caches(self):
        """Blob caches whose every blob changed or went: nothing reads them any more."""
        folder = self.layout.sources_dir
        try:
            names = sorted(n for n in os.listdir(folder) if self.layout.is_source_blobs(n))
        except FileNotFoundError:
            return []
        stale = []
        for n in names:
            try:
                data = _load_json(os.path.join(folder, n))
            except ImageError:
                data = None
            blobs = data.get("blobs") if isinstance(data, dict) else None
            if not isinstance(blobs, dict) or not any(
                    isinstance(b, dict) and b.get("stat") == blob_stat(data.get("path"), rel)
                    for rel, b in blobs.items()):
                stale.append(os.path.join(folder, n))
        return stale

    def unused_layers(self, exclude=None, exclude_reference=None):
        """Layers present in the store that nothing references (`exclude`: as if that
        image record were gone; `exclude_reference`: that reference file)."""
        used = self.referenced_layers(exclude=exclude, exclude_reference=exclude_reference)
        return [d for d in self.layers() if d not in used]

    # -- changes
    @contextlib.contextmanager
    def _locked(self):
        _hostfs.make_dirs(self.root, 0o755)
        _hostfs.make_dirs(self.layers_dir, 0o700, trusted=self.root)
        _hostfs.make_dirs(self.images_dir, 0o755, trusted=self.root)
        fd = os.open(self.layout.lock,
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._clean_temps()
            yield
        finally:
            os.close(fd)

    def _clean_temps(self):
        """Leftovers of an interrupted run (we hold the lock: nobody else is writing). A
        symlink among them is unlinked, never followed."""
        for n in os.listdir(self.layers_dir):
            if self.layout.is_temp(n):
                _hostfs.remove_tree(os.path.join(self.layers_dir, n))
        for diff_id in self._dirs_without_meta():
            _hostfs.remove_tree(self.layer_path(diff_id))

    def _dirs_without_meta(self):
        out = []
        for n in os.listdir(self.layers_dir):
            if re.fullmatch(r"[0-9a-f]{64}", n) and not os.path.isfile(
                    self.layer_meta_path("sha256:" + n)):
                out.append("sha256:" + n)
        return out

    def _new_record(self, name, image, source):
        stat_info = None
        if image["format"] == "tarball":
            st = os.stat(source)
            stat_info = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
                         "dev": st.st_dev}
        record = {
            "schema": RECORD_SCHEMA, "name": name, "format": image["format"],
            "manifest_digest": image["manifest_digest"],
            "config_digest": image["config_digest"], "platform": image["platform"],
            "layers": [layer["diff_id"] for layer in image["layers"]],
            "rootfs": image["rootfs"], "config": image["config"],
            # a registry's: the digest the tag resolved to (an index's, for a multi-platform one)
            "source": dict({"path": source, "stat": stat_info},
                           **({"digest": image["top_digest"]} if image.get("top_digest") else {})),
        }
        if image.get("top_digest"):
            # a registry's blobs, bottom first: a spec naming this reference is planned
            # from the record (no network), and a back-end fetches a missing layer by them
            record["blobs"] = [{"digest": layer["digest"], "size": layer["size"], "media_type": layer["media_type"],
                                "compression": layer["compression"] or ""} for layer in image["layers"]]
        return record

    def identity(self, record):
        """The part of a record that says which image it is (what `changed` compares)."""
        if record is None:
            return None
        return dict((k, record.get(k)) for k in self.IDENTITY_KEYS)

    def _tarball_unchanged(self, before, source):
        """A tarball pulled before, unchanged on disk, whose layer is present: no reading."""
        if not before or before.get("format") != "tarball":
            return False
        st = os.stat(source)
        known = (before.get("source") or {}).get("stat") or {}
        return ((before.get("source") or {}).get("path") == source
                and known == {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                              "ino": st.st_ino, "dev": st.st_dev}
                and all(self.has_layer(d) for d in before.get("layers") or []))

    def pull(self, name, source, format="auto", tag=None, digest=None, platform=None,
             check_mode=False, progress=None, registry=None, budget=None):
        """Make image `name` in the store the image at `source`.

        Layers already present (dir + metadata) are neither read nor hashed again. Returns
        {changed, image (the record), before, layers_added, warnings}. In check mode
        nothing is written; a tarball is hashed (read-only) to know its diff_id.
        `budget`: the _budget.Budget its layers share (default: the default limits); a
        pull that exceeds it leaves no layer behind.
        """
        self.check_name(name)
        source = source_path(source)
        image = resolve(source, format=format, tag=tag, digest=digest, platform=platform,
                        registry=registry)
        before = self.image(name)
        if image["format"] == "tarball" and self._tarball_unchanged(before, source):
            image["layers"][0]["diff_id"] = before["layers"][0]
            return {"changed": False, "image": before, "before": before, "layers_added": [],
                    "warnings": []}
        if check_mode:
            return self._pull_check(name, image, source, before, progress, budget)
        warnings = []
        added = []
        budget = budget if budget is not None else _budget.Budget()
        with self._locked(), self._undo_on_budget_error():
            todo = self._layers_to_unpack(image["layers"])
            step = _blob.progress_adapter(progress, sum(layer["size"] or 0 for _i, layer in todo))
            with layer_opener(image, layers=[layer for _i, layer in todo]) as opener:
                results = _parallel.run_layers(todo, lambda job, guarded: self._unpack_layer(
                    image, job[1], job[0], guarded, step, budget=budget), opener)
            for (_i, layer), got in zip(todo, results):
                warnings.extend(got.get("warnings") or [])
                if got.get("added"):
                    added.append(layer["diff_id"])
            after = self._new_record(name, image, source)
            if after != before:
                _write_json(self.record_path(name), after)
        changed = bool(added) or self.identity(after) != self.identity(before)
        return {"changed": changed, "image": after, "before": before, "layers_added": added,
                "warnings": warnings}

    def _layers_to_unpack(self, layers):
        """[(index, layer)] of the layers not in the store, each diff_id once: a layer listed
        twice is unpacked once, by the first (the layers run side by side)."""
        todo = []
        planned = set()
        for i, layer in enumerate(layers):
            diff_id = layer["diff_id"]   # None (a tarball's, not known yet): always read
            if diff_id and (diff_id in planned or self.has_layer(diff_id)):
                continue
            planned.add(diff_id)
            todo.append((i, layer))
        return todo

    def _pull_check(self, name, image, source, before, progress, budget=None):
        added = []
        for layer in image["layers"]:
            if layer["diff_id"] is None:   # a tarball: hash it to know what it is
                with open(source, "rb", buffering=0) as f, _blob.BlobStream(
                        f, name=source, progress=_blob.progress_adapter(progress, layer["size"])) as b:
                    layer_budget = (budget or _budget.Budget()).layer(source)   # bounds the time
                    for chunk in b:
                        layer_budget.add_bytes(len(chunk))
                layer["diff_id"] = b.diff_id
            if not self.has_layer(layer["diff_id"]) and layer["diff_id"] not in added:
                added.append(layer["diff_id"])
        after = self._new_record(name, image, source)
        changed = bool(added) or self.identity(after) != self.identity(before)
        return {"changed": changed, "image": after, "before": before, "layers_added": added,
                "warnings": []}

    def add_layer(self, source, format, blob, digest, size, diff_id, compression=None,
                  media_type=None, progress=None, index=0, registry=None, budget=None):
        """Verify and unpack layer `index` of the image at `source` into the store, unless
        it is there already (the container applier's way in: its plan lists the layers).
        Asked under the lock: a collection holds it from reading references to deleting.
        `registry`: registry.RegistryOptions for a docker:// source; `budget`: see pull."""
        image = {"source": source_path(source), "format": format, "registry": registry}
        layer = {"path": blob, "digest": digest, "size": size, "diff_id": diff_id,
                 "compression": compression, "media_type": media_type}
        with self._locked():
            if self.has_layer(diff_id):
                return {"added": False}
            with layer_opener(image) as opener:
                return self._unpack_layer(image, layer, index, opener,
                                          _blob.progress_adapter(progress, size or 0), budget=budget)

    def _unpack_layer(self, image, layer, index, opener, step, budget=None):
        tmp = tempfile.mkdtemp(prefix=_layout.TEMP_PREFIX, dir=self.layers_dir)
        stat_before = blob_stat(image["source"], layer["path"])
        try:
            os.chmod(tmp, 0o755)
            f = opener(layer)
            try:
                got = _layers.apply_layer(
                    f, tmp, flatten=False, name=layer_name(image, layer, index),
                    digest=layer["digest"], size=layer["size"] if layer["digest"] else None,
                    diff_id=layer["diff_id"], progress=step, compression=layer["compression"],
                    budget=budget)
            finally:
                f.close()
            layer["diff_id"] = got["diff_id"]
            with self._commit_lock:
                return self._commit_layer(tmp, image, layer, stat_before, got)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)   # gone already when it was committed
            raise

    def _commit_layer(self, tmp, image, layer, stat_before, got):
        """The verified layer unpacked in `tmp` becomes the store's (metadata last)."""
        if self.has_layer(got["diff_id"]):   # stored meanwhile, or a tarball stored under its id
            shutil.rmtree(tmp)
            self._remember_blob(image["source"], layer["path"], stat_before, got)
            return got
        final = self.layer_path(got["diff_id"])
        _hostfs.remove_tree(final)         # a dir without metadata: incomplete
        os.rename(tmp, final)
        _hostfs.write_file(self.layer_meta_path(got["diff_id"]), _layout.layer_metadata_text(
            _layout.layer_metadata(got["diff_id"], layer["digest"] or got["digest"], got["size"],
                                   layer["media_type"], got["compression"], got["warnings"])))
        self._remember_blob(image["source"], layer["path"], stat_before, got)
        got["added"] = True
        return got

    @contextlib.contextmanager
    def _undo_on_budget_error(self):
        """A pull its budget stopped leaves nothing: the layers it added before (or beside)
        the one that went over go too, unless something uses them. Other failures keep
        them: they are complete and verified, and a retry need not read them again."""
        before = set(self.layers())
        try:
            yield
        except BudgetExceededError:
            self._gc([d for d in self.unused_layers() if d not in before])
            raise

    def undo_added_layers(self, added, reference):
        """Undo a container set-up its budget stopped, as _undo_on_budget_error undoes a pull
        (the set-up adds its layers one add_layer at a time): of the layers it `added`, those
        nothing else uses go, under the lock. Its own `reference` lists them (written before
        them, so no collection takes them while it runs) but keeps none: the set-up that
        wanted them failed. Returns the diff_ids removed."""
        with self._locked():
            return self._gc([d for d in self.unused_layers(exclude_reference=reference) if d in added])

    def remove(self, name, keep_layers=False, force=False, check_mode=False):
        """Remove image `name` and, unless keep_layers, those of its layers nothing else
        uses (other orphans are prune's). A container still using it stops the removal
        unless `force` (its reference keeps the layers). An image that is not there: no
        change. Returns {changed, before, layers_removed, users}."""
        self.check_name(name)
        before = self.image(name) if os.path.isdir(self.root) else None
        if before is None:
            return {"changed": False, "before": None, "layers_removed": [], "users": []}
        if check_mode:
            users = self._allowed_users(name, before, force)
            removed = [] if keep_layers else self._own_unused(name, before)
            return {"changed": True, "before": before, "layers_removed": removed, "users": users}
        with self._locked():
            before = self.image(name)
            if before is None:
                return {"changed": False, "before": None, "layers_removed": [], "users": []}
            users = self._allowed_users(name, before, force)
            doomed = [] if keep_layers else self._own_unused(name, before)
            os.unlink(self.record_path(name))
            removed = self._gc(doomed) if doomed else []
        return {"changed": True, "before": before, "layers_removed": removed, "users": users}

    def _allowed_users(self, name, record, force):
        users = self.users(name, record)
        if users and not force:
            raise ImageInUseError(
                "image %r is used by container(s) %s; remove them first, or give force: true "
                "(their layers stay until they go, then prune removes them)" % (name, ", ".join(users)))
        return users

    def _own_unused(self, name, record):
        own = set(record.get("layers") or [])
        return [d for d in self.unused_layers(exclude=name) if d in own]

    def gc(self, check_mode=False):
        """Remove every layer that no image, container or ref uses. Returns diff_ids."""
        return self.prune(check_mode)["layers"]

    def prune(self, check_mode=False):
        """Remove every layer that no image, container or ref uses, and the hashes kept of
        image sources that changed or went. Returns {layers, blob_caches}."""
        if not os.path.isdir(self.root):
            return {"layers": [], "blob_caches": []}
        if check_mode:
            return {"layers": self.unused_layers(), "blob_caches": self._stale_blob_caches()}
        with self._locked():
            caches = self._stale_blob_caches()
            for path in caches:
                os.unlink(path)
            return {"layers": self._gc(), "blob_caches": caches}

    def _gc(self, doomed=None):
        removed = []
        for diff_id in self.unused_layers() if doomed is None else doomed:
            # metadata first: a dir without it is "incomplete" and never used
            os.unlink(self.layer_meta_path(diff_id))
            doomed = self.layout.temp("rm-" + _hex(diff_id))
            os.rename(self.layer_path(diff_id), doomed)
            _hostfs.remove_tree(doomed)
            removed.append(diff_id)
        return removed

    def flatten(self, name, dest):
        """Write image `name` as one root filesystem at `dest` (must not exist or be an
        empty dir); it appears complete or not at all."""
        dest = _flatten.check_dest(dest)
        lowers = list(reversed(self.lowerdirs(name)))
        record = self.image(name)
        warnings = []
        with _flatten.temp_next_to(dest) as tmp:
            for layer_dir in lowers:
                _flatten.apply_layer_dir(layer_dir, tmp, whiteouts=not record.get("rootfs"),
                                         warnings=warnings)
        return {"dest": dest, "layers": record.get("layers"), "warnings": warnings}
