# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-disk layout: every host path the project reads or writes, named in one place.

Nothing else joins these paths: the plan carries a container's paths (``plan["paths"]``)
to the back-ends (the script's CFS_* variables, the applier), and the image store, the
modules and the CLI ask this module for the store's.

Per container (STATE = <state_dir>/containers/<name>, RUN = <run_dir>/<name>)::

    key          path                                   what
    state        STATE/                                 the container's state dir
    etc          STATE/etc/{hostname,hosts,resolv.conf} generated /etc files
    upper, work  STATE/upper/, STATE/work/              overlay dirs (None without overlay)
    record       STATE/plan.json                        the plan last set up (applier or script `up`)
    script       STATE/container.sh                     the rendered script: the runtime of start,
                                                        stop, exec and the monitor
    log          STATE/container.log (+ .log.1)         the process's stdout and stderr (capped, rotated once)
    exit_status  STATE/exit                             "STATUS ENDED_AT" of the last run (epoch seconds)
    image_ref    STATE/image.json, or                   the layers it uses (kept by the
                 STORE/refs/container-<name>-<key>.json   store's GC); key: sha256(STATE)[:12]
    volumes      STATE/volumes/<dir>                    an image's VOLUME dirs
    dev_template STATE/dev.<id>                         cached /dev nodes (id: digest of them)
    env_probe    STATE/env-signals                      the script's kept answer: does env(1) take
                                                        --default-signal (asked again when env changes)
    run          RUN/                                   run dir (removed on removal)
    root         RUN/rootfs                             merged rootfs (the spec's path without overlay)
    ns           RUN/ns/{mnt,uts,ipc,net,cgroup}        pinned namespaces (nsfs bind mounts)
    fstab        RUN/fstab                              the script's mount batch
    mount_err    RUN/mount.err                          what mount(8) said about a batch
    fifo         RUN/go                                 the script's start signal
    pid          RUN/pid                                "PID TICKS": the container's pid 1 as the host
                                                        sees it, its start time in clock ticks since
                                                        boot (/proc/PID/stat field 22: guards against a
                                                        reused pid; with btime, its start in epoch
                                                        seconds); older scripts wrote a third field,
                                                        STARTED_AT, still read
    monitor      RUN/monitor                            "PID TICKS" of the monitor that restarts it
    stopping     RUN/stopping                           present while a stop is asked: no restart
    signal       RUN/signal                             a signal caught before pid 1 was known
    lock         <run_dir>/<name>.lock                  the container's lock (survives removal)

The image store (STORE, by default the state dir)::

    layers       STORE/layers/sha256/<hex>/             an unpacked layer (0700 parent)
    layer meta   STORE/layers/sha256/<hex>.json         its metadata: complete and verified
    temps        STORE/layers/sha256/.tmp-*             unfinished unpacks and removals
    lock         STORE/.lock                            the store's lock (flock)
    images       STORE/images/<quoted name>.json        image records
    refs         STORE/refs/*.json                      references of containers elsewhere
    containers   STORE/containers/<name>/image.json     references of containers here
    sources      STORE/sources/<key>.json               what the store measured of a source's blobs,
                                                        with the stat of their file (key:
                                                        sha256(source path)[:32])

Standard library only. Private to the collection; may change without notice.
"""

import hashlib
import json
import os
import re
import time
from urllib.parse import quote, unquote

DEFAULT_STATE_DIR = "/var/lib/containerfs"
DEFAULT_RUN_DIR = "/run/containerfs"

TEMP_PREFIX = ".tmp-"   # the store removes such leftovers of an interrupted run
ETC_FILES = ("hostname", "hosts", "resolv.conf")
NS_DIR_NAMES = ("mnt", "uts", "ipc", "net", "cgroup")


def _key(state):
    """A short key of a container's state dir: unique among containers sharing a store."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()[:12]


def containers_dir(state_dir):
    """Where the state dirs of a state dir's containers lie (one per name)."""
    return os.path.join(state_dir, "containers")


# The run files a `run` of the script empties with builtins when it ends (its fifo, `fifo`,
# is kept for the next run): keys of container_paths, each a file directly in RUN.
RUN_FILES_EMPTIED = ("fstab", "mount_err", "pid", "signal")


def run_file_names(paths):
    """The names in the run dir of the RUN_FILES_EMPTIED of `paths` (container_paths)."""
    return tuple(os.path.basename(paths[key]) for key in RUN_FILES_EMPTIED)


def container_state(state_dir, name):
    return os.path.join(containers_dir(state_dir), name)


def container_run(run_dir, name):
    """A container's run dir (see container_paths: run)."""
    return os.path.join(run_dir, name)


def container_record(state_dir, name):
    """The plan a container was last set up from (see container_paths: record)."""
    return os.path.join(container_state(state_dir, name), "plan.json")


def container_paths(name, state_dir, run_dir, overlay, rootfs_path=None, store=None):
    """Every host path of one container (see the table above). `store`: the image store
    when the rootfs comes from an image, else None."""
    state = container_state(state_dir, name)
    run = container_run(run_dir, name)
    paths = {
        "state": state,
        "etc": os.path.join(state, "etc"),
        "upper": os.path.join(state, "upper") if overlay else None,
        "work": os.path.join(state, "work") if overlay else None,
        "record": container_record(state_dir, name),
        "script": os.path.join(state, "container.sh"),
        "log": os.path.join(state, "container.log"),
        "exit_status": os.path.join(state, "exit"),
        "volumes": os.path.join(state, "volumes"),
        "env_probe": os.path.join(state, "env-signals"),
        "image_ref": None,
        "run": run,
        "root": os.path.join(run, "rootfs") if overlay else rootfs_path,
        "ns": os.path.join(run, "ns"),
        "fstab": os.path.join(run, "fstab"),
        "mount_err": os.path.join(run, "mount.err"),
        "fifo": os.path.join(run, "go"),
        "pid": os.path.join(run, "pid"),
        "monitor": os.path.join(run, "monitor"),
        "stopping": os.path.join(run, "stopping"),
        "signal": os.path.join(run, "signal"),
        # beside the run dir, which removal deletes
        "lock": os.path.join(run_dir, name + ".lock"),
        "store": None, "store_lock": None, "layer_temp": None,
    }
    if store is not None:
        paths.update(_image_paths(name, state, state_dir, store))
    return paths


def _image_paths(name, state, state_dir, store):
    layout = StoreLayout(store)
    if os.path.normpath(store) == os.path.normpath(state_dir):
        ref = os.path.join(state, "image.json")
    else:
        ref = layout.container_ref(name, _key(state))
    return {"image_ref": ref, "store": layout.root, "store_lock": layout.lock,
            # this container's temporary layer dirs (the script adds the layer and a pid)
            "layer_temp": layout.temp(_key(state))}


def store_of_ref(ref, state):
    """The store a container's image reference lies in (its own STATE/image.json: the
    state dir's store)."""
    ref = os.path.normpath(ref)
    if os.path.dirname(ref) == os.path.normpath(state):
        return os.path.dirname(os.path.dirname(os.path.dirname(ref)))
    return os.path.dirname(os.path.dirname(ref))


def unit_name(name):
    """The systemd unit that supervises a container where systemd is pid 1."""
    return "containerfs-%s.service" % name


def etc_file(paths, name):
    """A generated /etc file of a container (hostname, hosts, resolv.conf)."""
    if name not in ETC_FILES:
        raise ValueError("no generated /etc file %r" % (name,))
    return os.path.join(paths["etc"], name)


def ns_file(ns_dir, ns_name):
    """A pinned namespace's file (ns_name as /proc/PID/ns names it: mnt, uts...)."""
    if ns_name not in NS_DIR_NAMES:
        raise ValueError("no pinned namespace %r" % (ns_name,))
    return os.path.join(ns_dir, ns_name)


def image_volume(state_dir, name, dirname):
    """Where an image's VOLUME lives for a container."""
    return os.path.join(container_state(state_dir, name), "volumes", dirname)


def dev_template(state, devices):
    """The cached /dev template for a list of device steps: a new one when they change."""
    text = json.dumps(devices, sort_keys=True)
    return os.path.join(state, "dev." + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16])


def flatten_sidecar(dest):
    """The record beside a flattened tree that marks it as ours."""
    return os.path.abspath(dest) + ".image.json"


def _hex(diff_id):
    return diff_id.split(":", 1)[-1]


class StoreLayout:
    """The paths of an image store rooted at `root` (see the table above)."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.layers_dir = os.path.join(self.root, "layers", "sha256")
        self.images_dir = os.path.join(self.root, "images")
        self.refs_dir = os.path.join(self.root, "refs")
        self.containers_dir = os.path.join(self.root, "containers")
        self.sources_dir = os.path.join(self.root, "sources")
        self.lock = os.path.join(self.root, ".lock")

    def source_blobs(self, source):
        """What the store measured of an image source's blobs (one file per source path)."""
        key = hashlib.sha256(os.path.abspath(source).encode("utf-8")).hexdigest()[:32]
        return os.path.join(self.sources_dir, key + ".json")

    @staticmethod
    def is_source_blobs(file_name):
        return re.fullmatch(r"[0-9a-f]{32}\.json", file_name) is not None

    def layer(self, diff_id):
        return os.path.join(self.layers_dir, _hex(diff_id))

    def layer_meta(self, diff_id):
        return self.layer(diff_id) + ".json"

    def temp(self, tag):
        """A temporary name in the layer dir (complete it to make it unique)."""
        return os.path.join(self.layers_dir, TEMP_PREFIX + tag)

    @staticmethod
    def is_temp(name):
        return name.startswith(TEMP_PREFIX)

    def image_record(self, name):
        return os.path.join(self.images_dir, quote(name, safe="@:+-_.") + ".json")

    @staticmethod
    def image_name(file_name):
        """The image a file of images/ records, or None when it is no record."""
        if not file_name.endswith(".json") or TEMP_PREFIX in file_name:
            return None
        return unquote(file_name[:-5])

    def container_ref(self, name, key):
        """A reference of a container whose state dir is elsewhere (key: of that dir)."""
        return os.path.join(self.refs_dir, "container-%s-%s.json" % (name, key))

    def container_image_ref(self, container_dir_name):
        return os.path.join(self.containers_dir, container_dir_name, "image.json")


# --------------------------------------------------------------------------- layer metadata

LAYER_METADATA_KEYS = ("compression", "created", "diff_id", "digest", "media_type", "size", "warnings")
# Where the script writes the time it unpacked a layer (it has no clock at render time).
CREATED_AT_RUN_TIME = "@created@"


def layer_metadata(diff_id, digest, size, media_type, compression, warnings=(), created=None):
    """The one schema of a layer's metadata file (its presence: complete and verified).
    created: a UTC time, "YYYY-MM-DDTHH:MM:SSZ" (default: now)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("layer size must be a non-negative integer, not %r" % (size,))
    return {"compression": compression or None, "created": created or utc_now(),
            "diff_id": diff_id, "digest": digest, "media_type": media_type or None,
            "size": size, "warnings": list(warnings)}


def layer_metadata_text(metadata):
    """The metadata file's text (sorted keys: the script finds "created" first)."""
    return json.dumps(metadata, sort_keys=True) + "\n"


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# What the record's digest starts with while a set-up from scratch is under way (both
# back-ends write it first): a run killed half-way leaves a record that names every path
# but matches no spec, so the next run rebuilds.
RECORD_INCOMPLETE = "incomplete set-up of "


def record_text(plan, complete=True):
    """The text of a container's record (STATE/plan.json), written by the applier and by
    the script's `up` alike; incomplete: marked as a set-up under way."""
    if not complete:
        plan = dict(plan, digest=RECORD_INCOMPLETE + plan["digest"])
    # One top-level key a line, values compact: the digest comes first, on a line of its
    # own the script reads with `read` (RECORD_DIGEST_PREFIX); the rest stays short.
    keys = ["digest"] + sorted(key for key in plan if key != "digest")
    lines = ["%s: %s" % (json.dumps(key), json.dumps(plan[key], sort_keys=True, separators=(",", ":")))
             for key in keys]
    return "{" + ",\n".join(lines) + "}"


# How a record's first line starts, before the digest (see record_text).
RECORD_DIGEST_PREFIX = '{"digest": "'


# The keys container_paths() gives: what a recorded plan must hold (checked before use).
CONTAINER_PATH_KEYS = tuple(sorted(container_paths("x", "/s", "/r", True, store="/t")))
