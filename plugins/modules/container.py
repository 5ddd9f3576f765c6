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
requirements:
  - Linux, as root on the target
  - Python 3.9 or later on the target
  - util-linux (C(unshare), C(nsenter), C(mount), C(umount), C(pivot_root); C(setpriv) for a
    C(process.user) other than root), coreutils or busybox, and C(/bin/sh), which the installed
    script runs with to start, stop and supervise the process
  - overlayfs in the kernel for an image rootfs or C(rootfs.overlay=true)
  - The C(zstd) command or the Python C(zstandard) package for zstd-compressed image layers
  - Optionally the Python C(isal) package, which inflates gzip image layers in about half the CPU of zlib (used otherwise)
  - systemd only to supervise the process under a unit (where systemd is pid 1)
extends_documentation_fragment:
  - fromscratch.containerfs._spec
  - fromscratch.containerfs._dirs.spec_overrides
  - fromscratch.containerfs._attributes
  - fromscratch.containerfs._attributes.actiongroup
options:
  name:
    description:
      - Container name. Overrides the name in the spec, the spec file or the bundle.
      - Required with O(state=absent) when no spec is given.
    type: str
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
      - V(present) sets the filesystem up (or repairs drift) and installs its rendered script
        at C(<state_dir>/containers/<name>/container.sh); it never starts or stops a process,
        so converging a filesystem cannot kill what the user did not ask to (the default
        for that reason). A running container whose spec changed is refused; use
        V(started) (restarts it) or V(stopped).
      - V(started) does what V(present) does, then starts the container's process with the
        installed script (C(sh container.sh start)), detached under its monitor (or under
        its systemd unit where systemd is pid 1). A running container whose spec is the
        same is left alone; a changed spec, O(restart) or O(recreate) stop it first.
      - V(stopped) does what V(present) does and stops the process when it runs
        (C(sh container.sh stop)).
      - V(absent) stops the process when it runs, then removes every mount, pinned
        namespace and file it made, and its systemd unit.
    type: str
    choices: [present, started, stopped, absent]
    default: present
  restart:
    description:
      - With O(state=started), stop a running process and start it again, even when
        nothing changed.
    type: bool
    default: false
  recreate:
    description:
      - Stop the process when it runs (refused with O(state=present)), remove the container
        filesystem (the overlay's upper dir included; the log and the installed script are
        kept) and set it up again. Ignored with O(state=absent).
    type: bool
    default: false
  restart_policy:
    description:
      - When the process is restarted after it exits (V(no) never, V(on-failure) when its
        status is not 0, V(always)), with a back-off of 1 second doubling up to 30, back to
        1 after a run of 10 seconds or more.
      - Taken at start; a change takes effect at the next start (use O(restart)).
    type: str
    choices: ["no", "on-failure", "always"]
    default: "no"
  stop_timeout:
    description:
      - Seconds between SIGTERM and SIGKILL to the container's pid 1 when it is stopped.
    type: int
    default: 10
  enabled:
    description:
      - Where systemd is pid 1, whether the container's unit C(containerfs-<name>.service)
        starts at boot. Elsewhere ignored with a warning. Unset, the unit's enablement is
        left as it is.
    type: bool
  _script:
    description:
      - Internal, set by the action plugin; do not set it. The rendered script to install.
    type: str
  _script_version:
    description:
      - Internal, set by the action plugin; do not set it. The collection version the
        installed script must be rendered by.
    type: str
attributes:
  check_mode:
    support: full
    details: Reports the steps that would run, and whether the process would start,
      stop or restart, and changes nothing.
  diff_mode:
    support: full
    details: Shows the steps to add (one line per mount, device, file) and the
      process's state before and after as a diff.
  idempotent:
    support: partial
    details: A second run with the same spec reports no change, unless O(restart=true) or
      O(recreate=true), which act on every run.
notes:
  - The script is rendered on the controller by the module's action plugin, only when the
    installed one is missing or was rendered from another spec or version.
  - Where systemd is pid 1 (C(/run/systemd/system) exists), O(state=started) writes
    C(/etc/systemd/system/containerfs-<name>.service) and starts the unit; systemd
    supervises the process and applies O(restart_policy).
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

- name: Run it, restarted when it fails
  fromscratch.containerfs.container:
    spec_file: /etc/containerfs/web.yml
    state: started
    restart_policy: on-failure

- name: Stop it; the filesystem stays
  fromscratch.containerfs.container:
    spec_file: /etc/containerfs/web.yml
    state: stopped

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
  description: Where the container filesystem lives, and its process.
  returned: unless O(state=absent)
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
    state:
      description: V(running) when its process lives, else V(stopped).
      type: str
    pid:
      description: The host pid of the container's pid 1 when running, else null.
      type: int
    started_at:
      description: When the process started (epoch seconds), when running.
      type: int
    exit_status:
      description: The exit status of the last run (128+N for signal N), or null.
      type: int
    log:
      description: The file the process's stdout and stderr go to.
      type: str
    unit:
      description: Its systemd unit file, or null where systemd does not supervise it.
      type: str
  sample:
    name: web
    digest: "sha256:0f3a..."
    root: /run/containerfs/web/rootfs
    namespaces: {mnt: /run/containerfs/web/ns/mnt, uts: /run/containerfs/web/ns/uts}
    enter: nsenter --mount=/run/containerfs/web/ns/mnt --uts=/run/containerfs/web/ns/uts
    state: running
    pid: 4242
    started_at: 1764590000
    exit_status: null
    log: /var/lib/containerfs/containers/web/container.log
    unit: null
needs_script:
  description: Internal, for the action plugin; the module needs the rendered script of RV(plan).
  returned: when the installed script is not current (the action plugin then calls again)
  type: bool
plan:
  description: Internal, for the action plugin; the plan to render.
  returned: with RV(needs_script)
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _module_args
from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import lifecycle as _lifecycle
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import host_steps as _host_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process
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
    return dict(params["spec"]), None


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
        return recorded or _plan.plan_for_removal(params["name"], params["state_dir"], params["run_dir"])
    raw, base_dir = load_raw_spec(module)
    for key in ("name", "state_dir", "run_dir"):
        if module.params[key]:
            raw[key] = module.params[key]
    try:
        # a registry image is pulled into the store here (not in check mode, nor to remove)
        pull = not module.check_mode and params["state"] != "absent"
        plan = _plan.build_plan(_image_spec.load(raw, base_dir=base_dir, fetch_layers=pull))
    except SpecError:
        # a second absent after the image went is ok, not an error
        plan = absent_without_spec(params, raw)
        if plan is None:
            raise
    # whatever the spec validator allowed: the name and dirs every path is built from
    _host_steps.check_name(plan["name"])
    _host_steps.check_host_dir(os.path.dirname(os.path.dirname(plan["paths"]["state"])), "state_dir")
    _host_steps.check_host_dir(os.path.dirname(plan["paths"]["run"]), "run_dir")
    return plan


def absent_without_spec(params, raw):
    """With state=absent, a spec that no longer loads (its image removed from the store,
    say): the plan the container was set up from says what to remove, else its name and
    dirs do (_plan.plan_for_removal). None when not removing, or when the spec names no valid
    container (its own error says why)."""
    if params["state"] != "absent" or not isinstance(raw.get("name"), str):
        return None
    try:
        _host_steps.check_name(raw["name"])
        state_dir = _host_steps.check_host_dir(raw.get("state_dir") or _layout.DEFAULT_STATE_DIR, "state_dir")
        run_dir = raw.get("run_dir")
        if run_dir is not None:
            run_dir = _host_steps.check_host_dir(run_dir, "run_dir")
    except ContainerfsError:
        return None
    try:
        recorded = _host_steps.recorded_plan(state_dir, raw["name"], run_dir)
    except ContainerfsError:
        recorded = None  # unreadable: removed by name
    return recorded or _plan.plan_for_removal(raw["name"], state_dir, run_dir)


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
            **_module_args.spec_dir_overrides(),
            lenient=dict(type="bool", default=False),
            lock_timeout=dict(type="int", default=60),
            state=dict(type="str", choices=["present", "started", "stopped", "absent"], default="present"),
            restart=dict(type="bool", default=False),
            recreate=dict(type="bool", default=False),
            restart_policy=dict(type="str", choices=list(_process.RESTART_POLICIES), default="no"),
            stop_timeout=dict(type="int", default=10),
            enabled=dict(type="bool"),
            _script=dict(type="str"),
            _script_version=dict(type="str"),
        ),
        mutually_exclusive=[("spec", "spec_file", "bundle")],
        required_if=[("state", "present", ("spec", "spec_file", "bundle"), True),
                     ("state", "started", ("spec", "spec_file", "bundle"), True),
                     ("state", "stopped", ("spec", "spec_file", "bundle"), True)],
        required_one_of=[("name", "spec", "spec_file", "bundle")],
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="fromscratch.containerfs.container must run as root (become: true)")
    if module.params["stop_timeout"] < 0 or module.params["lock_timeout"] < 0:
        module.fail_json(msg="stop_timeout and lock_timeout must not be negative")
    try:
        check_params(module.params)
        plan = build_plan(module)
    except ContainerfsError as exc:
        module.fail_json(msg=str(exc), **failure_details(exc))
    if _lifecycle.needs_script(module, plan):
        module.exit_json(changed=False, needs_script=True, plan=plan)

    lifecycle = _lifecycle.Lifecycle(module, plan)
    try:
        before, after = lifecycle.run()
    except (ContainerfsError, OSError) as exc:
        module.fail_json(msg="container %s: %s" % (plan["name"], exc), actions=lifecycle.actions,
                         **failure_details(exc))

    result = dict(changed=bool(lifecycle.actions), actions=lifecycle.actions)
    if module.params["state"] != "absent":
        result["container"] = lifecycle.summary()
    if module._diff:
        result["diff"] = lifecycle.diff(before, after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
