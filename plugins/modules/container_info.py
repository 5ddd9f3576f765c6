#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: container_info
short_description: Inspect the container filesystems on a host, or one of them
version_added: 0.1.0
description:
  - With O(name), reports whether that container filesystem exists, where it lives, its
    mount table as seen from inside its mount namespace, its drift from the plan it was
    set up from (the steps the M(fromscratch.containerfs.container) module would run to
    repair it), its state and its process (read from the files its script writes; a
    container runs when C(<run_dir>/<name>/pid) names a live process with the start time
    recorded beside it).
  - Without O(name), lists every container on the host, from the one on-host layout; each
    one with a state dir C(<state_dir>/containers/<name>/) holding a recorded plan (made
    by the M(fromscratch.containerfs.container) module), and each one with a run dir
    C(<run_dir>/<name>/) holding the pid file of a live process (a rendered script's
    C(run) or C(start)) or pinned namespaces.
  - Directory names that are not container names (see the spec's C(name)) are skipped, and
    nothing under them is read.
  - Reads the plan recorded in each container's state dir; changes nothing. Each
    container's lock is taken shared while its namespaces are read (C(start) holds it
    only while it sets the container up).
author:
  - fromscratch.containerfs developers (@fromscratch)
requirements:
  - Linux, as root on the target (it enters each container's namespaces with C(setns) to read
    its mount table)
  - Python 3.9 or later on the target
extends_documentation_fragment:
  - fromscratch.containerfs._dirs
  - fromscratch.containerfs._dirs.run_dir
  - fromscratch.containerfs._attributes
  - fromscratch.containerfs._attributes.info_module
  - fromscratch.containerfs._attributes.actiongroup
options:
  name:
    description:
      - Container name. Without it, every container on the host is listed (RV(containers)).
    type: str
  lock_timeout:
    description:
      - Seconds to wait for the container's lock (held by a run setting it up or removing
        it) before failing. The live state is read under a shared lock.
    type: int
    default: 60
notes:
  - O(run_dir) is scanned for containers without a recorded plan (a rendered script's C(run));
    a container with a recorded plan is read from the run dir it was set up with.
seealso:
  - module: fromscratch.containerfs.container
"""

EXAMPLES = r"""
- name: Is the web container's filesystem there, and as it should be?
  fromscratch.containerfs.container_info:
    name: web
  register: web

- name: Repair it when it drifted
  fromscratch.containerfs.container:
    name: web
    spec_file: /etc/containerfs/web.yml
  when: web.exists and web.container.drift | length > 0

- name: List every container on the host
  fromscratch.containerfs.container_info:
  register: all_containers

- name: Rebuild the ones a reboot took down
  fromscratch.containerfs.container:
    name: "{{ item.name }}"
    spec_file: "/etc/containerfs/{{ item.name }}.yml"
  loop: "{{ all_containers.containers | selectattr('state', 'eq', 'needs_rebuild') | list }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
exists:
  description: Whether the container filesystem is set up (its namespaces are pinned).
  returned: when O(name) is given
  type: bool
state:
  description:
    - The container's state. V(running) - its pid file names a live process.
      V(stopped) - set up, not running, and a process of it ran and ended (its exit
      status is recorded). V(present) - set up (its pinned namespaces are mounted as its
      recorded plan says), and no process of it ever ended.
      V(needs_rebuild) - its plan is recorded but its namespaces are gone (after a reboot,
      say); the M(fromscratch.containerfs.container) module rebuilds it.
      V(absent) - nothing of it is there.
    - On failure, V(broken) when its recorded plan fails the checks.
  returned: when O(name) is given
  type: str
  choices: [running, stopped, present, needs_rebuild, absent, broken]
  sample: present
process:
  description: Its process, read from its pid, monitor and exit files.
  returned: when O(name) is given and its plan is recorded
  type: dict
  contains:
    state:
      description: V(running) or V(stopped).
      type: str
    pid:
      description: Host pid of its pid 1, when running.
      type: int
    started_at:
      description: When it started (epoch seconds), when running.
      type: int
    monitor_pid:
      description: Host pid of the monitor that restarts it, when one lives.
      type: int
    exit_status:
      description: Exit status of the last run (128+N for signal N), or null.
      type: int
    ended_at:
      description: When the last run ended (epoch seconds), or null.
      type: int
    log:
      description: Its log file.
      type: str
containers:
  description: Every container on the host, by name.
  returned: when O(name) is not given
  type: list
  elements: dict
  contains:
    name:
      description: Container name.
      type: str
    state:
      description:
        - V(running), V(stopped), V(present) or V(needs_rebuild) as in RV(state);
          V(broken) - a recorded plan that fails the checks, a lock or namespace that
          cannot be read, or pinned namespaces without a recorded plan.
      type: str
      choices: [running, stopped, present, needs_rebuild, broken]
    pid:
      description: The pid of its process as the host sees it, when running; else null.
      type: int
    exit_status:
      description: The exit status of its last run, or null.
      type: int
    image:
      description: The image source its layers came from, or null (a directory rootfs).
      type: str
    root:
      description: Host path of its root, or null when unknown.
      type: str
    mounts:
      description: How many mounts its root has, seen from inside (set-up ones; else null).
      type: int
    drift:
      description: The steps missing from the live state, one line each (set-up ones; else null).
      type: list
      elements: str
    reason:
      description: Why it is broken.
      type: str
      returned: when state is V(broken)
  sample:
    - {name: web, state: running, pid: 4242, exit_status: null, image: /srv/images/busybox.oci,
       root: /run/containerfs/web/rootfs, mounts: 14, drift: []}
    - {name: db, state: needs_rebuild, pid: null, exit_status: 0, image: null, root: /srv/db/rootfs,
       mounts: null, drift: null}
container:
  description: The container, when it exists.
  returned: when RV(exists) is true
  type: dict
  contains:
    name:
      description: Container name.
      type: str
    digest:
      description: Digest of the spec it was set up from.
      type: str
    root:
      description: Host path of its root inside its mount namespace.
      type: str
    namespaces:
      description: Namespace files, by kind.
      type: dict
    enter:
      description: A command that enters the container's namespaces.
      type: str
    mounts:
      description: Its mount table from inside, mount points relative to its root.
      type: list
      elements: dict
    drift:
      description: The steps missing from the live state, one line each (empty when none).
      type: list
      elements: str
  sample:
    name: web
    digest: "sha256:0f3a..."
    root: /run/containerfs/web/rootfs
    namespaces: {mnt: /run/containerfs/web/ns/mnt}
    mounts: [{mount_point: /dev, fstype: tmpfs, source: tmpfs, options: [nosuid, rw]}]
    drift: []
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _module_args
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import applier as _applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.host_steps import (
    canonical, check_host_dir, check_name, recorded_plan)
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import NAME_RE


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            **_module_args.host_dirs(),
            lock_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="fromscratch.containerfs.container_info must run as root (become: true)")
    params = module.params
    try:
        state_dir = check_host_dir(params["state_dir"], "state_dir")
        run_dir = check_host_dir(params["run_dir"], "run_dir")
        if params["name"] is None:
            module.exit_json(changed=False, containers=list_all(state_dir, run_dir, params["lock_timeout"]))
        check_name(params["name"])
    except (ContainerfsError, OSError) as exc:
        module.fail_json(msg=str(exc))
    one(module, params["name"], state_dir, run_dir)


def one(module, name, state_dir, run_dir):
    """One container by name: exists, container (when set up), its state and process."""
    try:
        plan = recorded_plan(state_dir, name)
    except ContainerfsError as exc:
        module.fail_json(msg=str(exc), state="broken")
    try:
        if plan is None:
            entry = unrecorded(name, state_dir, run_dir)
            module.exit_json(changed=False, exists=False, state=entry["state"] if entry else "absent")
        process = _process.status(plan["paths"])
        if process["pid"] is None and not os.path.isdir(os.path.dirname(plan["paths"]["lock"])):
            module.exit_json(changed=False, exists=False, state="needs_rebuild", process=process)
        applier = _applier.Applier(plan, check_mode=True)
        with applier.locked(module.params["lock_timeout"], shared=True):
            container = inspect(applier)
    except (ContainerfsError, OSError) as exc:
        module.fail_json(msg="container %s: %s" % (plan["name"] if plan else name, exc),
                         **({"cmd": exc.cmd} if isinstance(exc, ApplyError) else {}))
    result = dict(changed=False, exists=container is not None, state=process_state(process, container is not None),
                  process=process)
    if container is not None:
        result["container"] = container
    module.exit_json(**result)


def process_state(process, set_up):
    """running, else stopped (set up, a run ended), present (set up) or needs_rebuild."""
    if process["state"] == "running":
        return "running"
    if not set_up:
        return "needs_rebuild"
    return "stopped" if process["exit_status"] is not None else "present"


def inspect(applier):
    """Where the container lives, its mounts and its drift; None when it is not set up."""
    if not applier.exists():
        return None
    container = applier.summary()
    container.update(mounts=applier.live_mounts(), drift=applier.converge())
    return container


def live_pid(path):
    """The pid a container's pid file names when that process lives (the one rule), else None."""
    return _process.live_pid(path)[0]


def _names_in(base, trusted):
    """The entries of `base` that are real directories with a container's name; others
    (a lock file, a symlink, a name the spec refuses) are skipped, nothing under them read."""
    if _hostfs.make_dirs(base, trusted=trusted, create=False):
        return set()
    names = set()
    for entry in os.listdir(base):
        if not NAME_RE.fullmatch(entry):
            continue
        if stat.S_ISDIR(os.lstat(os.path.join(base, entry)).st_mode):
            names.add(entry)
    return names


def list_all(state_dir, run_dir, timeout):
    """Every container of the state dir (a recorded plan) and of the run dir (a live
    process, or pinned namespaces), by name."""
    names = _names_in(_layout.containers_dir(state_dir), state_dir) | _names_in(run_dir, run_dir)
    out = []
    for name in sorted(names):
        entry = describe(name, state_dir, run_dir, timeout)
        if entry is not None:
            out.append(entry)
    return out


def _entry(name, state, pid=None, image=None, root=None, mounts=None, drift=None, reason=None,
           exit_status=None):
    entry = {"name": name, "state": state, "pid": pid, "exit_status": exit_status, "image": image,
             "root": root, "mounts": mounts, "drift": drift}
    if reason is not None:
        entry["reason"] = reason
    return entry


def describe(name, state_dir, run_dir, timeout):
    """One container of the listing, or None when `name` is no container."""
    try:
        plan = recorded_plan(state_dir, name)
    except ContainerfsError as exc:
        return _entry(name, "broken", reason=str(exc))
    if plan is None:
        return unrecorded(name, state_dir, run_dir)
    image = next((s.get("source") for s in plan["steps"] if s.get("op") == "unpack_layer"), None)
    root = plan["paths"]["root"]
    try:
        process = _process.status(plan["paths"])
        known = dict(image=image, root=root, pid=process["pid"], exit_status=process["exit_status"])
        if process["pid"] is None and not os.path.isdir(os.path.dirname(plan["paths"]["lock"])):
            return _entry(name, "needs_rebuild", **known)
        applier = _applier.Applier(plan, check_mode=True)
        with applier.locked(timeout, shared=True):
            if not applier.exists():
                return _entry(name, process_state(process, False), **known)
            return _entry(name, process_state(process, True), mounts=len(applier.live_mounts()),
                          drift=applier.converge(), **known)
    except (ContainerfsError, OSError) as exc:
        return _entry(name, "broken", image=image, root=root, reason=str(exc))


def unrecorded(name, state_dir, run_dir):
    """A container with no recorded plan: running (a live pid: a script's run), broken
    (pinned namespaces nobody recorded), or None (nothing of it lives)."""
    paths = _layout.container_paths(name, state_dir, run_dir, overlay=True)
    try:
        _hostfs.check_dir_ours(paths["run"])
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _entry(name, "broken", reason=str(exc))
    root = paths["root"] if os.path.isdir(paths["root"]) and not os.path.islink(paths["root"]) else None
    pid = live_pid(paths["pid"])
    if pid is not None:
        return _entry(name, "running", pid=pid, root=root)
    ns_dir = canonical(paths["ns"], run_dir)
    pinned = [e for e in mountinfo.read() if e["fstype"] == "nsfs" and _hostfs.within(e["mount_point"], ns_dir)]
    if pinned:
        return _entry(name, "broken", root=root,
                      reason="namespaces pinned in %s without a recorded plan" % paths["ns"])
    return None


if __name__ == "__main__":
    main()
