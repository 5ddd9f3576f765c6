# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI runtime bundles: import a config.json as a spec, export a spec as a bundle.

Import (`import_config`, `spec_from_bundle`) turns an OCI config.json into a *raw* spec
(what a user would write; `_spec.load_spec` then validates it). Every field is either
read, ignored with a warning (it only configures the runtime's process setup, which
containerfs does not do: `IGNORED`), or refused with an error naming it (a warning, and
the field dropped, under ``lenient``): nothing is dropped in silence.

Export (`export_bundle`) turns a normalised spec into a config.json dict. The mounts come
from the plan's own mount steps, so the exporter never re-derives options: the spec's
`mounts`, then its `volumes`, then the generated /etc files (bind mounts of files written
into the bundle). What has no OCI field (name, /etc settings, dns, state and run dirs, and
where `mounts` end and `volumes` begin) goes into one annotation, `ANNOTATION`.

Mapping of OCI mounts on import: a run of entries at the *end* of the list that have the
exact shape the plan gives a volume (bind: ``[r]bind[,ro],...,<propagation>``; tmpfs:
``nosuid,nodev[,ro],...[,size=][,mode=]``) becomes `volumes`, everything before it
`mounts`, in order; the annotation's counts, when present and consistent, decide instead.
So import(export(spec)) == spec. See docs/runc-users.md.

Standard library only. Private to the collection; may change without notice.
"""

import copy
import json
import os

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as plan_mod
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import defaults as spec_defaults
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import errors as spec_errors
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import text as spec_text
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import files as _spec_file

OCI_VERSION = "1.0.2"
ANNOTATION = "fromscratch.containerfs.spec"
ETC_FILES = ("hostname", "hosts", "resolv.conf")

NAMESPACES_TO_OCI = {"net": "network"}
NAMESPACES_FROM_OCI = {"network": "net", "mount": "mount", "uts": "uts", "ipc": "ipc",
                       "pid": "pid", "cgroup": "cgroup"}

# Fields read, per object. Anything else is in IGNORED or an error.
READ = {
    "": ("ociVersion", "root", "hostname", "mounts", "process", "linux", "annotations"),
    "root": ("path", "readonly"),
    "process": ("args", "env", "cwd", "user"),
    "process.user": ("uid", "gid", "umask", "additionalGids"),
    "linux": ("namespaces", "devices", "maskedPaths", "readonlyPaths", "rootfsPropagation"),
}

# Runtime process setup, not filesystem: accepted, reported in one warning, not applied.
IGNORED = {
    "process": ("terminal", "consoleSize", "capabilities", "rlimits", "noNewPrivileges",
                "apparmorProfile", "selinuxLabel", "oomScoreAdj", "ioPriority", "scheduler",
                "execCPUAffinity"),
    "linux": ("resources", "cgroupsPath", "seccomp", "intelRdt", "personality", "memoryPolicy"),
}

# Why some notable unsupported fields are refused (the message of their error).
UNSUPPORTED_WHY = {
    "hooks": "hooks run programs during setup; containerfs runs none",
    "domainname": "the domain name is not set by containerfs",
    "linux.uidMappings": "user namespaces are not supported",
    "linux.gidMappings": "user namespaces are not supported",
    "linux.sysctl": "sysctls are not written by containerfs",
    "linux.mountLabel": "SELinux mount labels are not supported",
    "linux.timeOffsets": "time namespaces are not supported",
    "linux.netDevices": "network devices are not moved by containerfs",
    "process.user.additionalGids": "supplementary groups are not set (the process runs "
                                   "with none)",
    "process.user.umask": "the process umask is always 0022",
}


class _Importer:
    """Reads one config.json; collects errors (or, lenient, warnings) with field paths."""

    def __init__(self, lenient):
        self.lenient = lenient
        self.errors = []
        self.warnings = []
        self.ignored = []

    def unsupported(self, path, message):
        if self.lenient:
            self.warnings.append("%s: %s (ignored: --lenient)" % (path, message))
        else:
            self.errors.append((path, message))

    def text(self, path, value, refuse="", free=False):
        """`value` when it is a string its place allows (as _spec.bad_char), else None
        (reported): config.json text reaches the spec only through here or load_spec."""
        if not isinstance(value, str):
            self.errors.append((path, "must be a string, got %s" % spec_text.type_name(value)))
            return None
        bad = spec_text.bad_char(value, refuse, free)
        if bad is not None:
            self.errors.append((path, "must not contain %r, got %r" % (bad, value)))
            return None
        return value

    def listed(self, path, value):
        """`value` as a list (null is empty); anything else is reported."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors.append((path, "must be an array, got %s" % spec_text.type_name(value)))
            return []
        return value

    def fields(self, path, value):
        """Return `value` as a dict; report every key neither read nor ignored."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.errors.append((path or "(config)", "must be an object"))
            return {}
        for key in value:
            where = "%s.%s" % (path, spec_text.key_text(key)) if path else spec_text.key_text(key)
            if key in READ.get(path, ()):
                continue
            if key in IGNORED.get(path, ()):
                if value[key] not in (None, False, [], {}, ""):
                    self.ignored.append(where)
                continue
            self.unsupported(where, UNSUPPORTED_WHY.get(where, "not supported by containerfs"))
        return value


def import_config(config, bundle_dir, lenient=False, name=None):
    """Return (raw spec, warnings) for an OCI config dict; raise SpecError on errors.

    `bundle_dir` is where relative root and bind paths are resolved (as runc does).
    """
    imp = _Importer(lenient)
    top = imp.fields("", config)
    version = str(top.get("ociVersion", ""))
    if not version.startswith("1."):
        imp.errors.append(("ociVersion", "must be a 1.x runtime-spec version, got %r" % version))
    ours = _annotation(imp, top.get("annotations"))
    raw = {"name": name or ours.get("name") or _name_from(bundle_dir)}
    linux = imp.fields("linux", top.get("linux"))
    raw["namespaces"] = _import_namespaces(imp, imp.listed("linux.namespaces", linux.get("namespaces")))
    raw["hostname"] = top.get("hostname") or None
    raw["rootfs"] = _import_root(imp, top.get("root"), linux, bundle_dir)
    mounts, volumes, etc = _import_mounts(imp, imp.listed("mounts", top.get("mounts")), ours, bundle_dir)
    if mounts != _default_mounts():
        raw["mounts"] = mounts
    if volumes:
        raw["volumes"] = volumes
    raw["etc"] = etc
    for key in ("dns", "state_dir", "run_dir"):
        if ours.get(key) and (key != "dns" or any(ours[key].values())):
            raw[key] = ours[key]
    devices = _import_devices(imp, imp.listed("linux.devices", linux.get("devices")))
    if devices:
        raw["devices"] = devices
    for key, oci, default in (("masked_paths", "maskedPaths", spec_defaults.RUNC_MASKED_PATHS),
                              ("readonly_paths", "readonlyPaths", spec_defaults.RUNC_READONLY_PATHS)):
        paths = linux.get(oci) or []
        if list(paths) != list(default):
            raw[key] = paths
    raw["process"] = _import_process(imp, top.get("process"))
    _check_texts(imp, top)
    if imp.errors:
        raise spec_errors.SpecError(imp.errors)
    warnings = list(imp.warnings)
    if imp.ignored:
        warnings.append("ignored (runtime process setup, not done by containerfs): %s"
                        % ", ".join(imp.ignored))
    return raw, warnings


def _absolute(value):
    return None if value.startswith("/") else "must be an absolute path, got %r" % value


def _one_of(words):
    return lambda value: None if value in words else "must be one of %s, got %r" % (", ".join(words), value)


# The strings of config.json copied into the spec, by where they are ("[]": every item):
# free text (a process argument or environment entry: no NUL only) or not, and what else
# the value must be, so that an error names the config.json field (load_spec checks all
# again, naming the spec's). Mounts and root.path are checked where they are read.
CONFIG_TEXTS = (
    ("hostname", False, None), ("process.cwd", False, None), ("process.args[]", True, None),
    ("process.env[]", True, None),
    ("linux.rootfsPropagation", False, _one_of(spec_defaults.ROOT_PROPAGATIONS)),
    ("linux.maskedPaths[]", False, _absolute), ("linux.readonlyPaths[]", False, _absolute),
    ("linux.namespaces[].type", False, None), ("linux.namespaces[].path", False, _absolute),
    ("linux.devices[].path", False, _absolute),
    ("linux.devices[].type", False, _one_of(("c", "b", "p", "u"))),
)


def _check_texts(imp, config):
    for spec, free, valid in CONFIG_TEXTS:
        for where, value in _values_at(config, spec.split("."), ""):
            if not isinstance(value, str) or imp.text(where, value, free=free) is None:
                continue
            problem = valid(value) if valid else None
            if problem:
                imp.errors.append((where, problem))


def _values_at(value, keys, where):
    """(field path, value) for each value at the dotted `keys` under `value`."""
    if not keys:
        yield where, value
        return
    key, each = keys[0].rstrip("[]"), keys[0].endswith("[]")
    child = value.get(key) if isinstance(value, dict) else None
    where = "%s.%s" % (where, key) if where else key
    if not each:
        yield from _values_at(child, keys[1:], where)
    elif isinstance(child, list):
        for index, item in enumerate(child):
            yield from _values_at(item, keys[1:], "%s[%d]" % (where, index))


def spec_from_bundle(bundle_dir, lenient=False):
    """Read BUNDLE/config.json as `runc run --bundle` does; return (raw spec, warnings)."""
    path = os.path.join(bundle_dir, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise spec_errors.SpecError([("", "cannot read %s: %s" % (path, exc.strerror))])
    config = _spec_file.load_json(data, path)
    return import_config(config, os.path.abspath(bundle_dir), lenient=lenient)


def _name_from(bundle_dir):
    base = os.path.basename(os.path.abspath(bundle_dir).rstrip("/")) or "container"
    name = "".join(ch if ch in NAME_CHARS else "-" for ch in base).lstrip("_.-")
    return name[:128] or "container"


NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

# Our annotation's fields and the type each must have (load_spec checks their contents).
ANNOTATION_TYPES = {"name": str, "dns": dict, "state_dir": str, "run_dir": str, "etc": dict,
                    "mounts": int}


def _annotation(imp, annotations):
    if not isinstance(annotations, dict) or ANNOTATION not in annotations:
        return {}
    where = "annotations.%s" % ANNOTATION
    try:
        ours = _spec_file.load_json(annotations[ANNOTATION], where)
    except spec_errors.SpecError as exc:
        imp.errors.extend((where, message) for _path, message in exc.errors)
        return {}
    except TypeError:
        ours = None
    if not isinstance(ours, dict):
        imp.errors.append((where, "must be a JSON object"))
        return {}
    bad = [key for key, value in ours.items() if ANNOTATION_TYPES.get(key) is None
           or isinstance(value, bool) or not isinstance(value, ANNOTATION_TYPES[key])]
    for key in bad:
        imp.errors.append(("%s.%s" % (where, spec_text.key_text(key)), "unknown field or wrong type"))
    return {} if bad else ours


def _import_root(imp, root, linux, bundle_dir):
    root = imp.fields("root", root)
    if not root.get("path"):
        imp.errors.append(("root.path", "is required"))
    path = imp.text("root.path", root.get("path") or "")
    out = {"path": os.path.normpath(os.path.join(bundle_dir, path or "")),
           "readonly": root.get("readonly", False)}
    if not isinstance(out["readonly"], bool):
        imp.errors.append(("root.readonly", "must be a boolean"))
    if linux.get("rootfsPropagation"):
        out["propagation"] = linux["rootfsPropagation"]
    return out


def _import_namespaces(imp, namespaces):
    out = []
    for index, item in enumerate(namespaces):
        where = "linux.namespaces[%d]" % index
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(kind, str) or kind not in NAMESPACES_FROM_OCI:
            imp.unsupported(where + ".type", "namespace %r is not supported (supported: %s)"
                            % (kind, ", ".join(sorted(NAMESPACES_FROM_OCI))))
            continue
        entry = {"type": NAMESPACES_FROM_OCI[kind]}
        if item.get("path"):
            entry["path"] = item["path"]
        out.append(entry)
    return out


def _import_process(imp, process):
    process = imp.fields("process", process)
    out = {}
    for key in ("args", "env", "cwd"):
        if key in process:
            out[key] = process[key]
    user = imp.fields("process.user", process.get("user"))
    if user.get("umask") not in (None, 0o022):
        imp.unsupported("process.user.umask", UNSUPPORTED_WHY["process.user.umask"])
    if user.get("additionalGids"):
        imp.unsupported("process.user.additionalGids",
                        UNSUPPORTED_WHY["process.user.additionalGids"])
    ids = [user.get(key, 0) for key in ("uid", "gid")]
    for key, value in zip(("uid", "gid"), ids):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= spec_text.MAX_ID:
            imp.errors.append(("process.user." + key, "must be an integer from 0 to %d, got %r"
                               % (spec_text.MAX_ID, value)))
            return out
    if any(ids):
        out["user"] = "%d:%d" % tuple(ids)
    return out


def _import_devices(imp, devices):
    out = []
    for index, item in enumerate(devices):
        where = "linux.devices[%d]" % index
        item = dict(item) if isinstance(item, dict) else {}
        device = {}
        for key in item:
            if key in ("path", "type", "major", "minor", "uid", "gid"):
                device[key] = item[key]
            elif key == "fileMode":
                device["mode"] = "%04o" % (item[key] & 0o7777) if isinstance(item[key], int) \
                    else item[key]
            else:
                imp.unsupported("%s.%s" % (where, spec_text.key_text(key)), "not supported by containerfs")
        if device.get("path") == "/dev/ptmx":
            imp.warnings.append("%s: /dev/ptmx is always a symlink to pts/ptmx (as runc does); "
                                "entry skipped" % where)
            continue
        if not _is_default_device(device):
            out.append(device)
    return out


def _is_default_device(device):
    for default in spec_defaults.DEFAULT_DEVICES:
        if all(device.get(k) == v for k, v in default.items()) and \
                device.get("mode", "0666") == "0666" and not device.get("uid") and not device.get("gid"):
            return True
    return False


# ---------------------------------------------------------------------------------------
# Mounts
# ---------------------------------------------------------------------------------------

def _default_mounts():
    return [dict(m) for m in spec_defaults.RUNC_DEFAULT_MOUNTS]


def _import_mounts(imp, oci_mounts, ours, bundle_dir):
    """Split the OCI list into (mounts, volumes, etc); see the module docstring."""
    entries = []
    for index, item in enumerate(oci_mounts):
        entry = _import_mount(imp, "mounts[%d]" % index, item, bundle_dir)
        if entry is not None:
            entries.append(entry)
    etc_flags = ours.get("etc") or {}
    etc = {"hosts": False, "hostname": False, "resolv_conf": False}
    for key in ("extra_hosts",):
        if etc_flags.get(key):
            etc[key] = etc_flags[key]
    # Generated /etc files come last (plan order); take them off the end.
    while entries and etc_flags:
        name = entries[-1]["target"][len("/etc/"):]
        key = name.replace(".", "_")
        if name in ETC_FILES and etc_flags.get(key) and not etc[key] \
                and entries[-1]["options"] == ["bind"]:
            etc[key] = True
            entries.pop()
        else:
            break
    count = ours.get("mounts")
    if not isinstance(count, int) or not 0 <= count <= len(entries) or \
            not all(_as_volume(e) for e in entries[count:]):
        count = len(entries)
        while count and _as_volume(entries[count - 1]):
            count -= 1
    return entries[:count], [_as_volume(e) for e in entries[count:]], etc


def _import_mount(imp, where, item, bundle_dir):
    if not isinstance(item, dict):
        imp.errors.append((where, "must be an object"))
        return None
    ok = True
    for key in item:
        if key not in ("destination", "type", "source", "options"):
            imp.unsupported("%s.%s" % (where, spec_text.key_text(key)), "not supported by containerfs")
    options = []
    for index, word in enumerate(imp.listed(where + ".options", item.get("options"))):
        word = imp.text("%s.options[%d]" % (where, index), word, refuse=spec_text.OPTION_WORD_REFUSED)
        if word is None:
            ok = False
        elif word in mountopts.RUNTIME_WORDS:
            imp.unsupported("%s.options[%d]" % (where, index),
                            "option %r is not supported by containerfs" % word)
        else:
            options.append(word)
    kind = item.get("type") or ("bind" if mountopts.is_bind(options) else None)
    if mountopts.is_bind(options) and kind == "none":
        kind = "bind"
    if not isinstance(kind, str) or kind not in mountopts.FILESYSTEM_TYPES:
        imp.unsupported(where + ".type", "mount type %r is not supported (supported: %s)"
                        % (kind, ", ".join(mountopts.FILESYSTEM_TYPES)))
        ok = False
    destination = imp.text(where + ".destination", item.get("destination"))
    if destination is not None and not destination.startswith("/"):
        imp.errors.append((where + ".destination", "must be an absolute path, got %r" % destination))
        ok = False
    source = imp.text(where + ".source", item.get("source", kind))
    if not ok or destination is None or source is None:
        return None
    if kind == "bind" and isinstance(source, str) and not source.startswith("/"):
        source = os.path.normpath(os.path.join(bundle_dir, source))  # as runc: bundle-relative
    return {"target": item["destination"], "type": kind, "source": source, "options": options}


def _as_volume(entry):
    """The volume whose plan step is exactly this mount, or None (read from the typed
    options, so the order of the words does not matter)."""
    words = list(entry["options"])
    options = mountopts.parse(words)
    if len([w for w in words if w in mountopts.PROPAGATION_WORDS or mountopts.is_bind([w])]) > 2:
        return None  # two propagations or two bind words: no volume writes that
    readonly = mountopts.is_readonly(options)
    rest = mountopts.without_flags(options, "ro") if readonly else options
    if entry["type"] == "bind" and options["bind"] and options["propagation"]:
        rest = dict(rest, bind=None, propagation=None)
        return {"type": "bind", "source": entry["source"], "target": entry["target"],
                "recursive": options["bind"] == "rbind", "propagation": options["propagation"],
                "readonly": readonly, "options": mountopts.words(rest)}
    if entry["type"] == "tmpfs" and entry["source"] == "tmpfs" and not options["bind"] \
            and not options["propagation"] and rest["set"][:2] == ["nosuid", "nodev"]:
        volume = {"type": "tmpfs", "target": entry["target"], "readonly": readonly}
        rest = dict(rest, set=rest["set"][2:])
        for key in ("mode", "size"):
            found = [w for w in rest["data"] if w.startswith(key + "=")]
            if len(found) > 1:
                return None
            if found:
                volume[key] = found[0][len(key) + 1:]
                rest["data"] = [w for w in rest["data"] if w != found[0]]
        volume["options"] = mountopts.words(rest)
        return volume
    return None


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------

def export_bundle(spec, bundle_dir):
    """Return (config dict, {bundle-relative path: (content or None, host source)}).

    `spec` is normalised; /etc files are written into BUNDLE/etc/ by the caller (content,
    or a copy of the host file when content is None). Raises SpecError for what has no
    OCI form.
    """
    if spec["rootfs"]["overlay"]:
        raise spec_errors.SpecError([("rootfs.overlay", "an OCI bundle has no overlay root; "
                                      "export a spec with overlay: false")])
    bundle_dir = os.path.abspath(bundle_dir)
    plan = plan_mod.build_plan(spec)
    etc_dir = plan["paths"]["etc"]
    files = {}
    for step in plan["steps"]:
        if step["op"] in ("write_file", "copy_file") and os.path.dirname(step["path"]) == etc_dir:
            rel = os.path.join("etc", os.path.basename(step["path"]))
            files[rel] = (step.get("content"), step.get("source"))
    mounts = []
    for step in plan["steps"]:
        if step["op"] == "cgroup":
            mounts.append({"destination": step["target"], "type": "cgroup", "source": "cgroup",
                           "options": mountopts.words(step["options"])})
        elif step["op"] == "mount":
            source = step["source"]
            if step["fstype"] == "bind" and os.path.dirname(source) == etc_dir:
                source = os.path.join(bundle_dir, "etc", os.path.basename(source))
            mounts.append({"destination": step["target"], "type": step["fstype"],
                           "source": source, "options": _export_options(step)})
    config = {
        "ociVersion": OCI_VERSION,
        "root": {"path": spec["rootfs"]["path"], "readonly": spec["rootfs"]["readonly"]},
        "mounts": mounts,
        "process": _export_process(spec["process"]),
        "linux": _export_linux(spec),
        "annotations": {ANNOTATION: json.dumps(_annotation_of(spec), sort_keys=True)},
    }
    if spec["hostname"]:
        config["hostname"] = spec["hostname"]
    return config, files


def _export_options(step):
    """A mount step's option words for config.json: the runtime mounts read-only what the
    plan makes read-only later (runc itself defers it, in finalizeRootfs)."""
    options = step["options"]
    if step.get("readonly_later"):
        options = mountopts.with_flags(options, "ro")
    return mountopts.words(options)


def _annotation_of(spec):
    return {"name": spec["name"], "etc": copy.deepcopy(spec["etc"]), "dns": spec["dns"],
            "state_dir": spec["state_dir"], "run_dir": spec["run_dir"],
            "mounts": len(spec["mounts"])}


def _export_process(process):
    return {"terminal": False, "user": {"uid": process["uid"], "gid": process["gid"]},
            "args": list(process["args"]), "env": list(process["env"]), "cwd": process["cwd"]}


def _export_linux(spec):
    namespaces = []
    for ns in spec["namespaces"]:
        entry = {"type": NAMESPACES_TO_OCI.get(ns["type"], ns["type"])}
        if ns["path"]:
            entry["path"] = ns["path"]
        namespaces.append(entry)
    devices = []
    for device in spec["devices"]:
        if _is_default_device(device):
            continue  # runc and crun add these themselves
        entry = {"path": device["path"], "type": device["type"], "fileMode": int(device["mode"], 8),
                 "uid": device["uid"], "gid": device["gid"]}
        if device["type"] != "p":
            entry.update(major=device["major"], minor=device["minor"])
        devices.append(entry)
    linux = {"namespaces": namespaces, "maskedPaths": list(spec["masked_paths"]),
             "readonlyPaths": list(spec["readonly_paths"])}
    if devices:
        linux["devices"] = devices
    if spec["rootfs"]["propagation"]:
        linux["rootfsPropagation"] = spec["rootfs"]["propagation"]
    return linux
