#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: container
short_description: Set up or remove a persistent container filesystem
version_added: 0.1.0
description:
  - Builds a container filesystem the way runc does (rootfs, optionally under an overlay,
    C(/dev), C(/dev/pts), C(/dev/shm), C(/dev/mqueue), C(/sys), cgroups, volumes,
    generated C(/etc) files, devices, masked and read-only paths, a read-only root) in
    pinned namespaces on the target, from a container spec, a spec file or an OCI bundle.
  - The namespaces are kept alive by nsfs bind mounts under C(<run_dir>/<name>/ns/), with
    no process in them. Enter the filesystem with
    C(nsenter --mount=<run_dir>/<name>/ns/mnt). What belongs to a running process tree
    (the C(/proc) of its pid namespace and the masked and read-only paths in it) is
    mounted when the container process starts, not here.
  - Each step is checked against the live state seen from inside the namespaces
    (mountinfo, file types, the hostname) and done only when missing, so a second run
    changes nothing. When the spec changed, the namespaces are rebuilt from scratch.
  - The same spec renders into a standalone shell script with C(scripts/containerfs render).
author:
  - fromscratch.containerfs developers (@fromscratch)
options:
  name:
    description:
      - Container name. Overrides the name in the spec, the spec file or the bundle.
      - Required with O(state=absent) when no spec is given.
    type: str
  spec:
    description:
      - The container spec (see C(docs/spec.md) in the collection). Paths must be absolute.
      - Mutually exclusive with O(spec_file) and O(bundle).
    type: dict
  spec_file:
    description:
      - Path on the target of a spec in YAML or JSON. Relative paths in it are relative to
        its directory.
    type: path
  bundle:
    description:
      - Path on the target of an OCI runtime bundle (C(config.json) and its root), read as
        C(runc run --bundle) does.
    type: path
  state_dir:
    description:
      - Where per-container state lives (generated C(/etc) files, overlay upper and work
        dirs). Overrides the spec's C(state_dir); default there C(/var/lib/containerfs).
    type: path
  run_dir:
    description:
      - Where the pinned namespaces and the rootfs mount point live. Overrides the spec's
        C(run_dir); default there C(/run/containerfs).
    type: path
  lock_timeout:
    description:
      - Seconds to wait for the container's lock (C(<run_dir>/<name>.lock), the file the
        rendered script takes with C(flock)) held by another run, before failing.
    type: int
    default: 60
  lenient:
    description:
      - With O(bundle), report OCI fields containerfs does not support as warnings instead
        of failing. They are never dropped in silence.
    type: bool
    default: false
  state:
    description:
      - V(present) sets the filesystem up (or repairs drift); V(absent) removes every mount,
        pinned namespace and file it made.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports the steps that would run and changes nothing.
  diff_mode:
    support: full
    description: Shows the steps to add (one line per mount, device, file) as a diff.
  platform:
    support: full
    platforms: posix
    description: Linux with util-linux (unshare, mount, umount); runs as root.
notes:
  - Needs root on the target, and util-linux's C(unshare) and C(mount).
  - Targets are resolved inside the rootfs as runc does; C(/proc) and C(/sys) are never
    mounted through a symlink.
seealso:
  - module: fromscratch.containerfs.image
"""

EXAMPLES = r"""
- name: A busybox container filesystem with a data volume
  fromscratch.containerfs.container:
    spec:
      name: web
      hostname: web
      rootfs:
        path: /srv/images/busybox
        overlay: true
      volumes:
        - source: /srv/data
          target: /data

- name: The same from an OCI bundle that runc would run
  fromscratch.containerfs.container:
    bundle: /srv/bundles/web

- name: Remove it, mounts and namespaces included
  fromscratch.containerfs.container:
    name: web
    state: absent
"""

RETURN = r"""
actions:
  description: The steps that ran (or would run in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["mount tmpfs tmpfs on /dev (nosuid,strictatime,mode=755,size=65536k)"]
container:
  description: Where the container filesystem lives.
  returned: when O(state=present)
  type: dict
  contains:
    name:
      description: Container name.
      type: str
    digest:
      description: Digest of the normalised spec.
      type: str
    root:
      description: Host path of the container root inside its mount namespace.
      type: str
    namespaces:
      description: Namespace files (pinned, or joined by path), by kind.
      type: dict
    enter:
      description: A command that enters the container's namespaces.
      type: str
  sample:
    name: web
    digest: "sha256:0f3a..."
    root: /run/containerfs/web/rootfs
    namespaces: {mnt: /run/containerfs/web/ns/mnt, uts: /run/containerfs/web/ns/uts}
    enter: nsenter --mount=/run/containerfs/web/ns/mnt --uts=/run/containerfs/web/ns/uts
"""

import contextlib
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import applier as _applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import host_steps as _host_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import files as _spec_file
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError


def load_raw_spec(module):
    """The raw spec and the directory its relative paths are relative to."""
    params = module.params
    if params["bundle"]:
        from ansible_collections.fromscratch.containerfs.plugins.module_utils._oci import bundle as _oci
        raw, warnings = _oci.spec_from_bundle(params["bundle"], lenient=params["lenient"])
        for warning in warnings:
            module.warn(warning)
        return raw, params["bundle"]
    if params["spec_file"]:
        try:
            raw = _spec_file.read(params["spec_file"])
        except OSError as exc:
            module.fail_json(msg="cannot read spec_file %s: %s" % (params["spec_file"], exc))
        return raw, os.path.dirname(os.path.abspath(params["spec_file"]))
    if params["spec"] is not None:
        return dict(params["spec"]), None
    return {"rootfs": {"path": "/"}}, None  # absent by name only: paths come from the defaults


def check_params(params):
    """Name and dirs are checked before any path is built from them."""
    if params["name"] is not None:
        _host_steps.check_name(params["name"])
    for key in ("state_dir", "run_dir"):
        if params[key] is not None:
            params[key] = _host_steps.check_host_dir(params[key], key)


def build_plan(module):
    params = module.params
    if not (params["spec"] or params["spec_file"] or params["bundle"]):
        # by name only (state=absent): the plan it was set up from says where it all is
        recorded = _host_steps.recorded_plan(params["state_dir"] or _layout.DEFAULT_STATE_DIR,
                                             params["name"], params["run_dir"])
        if recorded is not None:
            return recorded
    raw, base_dir = load_raw_spec(module)
    for key in ("name", "state_dir", "run_dir"):
        if module.params[key]:
            raw[key] = module.params[key]
    plan = _plan.build_plan(_image_spec.load(raw, base_dir=base_dir))
    # whatever the spec validator allowed: the name and dirs every path is built from
    _host_steps.check_name(plan["name"])
    _host_steps.check_host_dir(os.path.dirname(os.path.dirname(plan["paths"]["state"])), "state_dir")
    _host_steps.check_host_dir(os.path.dirname(plan["paths"]["run"]), "run_dir")
    return plan


def apply(module, applier):
    """Converge or remove under the container's lock: (actions, before, after)."""
    absent = module.params["state"] == "absent"
    lock_dir = os.path.dirname(applier.plan["paths"]["lock"])
    if module.check_mode and not os.path.isdir(lock_dir):
        lock = contextlib.nullcontext()  # nothing set up, and check mode makes no lock file
    else:
        lock = applier.locked(module.params["lock_timeout"])
    with lock:
        before = applier.persistent_steps() if applier.exists() else []
        actions = applier.remove() if absent else applier.converge()
        after = [] if absent else applier.persistent_steps()
    return actions, before, after


def failure_details(exc):
    """What a failure adds to its message: every spec error, the command that failed."""
    if isinstance(exc, SpecError):
        return {"errors": ["%s: %s" % e for e in exc.errors]}
    if isinstance(exc, ApplyError):
        return {"cmd": exc.cmd}
    return {}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            spec=dict(type="dict"),
            spec_file=dict(type="path"),
            bundle=dict(type="path"),
            state_dir=dict(type="path"),
            run_dir=dict(type="path"),
            lenient=dict(type="bool", default=False),
            lock_timeout=dict(type="int", default=60),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        mutually_exclusive=[("spec", "spec_file", "bundle")],
        required_if=[("state", "present", ("spec", "spec_file", "bundle"), True)],
        required_one_of=[("name", "spec", "spec_file", "bundle")],
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="fromscratch.containerfs.container must run as root (become: true)")
    try:
        check_params(module.params)
        plan = build_plan(module)
    except ContainerfsError as exc:
        module.fail_json(msg=str(exc), **failure_details(exc))

    applier = _applier.Applier(plan, check_mode=module.check_mode)
    try:
        actions, before, after = apply(module, applier)
    except (ContainerfsError, OSError) as exc:
        module.fail_json(msg="container %s: %s" % (plan["name"], exc), **failure_details(exc))

    result = dict(changed=bool(actions), actions=actions)
    if module.params["state"] == "present":
        result["container"] = applier.summary()
    if module._diff:
        unchanged = [line for line in after if line not in actions]
        result["diff"] = {
            "before_header": "container %s (live)" % plan["name"],
            "after_header": "container %s (spec)" % plan["name"],
            "before": "\n".join(unchanged if after else before) + "\n",
            "after": "\n".join(after) + "\n" if after else "",
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
