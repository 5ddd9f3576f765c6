# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render a plan into a standalone POSIX shell script (scripts/templates/).

The renderer is a pure function of the plan: it groups the plan's steps into the
blocks the script runs (mounts are batched into one `mount --all --fstab` call per
block, because every program start costs about a millisecond) and hands them to the
Jinja2 templates. It knows nothing about mount order or options: the plan does.

The script is one file made of three kinds of text: the skeleton (container.sh.j2: the
header of values and the functions that loop over the plan), one macro per step kind
(steps.j2, called through `step_code`) and static POSIX sh parts (sh/*.sh: functions that
take no plan values, copied verbatim by `static_part`; shellchecked on their own).

Needs only jinja2; no ansible import at module level (the CLI uses it without Ansible).
Private to the collection; may change without notice.
"""

import os
import re

import jinja2

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _errors, _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import tar as _tar
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as _fields
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts

GENERATOR = "fromscratch.containerfs"
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "scripts", "templates")
# The macros of the step kinds, and the static parts (in TEMPLATE_DIR/sh) the skeleton uses.
STEP_MACROS = "steps.j2"
STATIC_PARTS = ("messages.sh", "paths.sh", "mounts.sh", "devices.sh", "layers.sh", "registry.sh", "host.sh",
                "inside.sh", "lifecycle.sh", "pin.sh", "monitor.sh")

# Steps that become lines of the fstab batch.
BATCHED = ("mount", "cgroup", "mount_rootfs", "remount_readonly", "remount_root_readonly")
# Steps whose lines depend on what exists after the earlier mounts (skip if missing).
EXISTENCE_CHECKED = ("readonly_path", "mask_path")
DEVICE_STEPS = ("mknod", "symlink")
# Batched steps on the rootfs mount point itself: no mount point to resolve in the root.
ON_ROOTFS_ITSELF = ("mount_rootfs", "remount_root_readonly")
# Where the script handles each step kind (tests check every plan kind is here, and the
# template raises on a kind it has no branch for).
STEP_HANDLERS = {
    "unpack_layer": "prepare_host", "write_file": "prepare_host", "copy_file": "prepare_host",
    "make_dir": "prepare_host", "namespaces": "container_side",
    "mount_rootfs": "build_root", "mount": "build_root", "cgroup": "build_root",
    "remount_readonly": "build_root", "readonly_path": "build_root", "mask_path": "build_root",
    "remount_root_readonly": "build_root", "hostname": "build_root", "workdir": "build_root",
    "mount_point": "build_root",
    "mknod": "build_dev_template", "symlink": "build_dev_template",
    "pivot_root": "inside_main", "root_propagation": "switch_root", "exec": "inside_wait",
}


# The build functions of the root phase: (name, which root steps, why). `run` builds every
# root step; `up` the persistent ones (at_start false), in the pinned namespaces; `start`
# and `exec` the process's own ones (at_start true: its /proc), in a copy of those.
BUILDS = (
    ("build_root", lambda step: True, "every root step, in plan order (run)"),
    ("build_persistent", lambda step: not step["at_start"], "the container filesystem that stays (up)"),
    ("build_at_start", lambda step: step["at_start"], "what belongs to a running process (start, exec)"),
)
# The namespace kinds as the options of unshare(1) and nsenter(1) name them, and the file
# of each pinned one (_layout.NS_DIR_NAMES); pid is never pinned.
NS_OPTIONS = {"mount": "mount", "uts": "uts", "ipc": "ipc", "net": "net", "pid": "pid", "cgroup": "cgroup"}
NS_FILES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "cgroup": "cgroup"}


# What a plan may select code with: the script runs a decompressor named by the first and
# picks how to read blobs by the second, so nothing else may reach it.
LAYER_COMPRESSIONS = ("", "gzip", "zstd", "xz", "bzip2")
IMAGE_FORMATS = ("oci", "docker-archive", "tarball", "dir", "docker")
# The format whose layer blobs the script fetches from a registry (sh/registry.sh).
REGISTRY_FORMAT = "docker"

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: none may
# stay raw in a comment line.
_COMMENT_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_COMMENT_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_WORD = re.compile(r"[a-z0-9][a-z0-9_]*\Z")
_LAYER_NAME = re.compile(r"[0-9a-f]{64}\Z")


class Escaped(str):
    """Text escaped for one context of the script (see `finalize`): `context` names it."""

    context = None

    def __new__(cls, text, context):
        value = str.__new__(cls, text)
        value.context = context
        return value


class RenderError(_errors.ContainerfsError, ValueError):
    """A plan value that no context of the script can carry."""


def shell_quote(value):
    """Quote one word for POSIX sh: single quotes, with ' written as '\\''. A NUL byte
    has no form in sh (shells drop it): refused."""
    text = "%s" % (value,)
    if "\x00" in text:
        raise RenderError("a NUL byte cannot be written into the script: %r" % (text,))
    return Escaped("'" + text.replace("'", "'\\''") + "'", "shell word")


def comment_text(value):
    """Text for a `# ...` line that nothing can end early: control characters and line
    separators become visible escapes (\\n, \\r, \\t, \\xNN, \\uNNNN)."""
    def visible(match):
        char = match.group(0)
        if char in _COMMENT_NAMED:
            return _COMMENT_NAMED[char]
        return "\\x%02x" % ord(char) if ord(char) < 0x100 else "\\u%04x" % ord(char)
    return Escaped(_COMMENT_UNSAFE.sub(visible, "%s" % (value,)), "comment")


def word(value):
    """A fixed word of the script's own vocabulary (a tool, a namespace type, a
    propagation): lowercase letters, digits and '_', written bare. Anything else raises."""
    text = "%s" % (value,)
    if not _WORD.match(text):
        raise RenderError("not a plain word, refusing to write it into the script: %r" % (text,))
    return Escaped(text, "word")


def code(text):
    """Script text rendered from a template of this module (every value in it already
    passed `finalize`)."""
    return Escaped(text, "code")


def finalize(value):
    """Let through only escaped text and plain integers: any other `{{ value }}` raises,
    so no value can reach the script without one of the escaping filters."""
    if isinstance(value, Escaped) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise RenderError("unescaped value in the script template: %r (use sq, comment, word...)" % (value,))


def layer_limits(step):
    """The words of `layer_limits` (sh/layers.sh) for an unpack_layer step: each limit of
    _budget.SCRIPT_LIMITS, then the spec field that raises it."""
    words = []
    for value, name in _budget.script_limits(step.get("limits")):
        words += [word(str(value)), shell_quote(_fields.IMAGE_LIMIT_FIELD % {"name": name})]
    return Escaped(" ".join(words), "shell word")


def layer_metadata(step):
    """The image store's metadata of a layer (_layout's schema) as JSON (json.dumps escapes
    every string), with a mark where the script writes the time it unpacked the layer."""
    try:
        metadata = _layout.layer_metadata(step["diff_id"], step["digest"], step["size"],
                                          step.get("media_type"), step["compression"],
                                          created=_layout.CREATED_AT_RUN_TIME)
    except ValueError as exc:
        raise RenderError(str(exc))
    text = _layout.layer_metadata_text(metadata).rstrip("\n")
    if text.count(_layout.CREATED_AT_RUN_TIME) != 1:
        raise RenderError("layer %s: its metadata holds the time mark %r elsewhere" % (
            step["diff_id"], _layout.CREATED_AT_RUN_TIME))
    return text


def registry_source(step):
    """The words of `registry_source` (sh/registry.sh) for a layer step of a registry
    image: the reference, the host the API answers on, the repository, the auth file's
    keys that may hold its credentials (most specific first), the auth file, the CA
    certificate and whether TLS is verified. The reference is split here, once, by the
    parser the image store uses; the script parses no reference."""
    try:
        ref = _registry.parse_reference(step["source"])
    except _errors.ContainerfsError as exc:
        raise RenderError("layer %s: %s" % (step.get("diff_id"), exc))
    registry = step.get("registry") or {}
    words = [str(ref), ref.api_host, ref.repository, " ".join(_registry.auth_keys(ref)),
             registry.get("auth_file") or "", registry.get("ca_cert") or "",
             "false" if registry.get("tls_verify") is False else "true"]
    return Escaped(" ".join(shell_quote(w) for w in words), "shell word")


def _check_layer_steps(steps, paths):
    for step in steps:
        if step["compression"] not in LAYER_COMPRESSIONS:
            raise RenderError("unknown layer compression %r (one of: %s)" % (
                step["compression"], ", ".join(LAYER_COMPRESSIONS[1:])))
        if step["format"] not in IMAGE_FORMATS:
            raise RenderError("unknown image format %r (one of: %s)" % (step["format"], ", ".join(IMAGE_FORMATS)))
        # a layer dir of the plan's store (whose lock and temporary names the script uses)
        store = paths.get("store")
        if not (store and os.path.isabs(store) and os.path.normpath(store) == store):
            raise RenderError("the plan unpacks layers but names no image store (paths.store)")
        layers, name = os.path.split(step["dest"])
        if not (_LAYER_NAME.match(name) and layers == _layout.StoreLayout(store).layers_dir):
            raise RenderError("layer dir %r is not the plan's STORE/layers/sha256/HEX" % (step["dest"],))


def _fresh_filesystem(step):
    """A filesystem that is empty when mounted, so paths below it cannot hold symlinks."""
    return step["op"] == "cgroup" or (step["op"] == "mount" and step["fstype"] != "bind")


def _makes_a_dir(step):
    """A mount point that mount(8) can make itself (X-mount.mkdir): a directory."""
    return step["op"] != "mount" or step.get("create") == "dir"


def _under(path, parent):
    return parent != path and path.startswith(parent.rstrip("/") + "/")


def group_steps(steps):
    """Group root-phase steps into the blocks the script runs, in plan order.

    A block is {'kind': 'mounts'|'devices'|'step', 'steps': [...]}. In a 'mounts' block each
    step carries 'base' (index of an earlier step of the same block whose fresh filesystem
    the target lies in, or None): the script resolves only up to that mount point.
    A mount whose target lies under an earlier *bind* of the same block starts a new block,
    so its target is resolved against what the bind really shows.
    """
    blocks = []
    current = None
    for step in steps:
        if step["op"] == "mount_rootfs" and step["kind"] == "overlay":
            # The overlay is mounted on its own: later targets are resolved in the merged view.
            blocks.append({"kind": "step", "steps": [step]})
            current = None
            continue
        kind = ("mounts" if step["op"] in BATCHED + EXISTENCE_CHECKED else
                "devices" if step["op"] in DEVICE_STEPS else "step")
        if kind == "mounts":
            current = _add_mount_step(blocks, current, step)
            continue
        current = None
        if kind == "devices" and blocks and blocks[-1]["kind"] == "devices":
            blocks[-1]["steps"].append(step)
        else:
            blocks.append({"kind": kind, "steps": [step]})
    return blocks


def _new_block(blocks, checked):
    block = {"kind": "mounts", "steps": [], "bases": [], "checked": checked}
    blocks.append(block)
    return block


def _add_mount_step(blocks, current, step):
    """Add a batched step to the current block, or start a new one; return the block."""
    if step["op"] == "remount_root_readonly":
        # the last line of whatever batch is open: every mount point exists by then
        current = current or _new_block(blocks, checked=False)
        current["steps"].append(step)
        current["bases"].append(None)
        return current
    checked = step["op"] in EXISTENCE_CHECKED
    if current is not None and checked and not current.get("checked"):
        current = None  # existence checks see the earlier mounts only once they are mounted
    target = step.get("target") or step.get("path")
    base = None
    if current is not None:
        for index in range(len(current["steps"]) - 1, -1, -1):
            earlier = current["steps"][index]
            if earlier["op"] in ON_ROOTFS_ITSELF:
                continue  # a bind of the rootfs onto itself shows the same tree
            earlier_target = earlier.get("target") or earlier.get("path")
            if earlier_target == target or _under(target, earlier_target):
                if _fresh_filesystem(earlier) and earlier_target != target and _makes_a_dir(step):
                    base = index
                else:
                    current = None  # a file is made in the fresh filesystem once it is mounted
                break
    current = current or _new_block(blocks, checked)
    current["steps"].append(step)
    current["bases"].append(base)
    return current


def _environment(template_dir):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=finalize,
    )
    env.filters["sq"] = shell_quote
    env.filters["sqjoin"] = lambda values: Escaped(" ".join(shell_quote(v) for v in values), "shell word")
    # typed mount options (_mountopts.parse) -> one shell word of option words
    env.filters["mountopts"] = lambda typed: shell_quote(mountopts.option_string(typed))
    env.filters["opts"] = lambda values: shell_quote(",".join(values) if values else "defaults")
    env.filters["unshare_propagation"] = lambda value: word(mountopts.unshare_propagation(value))
    env.globals["unknown_step"] = unknown_step
    env.globals["step_code"] = lambda where, step: step_code(env, where, step)
    env.globals["part"] = lambda name: static_part(template_dir, name)
    env.filters["comment"] = comment_text
    env.filters["word"] = word
    env.filters["metadata"] = lambda step: shell_quote(layer_metadata(step))
    env.filters["registry_source"] = registry_source
    env.filters["layer_limits"] = layer_limits
    return env


def unknown_step(step):
    """Called for a step kind the script has no handler for: never render a step as its
    comment alone."""
    raise RenderError("the script has no handler for plan step kind %r" % (step.get("op"),))


def step_code(env, where, step):
    """The script text of one step: the macro of steps.j2 named after its kind. The one
    dispatch of the template's step loops: a kind that STEP_HANDLERS does not place in the
    function WHERE, or that has no macro, raises."""
    macro = None
    if STEP_HANDLERS.get(step.get("op")) == where:
        macro = getattr(env.get_template(STEP_MACROS).module, step["op"], None)
    if macro is None:
        unknown_step(step)
    text = macro(step)
    # every value in it passed `finalize`; the line of the call ends it
    return code(text[:-1] if text.endswith("\n") else text)


def static_part(template_dir, name):
    """A static part of the script (sh/NAME), without its header (the lines up to the first
    blank one, for shellcheck on its own). Only the parts listed in STATIC_PARTS: files of
    the collection, never a value of the plan."""
    if name not in STATIC_PARTS:
        raise RenderError("not a static part of the script: %r" % (name,))
    with open(os.path.join(template_dir, "sh", name)) as part:
        text = part.read()
    return code(text.split("\n\n", 1)[1])


def host_dirs(plan):
    """The host directories the script writes in, outermost first: a list of {path, mode,
    create, outermost (its parent is not in the list)}.

    The script refuses an existing one that is a symlink, not a directory, not owned by
    root or writable by group or others, and creates a missing one (create=False: the dev
    template, which a later step makes whole). Files are written only inside these."""
    paths = plan["paths"]
    steps = plan["steps"]
    state_dir = os.path.dirname(os.path.dirname(paths["state"]))
    dirs = [(state_dir, "0700", True), (os.path.dirname(paths["state"]), "0700", True),
            (paths["state"], "0700", True)]
    for step in steps:
        if step["op"] == "make_dir" and _inside(step["path"], paths["state"]):
            dirs.append((step["path"], step["mode"], True))
    dirs += [(os.path.dirname(paths["run"]), "0700", True), (paths["run"], "0700", True)]
    dirs += [(step["path"], step["mode"], True) for step in steps
             if step["op"] == "make_dir" and _under(step["path"], paths["run"])]
    if any(step["op"] == "unpack_layer" for step in steps):
        layers = _layout.StoreLayout(paths["store"]).layers_dir
        dirs += [(paths["store"], "0700", True), (os.path.dirname(layers), "0700", True), (layers, "0700", True)]
    dirs += [(step["path"], step["mode"], True) for step in steps if step["op"] == "make_dir"
             and paths.get("image_ref") and step["path"] == os.path.dirname(paths["image_ref"])]
    if paths.get("dev_template"):
        dirs.append((paths["dev_template"], "0700", False))
    unique = []
    for path, mode, create in dirs:
        if path not in [u["path"] for u in unique]:
            outermost = os.path.dirname(path) not in [u["path"] for u in unique]
            unique.append({"path": path, "mode": mode, "create": create, "outermost": outermost})
    _check_files_inside(steps, [d["path"] for d in unique])
    if os.path.dirname(paths["lock"]) not in [d["path"] for d in unique]:
        raise RenderError("%s: the lock lies outside the checked directories" % (paths["lock"],))
    return unique


def _inside(path, parent):
    return path == parent or _under(path, parent)


def _check_files_inside(steps, dirs):
    """Every file the script writes lies directly in a directory it checked."""
    for step in steps:
        if step["op"] in ("write_file", "copy_file") and os.path.dirname(step["path"]) not in dirs:
            raise RenderError("%s: the script writes files only in its checked directories" % (step["path"],))
        if step["op"] == "unpack_layer" and os.path.dirname(step["dest"]) not in dirs:
            raise RenderError("%s: a layer outside the checked store" % (step["dest"],))


def _relative_under(path, parent):
    """PATH relative to PARENT when it lies below it, else None."""
    return path[len(parent.rstrip("/")) + 1:] if _under(path, parent) else None


def render_script(plan, version="0.0.0", template_dir=TEMPLATE_DIR):
    """Return the text of the shell script for `plan`."""
    steps = plan["steps"]
    unknown = [s for s in steps if s["op"] not in STEP_HANDLERS]
    if unknown:
        unknown_step(unknown[0])
    _check_layer_steps([s for s in steps if s["op"] == "unpack_layer"], plan["paths"])
    by_phase = {}
    for step in steps:
        by_phase.setdefault(step["phase"], []).append(step)
    namespaces_step = [s for s in steps if s["op"] == "namespaces"][0]
    exec_step = [s for s in steps if s["op"] == "exec"][0]
    root_steps = by_phase.get("root", [])
    root_blocks = group_steps(root_steps)
    builds = [{"name": name, "why": why, "blocks": group_steps([s for s in root_steps if wanted(s)])}
              for name, wanted, why in BUILDS]
    device_steps = [s for s in steps if s["op"] in DEVICE_STEPS]
    context = {
        "plan": plan,
        "generator": GENERATOR,
        "version": version,
        "paths": plan["paths"],
        "host_steps": [s for s in by_phase.get("host", []) if s["op"] != "namespaces"],
        "namespaces": namespaces_step,
        "root_blocks": root_blocks,
        "builds": builds,
        "record_text": _layout.record_text(plan),
        "record_incomplete": _layout.RECORD_INCOMPLETE,
        "record_digest_prefix": _layout.RECORD_DIGEST_PREFIX,
        "pinned": [(ns["type"], NS_FILES[ns["type"]]) for ns in namespaces_step["namespaces"]
                   if ns["type"] in NS_FILES and not ns["path"]],
        "ns_option": NS_OPTIONS,
        "image_ref_outside": _image_ref_outside(plan["paths"]),
        "final_steps": [s for s in by_phase.get("final", []) if s["op"] != "exec"],
        "exec": exec_step,
        "device_template": plan["paths"]["dev_template"] if device_steps else None,
        "needs": _needed_commands(steps),
        "layer_steps": [s for s in steps if s["op"] == "unpack_layer"],
        "registry_steps": [s for s in steps if s["op"] == "unpack_layer" and s["format"] == REGISTRY_FORMAT],
        "dev_is_fresh_tmpfs": _dev_is_fresh_tmpfs(steps),
        # lower dirs that must exist already (image layers are unpacked by the script)
        "rootfs_lower": [l for s in steps if s["op"] == "mount_rootfs" and s["kind"] == "overlay"
                         for l in s["lower"]
                         if l not in [u["dest"] for u in steps if u["op"] == "unpack_layer"]],
        "filesystems": _needed_filesystems(steps),
        "host_dirs": host_dirs(plan),
        "created_mark": _layout.CREATED_AT_RUN_TIME,
        "max_trailer": str(_tar.MAX_TRAILER),
        "store_layout": _layout.StoreLayout(plan["paths"]["store"]) if plan["paths"].get("store") else None,
        "run_files": " ".join(_layout.run_file_names(plan["paths"])),
        "on_rootfs_itself": ON_ROOTFS_ITSELF,
        # the overlay's mount point, inside the run dir: found again from its canonical path
        "root_in_run": _relative_under(plan["paths"]["root"], plan["paths"]["run"]),
    }
    env = _environment(template_dir)
    wait = env.get_template("wait.sh.j2")
    context["wait_code"] = code(wait.render(exec=exec_step, indent=code("")))
    context["wait_body"] = code(wait.render(exec=exec_step, indent=code("    ")))
    return env.get_template("container.sh.j2").render(**context)


def _image_ref_outside(paths):
    """An image reference the container keeps in a store elsewhere (removed with it)."""
    ref = paths.get("image_ref")
    return ref if ref and not _inside(ref, paths["state"]) else None


def _dev_is_fresh_tmpfs(steps):
    """True when the last mount on /dev is a tmpfs and the devices are copied into it."""
    dev = [s for s in steps if s["op"] == "mount" and s["target"] == "/dev"]
    return bool(dev) and dev[-1]["fstype"] == "tmpfs" and any(s["op"] == "mknod" for s in steps)


def _needed_commands(steps):
    ops = set(s["op"] for s in steps)
    # flock: the container's lock; stat: the host dirs' owner and mode, in one call;
    # setsid: the container side in a session of its own (signals reach it through us)
    # the lifecycle: true (pinning), cat, cp, chmod, mv (record, installed copy), date,
    # sleep, head or dd, tail (monitor, log, stop)
    needs = ["unshare", "nsenter", "mount", "umount", "pivot_root", "mkfifo", "env", "readlink",
             "mkdir", "rm", "flock", "stat", "setsid", "true", "cat", "cp", "chmod", "mv", "date",
             "sleep", "head", "dd", "tail"]
    if ops & set(DEVICE_STEPS):
        needs += ["cp", "mknod", "ln", "mv"]
    if any(s["op"] == "mknod" and (s["uid"] or s["gid"]) for s in steps):
        needs.append("chown")
    if any(s["op"] == "exec" and (s["uid"] or s["gid"]) for s in steps):
        needs.append("setpriv")
    layers = [s for s in steps if s["op"] == "unpack_layer"]
    if layers:
        needs += ["cat", "tar", "sha256sum", "head", "wc", "find", "setfattr", "mknod", "mv", "rm", "date",
                  "tee", "awk", "grep"]
        needs += [s["compression"] for s in layers if s["compression"]]
    if any(s["format"] == REGISTRY_FORMAT for s in layers):
        # sh/registry.sh; curl or wget (and base64 for a username/password auth entry)
        # are looked for when a blob is fetched: a host needs only one of them
        needs += ["awk", "sed", "tail", "tr", "wc"]
    return sorted(set(needs))


def _needed_filesystems(steps):
    found = set()
    for step in steps:
        if step["op"] == "mount" and step["fstype"] != "bind":
            found.add(step["fstype"])
        elif step["op"] == "mount_rootfs" and step["kind"] == "overlay":
            found.add("overlay")
        elif step["op"] == "mask_path":
            found.add("tmpfs")
    return sorted(found)
