# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mounts, volumes and devices of a spec, and the option words of a mount.

Private to the collection; may change without notice.
"""

import copy
import os

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as _fields
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import (
    DEFAULT_DEVICES, DEVICE_TYPE_ALIASES, DEVICE_TYPES, RUNC_DEFAULT_MOUNTS, VOLUME_PROPAGATIONS, VOLUME_TYPES)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import (
    MAX_ID, MAX_MAJOR, MAX_MINOR, MODE_RE, OPTION_WORD_REFUSED, SIZE_RE, clean_path)

MOUNT_FIELDS = _fields.names("mounts")


def check_mounts(c, spec):
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
        out.append({"target": clean_path(item["target"]), "type": kind, "source": source,
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


VOLUME_FIELDS = _fields.names("volumes")


def check_volumes(c, spec, base_dir):
    out = []
    for where, item in c.items("volumes", spec.get("volumes") or [], VOLUME_FIELDS):
        kind = item.get("type", "bind" if "source" in item else "tmpfs")
        if kind not in VOLUME_TYPES:
            c.error(where + ".type", "must be 'bind' or 'tmpfs', got %r" % (kind,))
            continue
        if c.path_field(where, item, "target") is None:
            continue
        volume = {"type": kind, "target": clean_path(item["target"]), "readonly": _fields.default("volumes.readonly"),
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
    volume["recursive"] = _fields.default("volumes.recursive")
    if "recursive" in item and c.typed(where + ".recursive", item["recursive"], (bool,), "a boolean"):
        volume["recursive"] = item["recursive"]
    volume["create"] = _fields.default("volumes.create")
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


DEVICE_FIELDS = _fields.names("devices")


def check_devices(c, spec):
    by_path = dict((d["path"], dict(d, mode="0666", uid=0, gid=0)) for d in DEFAULT_DEVICES)
    seen = set()
    for where, item in c.items("devices", spec.get("devices") or [], DEVICE_FIELDS):
        if c.path_field(where, item, "path") is None:
            continue
        path = clean_path(item["path"])
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
    kind = item.get("type", _fields.default("devices.type"))
    if kind not in DEVICE_TYPES + tuple(DEVICE_TYPE_ALIASES):
        c.error(where + ".type", "must be 'c' (char), 'b' (block) or 'p' (fifo), got %r" % (kind,))
        return None
    kind = DEVICE_TYPE_ALIASES.get(kind, kind)
    device = dict({"major": 0, "minor": 0}, **_fields.defaults("devices"))
    device["type"] = kind
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
