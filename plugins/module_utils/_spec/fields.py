# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The spec's fields, in one table: names, types, defaults, choices and descriptions.

The validator takes from here which fields each section allows (an unknown one is
refused), the choices it checks and the defaults it fills in where the value is plain;
``tests/lib/spec_fragment.py`` renders the same table as the suboptions of ``spec`` in
``plugins/doc_fragments/_spec.py``, so what ``ansible-doc`` shows is what is checked (a
test renders it again and compares). Choices and defaults come from defaults.py and
mountopts.py, which the validator reads too.

Descriptions use ansible-doc markup (C(...), V(...)).
Standard library only. Private to the collection; may change without notice.
"""

import copy

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import DEFAULT_RUN_DIR, DEFAULT_STATE_DIR
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import registry as _spec_registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import (
    DEFAULT_DEVICES, DEFAULT_ENV, DEVICE_TYPE_ALIASES, DEFAULT_NAMESPACES, DEVICE_TYPES, IMAGE_FORMATS, NAMESPACE_ALIASES,
    NAMESPACE_TYPES, ROOT_PROPAGATIONS, RUNC_DEFAULT_MOUNTS, RUNC_MASKED_PATHS, RUNC_READONLY_PATHS,
    SPEC_VERSION, VOLUME_PROPAGATIONS, VOLUME_TYPES)

NO_DEFAULT = object()   # a field whose default depends on other fields, or that has none


class Field:
    """One field of the spec. `fields`: the fields of a mapping (or of each item of a list)."""

    def __init__(self, name, kind, description, default=NO_DEFAULT, choices=None, elements=None,
                 fields=(), required=False):
        self.name = name
        self.kind = kind
        self.description = [description] if isinstance(description, str) else list(description)
        self.default = default
        self.choices = choices
        self.elements = elements
        self.fields = tuple(fields)
        self.required = required


def _code_list(values):
    return ", ".join("C(%s)" % value for value in values)


def _aliases_text(aliases):
    return ", ".join("V(%s) is taken for V(%s)" % alias for alias in sorted(aliases.items()))


_WORD_TEXT = "One word: no whitespace, C(,), C(#), quotes or backslash."


def _limit_text(name):
    default = _budget.DEFAULT_LIMITS[name]
    return "%s%s. Default %s." % (_budget.LIMIT_DESCRIPTIONS[name][0].upper(), _budget.LIMIT_DESCRIPTIONS[name][1:],
                                  "V(%d)" % default if default is not None else "C(%s)" % name[len("layer_"):])


IMAGE_LIMITS = tuple(Field(name, "int", _limit_text(name)) for name in _budget.LIMIT_NAMES)
# Where a spec sets them, and the field of one, a %-format of the limit's name: how every
# budget error names the one to raise (an _image.budget.Budget `hint`; the script's too).
IMAGE_LIMITS_PATH = "rootfs.image.limits"
IMAGE_LIMIT_FIELD = IMAGE_LIMITS_PATH + ".%(name)s"

IMAGE = (
    Field("name", "str", [
        "An image of the store, imported by M(fromscratch.containerfs.image) under this name: its "
        "record and verified layers are used as they are and no source is read.",
        "Give either C(name) or C(source); C(name) takes none of C(format), C(tag), C(digest), "
        "C(platform)."]),
    Field("source", "str", [
        "Path on the target of the image: an OCI image layout (a directory or a tar of one), a "
        "C(docker save) archive, a root filesystem tarball (plain, gzip, xz or zstd) or a directory.",
        "Relative to the spec file's directory.",
        "Or C(docker://HOST[:PORT]/REPO[:TAG|@DIGEST]): an image of an OCI registry, pulled into the "
        "store (see C(pull)); its digests are pinned in the plan."]),
    Field("format", "str", "The kind of C(source); V(auto) detects it.", default="auto",
          choices=IMAGE_FORMATS),
    Field("tag", "str", "Which image of a layout or archive, by tag."),
    Field("digest", "str", "Which image of a layout or archive, by digest (C(sha256:<64 hex digits>))."),
    Field("platform", "str", "For a multi-platform index, C(os/arch[/variant]); default this host's."),
    Field("store", "path", "The image store holding the layers; default the spec's C(state_dir)."),
    Field("auth_file", "path", [
        "Registry source only: a containers-auth.json or docker config.json on the host where the "
        "container is set up, whose C(auths) give the credentials, read when layers are fetched.",
        "A spec never holds a password."]),
    Field("ca_cert", "path", "Registry source only: PEM CA certificate(s) on that host to verify the "
          "registry's TLS certificate (default the system CAs)."),
    Field("tls_verify", "bool", "Registry source only: V(false) accepts any certificate and plain HTTP.",
          default=True),
    Field("pull", "str", [
        "Registry source only: when the registry is asked. V(missing) uses an image the store holds for "
        "this very reference without the network (a converge that changes nothing never reaches the "
        "registry); V(always) resolves the tag again (a tag moved to another digest changes the plan)."],
        default=_spec_registry.DEFAULT_PULL, choices=_spec_registry.PULL_POLICIES),
    Field("limits", "dict", [
        "Budgets checked while the layers are unpacked (positive integers), so that a hostile image "
        "(a decompression bomb) stops early with an error naming the layer and the limit, and leaves "
        "nothing behind. Only layers unpacked now count; the defaults fit real images with a wide margin.",
        "A layer that is not a tar is refused whatever the limits."], fields=IMAGE_LIMITS),
)

ROOTFS = (
    Field("path", "path", [
        "The directory to use as the container root (relative to the spec file's directory).",
        "Give either C(path) or C(image)."]),
    Field("image", "dict", [
        "An image instead of a directory. Its layers are unpacked once into "
        "C(<store>/layers/sha256/<diff_id>/) and mounted as overlayfs lower layers (C(overlay) is "
        "then always true).",
        "The image config fills in what the spec leaves out: C(process.args) (Entrypoint and "
        "Cmd), C(process.env), C(process.cwd), a numeric C(process.user), and a bind volume per "
        "image Volume."], fields=IMAGE),
    Field("overlay", "bool", [
        "Mount the rootfs as an overlay with a per-container upper dir "
        "(C(<state_dir>/containers/<name>/upper)), so that the source stays pristine.",
        "Always true with C(image)."], default=False),
    Field("readonly", "bool", "Make C(/) read-only (not its submounts), as C(runc spec) does.", default=True),
    Field("propagation", "str", "The root's mount propagation (runc's C(rootfsPropagation)); unset, "
          "V(rslave) as in runc.", choices=ROOT_PROPAGATIONS),
)

NAMESPACE = (
    Field("type", "str", "The namespace type (%s)." % _aliases_text(NAMESPACE_ALIASES),
          choices=NAMESPACE_TYPES, required=True),
    Field("path", "path", "A namespace file to join (for example C(/run/netns/x)) instead of a new "
          "namespace."),
)

MOUNT = (
    Field("target", "str", "Absolute path inside the container; not C(/), no C(.) or C(..) component.",
          required=True),
    Field("type", "str", "The filesystem type; V(bind) when the options hold C(bind) or C(rbind).",
          choices=mountopts.FILESYSTEM_TYPES),
    Field("source", "str", "The mount source (an absolute host path for a bind); default the type."),
    Field("options", "list", ["Mount option words (C(nosuid), C(mode=755), ...). " + _WORD_TEXT,
                              "Runtime-only words (%s) are refused." % _code_list(mountopts.RUNTIME_WORDS)],
          elements="str"),
)

VOLUME = (
    Field("type", "str", "V(bind) (the default when C(source) is given) or V(tmpfs).", choices=VOLUME_TYPES),
    Field("source", "path", "Bind only: the host path (relative to the spec file's directory)."),
    Field("target", "str", "Absolute path inside the container; the mount point is made a file or a "
          "directory to match the source.", required=True),
    Field("readonly", "bool", "Mount it read-only.", default=False),
    Field("recursive", "bool", "Bind only: V(true) binds recursively (rbind).", default=True),
    Field("propagation", "str", "Bind only: its mount propagation; default V(rprivate).",
          choices=VOLUME_PROPAGATIONS),
    Field("options", "list", "Extra mount option words. " + _WORD_TEXT, elements="str"),
    Field("size", "str", "Tmpfs only: its size, such as V(65536k), V(64m), V(1g) or V(50%)."),
    Field("mode", "str", "Tmpfs only: the mode of its root, a quoted octal such as V('1777')."),
    Field("create", "bool", "Bind only: make the source directory when it is missing.", default=False),
)

DEVICE = (
    Field("path", "str", "Path under C(/dev) (not C(/dev/ptmx), always a link to C(pts/ptmx)).",
          required=True),
    Field("type", "str", "V(c) (character), V(b) (block) or V(p) (fifo); %s." % _aliases_text(DEVICE_TYPE_ALIASES),
          default="c", choices=DEVICE_TYPES),
    Field("major", "int", "Major number (below 4096); required for V(c) and V(b)."),
    Field("minor", "int", "Minor number (below 2^20); required for V(c) and V(b)."),
    Field("mode", "str", "Permissions, a quoted octal such as V('0666').", default="0666"),
    Field("uid", "int", "Owner uid.", default=0),
    Field("gid", "int", "Owner gid.", default=0),
)

EXTRA_HOST = (
    Field("address", "str", "An IPv4 or IPv6 address.", required=True),
    Field("names", "list", "Its host names (at least one).", elements="str", required=True),
)

ETC = (
    Field("hosts", "bool", "Generate C(/etc/hosts): localhost, the hostname and C(extra_hosts).",
          default=True),
    Field("hostname", "bool", "Generate C(/etc/hostname).", default=True),
    Field("resolv_conf", "bool", "Generate C(/etc/resolv.conf): from C(dns), else a copy of the host's.",
          default=True),
    Field("extra_hosts", "list", "More lines of C(/etc/hosts).", default=[], elements="dict", fields=EXTRA_HOST),
)

DNS = (
    Field("nameservers", "list", "IP addresses of name servers.", default=[], elements="str"),
    Field("search", "list", "Search domains.", default=[], elements="str"),
    Field("options", "list", "Resolver options, such as V(ndots:2).", default=[], elements="str"),
)

PROCESS = (
    Field("args", "list", "The command and its arguments (any text but NUL).", default=["sh"], elements="str"),
    Field("env", "raw", ["Exactly this environment: a list of C(NAME=value), or a mapping of names to "
                         "values (strings or numbers).",
                         "Default C(%s)." % " ".join(DEFAULT_ENV)]),
    Field("cwd", "str", "The working directory, an absolute path inside the container.", default="/"),
    Field("user", "str", "Numeric C(uid) or C(uid:gid) (names are not resolved); default V(0:0)."),
)

_MOUNTS_TEXT = [
    "The filesystems mounted first; given, it replaces the default list.",
    "Omitted, the %d of C(runc spec): %s." % (len(RUNC_DEFAULT_MOUNTS),
                                              _code_list(m["target"] for m in RUNC_DEFAULT_MOUNTS)),
]

SPEC = (
    Field("version", "int", "The spec format version.", default=SPEC_VERSION, choices=(SPEC_VERSION,)),
    Field("name", "str", "Container name: letters, digits, C(_), C(.), C(-), at most 128 characters, "
          "starting with a letter or digit.", required=True),
    Field("hostname", "str", "The container's hostname (RFC 1123); needs the V(uts) namespace. Default "
          "V(runc) (as C(runc spec)) when the namespaces include V(uts)."),
    Field("rootfs", "dict", "The container root: a directory (C(path)) or an image (C(image)).",
          required=True, fields=ROOTFS),
    Field("namespaces", "list", [
        "The namespaces to make: each a type or a mapping with C(type) and C(path). Must include "
        "V(mount).",
        "Add V(cgroup) for a private C(/sys/fs/cgroup) view."], default=list(DEFAULT_NAMESPACES),
        elements="raw", fields=NAMESPACE),
    Field("mounts", "list", _MOUNTS_TEXT, elements="dict", fields=MOUNT),
    Field("volumes", "list", "Mounts added after the default filesystems and before the C(/etc) files.",
          default=[], elements="dict", fields=VOLUME),
    Field("devices", "list", [
        "Device nodes added to the defaults (%s, mode 0666, owned by root); a default of the same "
        "path is replaced." % _code_list(d["path"] for d in DEFAULT_DEVICES)],
        default=[], elements="dict", fields=DEVICE),
    Field("etc", "dict", "Files generated outside the rootfs and bound over the image's C(/etc) files.",
          fields=ETC),
    Field("dns", "dict", "What C(/etc/resolv.conf) says (one word each: no whitespace, C(,), C(#) or C(;)).", fields=DNS),
    Field("masked_paths", "list", "Paths made inaccessible (a file gets C(/dev/null), a directory an empty "
          "read-only tmpfs); given, it replaces runc's list.", default=list(RUNC_MASKED_PATHS),
          elements="str"),
    Field("add_masked_paths", "list", "Paths masked on top of C(masked_paths).", default=[], elements="str"),
    Field("readonly_paths", "list", "Paths made read-only; given, it replaces runc's list.",
          default=list(RUNC_READONLY_PATHS), elements="str"),
    Field("add_readonly_paths", "list", "Paths made read-only on top of C(readonly_paths).", default=[],
          elements="str"),
    Field("process", "dict", "The container's process.", fields=PROCESS),
    Field("state_dir", "path", "Host directory of the per-container state "
          "(C(containers/<name>/): C(/etc) files, overlay upper and work dirs).", default=DEFAULT_STATE_DIR),
    Field("run_dir", "path", "Host directory of the pinned namespaces, rootfs mount point and pid file "
          "(C(<name>/)).", default=DEFAULT_RUN_DIR),
)


def field(path):
    """The Field at a dotted `path` (``rootfs.image``)."""
    fields, found = SPEC, None
    for name in path.split("."):
        found = next(f for f in fields if f.name == name)
        fields = found.fields
    return found


def names(path=""):
    """The names of the fields a section allows ("" for the top level), in table order."""
    return tuple(f.name for f in (field(path).fields if path else SPEC))


def defaults(path):
    """{name: default} of a section's fields that have a plain default (a copy)."""
    return dict((f.name, copy.deepcopy(f.default)) for f in field(path).fields if f.default is not NO_DEFAULT)


def default(path):
    """The default of one field (a copy)."""
    return copy.deepcopy(field(path).default)


def choices(path):
    return field(path).choices
