# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container spec: validation and normalisation (`load_spec`).

A spec is plain data (a dict, from YAML or JSON). `load_spec()` checks every field,
collects *every* error with the path of the field it concerns
(``volumes[1].target: must be an absolute path inside the container``) and raises one
`SpecError`; on success it returns a normalised copy with every default filled in, so
back-ends never guess. Where a spec is silent, the defaults of ``runc spec`` apply
(_spec/defaults.py). The sections live by concern: rootfs.py (the rootfs and its image),
mounts.py (mounts, volumes, devices, option words), this file (the rest); fields.py is
the table of the fields (names, defaults, choices, and the descriptions ansible-doc shows),
text.py says what text each place allows, checker.py collects the errors.

Standard library only: the CLI and the modules on the targets both import it.
Private to the collection; may change without notice.
"""

import difflib

# The host paths are the layout's; the spec defaults to them.
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import DEFAULT_RUN_DIR, DEFAULT_STATE_DIR
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.checker import Checker
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as _fields
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import (
    DEFAULT_ENV, DEFAULT_NAMESPACES, NAMESPACE_ALIASES, NAMESPACE_TYPES, RUNC_MASKED_PATHS,
    RUNC_READONLY_PATHS, SPEC_VERSION)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.mounts import (
    check_devices, check_mounts, check_volumes)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.rootfs import check_rootfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import (
    DNS_WORD_REFUSED, ENV_NAME_RE, MAX_ID, NAME_RE, USER_RE, check_structure, clean_path,
    is_hostname, key_text, looks_like_ip, type_name as _type_name)

# ---------------------------------------------------------------------------------------
# Field checks, one function per section. Each returns the normalised section. The
# fields each section allows are those of the table (_spec/fields.py).
# ---------------------------------------------------------------------------------------

TOP_FIELDS = _fields.names()


def _check_name(c, spec):
    name = spec.get("name")
    if name is None:
        c.error("name", "is required")
        return "container"
    if c.text("name", name) and not NAME_RE.fullmatch(name):
        c.error("name", "must match %s (letters, digits, '_', '.', '-'), got %r"
                % (NAME_RE.pattern, name))
    return name


def _check_hostname(c, spec, namespaces):
    has_uts = "uts" in [n["type"] for n in namespaces]
    hostname = spec.get("hostname", "runc" if has_uts else None)
    if hostname is None:
        return None
    if not c.text("hostname", hostname):
        return None
    if not is_hostname(hostname):
        c.error("hostname", "is not a valid hostname (RFC 1123: labels of letters, digits and "
                "'-', 1-63 characters, not starting or ending with '-'), got %r" % hostname)
    if not has_uts:
        c.error("hostname", "needs a private UTS namespace: add 'uts' to namespaces")
    return hostname


NAMESPACE_FIELDS = _fields.names("namespaces")


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


ETC_FIELDS = _fields.names("etc")
EXTRA_HOST_FIELDS = _fields.names("etc.extra_hosts")
DNS_FIELDS = _fields.names("dns")


def _check_etc(c, spec):
    etc = c.fields("etc", spec.get("etc"), ETC_FIELDS)
    out = _fields.defaults("etc")
    for key in ("hosts", "hostname", "resolv_conf"):
        if key in etc and c.typed("etc." + key, etc[key], (bool,), "a boolean"):
            out[key] = etc[key]
    for where, item in c.items("etc.extra_hosts", etc.get("extra_hosts") or [], EXTRA_HOST_FIELDS):
        address = item.get("address")
        names = c.string_list(where + ".names", item.get("names"), refuse=DNS_WORD_REFUSED)
        if not c.text(where + ".address", address, what="an IP address"):
            continue
        if not looks_like_ip(address):
            c.error(where + ".address", "must be an IPv4 or IPv6 address, got %r" % (address,))
            continue
        if not names:
            c.error(where + ".names", "must list at least one host name")
            continue
        for name_index, name in enumerate(names):
            if not is_hostname(name):
                c.error("%s.names[%d]" % (where, name_index), "is not a valid host name: %r" % name)
        out["extra_hosts"].append({"address": address, "names": names})
    return out


def _check_dns(c, spec):
    dns = c.fields("dns", spec.get("dns"), DNS_FIELDS)
    out = {}
    for key in DNS_FIELDS:
        out[key] = c.string_list("dns." + key, dns.get(key), refuse=DNS_WORD_REFUSED)
        for index, word in enumerate(out[key]):
            if not word:
                c.error("dns.%s[%d]" % (key, index), "must be one word, got %r" % word)
    for index, server in enumerate(out["nameservers"]):
        if not looks_like_ip(server):
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
            if c.container_path("%s[%d]" % (where, index), path) and clean_path(path) not in out:
                out.append(clean_path(path))
    return out


PROCESS_FIELDS = _fields.names("process")


def _check_process(c, spec):
    process = c.fields("process", spec.get("process"), PROCESS_FIELDS)
    out = dict(_fields.defaults("process"), env=list(DEFAULT_ENV), uid=0, gid=0)
    if "args" in process:
        args = c.string_list("process.args", process["args"], free=True)
        if not args and isinstance(process["args"], list):
            c.error("process.args", "must not be empty")
        out["args"] = args or out["args"]
    if "env" in process:
        out["env"] = _check_env(c, process["env"])
    if "cwd" in process and c.container_path("process.cwd", process["cwd"], allow_root=True):
        out["cwd"] = clean_path(process["cwd"])
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
    return c.host_dir(key, spec.get(key, default), default)


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
    c = Checker()
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
    spec["rootfs"] = check_rootfs(c, raw, base_dir, resolved_image)
    spec["mounts"] = check_mounts(c, raw)
    spec["volumes"] = check_volumes(c, raw, base_dir)
    spec["devices"] = check_devices(c, raw)
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
