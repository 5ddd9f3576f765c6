# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan: an ordered list of typed steps derived from a normalised spec.

This is the one place that knows the order of mounts and their options. Back-ends
(the shell renderer, the Linux applier, the OCI exporter) render or apply these steps;
they never re-derive them. `build_plan()` reads like runc's prepareRootfs: one function
per phase, in order, with the reason for each position next to it.

Every step is a plain dict with an ``op`` (the step kind), the fields that kind needs,
``phase`` (``host``: done before entering the namespaces; ``root``: inside the new mount
namespace, against the container root; ``final``: after pivot_root), ``why``, and
``at_start``: true for what belongs to a running process tree (the /proc of its pid
namespace and the paths in it), which a persistent container filesystem gets only when
its process starts.
Container paths stay container paths; back-ends join them with the root they build.

Private to the collection; may change without notice.
"""

import hashlib
import json
import os

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import (
    DEFAULT_DEV_SYMLINKS, NAMESPACE_TYPES)

PLAN_VERSION = 1

# Step kinds, in the order a reader meets them. Each back-end has one handler per kind.
STEP_KINDS = (
    "unpack_layer", "write_file", "copy_file", "make_dir", "namespaces", "mount_rootfs", "mount_point", "mount",
    "cgroup",
    "mknod", "symlink", "hostname", "workdir", "remount_readonly", "readonly_path", "mask_path",
    "remount_root_readonly", "pivot_root", "root_propagation", "exec",
)

# Mount-like steps: each carries its options in the typed form of _mountopts.parse().
MOUNT_STEPS = ("mount_rootfs", "mount", "cgroup", "remount_readonly", "readonly_path", "mask_path",
               "remount_root_readonly")

# The options of what the plan mounts itself, typed once here (runc's values).
CGROUP_V1_TMPFS_OPTIONS = mountopts.parse(["nosuid", "nodev", "noexec", "mode=755"])
MASK_DIR_OPTIONS = mountopts.parse(["ro", "nosuid", "nodev", "noexec", "nr_blocks=1", "nr_inodes=1"])
MASK_FILE_OPTIONS = mountopts.parse(["bind"])
ROOTFS_BIND_OPTIONS = mountopts.parse(["rbind"])
ETC_BIND_OPTIONS = mountopts.parse(["bind"])
# A bind remount sets exactly the flags it is given (the rest are added per step).
READONLY_PATH_OPTIONS = mountopts.parse(["rbind", "ro"])
ROOT_READONLY_OPTIONS = mountopts.parse(["bind", "remount", "ro"])
# The propagation of / in the new mount namespace: rslave, as runc: no mount event leaks
# back to the host, host->container still flows.
NAMESPACE_PROPAGATION = "rslave"


def spec_digest(spec):
    """A stable digest of a normalised spec (sorted-key JSON)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def layer_dir(store, diff_id):
    """Where the image store keeps an unpacked layer (shared by every container)."""
    return _layout.StoreLayout(store).layer(diff_id)


def lower_dirs(rootfs):
    """overlayfs lowerdirs of a rootfs, top layer first."""
    image = rootfs["image"]
    if image is None:
        return [rootfs["path"]]
    resolved = image["resolved"]
    if resolved.get("rootfs"):
        return [resolved["rootfs"]]
    return [layer_dir(image["store"], layer["diff_id"]) for layer in reversed(resolved["layers"])]


def container_paths(spec):
    """Host paths the container uses (the table in _layout): state, run dir, rootfs..."""
    rootfs = spec["rootfs"]
    image = rootfs["image"]
    return _layout.container_paths(spec["name"], spec["state_dir"], spec["run_dir"],
                                   overlay=rootfs["overlay"], rootfs_path=rootfs["path"],
                                   store=image["store"] if image is not None else None)


def _step(op, phase, why, **fields):
    if op not in STEP_KINDS:
        raise ValueError("unknown plan step kind %r" % op)
    step = {"op": op, "phase": phase, "why": why, "at_start": phase == "final"}
    step.update(fields)
    return step


def _in_proc(path):
    return path == "/proc" or path.startswith("/proc/")


# ---------------------------------------------------------------------------------------
# Phases, in order.
# ---------------------------------------------------------------------------------------

def _image_layers(spec, paths):
    """Image layers, verified and unpacked once into the shared store (bottom first)."""
    image = spec["rootfs"]["image"]
    if image is None:
        return []
    resolved = image["resolved"]
    if resolved.get("rootfs"):
        # a directory used as it is (format dir): nothing to unpack; a stored one by name
        # gets a reference all the same, so that the store sees its user (image_info's
        # containers, absent refused without force)
        return _image_reference(paths, {"image": image["name"], "layers": []}) if image.get("name") else []
    # The reference first: the store's garbage collection keeps the layers a container
    # lists (its own containers/<name>/image.json, or a file in <store>/refs/ for a store
    # of its own), so a collection running while these layers unpack cannot take them.
    steps = _image_reference(paths, {"layers": [layer["diff_id"] for layer in resolved["layers"]]})
    # how to reach a registry source (auth file, CA, TLS; no credentials) and the budgets of
    # the unpacking (_image.budget), when the spec gives them
    options = dict((key, dict(image[key])) for key in ("registry", "limits") if image.get(key))
    for layer in resolved["layers"]:
        steps.append(_step(
            "unpack_layer", "host", "image layer: verify digest and diff_id, unpack once, "
            "whiteouts as overlayfs wants them", source=image["source"], format=resolved["format"],
            blob=layer["path"], digest=layer["digest"], size=layer["size"],
            diff_id=layer["diff_id"], compression=layer["compression"] or "",
            media_type=layer.get("media_type"), dest=layer_dir(image["store"], layer["diff_id"]),
            **options))
    return steps


def _image_reference(paths, data):
    """The steps writing the container's reference into the image store (`data`: the layers it
    uses, and the name of a stored image it uses)."""
    steps = []
    if os.path.dirname(paths["image_ref"]) != paths["state"]:
        steps.append(_step("make_dir", "host", "references into a store of its own",
                           path=os.path.dirname(paths["image_ref"]), mode="0755"))
    steps.append(_step("write_file", "host", "what this container uses of the image store (kept by "
                       "its garbage collection; image_info lists the container)", path=paths["image_ref"],
                       content=json.dumps(data, sort_keys=True) + "\n", mode="0644"))
    return steps


def _host_files(spec, paths):
    """/etc files are generated outside the rootfs, so the image stays untouched."""
    steps = [_step("make_dir", "host", "per-container state: generated /etc files, overlay dirs",
                   path=paths["etc"], mode="0755")]
    steps += [_step("make_dir", "host", "volume source, made on first use", path=v["source"],
                    mode="0755") for v in spec["volumes"] if v.get("create")]
    etc = spec["etc"]
    if etc["hostname"] and spec["hostname"]:
        steps.append(_step("write_file", "host", "the container's /etc/hostname",
                           path=_layout.etc_file(paths, "hostname"),
                           content=spec["hostname"] + "\n", mode="0644"))
    if etc["hosts"]:
        steps.append(_step("write_file", "host", "the container's /etc/hosts",
                           path=_layout.etc_file(paths, "hosts"),
                           content=_hosts_content(spec), mode="0644"))
    if etc["resolv_conf"]:
        target = _layout.etc_file(paths, "resolv.conf")
        if any(spec["dns"].values()):
            steps.append(_step("write_file", "host", "resolv.conf from the spec's dns settings",
                               path=target, content=_resolv_content(spec["dns"]), mode="0644"))
        else:
            steps.append(_step("copy_file", "host", "no dns settings: use a copy of the host's",
                               source="/etc/resolv.conf", path=target, mode="0644"))
    if spec["rootfs"]["overlay"]:
        for key in ("upper", "work"):
            steps.append(_step("make_dir", "host", "overlay %s dir: the image stays pristine" % key,
                               path=paths[key], mode="0755"))
        steps.append(_step("make_dir", "host", "mount point of the merged rootfs",
                           path=paths["root"], mode="0755"))
    return steps


def _hosts_content(spec):
    names = [spec["hostname"]] if spec["hostname"] else []
    lines = ["127.0.0.1\tlocalhost" + "".join(" " + n for n in names),
             "::1\tlocalhost ip6-localhost ip6-loopback"]
    for entry in spec["etc"]["extra_hosts"]:
        lines.append("%s\t%s" % (entry["address"], " ".join(entry["names"])))
    return "\n".join(lines) + "\n"


def _resolv_content(dns):
    lines = ["nameserver %s" % server for server in dns["nameservers"]]
    if dns["search"]:
        lines.append("search " + " ".join(dns["search"]))
    if dns["options"]:
        lines.append("options " + " ".join(dns["options"]))
    return "\n".join(lines) + "\n"


def _enter_namespaces(spec):
    # fork: a fresh pid namespace gets its pid 1 from a forked child (unshare --fork), and
    # that child dies with the one that made it (--kill-child).
    fresh_pid = any(n["type"] == "pid" and not n["path"] for n in spec["namespaces"])
    return [_step("namespaces", "host", "fresh namespaces; / becomes %s so nothing leaks out"
                  % NAMESPACE_PROPAGATION, namespaces=spec["namespaces"],
                  propagation=NAMESPACE_PROPAGATION, fork=fresh_pid)]


def _rootfs(spec, paths):
    rootfs = spec["rootfs"]
    if rootfs["overlay"]:
        lower = lower_dirs(rootfs)
        return [_step("mount_rootfs", "root", "overlay: writes go to the per-container upper dir",
                      kind="overlay", target=paths["root"], lower=lower,
                      upper=paths["upper"], work=paths["work"],
                      options=mountopts.parse(["lowerdir=" + ":".join(lower), "upperdir=" + paths["upper"],
                                               "workdir=" + paths["work"]]))]
    return [_step("mount_rootfs", "root", "pivot_root needs the rootfs to be a mount point",
                  kind="bind", target=paths["root"], source=rootfs["path"],
                  options=mountopts.copy_of(ROOTFS_BIND_OPTIONS))]


def _spec_mounts(spec):
    """The spec's filesystems in the listed order (runtime-spec: MUST mount in order)."""
    cgroupns = any(n["type"] == "cgroup" for n in spec["namespaces"])
    steps = []
    for mount in spec["mounts"]:
        if mount["type"] == "cgroup":
            # On a v1 host: a tmpfs holds one mount per hierarchy (runc's mountCgroupV1),
            # remounted read-only once they are in when the spec asks for ro (finalizeRootfs).
            options = mountopts.parse(mount["options"])
            remount = None
            if mountopts.is_readonly(options):
                remount = mountopts.with_flags(CGROUP_V1_TMPFS_OPTIONS, "remount", "ro")
            bind = mountopts.copy_of(options)
            bind["bind"] = "bind"
            steps.append(_step("cgroup", "root", "cgroup v2, or tmpfs plus v1 hierarchies; "
                               "chosen at run time from the host", target=mount["target"],
                               options=options, cgroupns=cgroupns,
                               v1_tmpfs_options=mountopts.copy_of(CGROUP_V1_TMPFS_OPTIONS),
                               v1_tmpfs_remount=remount, v1_bind_options=bind))
        else:
            steps.append(_mount_step(mount))
    return steps


def _mount_points(mounts):
    # A persistent container mounts its process's /proc only at start, when / is read-only
    # already (runc makes every mount point before it turns / read-only): made beforehand.
    return [_step("mount_point", "root", "%s: its mount point, made while / is writable (mounted "
                  "when the process starts)" % step["target"], path=step["target"])
            for step in mounts if step["at_start"] and step["create"] == "dir"]


def _mount_step(mount):
    fstype = mount["type"]
    bind = fstype == "bind"
    reason = {"proc": "the proc of the container's own pid namespace",
              "sysfs": "sysfs, of the container's network namespace",
              "devpts": "a private devpts instance: its own ptys and ptmx",
              "mqueue": "POSIX message queues of the container's ipc namespace",
              "tmpfs": "a tmpfs", "bind": "a bind mount from the host"}.get(fstype, fstype)
    why = "%s: %s" % (mount["target"], reason)
    return _step("mount", "root", why, fstype=fstype, source=mount["source"],
                 target=mount["target"], options=mountopts.parse(mount["options"]),
                 # proc and sysfs go on a real directory only, never through a symlink
                 # (CVE-2019-19921, CVE-2023-27561); so does /dev, where the device nodes,
                 # the /dev links and devpts follow (runc follows it in the root).
                 no_symlinks=fstype in ("proc", "sysfs") or mount["target"] == "/dev",
                 create="match_source" if bind else "dir", readonly_later=False,
                 at_start=fstype == "proc")


def _volumes(spec):
    # After the pseudo filesystems and before the /etc binds, as runc orders docker's -v.
    steps = []
    for volume in spec["volumes"]:
        if volume["type"] == "bind":
            words = ["rbind" if volume["recursive"] else "bind"]
            words += ["ro"] if volume["readonly"] else []
            words += volume["options"] + [volume["propagation"]]
            steps.append(_step("mount", "root", "volume: bind %s" % volume["source"],
                               fstype="bind", source=volume["source"], target=volume["target"],
                               options=_volume_options(words, volume), no_symlinks=False,
                               create="match_source", readonly_later=False))
        else:
            words = ["nosuid", "nodev"] + (["ro"] if volume["readonly"] else [])
            words += volume["options"]
            words += ["size=" + volume["size"]] if volume["size"] else []
            words += ["mode=" + volume["mode"]] if volume["mode"] else []
            steps.append(_step("mount", "root", "volume: tmpfs", fstype="tmpfs", source="tmpfs",
                               target=volume["target"], options=_volume_options(words, volume),
                               no_symlinks=False, create="dir", readonly_later=False))
    return steps


def _volume_options(words, volume):
    """The typed options of a volume: `readonly: true` wins over any word of its options."""
    options = mountopts.parse(words)
    if volume["readonly"] and not mountopts.is_readonly(options):
        options = mountopts.with_flags(options, "ro")
    return options


def _etc_binds(spec, paths):
    steps = []
    for name in ("hostname", "hosts", "resolv.conf"):
        if spec["etc"][name.replace(".", "_")] and (name != "hostname" or spec["hostname"]):
            steps.append(_step("mount", "root", "generated /etc/%s, bound over the image's" % name,
                               fstype="bind", source=_layout.etc_file(paths, name),
                               target="/etc/" + name, options=mountopts.copy_of(ETC_BIND_OPTIONS),
                               no_symlinks=False, create="file", readonly_later=False))
    return steps


def _devices(spec):
    """Device nodes and /dev symlinks, after the mounts (runc doSetupDev).

    Skipped when the spec binds something over /dev: then /dev is the user's.
    """
    dev = [m for m in spec["mounts"] + spec["volumes"] if m["target"] == "/dev"]
    if dev and dev[0]["type"] == "bind":
        return []
    steps = [_step("mknod", "root", "device node", path=d["path"], type=d["type"],
                   major=d["major"], minor=d["minor"], mode=d["mode"], uid=d["uid"], gid=d["gid"])
             for d in spec["devices"]]
    for link in DEFAULT_DEV_SYMLINKS:
        steps.append(_step("symlink", "root", "standard /dev link", path=link["path"],
                           link_to=link["link_to"], if_exists=link.get("if_exists")))
    return steps


def _workdir(spec):
    cwd = spec["process"]["cwd"]
    if cwd == "/":
        return []
    # Made when missing, as runc does (an image's WorkingDir need not exist), and before the
    # root turns read-only.
    return [_step("workdir", "root", "the process's working directory, made when missing",
                  path=cwd)]


def _hostname(spec):
    if not spec["hostname"]:
        return []
    return [_step("hostname", "root", "set in the container's own UTS namespace",
                  name=spec["hostname"])]


def _late_readonly(steps):
    """Read-only the way runc does (mountPropagate, then finalizeRootfs): a read-only tmpfs
    or bind with anything made below it later in the plan (a mount point, a device node, the
    working directory) is mounted read-write, and remounted read-only here, once all of it
    exists. Marks those mounts in `steps` (readonly_later) and returns the remount steps."""
    late = []
    for index, step in enumerate(steps):
        if step["op"] != "mount" or step["fstype"] not in ("tmpfs", "bind"):
            continue
        if not mountopts.is_readonly(step["options"]) or step["at_start"]:
            continue
        if not any(_creates_below(later, step["target"]) for later in steps[index + 1:]):
            continue
        bind = step["fstype"] == "bind"
        step["options"] = mountopts.without_flags(step["options"], "ro")
        step["readonly_later"] = True
        # A bind remount sets exactly the flags it is given; a tmpfs remount keeps its data.
        remount = mountopts.with_flags(mountopts.empty(), "remount", *(step["options"]["set"] + ["ro"]))
        remount["bind"] = "bind" if bind else None
        late.append(_step("remount_readonly", "root", "%s: read-only now that everything below it "
                          "exists" % step["target"], target=step["target"], fstype="none" if bind else "tmpfs",
                          # source none: `mount --all` skips a line whose source and target
                          # match a mounted filesystem as "already mounted", remount or not
                          source="none", options=remount))
    return late


def _creates_below(step, target):
    path = step.get("target") if step["op"] in ("mount", "cgroup") else step.get("path")
    if step["op"] not in ("mount", "cgroup", "mknod", "symlink", "workdir", "mount_point") or not path:
        return False
    return path.startswith(target.rstrip("/") + "/")


def _harden(spec, mounts):
    # After every mount, volumes included, so a volume cannot undo a mask. Read-only paths
    # first, then masks (runc order). A path that does not exist is skipped.
    steps = [_readonly_path(p, _lies_on(mounts, p)) for p in spec["readonly_paths"]]
    steps += [_step("mask_path", "root", "masked path: /dev/null over a file, an empty "
                    "read-only tmpfs over a directory", path=p, options=mountopts.copy_of(MASK_DIR_OPTIONS),
                    file_options=mountopts.copy_of(MASK_FILE_OPTIONS),
                    at_start=_in_proc(p), lies_on=_lies_on(mounts, p))
              for p in spec["masked_paths"]]
    return steps


def _readonly_path(path, lies_on):
    """A bind of the path onto itself, made read-only, keeping the nosuid, nodev and noexec
    of the filesystem it lies on: from the plan's own options when it knows them, else
    (keep_live_flags) from the live mount table, as runc does with statfs."""
    options = READONLY_PATH_OPTIONS
    if lies_on:
        options = mountopts.with_flags(options, *lies_on["flags"])
    return _step("readonly_path", "root", "read-only path", path=path, at_start=_in_proc(path),
                 options=mountopts.copy_of(options), keep_live_flags=lies_on is None, lies_on=lies_on)


def _lies_on(mounts, path):
    """The filesystem of the plan a path lies on, when the plan alone tells it:
    {target, flags (its nosuid/nodev/noexec, from the typed options the plan built),
    is_mount_point}; else None.

    Only fresh filesystems are known: a bind carries the flags of its host mount, and a
    cgroup v1 tmpfs gets its hierarchies mounted at run time.
    """
    found = None
    for step in mounts:
        target = step["target"]
        if path == target or path.startswith(target.rstrip("/") + "/"):
            if found is None or len(target) >= len(found["target"]):
                found = step
    if found is None or found["op"] == "cgroup" or found["fstype"] == "bind":
        return None
    flags = [w for w in mountopts.checked_flags(found["options"]) if w in mountopts.INHERITED_FLAGS]
    return {"target": found["target"], "flags": flags, "is_mount_point": found["target"] == path}


def _readonly_root(spec):
    if not spec["rootfs"]["readonly"]:
        return []
    # Last of the root phase: mount points had to be created first. Only / itself, not the
    # mounts on top (runc's setReadonly is not recursive either).
    return [_step("remount_root_readonly", "root", "read-only root: only / itself, not its submounts",
                  options=mountopts.copy_of(ROOT_READONLY_OPTIONS))]


def _pivot(spec):
    steps = [_step("pivot_root", "final", "switch to the new root and detach the old one")]
    propagation = spec["rootfs"]["propagation"]
    if propagation and propagation not in ("slave", "rslave"):
        # After the pivot: doing it before would act on a mount the host can see.
        steps.append(_step("root_propagation", "final", "rootfs propagation from the spec",
                           propagation=propagation))
    return steps


def _exec(spec):
    process = spec["process"]
    return [_step("exec", "final", "the container process, as pid 1 of its pid namespace",
                  args=list(process["args"]), env=list(process["env"]), cwd=process["cwd"],
                  uid=process["uid"], gid=process["gid"])]


def build_plan(spec):
    """Return the plan for a normalised spec: {'name', 'digest', 'paths', 'steps'}."""
    paths = container_paths(spec)
    steps = []
    steps += _host_files(spec, paths)
    steps += _image_layers(spec, paths)
    steps += _enter_namespaces(spec)
    steps += _rootfs(spec, paths)
    mounts = _spec_mounts(spec) + _volumes(spec) + _etc_binds(spec, paths)
    steps += mounts
    steps += _devices(spec)
    steps += _hostname(spec)
    steps += _mount_points(mounts)
    steps += _workdir(spec)
    steps += _late_readonly([s for s in steps if s["phase"] == "root"])
    steps += _harden(spec, mounts)
    steps += _readonly_root(spec)
    steps += _pivot(spec)
    steps += _exec(spec)
    paths["dev_template"] = _dev_template(paths, steps)
    return {"version": PLAN_VERSION, "name": spec["name"], "digest": spec_digest(spec),
            "paths": paths, "steps": steps}


def plan_for_removal(name, state_dir=None, run_dir=None):
    """The plan of a container known by its name alone, for its removal when no plan of
    it was recorded (never made, gone already, or a set-up that stopped before writing its
    record): its paths, which the layout derives from the name and dirs (their defaults
    when None), and the namespaces step of a container with every kind of namespace, so
    that whatever such a set-up pinned is found. No spec is needed, nor checked."""
    every_kind = [{"type": kind, "path": None} for kind in NAMESPACE_TYPES]
    paths = _layout.container_paths(name, state_dir or _layout.DEFAULT_STATE_DIR,
                                    run_dir or _layout.DEFAULT_RUN_DIR, overlay=True)
    return {"version": PLAN_VERSION, "name": name, "digest": None, "paths": paths,
            "steps": _enter_namespaces({"namespaces": every_kind})}


def _dev_template(paths, steps):
    """The cached /dev of these device steps (None: the container makes no device)."""
    devices = [s for s in steps if s["op"] in ("mknod", "symlink")]
    return _layout.dev_template(paths["state"], devices) if devices else None


# ---------------------------------------------------------------------------------------
# Human-readable form (``containerfs plan``).
# ---------------------------------------------------------------------------------------

def describe_step(step):
    """One line saying what a step does, in mount(8)-like words."""
    op = step["op"]
    describe = _DESCRIBERS.get(op)
    return describe(step) if describe else op


def _opts(options):
    return mountopts.option_string(options)


_DESCRIBERS = {
    "unpack_layer": lambda s: "unpack layer %s (%s) into %s" % (s["diff_id"], s["digest"], s["dest"]),
    "write_file": lambda s: "write %s (%d bytes, mode %s)" % (s["path"], len(s["content"]), s["mode"]),
    "copy_file": lambda s: "copy %s to %s" % (s["source"], s["path"]),
    "make_dir": lambda s: "mkdir -p %s" % s["path"],
    "namespaces": lambda s: "unshare %s (propagation %s)" % (
        " ".join(n["type"] + ("=" + n["path"] if n["path"] else "") for n in s["namespaces"]),
        s["propagation"]),
    "mount_rootfs": lambda s: (
        "mount overlay on %s (lower %s, upper %s)" % (s["target"], ":".join(s["lower"]), s["upper"])
        if s["kind"] == "overlay" else "bind %s onto itself" % s["target"]),
    "mount": lambda s: "mount %s %s on %s (%s%s)" % (s["fstype"], s["source"], s["target"], _opts(s["options"]),
                                                     ", read-only later" if s.get("readonly_later") else ""),
    "cgroup": lambda s: "mount cgroup on %s (%s%s)" % (s["target"], _opts(s["options"]),
                                                       ", cgroupns" if s["cgroupns"] else ""),
    "mknod": lambda s: "mknod %s %s %d:%d mode %s uid %d gid %d" % (
        s["path"], s["type"], s["major"], s["minor"], s["mode"], s["uid"], s["gid"]),
    "symlink": lambda s: "ln -s %s %s%s" % (s["link_to"], s["path"],
                                            " (if %s exists)" % s["if_exists"] if s["if_exists"] else ""),
    "hostname": lambda s: "hostname %s" % s["name"],
    "workdir": lambda s: "mkdir -p %s (if missing)" % s["path"],
    "mount_point": lambda s: "mkdir -p %s (if missing: a mount point)" % s["path"],
    "remount_readonly": lambda s: "remount %s read-only (%s)" % (s["target"], _opts(s["options"])),
    "readonly_path": lambda s: "read-only %s (if it exists)" % s["path"],
    "mask_path": lambda s: "mask %s (if it exists)" % s["path"],
    "remount_root_readonly": lambda s: "remount / read-only",
    "pivot_root": lambda s: "pivot_root into the new root, detach the old root",
    "root_propagation": lambda s: "make / %s" % s["propagation"],
    "exec": lambda s: "exec %s as %d:%d in %s" % (json.dumps(s["args"]), s["uid"], s["gid"], s["cwd"]),
}


def format_plan(plan):
    lines = ["plan for container %s (%s)" % (plan["name"], plan["digest"])]
    phase = None
    for number, step in enumerate(plan["steps"], 1):
        if step["phase"] != phase:
            phase = step["phase"]
            lines.append({"host": "on the host:", "root": "inside the new mount namespace, "
                          "under the container root:", "final": "switch root and start:"}[phase])
        lines.append("%4d. %-60s # %s" % (number, describe_step(step), step["why"]))
    return "\n".join(lines) + "\n"
