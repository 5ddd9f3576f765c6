# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container spec: defaults, validation and normalisation.

A spec is plain data (a dict, from YAML or JSON). `load_spec()` checks every field,
collects *every* error with the path of the field it concerns
(``volumes[1].target: must be an absolute path inside the container``) and raises one
`SpecError`; on success it returns a normalised copy with every default filled in, so
back-ends never guess. Where a spec is silent, the defaults of ``runc spec`` apply.

Private to the collection; may change without notice. Standard library only: the CLI and
the modules on the targets both import it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import difflib
import os
import re

# The host paths are the layout's; the spec defaults to them.
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import (  # noqa: F401
    DEFAULT_RUN_DIR, DEFAULT_STATE_DIR)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts

SPEC_VERSION = 1

# runc spec (libcontainer/specconv/example.go), in order. See runtimes.md section 1.2.
RUNC_DEFAULT_MOUNTS = (
    {"target": "/proc", "type": "proc", "source": "proc", "options": []},
    {"target": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"target": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"target": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"target": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"target": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"target": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
)

RUNC_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
)

RUNC_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The nodes every container gets (runtime-spec "Default Devices"; runc AllowedDevices).
DEFAULT_DEVICES = (
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
)

# /dev symlinks (runtime-linux.md "Dev symbolic links"; core only if /proc/kcore exists).
DEFAULT_DEV_SYMLINKS = (
    {"path": "/dev/fd", "target": "/proc/self/fd"},
    {"path": "/dev/stdin", "target": "/proc/self/fd/0"},
    {"path": "/dev/stdout", "target": "/proc/self/fd/1"},
    {"path": "/dev/stderr", "target": "/proc/self/fd/2"},
    {"path": "/dev/ptmx", "target": "pts/ptmx"},
    {"path": "/dev/core", "target": "/proc/kcore", "if_exists": "/proc/kcore"},
)

DEFAULT_NAMESPACES = ("pid", "net", "ipc", "uts", "mount")
NAMESPACE_TYPES = ("mount", "uts", "ipc", "pid", "net", "cgroup")
NAMESPACE_ALIASES = {"network": "net", "mnt": "mount"}

DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm")
ROOT_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                     "runbindable")
VOLUME_PROPAGATIONS = ROOT_PROPAGATIONS

# Every pattern is used with fullmatch: `$` would accept a trailing newline.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
HOSTNAME_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
SIZE_RE = re.compile(r"[0-9]+[kKmMgG%]?")
MODE_RE = re.compile(r"0?[0-7]{3,4}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USER_RE = re.compile(r"([0-9]+)(?::([0-9]+))?")
IPV4_RE = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
FIELD_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# Characters no path, name or word may hold: C0 (newline and tab included), DEL, C1, and
# the line separators Python's splitlines honours (U+0085 is C1; U+2028, U+2029).
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# One mount option word: what would end the word in `mount -o`, an fstab field or a quote.
OPTION_WORD_REFUSED = ",#\\\"' "
MAX_ID = 2 ** 32 - 2           # uid_t/gid_t; (uid_t)-1 means "unchanged"
MAX_MAJOR, MAX_MINOR = 2 ** 12, 2 ** 20   # Linux dev_t: 12-bit major, 20-bit minor
MAX_DEPTH, MAX_NODES = 64, 100000          # a spec is small; an alias bomb is not


class SpecError(Exception):
    """Every problem found in a spec. `errors` is a list of (path, message), sorted."""

    def __init__(self, errors):
        self.errors = sorted(errors, key=lambda e: _path_sort_key(e[0]))
        super(SpecError, self).__init__(self.render())

    def render(self):
        lines = ["%s: %s" % (path or "(spec)", message) for path, message in self.errors]
        return "invalid spec (%d error%s):\n  %s" % (
            len(lines), "" if len(lines) == 1 else "s", "\n  ".join(lines))


def _path_sort_key(path):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", path or "") if p]


def bad_char(value, refuse="", free=False):
    """The first character of the string `value` its place does not allow, or None.

    Free text (process.args, env values) may hold anything but NUL; every other place
    refuses control characters and any character of `refuse` (" " in `refuse` stands for
    all whitespace)."""
    if free:
        return "\0" if "\0" in value else None
    match = CONTROL_RE.search(value)
    if match:
        return match.group()
    for ch in value:
        if ch in refuse or (" " in refuse and ch.isspace()):
            return ch
    return None


def key_text(key):
    """A mapping key as it may appear in a field path (a hostile key is shown quoted)."""
    return key if isinstance(key, str) and FIELD_KEY_RE.fullmatch(key) else repr(key)


def check_structure(value, what="spec"):
    """Refuse data nested deeper than MAX_DEPTH or holding more than MAX_NODES values once
    aliases (shared objects) are expanded. Each container is measured once, so an alias
    bomb costs as little as its text; a cycle is infinitely deep."""
    sizes = {}

    def measure(item, depth):
        if not isinstance(item, (dict, list)):
            return 1, 0
        if depth >= MAX_DEPTH or sizes.get(id(item)) is None and id(item) in sizes:
            raise SpecError([("", "the %s is nested more than %d levels deep" % (what, MAX_DEPTH))])
        if id(item) not in sizes:
            sizes[id(item)] = None   # in progress: meeting it again is a cycle
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            count, height = 1, 0
            for child in children:
                child_count, child_height = measure(child, depth + 1)
                count, height = count + child_count, max(height, child_height + 1)
                if count > MAX_NODES:
                    raise SpecError([("", "the %s holds more than %d values (aliases expanded)"
                                      % (what, MAX_NODES))])
            sizes[id(item)] = (count, height)
        count, height = sizes[id(item)]
        if depth + height > MAX_DEPTH:
            raise SpecError([("", "the %s is nested more than %d levels deep" % (what, MAX_DEPTH))])
        return count, height

    total = measure(value, 0)[0]
    if total > MAX_NODES:
        raise SpecError([("", "the %s holds more than %d values (aliases expanded)" % (what, MAX_NODES))])


class _Checker:
    """Collects errors while walking the spec; never stops at the first one."""

    def __init__(self):
        self.errors = []

    def error(self, path, message):
        self.errors.append((path, message))

    def fields(self, path, value, allowed):
        """Check `value` is a mapping with only `allowed` keys; return it (or {})."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, "must be a mapping, got %s" % _type_name(value))
            return {}
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                where = "%s.%s" % (path, key_text(key)) if path else key_text(key)
                self.error(where, "unknown field" + (" (did you mean '%s'?)" % hint[0] if hint else
                                                     "; allowed: %s" % ", ".join(sorted(allowed))))
        return value

    def typed(self, path, value, types, what):
        if isinstance(value, bool) and bool not in types:
            self.error(path, "must be %s, got a boolean" % what)
            return False
        if not isinstance(value, types):
            self.error(path, "must be %s, got %s" % (what, _type_name(value)))
            return False
        return True

    def text(self, path, value, refuse="", free=False, what="a string", why=""):
        """True when `value` is a string its place allows (see bad_char); else reported."""
        if not self.typed(path, value, (str,), what):
            return False
        bad = bad_char(value, refuse, free)
        if bad is not None:
            self.error(path, "must not contain %r%s, got %r" % (bad, why, value))
            return False
        return True

    def string_list(self, path, value, refuse="", free=False):
        """The strings of the list `value` that their place allows (the others reported)."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, "must be a list of strings, got %s" % _type_name(value))
            return []
        return [item for index, item in enumerate(value)
                if self.text("%s[%d]" % (path, index), item, refuse, free)]

    def integer(self, path, value, maximum):
        """True when `value` is an integer in 0..maximum; else reported."""
        if not self.typed(path, value, (int,), "an integer"):
            return False
        if not 0 <= value <= maximum:
            self.error(path, "must be between 0 and %d, got %d" % (maximum, value))
            return False
        return True

    def items(self, path, value, allowed):
        """Yield (field path, mapping) for each item of the list `value`, unknown keys
        reported; report a `value` that is not a list and yield nothing."""
        if not isinstance(value, list):
            self.error(path, "must be a list, got %s" % _type_name(value))
            return
        for index, item in enumerate(value):
            where = "%s[%d]" % (path, index)
            if not isinstance(item, dict):
                self.error(where, "must be a mapping, got %s" % _type_name(item))
                continue
            yield where, self.fields(where, item, allowed)

    def path_field(self, where, item, key):
        """item[key] when it is there and a valid container path, else None (reported)."""
        if key not in item:
            self.error("%s.%s" % (where, key), "is required")
            return None
        if not self.container_path("%s.%s" % (where, key), item[key]):
            return None
        return item[key]

    def container_path(self, path, value, allow_root=False):
        """An absolute, normalised path inside the container."""
        if not self.text(path, value):
            return False
        if not value.startswith("/"):
            self.error(path, "must be an absolute path inside the container, got %r" % value)
            return False
        parts = value.split("/")
        if ".." in parts or "." in parts:
            self.error(path, "must not contain '.' or '..' components, got %r" % value)
            return False
        if value.rstrip("/") == "" and not allow_root:
            self.error(path, "must not be '/': a mount over the container root is refused")
            return False
        return True


def _type_name(value):
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _clean(path):
    """Normalise a container path: collapse '//' and drop a trailing '/'."""
    return "/" + "/".join(p for p in path.split("/") if p)


# ---------------------------------------------------------------------------------------
# Field checks, one function per section. Each returns the normalised section.
# ---------------------------------------------------------------------------------------

TOP_FIELDS = ("version", "name", "hostname", "rootfs", "namespaces", "mounts", "volumes",
              "devices", "etc", "dns", "masked_paths", "add_masked_paths", "readonly_paths",
              "add_readonly_paths", "process", "state_dir", "run_dir")


def _check_name(c, spec):
    name = spec.get("name")
    if name is None:
        c.error("name", "is required")
        return "container"
    if c.text("name", name) and not NAME_RE.fullmatch(name):
        c.error("name", "must match %s (letters, digits, '_', '.', '-'), got %r"
                % (NAME_RE.pattern, name))
    return name


def _is_hostname(text):
    return len(text) <= 253 and all(HOSTNAME_LABEL_RE.fullmatch(label) for label in text.split("."))


def _check_hostname(c, spec, namespaces):
    has_uts = "uts" in [n["type"] for n in namespaces]
    hostname = spec.get("hostname", "runc" if has_uts else None)
    if hostname is None:
        return None
    if not c.text("hostname", hostname):
        return None
    if not _is_hostname(hostname):
        c.error("hostname", "is not a valid hostname (RFC 1123: labels of letters, digits and "
                "'-', 1-63 characters, not starting or ending with '-'), got %r" % hostname)
    if not has_uts:
        c.error("hostname", "needs a private UTS namespace: add 'uts' to namespaces")
    return hostname


ROOTFS_FIELDS = ("path", "image", "overlay", "readonly", "propagation")


IMAGE_FIELDS = ("source", "format", "tag", "digest", "platform", "store")
IMAGE_FORMATS = ("auto", "oci", "docker-archive", "tarball", "dir")
RESOLVED_FIELDS = ("format", "manifest_digest", "config_digest", "rootfs", "layers")
LAYER_FIELDS = ("digest", "size", "diff_id", "compression", "path", "media_type")
LAYER_COMPRESSIONS = (None, "", "gzip", "zstd", "xz", "bzip2")   # what _blob reads


def _check_image(c, image, state_dir, resolved):
    """rootfs.image: where the image comes from. What the image holds (`resolved`) comes
    from _image_spec through load_spec's own argument, never from the spec."""
    image = c.fields("rootfs.image", image, IMAGE_FIELDS)
    out = {"source": None, "format": "auto", "tag": None, "digest": None, "platform": None,
           "store": state_dir, "resolved": None}
    if not isinstance(image.get("source"), str) or not image.get("source"):
        c.error("rootfs.image.source", "is required: the path of an OCI layout, a docker save "
                "archive, a rootfs tarball or a directory")
    elif c.text("rootfs.image.source", image["source"]):
        out["source"] = image["source"]
    for key in ("format", "tag", "digest", "platform"):
        if image.get(key) is not None and c.text("rootfs.image." + key, image[key], refuse=" ,#"):
            out[key] = image[key]
    if out["digest"] is not None and not _is_digest(out["digest"]):
        c.error("rootfs.image.digest", "must be sha256:<64 hex digits>, got %r" % out["digest"])
    if out["format"] not in IMAGE_FORMATS:
        c.error("rootfs.image.format", "must be one of %s, got %r" % (", ".join(IMAGE_FORMATS),
                                                                      out["format"]))
    if "store" in image:
        out["store"] = _host_dir(c, "rootfs.image.store", image["store"], state_dir)
    if out["source"] and not isinstance(resolved, dict) and "resolved" not in image:
        c.error("rootfs.image", "the image was not read (load the spec with _image_spec.load)")
    elif isinstance(resolved, dict) and _resolved_ok(resolved):
        out["resolved"] = copy.deepcopy(resolved)
    elif resolved is not None:
        c.error("rootfs.image", "the image's metadata is not usable (bad format, digest, size, "
                "compression or path of a layer)")
    return out


def _resolved_ok(resolved):
    """The internal description of an image (from _image_spec) holds only what the plan
    can write safely: known words, digests, sizes and clean relative paths."""
    if set(resolved) - set(RESOLVED_FIELDS) or resolved.get("format") not in IMAGE_FORMATS[1:]:
        return False
    if not all(resolved.get(key) is None or _is_digest(resolved[key])
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
    return (_is_digest(layer.get("digest")) and _is_digest(layer.get("diff_id"))
            and isinstance(size, int) and not isinstance(size, bool) and size >= 0
            and layer.get("compression") in LAYER_COMPRESSIONS
            and (media_type is None or isinstance(media_type, str) and bad_char(media_type) is None)
            and (path is None or _is_relative_path(path)))


def _is_digest(value):
    return isinstance(value, str) and DIGEST_RE.fullmatch(value) is not None


def _is_relative_path(value):
    return (isinstance(value, str) and value != "" and not value.startswith("/")
            and bad_char(value) is None and ".." not in value.split("/"))


def _check_rootfs(c, spec, base_dir, resolved_image):
    rootfs = c.fields("rootfs", spec.get("rootfs"), ROOTFS_FIELDS)
    if "rootfs" not in spec:
        c.error("rootfs", "is required (rootfs.path: the directory to use as the container root, "
                "or rootfs.image)")
    out = {"path": None, "image": None, "overlay": False, "readonly": True, "propagation": None}
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
    elif c.text("rootfs.path", path):
        if not path:
            c.error("rootfs.path", "must not be empty")
        else:
            out["path"] = os.path.normpath(os.path.join(base_dir, path)) if base_dir else path
            if not c.text("rootfs.path", out["path"], why=" (in the spec file's directory)"):
                out["path"] = None
            elif not os.path.isabs(out["path"]):
                c.error("rootfs.path", "must be an absolute path (or relative to the spec file), "
                        "got %r" % path)
    for key in ("overlay", "readonly"):
        if key in rootfs and c.typed("rootfs." + key, rootfs[key], (bool,), "a boolean"):
            out[key] = rootfs[key]
    if out["overlay"] and out["path"] and any(ch in out["path"] for ch in ",:\\"):
        c.error("rootfs.path", "with overlay, must not contain ',', ':' or '\\' "
                "(overlayfs option syntax), got %r" % out["path"])
    propagation = rootfs.get("propagation")
    if propagation is not None and c.text("rootfs.propagation", propagation):
        if propagation not in ROOT_PROPAGATIONS:
            c.error("rootfs.propagation", "must be one of %s, got %r"
                    % (", ".join(ROOT_PROPAGATIONS), propagation))
        else:
            out["propagation"] = propagation
    return out


NAMESPACE_FIELDS = ("type", "path")


def _check_namespaces(c, spec):
    raw = spec.get("namespaces", list(DEFAULT_NAMESPACES))
    if not isinstance(raw, list):
        c.error("namespaces", "must be a list, got %s" % _type_name(raw))
        raw = list(DEFAULT_NAMESPACES)
    out, seen = [], set()
    for index, item in enumerate(raw):
        where = "namespaces[%d]" % index
        if isinstance(item, str):
            item = {"type": item}
        item = c.fields(where, item, NAMESPACE_FIELDS)
        kind = item.get("type")
        if not c.text(where + ".type", kind, what="a namespace type"):
            continue
        kind = NAMESPACE_ALIASES.get(kind, kind)
        if kind not in NAMESPACE_TYPES:
            hint = difflib.get_close_matches(str(kind), NAMESPACE_TYPES, n=1)
            c.error(where + ".type", "must be one of %s, got %r%s" % (
                ", ".join(NAMESPACE_TYPES), kind, " (did you mean '%s'?)" % hint[0] if hint else ""))
            continue
        if kind in seen:
            c.error(where + ".type", "namespace %r is listed twice" % kind)
            continue
        seen.add(kind)
        path = item.get("path")
        if path is not None and c.text(where + ".path", path):
            if not path.startswith("/"):
                c.error(where + ".path", "must be an absolute path to a namespace file, got %r" % path)
        out.append({"type": kind, "path": path})
    if "mount" not in seen:
        c.error("namespaces", "must include 'mount': the container filesystem needs its own "
                "mount namespace")
    return sorted(out, key=lambda n: NAMESPACE_TYPES.index(n["type"]))


MOUNT_FIELDS = ("target", "type", "source", "options")


def _check_mounts(c, spec):
    raw = spec.get("mounts")
    if raw is None:
        return copy.deepcopy(list(RUNC_DEFAULT_MOUNTS))
    out = []
    for where, item in c.items("mounts", raw, MOUNT_FIELDS):
        if c.path_field(where, item, "target") is None:
            continue
        options = c.string_list(where + ".options", item.get("options"), refuse=OPTION_WORD_REFUSED)
        kind = item.get("type", "bind" if mountopts.is_bind(options) else None)
        if kind is None:
            c.error(where + ".type", "is required (one of %s)" % ", ".join(mountopts.FILESYSTEM_TYPES))
            continue
        if not c.text(where + ".type", kind):
            continue
        if kind not in mountopts.FILESYSTEM_TYPES:
            c.error(where + ".type", "must be one of %s, got %r"
                    % (", ".join(mountopts.FILESYSTEM_TYPES), kind))
            continue
        if kind in ("bind", "none") and not mountopts.is_bind(options):
            options = ["rbind"] + options
        source = item.get("source", kind)
        if not c.text(where + ".source", source):
            continue
        if mountopts.is_bind(options):
            kind = "bind"
            if not source.startswith("/"):
                c.error(where + ".source", "a bind source must be an absolute host path, got %r"
                        % source)
        _check_options(c, where + ".options", options)
        out.append({"target": _clean(item["target"]), "type": kind, "source": source,
                    "options": options})
    return out


def _check_options(c, where, options, propagation=None):
    """Option words (each already a string free of ',', '#', quotes, '\\', whitespace and
    control characters): refuse the empty word, runtime-only words, and more than one
    propagation (counting the `propagation` the field itself sets)."""
    for index, word in enumerate(options):
        if word in mountopts.RUNTIME_WORDS:
            c.error("%s[%d]" % (where, index), "option %r is not supported" % word)
        elif not word:
            c.error("%s[%d]" % (where, index), "must be one option word, got %r" % word)
        elif word in mountopts.PROPAGATION_WORDS and propagation not in (None, word):
            c.error("%s[%d]" % (where, index), "propagation %r contradicts %r" % (word, propagation))
        elif word in mountopts.PROPAGATION_WORDS:
            propagation = word


VOLUME_FIELDS = ("type", "source", "target", "readonly", "recursive", "propagation", "options",
                 "size", "mode", "create")


def _check_volumes(c, spec, base_dir):
    out = []
    for where, item in c.items("volumes", spec.get("volumes") or [], VOLUME_FIELDS):
        kind = item.get("type", "bind" if "source" in item else "tmpfs")
        if kind not in ("bind", "tmpfs"):
            c.error(where + ".type", "must be 'bind' or 'tmpfs', got %r" % (kind,))
            continue
        if c.path_field(where, item, "target") is None:
            continue
        volume = {"type": kind, "target": _clean(item["target"]), "readonly": False,
                  "options": c.string_list(where + ".options", item.get("options"),
                                           refuse=OPTION_WORD_REFUSED)}
        if "readonly" in item and c.typed(where + ".readonly", item["readonly"], (bool,), "a boolean"):
            volume["readonly"] = item["readonly"]
        if kind == "bind":
            _check_bind_volume(c, where, item, volume, base_dir)
        else:
            _check_tmpfs_volume(c, where, item, volume)
        _check_volume_options(c, where, volume)
        out.append(volume)
    return out


def _check_volume_options(c, where, volume):
    """The option words, which must not contradict the volume's own fields."""
    _check_options(c, where + ".options", volume["options"], volume.get("propagation"))
    if volume["readonly"]:
        for index, word in enumerate(volume["options"]):
            if word in ("rw", "rrw"):
                c.error("%s.options[%d]" % (where, index), "%r contradicts readonly: true" % word)


def _check_bind_volume(c, where, item, volume, base_dir):
    for key in ("size", "mode"):
        if key in item:
            c.error("%s.%s" % (where, key), "applies to tmpfs volumes only")
    source = item.get("source")
    if source is None:
        c.error(where + ".source", "is required for a bind volume")
    elif c.text(where + ".source", source):
        if not source:
            c.error(where + ".source", "must not be empty")
        else:
            source = os.path.normpath(os.path.join(base_dir or "/", source))
            if c.text(where + ".source", source, why=" (in the spec file's directory)"):
                volume["source"] = source
    volume["recursive"] = True
    if "recursive" in item and c.typed(where + ".recursive", item["recursive"], (bool,), "a boolean"):
        volume["recursive"] = item["recursive"]
    volume["create"] = False
    if "create" in item and c.typed(where + ".create", item["create"], (bool,), "a boolean"):
        volume["create"] = item["create"]
    volume["propagation"] = "rprivate"
    propagation = item.get("propagation")
    if propagation is not None and c.text(where + ".propagation", propagation):
        if propagation not in VOLUME_PROPAGATIONS:
            c.error(where + ".propagation", "must be one of %s, got %r"
                    % (", ".join(VOLUME_PROPAGATIONS), propagation))
        else:
            volume["propagation"] = propagation


def _check_tmpfs_volume(c, where, item, volume):
    for key in ("source", "recursive", "propagation", "create"):
        if key in item:
            c.error("%s.%s" % (where, key), "applies to bind volumes only")
    volume["size"] = None
    volume["mode"] = None
    size = item.get("size")
    if size is not None:
        size = str(size) if isinstance(size, int) and not isinstance(size, bool) else size
        if c.text(where + ".size", size, what="a size such as 64m"):
            if SIZE_RE.fullmatch(size):
                volume["size"] = size
            else:
                c.error(where + ".size", "must be a size such as 65536k, 64m, 1g or 50%%, got %r"
                        % size)
    mode = item.get("mode")
    if mode is not None:
        if c.text(where + ".mode", mode, what="a quoted octal mode such as '1777'"):
            if MODE_RE.fullmatch(mode):
                volume["mode"] = "%04o" % int(mode, 8)
            else:
                c.error(where + ".mode", "must be an octal mode such as '0755' or '1777', got %r"
                        % mode)


DEVICE_FIELDS = ("path", "type", "major", "minor", "mode", "uid", "gid")


def _check_devices(c, spec):
    by_path = dict((d["path"], dict(d, mode="0666", uid=0, gid=0)) for d in DEFAULT_DEVICES)
    seen = set()
    for where, item in c.items("devices", spec.get("devices") or [], DEVICE_FIELDS):
        if c.path_field(where, item, "path") is None:
            continue
        path = _clean(item["path"])
        if not path.startswith("/dev/"):
            c.error(where + ".path", "must be under /dev, got %r" % path)
            continue
        if path == "/dev/ptmx":
            c.error(where + ".path", "/dev/ptmx is always a symlink to pts/ptmx (as in runc)")
            continue
        if path in seen:
            c.error(where + ".path", "device %s is listed twice" % path)
            continue
        seen.add(path)
        device = _check_device_fields(c, where, item)
        if device:
            device["path"] = path
            by_path[path] = device
    return [by_path[p] for p in sorted(by_path)]


def _check_device_fields(c, where, item):
    kind = item.get("type", "c")
    if kind not in ("c", "b", "p", "u"):
        c.error(where + ".type", "must be 'c' (char), 'b' (block) or 'p' (fifo), got %r" % (kind,))
        return None
    kind = "c" if kind == "u" else kind
    device = {"type": kind, "major": 0, "minor": 0, "mode": "0666", "uid": 0, "gid": 0}
    ok = True
    for key, maximum in (("major", MAX_MAJOR - 1), ("minor", MAX_MINOR - 1), ("uid", MAX_ID),
                         ("gid", MAX_ID)):
        if key not in item:
            if key in ("major", "minor") and kind != "p":
                c.error("%s.%s" % (where, key), "is required for a %s device" %
                        ("character" if kind == "c" else "block"))
                ok = False
        elif c.integer("%s.%s" % (where, key), item[key], maximum):
            device[key] = item[key]
        else:
            ok = False
    if "mode" in item:
        mode = item["mode"]
        if not isinstance(mode, str) or not MODE_RE.fullmatch(mode) or int(mode, 8) > 0o777:
            c.error(where + ".mode", "must be a quoted octal permission such as '0666', got %r"
                    % (item["mode"],))
            ok = False
        else:
            device["mode"] = "%04o" % int(mode, 8)
    return device if ok else None


ETC_FIELDS = ("hosts", "hostname", "resolv_conf", "extra_hosts")
EXTRA_HOST_FIELDS = ("address", "names")
DNS_FIELDS = ("nameservers", "search", "options")
DNS_WORD_REFUSED = " ,#;"   # one word of /etc/hosts or resolv.conf: no separator, no comment


def _check_etc(c, spec):
    etc = c.fields("etc", spec.get("etc"), ETC_FIELDS)
    out = {"hosts": True, "hostname": True, "resolv_conf": True, "extra_hosts": []}
    for key in ("hosts", "hostname", "resolv_conf"):
        if key in etc and c.typed("etc." + key, etc[key], (bool,), "a boolean"):
            out[key] = etc[key]
    for where, item in c.items("etc.extra_hosts", etc.get("extra_hosts") or [], EXTRA_HOST_FIELDS):
        address = item.get("address")
        names = c.string_list(where + ".names", item.get("names"), refuse=DNS_WORD_REFUSED)
        if not c.text(where + ".address", address, what="an IP address"):
            continue
        if not _looks_like_ip(address):
            c.error(where + ".address", "must be an IPv4 or IPv6 address, got %r" % (address,))
            continue
        if not names:
            c.error(where + ".names", "must list at least one host name")
            continue
        for name_index, name in enumerate(names):
            if not _is_hostname(name):
                c.error("%s.names[%d]" % (where, name_index), "is not a valid host name: %r" % name)
        out["extra_hosts"].append({"address": address, "names": names})
    return out


def _looks_like_ip(text):
    if IPV4_RE.fullmatch(text):
        return all(int(p) < 256 for p in text.split("."))
    return IPV6_RE.fullmatch(text) is not None and ":" in text


def _check_dns(c, spec):
    dns = c.fields("dns", spec.get("dns"), DNS_FIELDS)
    out = {}
    for key in DNS_FIELDS:
        out[key] = c.string_list("dns." + key, dns.get(key), refuse=DNS_WORD_REFUSED)
        for index, word in enumerate(out[key]):
            if not word:
                c.error("dns.%s[%d]" % (key, index), "must be one word, got %r" % word)
    for index, server in enumerate(out["nameservers"]):
        if not _looks_like_ip(server):
            c.error("dns.nameservers[%d]" % index, "must be an IP address, got %r" % server)
    return out


def _check_paths(c, spec, key, add_key, defaults):
    paths = list(defaults)
    if key in spec:
        paths = c.string_list(key, spec[key])  # each then checked as a container path
    extra = c.string_list(add_key, spec.get(add_key))
    out = []
    for where, values in ((key, paths), (add_key, extra)):
        for index, path in enumerate(values):
            if c.container_path("%s[%d]" % (where, index), path) and _clean(path) not in out:
                out.append(_clean(path))
    return out


PROCESS_FIELDS = ("args", "env", "cwd", "user")


def _check_process(c, spec):
    process = c.fields("process", spec.get("process"), PROCESS_FIELDS)
    out = {"args": ["sh"], "env": list(DEFAULT_ENV), "cwd": "/", "uid": 0, "gid": 0}
    if "args" in process:
        args = c.string_list("process.args", process["args"], free=True)
        if not args and isinstance(process["args"], list):
            c.error("process.args", "must not be empty")
        out["args"] = args or out["args"]
    if "env" in process:
        out["env"] = _check_env(c, process["env"])
    if "cwd" in process and c.container_path("process.cwd", process["cwd"], allow_root=True):
        out["cwd"] = _clean(process["cwd"])
    if "user" in process:
        out["uid"], out["gid"] = _check_user(c, process["user"])
    return out


def _check_env(c, env):
    """NAME=value entries; a value may hold newlines (it is quoted when written), not NUL."""
    if isinstance(env, dict):
        env = _env_from_mapping(c, env)
    entries = c.string_list("process.env", env, free=True)
    for index, entry in enumerate(entries):
        name = entry.split("=", 1)[0]
        if "=" not in entry or not ENV_NAME_RE.fullmatch(name):
            c.error("process.env[%d]" % index, "must be NAME=value with NAME of letters, digits and "
                    "'_', got %r" % entry)
    return entries


def _env_from_mapping(c, env):
    entries = []
    for key, value in env.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            c.error("process.env.%s" % key_text(key), "must be a string or a number, got %s"
                    % _type_name(value))
        else:
            entries.append("%s=%s" % (key, "" if value is None else value))
    return entries


def _check_user(c, user):
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not c.text("process.user", user, what="'uid' or 'uid:gid'"):
        return 0, 0
    match = USER_RE.fullmatch(user)
    if not match:
        c.error("process.user", "must be numeric 'uid' or 'uid:gid' (names are not resolved), got %r"
                % user)
        return 0, 0
    uid = int(match.group(1))
    gid = int(match.group(2)) if match.group(2) is not None else uid
    if max(uid, gid) > MAX_ID:
        c.error("process.user", "uid and gid must be at most %d, got %r" % (MAX_ID, user))
        return 0, 0
    return uid, gid


def _check_host_dir(c, spec, key, default):
    return _host_dir(c, key, spec.get(key, default), default)


def _host_dir(c, where, value, default):
    """A host directory the container's state lives in (also in overlayfs options)."""
    if not c.text(where, value, refuse=",:\\", why=" (overlayfs option syntax; no control "
                  "characters)"):
        return default
    if not value.startswith("/"):
        c.error(where, "must be an absolute host path, got %r" % value)
    return value


def _check_duplicate_targets(c, normalised):
    """A target may be mounted only once; report every later duplicate."""
    seen = {}
    etc_targets = [("etc." + name.replace(".", "_"), "/etc/" + name)
                   for name in ("hosts", "hostname", "resolv.conf")
                   if normalised["etc"][name.replace(".", "_")]]
    sources = etc_targets
    sources += [("mounts[%d].target" % i, m["target"]) for i, m in enumerate(normalised["mounts"])]
    sources += [("volumes[%d].target" % i, v["target"]) for i, v in enumerate(normalised["volumes"])]
    for where, target in sources:
        if target in seen:
            c.error(where, "target %s is already used by %s" % (target, seen[target]))
        else:
            seen[target] = where


def load_spec(raw, base_dir=None, resolved_image=None):
    """Validate `raw` (a dict) and return the normalised spec, or raise SpecError.

    `base_dir` is the directory relative rootfs and volume paths are resolved against
    (the spec file's directory). `resolved_image` is what _image_spec read of the image
    rootfs.image names (internal: a spec cannot supply it); it becomes
    spec["rootfs"]["image"]["resolved"].
    """
    c = _Checker()
    if not isinstance(raw, dict):
        raise SpecError([("", "a spec must be a mapping, got %s" % _type_name(raw))])
    check_structure(raw)
    check_structure(resolved_image, "image metadata")
    c.fields("", raw, TOP_FIELDS)
    version = raw.get("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        c.error("version", "must be %d, got %r" % (SPEC_VERSION, version))
    spec = {"version": SPEC_VERSION, "name": _check_name(c, raw)}
    spec["namespaces"] = _check_namespaces(c, raw)
    spec["hostname"] = _check_hostname(c, raw, spec["namespaces"])
    spec["rootfs"] = _check_rootfs(c, raw, base_dir, resolved_image)
    spec["mounts"] = _check_mounts(c, raw)
    spec["volumes"] = _check_volumes(c, raw, base_dir)
    spec["devices"] = _check_devices(c, raw)
    spec["etc"] = _check_etc(c, raw)
    spec["dns"] = _check_dns(c, raw)
    spec["masked_paths"] = _check_paths(c, raw, "masked_paths", "add_masked_paths",
                                        RUNC_MASKED_PATHS)
    spec["readonly_paths"] = _check_paths(c, raw, "readonly_paths", "add_readonly_paths",
                                          RUNC_READONLY_PATHS)
    spec["process"] = _check_process(c, raw)
    spec["state_dir"] = _check_host_dir(c, raw, "state_dir", DEFAULT_STATE_DIR)
    spec["run_dir"] = _check_host_dir(c, raw, "run_dir", DEFAULT_RUN_DIR)
    if not c.errors:
        _check_duplicate_targets(c, spec)
    if c.errors:
        raise SpecError(c.errors)
    return spec
