# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render a plan into a standalone POSIX shell script (scripts/templates/*.j2).

The renderer is a pure function of the plan: it groups the plan's steps into the
blocks the script runs (mounts are batched into one `mount --all --fstab` call per
block, because every program start costs about a millisecond) and hands them to the
Jinja2 templates. It knows nothing about mount order or options: the plan does.

Needs only jinja2; no ansible import at module level (the CLI uses it without Ansible).
Private to the collection; may change without notice.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os

import jinja2

GENERATOR = "fromscratch.containerfs"
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "scripts", "templates")

# Steps that become lines of the fstab batch.
BATCHED = ("mount", "cgroup", "mount_rootfs", "remount_root_readonly")
# Steps whose lines depend on what exists after the earlier mounts (skip if missing).
EXISTENCE_CHECKED = ("readonly_path", "mask_path")
DEVICE_STEPS = ("mknod", "symlink")


def shell_quote(value):
    """Quote one word for POSIX sh: single quotes, with ' written as '\\''."""
    text = "%s" % (value,)
    return "'" + text.replace("'", "'\\''") + "'"


def _fresh_filesystem(step):
    """A filesystem that is empty when mounted, so paths below it cannot hold symlinks."""
    return step["op"] == "cgroup" or (step["op"] == "mount" and step["fstype"] != "bind")


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
            if earlier["op"] in ("mount_rootfs", "remount_root_readonly"):
                continue  # a bind of the rootfs onto itself shows the same tree
            earlier_target = earlier.get("target") or earlier.get("path")
            if earlier_target == target or _under(target, earlier_target):
                if _fresh_filesystem(earlier) and earlier_target != target:
                    base = index
                else:
                    current = None
                break
    current = current or _new_block(blocks, checked)
    current["steps"].append(step)
    current["bases"].append(base)
    return current


def device_template_id(steps):
    """Name of the cached /dev template: changes whenever the device steps change."""
    text = json.dumps(steps, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _environment(template_dir):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["sq"] = shell_quote
    env.filters["sqjoin"] = lambda values: " ".join(shell_quote(v) for v in values)
    env.filters["opts"] = lambda values: shell_quote(",".join(values) if values else "defaults")
    return env


def render_script(plan, version="0.0.0", template_dir=TEMPLATE_DIR):
    """Return the text of the shell script for `plan`."""
    steps = plan["steps"]
    by_phase = {}
    for step in steps:
        by_phase.setdefault(step["phase"], []).append(step)
    namespaces_step = [s for s in steps if s["op"] == "namespaces"][0]
    exec_step = [s for s in steps if s["op"] == "exec"][0]
    root_blocks = group_steps(by_phase.get("root", []))
    device_steps = [s for s in steps if s["op"] in DEVICE_STEPS]
    context = {
        "plan": plan,
        "generator": GENERATOR,
        "version": version,
        "paths": plan["paths"],
        "host_steps": [s for s in by_phase.get("host", []) if s["op"] != "namespaces"],
        "namespaces": namespaces_step,
        "root_blocks": root_blocks,
        "final_steps": [s for s in by_phase.get("final", []) if s["op"] != "exec"],
        "exec": exec_step,
        "device_template": device_template_id(device_steps) if device_steps else None,
        "needs": _needed_commands(steps),
        "layer_steps": [s for s in steps if s["op"] == "unpack_layer"],
        "dev_is_fresh_tmpfs": _dev_is_fresh_tmpfs(steps),
        # lower dirs that must exist already (image layers are unpacked by the script)
        "rootfs_lower": [l for s in steps if s["op"] == "mount_rootfs" and s["kind"] == "overlay"
                         for l in s["lower"]
                         if l not in [u["dest"] for u in steps if u["op"] == "unpack_layer"]],
        "filesystems": _needed_filesystems(steps),
    }
    return _environment(template_dir).get_template("container.sh.j2").render(**context)


def _dev_is_fresh_tmpfs(steps):
    """True when the last mount on /dev is a tmpfs and the devices are copied into it."""
    dev = [s for s in steps if s["op"] == "mount" and s["target"] == "/dev"]
    return bool(dev) and dev[-1]["fstype"] == "tmpfs" and any(s["op"] == "mknod" for s in steps)


def _needed_commands(steps):
    ops = set(s["op"] for s in steps)
    needs = ["unshare", "nsenter", "mount", "umount", "pivot_root", "mkfifo", "env", "readlink",
             "mkdir", "rm"]
    if ops & set(DEVICE_STEPS):
        needs += ["cp", "mknod", "ln", "mv"]
    if any(s["op"] == "mknod" and (s["uid"] or s["gid"]) for s in steps):
        needs.append("chown")
    if any(s["op"] == "exec" and (s["uid"] or s["gid"]) for s in steps):
        needs.append("setpriv")
    layers = [s for s in steps if s["op"] == "unpack_layer"]
    if layers:
        needs += ["cat", "tar", "sha256sum", "find", "setfattr", "mknod", "mv", "rm", "flock"]
        needs += [s["compression"] for s in layers if s["compression"]]
    if "mask_path" in ops:
        needs.append("stat")  # the container's /dev/null is checked before masking with it
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
