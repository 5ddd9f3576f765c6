#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: container_script
short_description: Put a container's standalone shell script (and its systemd unit) on a host
version_added: 0.1.0
description:
  - Renders the standalone POSIX shell script of a container spec, a spec file or an OCI
    bundle (the script C(scripts/containerfs render) writes) and installs it on the target at
    O(dest), for hosts where nothing but that script may run the container. The script
    needs only stock commands there (util-linux, coreutils or busybox), neither Python nor
    this collection.
  - "How the work is split: the B(plan) is compiled on the target, by this module, read-only:
    the spec's host paths (the rootfs, bind sources, an image's source or the image store)
    name the target's files, and the plan of an image lists its layers as the target's
    store or source holds them. The plan is B(rendered) into the script on the controller
    by the module's action plugin, with the collection's templates (jinja2 is needed
    there only). The script is written by C(ansible.builtin.copy) with C(content), so
    check mode, diff mode, O(mode), O(owner) and O(group) behave as they do for copy,
    and the task changes only when the script's text changes."
  - The script is the same for the same spec and collection version; its header names
    both, and RV(digest) is the spec's digest.
  - With O(systemd=true), also writes the systemd unit C(containerfs-<name>.service) that
    runs the script (the unit the M(fromscratch.containerfs.container) module writes, with
    C(ExecStart) pointing to O(dest)), reloads systemd when the unit changed, and enables
    or disables it when O(enabled) is set. It never starts, stops or restarts anything;
    notify a handler (M(ansible.builtin.systemd_service)) for that.
author:
  - fromscratch.containerfs developers (@fromscratch)
options:
  name:
    description:
      - Container name. Overrides the name in the spec, the spec file or the bundle.
    type: str
  spec:
    description:
      - The container spec (see C(docs/spec.md) in the collection).
      - Its host paths name files on the target. Relative ones (C(rootfs.path), volume
        sources, C(rootfs.image.source)) are relative to the directory of O(dest).
      - Exactly one of O(spec), O(spec_file) and O(bundle) is required.
    type: dict
  spec_file:
    description:
      - A spec in YAML or JSON on the B(controller), found as M(ansible.builtin.template)
        finds its C(src) (a role's C(files/), the playbook's C(files/) or directory, or an
        absolute path). It is read as it is (not templated); use O(spec) with a lookup to
        template one.
      - Its host paths name files on the target, as with O(spec).
    type: path
  bundle:
    description:
      - Path on the B(target) of an OCI runtime bundle (C(config.json) and its root), read
        as C(runc run --bundle) does; its relative root is relative to the bundle.
    type: path
  lenient:
    description:
      - With O(bundle), report OCI fields containerfs does not support as warnings instead
        of failing. They are never dropped in silence.
    type: bool
    default: false
  dest:
    description:
      - Absolute path on the target where the script is written. Its directory must exist.
    type: path
    required: true
  mode:
    description:
      - The script's permissions, as M(ansible.builtin.copy) takes them.
    type: raw
    default: "0755"
  owner:
    description:
      - The script's owner, as M(ansible.builtin.copy) takes it. Unset, the connecting
        (or become) user.
    type: str
  group:
    description:
      - The script's group, as M(ansible.builtin.copy) takes it.
    type: str
  systemd:
    description:
      - Also write the systemd unit that runs the script (C(<unit_dir>/containerfs-<name>.service),
        C(ExecStart=/bin/sh <dest> start --foreground ...), C(ExecStop=/bin/sh <dest> stop ...)).
      - Where systemd is not pid 1 the unit is still written, but not loaded nor enabled
        (with a warning when there was something to do).
    type: bool
    default: false
  unit_dir:
    description:
      - Where the unit is written with O(systemd=true). Unset, C(/etc/systemd/system).
    type: path
  restart_policy:
    description:
      - With O(systemd=true), the unit's C(Restart=) (V(no) never, V(on-failure) when the
        process's status is not 0, V(always)), as the container module's option of that name.
    type: str
    choices: ["no", "on-failure", "always"]
    default: "no"
  stop_timeout:
    description:
      - With O(systemd=true), seconds between SIGTERM and SIGKILL to the container's pid 1
        when the unit stops it.
    type: int
    default: 10
  enabled:
    description:
      - With O(systemd=true), whether the unit starts at boot. Unset, its enablement is left
        as it is.
    type: bool
  _step:
    description:
      - Internal, set by the action plugin; do not set it. What the target-side part does;
        V(plan) compiles the plan (read-only), V(systemd) reloads and enables the unit.
    type: str
    choices: [plan, systemd]
    default: plan
  _reload:
    description:
      - Internal, set by the action plugin; do not set it. With O(_step=systemd), the unit
        changed and systemd must reload it.
    type: bool
    default: false
extends_documentation_fragment:
  - fromscratch.containerfs._spec
  - fromscratch.containerfs._dirs.spec_overrides
  - fromscratch.containerfs._attributes
  - fromscratch.containerfs._attributes.actiongroup
attributes:
  check_mode:
    support: full
    details: Reports whether the script, the unit or the unit's enablement would
      change, and changes nothing.
  diff_mode:
    support: full
    details:
      - Shows the script's diff (and the unit's), as M(ansible.builtin.copy) does.
      - A script is about 100 KiB, near Ansible's default C(max_diff_size) (104448 bytes), above which
        the diff is skipped; set C(ANSIBLE_MAX_DIFF_SIZE) higher to see it.
  idempotent:
    support: full
    details: The script and the unit are written only when their text changes; systemd is
      reloaded only when the unit changed.
requirements:
  - Linux targets
  - On the controller, jinja2 (which Ansible has)
  - On the target, Python for this module and M(ansible.builtin.copy); the installed script
    needs neither. To run, the script needs root, util-linux, coreutils or busybox.
notes:
  - The plan of an image (C(rootfs.image)) reads the image's metadata on the target (its
    source, or the image store for C(rootfs.image.name)); the script unpacks the layers
    when it runs. The layers are not read when the script is installed.
  - The unit has the name the M(fromscratch.containerfs.container) module gives its own
    unit; do not let both manage the same container on one host.
  - When the script changed, a container it runs keeps running the old filesystem until
    it is restarted (C(sh <dest> stop), then C(start); or a handler that restarts the unit).
seealso:
  - module: fromscratch.containerfs.container
  - module: ansible.builtin.copy
"""

EXAMPLES = r"""
- name: The script of a busybox container with a data volume, for a host without Python at run time
  fromscratch.containerfs.container_script:
    spec:
      name: web
      hostname: web
      rootfs:
        path: /srv/images/busybox
        overlay: true
      volumes:
        - source: /srv/data
          target: /data
          create: true
      process:
        args: [/bin/sh, -c, "echo hello from web"]
    dest: /usr/local/sbin/containerfs-web

- name: The script of an OCI bundle that runc would run, and a unit that runs it at boot
  fromscratch.containerfs.container_script:
    bundle: /srv/bundles/web
    name: web-bundle
    dest: /usr/local/sbin/containerfs-web-bundle
    systemd: true
    enabled: true
    restart_policy: on-failure
"""

RETURN = r"""
dest:
  description: Where the script is.
  returned: always
  type: str
  sample: /usr/local/sbin/containerfs-web
name:
  description: The container's name.
  returned: always
  type: str
  sample: web
digest:
  description: Digest of the normalised spec the script was rendered from (the header of
    the script names it).
  returned: always
  type: str
  sample: "sha256:0f3a..."
sha256:
  description: SHA-256 of the script's text.
  returned: always
  type: str
size:
  description: The script's size in bytes.
  returned: always
  type: int
unit:
  description: The systemd unit file, or null without O(systemd).
  returned: always
  type: str
  sample: /etc/systemd/system/containerfs-web.service
actions:
  description: What changed (or would change in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["write the script /usr/local/sbin/containerfs-web", "reload systemd"]
plan:
  description: Internal, from the target-side part to the action plugin; the plan to render.
  returned: never (the action plugin removes it)
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _module_args
from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import host_steps as _host_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError

# One argument spec for the action plugin (which validates the task before anything runs)
# and the target-side part.
ARGUMENT_SPEC = dict(
    name=dict(type="str"),
    spec=dict(type="dict"),
    spec_file=dict(type="path"),
    bundle=dict(type="path"),
    lenient=dict(type="bool", default=False),
    dest=dict(type="path", required=True),
    mode=dict(type="raw", default="0755"),
    owner=dict(type="str"),
    group=dict(type="str"),
    systemd=dict(type="bool", default=False),
    unit_dir=dict(type="path"),
    restart_policy=dict(type="str", choices=list(_process.RESTART_POLICIES), default="no"),
    stop_timeout=dict(type="int", default=10),
    enabled=dict(type="bool"),
    _step=dict(type="str", choices=["plan", "systemd"], default="plan"),
    _reload=dict(type="bool", default=False),
    **_module_args.spec_dir_overrides()
)
MUTUALLY_EXCLUSIVE = [("spec", "spec_file", "bundle")]
# The action plugin's rule: it reads spec_file itself and hands the target its content as spec.
REQUIRED_ONE_OF = [("spec", "spec_file", "bundle")]
INTERNAL = ("_step", "_reload")


def load_raw_spec(module):
    """The raw spec and the directory its relative host paths are relative to."""
    params = module.params
    if params["bundle"]:
        from ansible_collections.fromscratch.containerfs.plugins.module_utils._oci import bundle as _oci
        raw, warnings = _oci.spec_from_bundle(params["bundle"], lenient=params["lenient"])
        for warning in warnings:
            module.warn(warning)
        return raw, params["bundle"]
    if params["spec"] is None:
        module.fail_json(msg="one of spec and bundle is required here (the action plugin reads spec_file)")
    # the script stands where a spec file would: relative paths are relative to its directory
    return dict(params["spec"]), os.path.dirname(params["dest"])


def build_plan(module):
    """The plan, with the task's name and dirs over the spec's, each checked before any path
    is built from it (as the container module does)."""
    params = module.params
    if params["name"] is not None:
        _host_steps.check_name(params["name"])
    raw, base_dir = load_raw_spec(module)
    for key in ("state_dir", "run_dir"):
        if params[key] is not None:
            raw[key] = _host_steps.check_host_dir(params[key], key)
    if params["name"] is not None:
        raw["name"] = params["name"]
    plan = _plan.build_plan(_image_spec.load(raw, base_dir=base_dir))
    _host_steps.check_name(plan["name"])
    _host_steps.check_host_dir(os.path.dirname(os.path.dirname(plan["paths"]["state"])), "state_dir")
    _host_steps.check_host_dir(os.path.dirname(plan["paths"]["run"]), "run_dir")
    return plan


def failure_details(exc):
    """Every spec error with its field path."""
    return {"errors": ["%s: %s" % e for e in exc.errors]} if isinstance(exc, SpecError) else {}


def settle_unit(module):
    """After the action plugin wrote the unit: reload systemd when it changed, and enable or
    disable it when asked; where systemd is not pid 1, only warn. Returns the actions."""
    params = module.params
    unit_file = _process.unit_path(params["name"], params["unit_dir"])
    unit = os.path.basename(unit_file)
    enabled = params["enabled"]
    if not _process.systemd_is_pid1():
        if params["_reload"] or enabled is not None:
            module.warn("systemd is not pid 1 on this host: the unit %s is written but not loaded nor enabled"
                        % unit_file)
        return []
    actions = []
    if params["_reload"]:
        actions.append("reload systemd")
        if not module.check_mode:
            run_systemctl(module, "daemon-reload")
    if enabled is not None:
        try:
            action = _process.set_unit_enabled(unit, enabled, check=module.check_mode)
        except _process.SystemctlError as exc:
            module.fail_json(msg=str(exc))
        else:
            if action:
                actions.append(action)
    return actions


def run_systemctl(module, *args):
    rc, dummy, err = _process.systemctl(*args)
    if rc != 0:
        module.fail_json(msg="systemctl %s failed (status %d): %s" % (" ".join(args), rc, err.strip()))


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    params = module.params
    if not os.path.isabs(params["dest"]):
        module.fail_json(msg="dest must be an absolute path, got %r" % params["dest"])
    if params["_step"] == "systemd":
        if params["name"] is None:
            module.fail_json(msg="_step=systemd needs the container's name")
        actions = settle_unit(module)
        # the reload follows a unit that changed, which the action plugin reports already
        module.exit_json(changed=any(not a.startswith("reload") for a in actions), actions=actions)
    try:
        plan = build_plan(module)
    except ContainerfsError as exc:
        module.fail_json(msg=str(exc), **failure_details(exc))
    unit = _process.unit_path(plan["name"], params["unit_dir"]) if params["systemd"] else None
    module.exit_json(changed=False, plan=plan, unit=unit)


if __name__ == "__main__":
    main()
