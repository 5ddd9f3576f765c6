#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: container_info
short_description: Inspect a container filesystem set up by the container module
version_added: 0.1.0
description:
  - Reports whether a container filesystem exists, where it lives, its mount table as seen
    from inside its mount namespace, and its drift from the plan it was set up from (the
    steps the M(fromscratch.containerfs.container) module would run to repair it).
  - Reads the plan recorded in the container's state dir; changes nothing.
author:
  - fromscratch.containerfs developers (@fromscratch)
options:
  name:
    description: Container name.
    type: str
    required: true
  state_dir:
    description: The state dir the container was set up with.
    type: path
    default: /var/lib/containerfs
  lock_timeout:
    description:
      - Seconds to wait for the container's lock (held by a run setting it up or removing
        it) before failing. The live state is read under a shared lock.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Always read-only.
  diff_mode:
    support: N/A
    description: Nothing changes, so there is nothing to diff.
  platform:
    support: full
    platforms: posix
    description: Linux; runs as root (it enters the container's namespaces to read).
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
"""

RETURN = r"""
exists:
  description: Whether the container filesystem is set up (its namespaces are pinned).
  returned: always
  type: bool
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import DEFAULT_STATE_DIR
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import applier as _applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.host_steps import recorded_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
            lock_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="fromscratch.containerfs.container_info must run as root (become: true)")
    try:
        plan = recorded_plan(module.params["state_dir"], module.params["name"])
    except ContainerfsError as exc:
        module.fail_json(msg=str(exc))
    if plan is None or not os.path.isdir(os.path.dirname(plan["paths"]["lock"])):
        module.exit_json(changed=False, exists=False)
    applier = _applier.Applier(plan, check_mode=True)
    try:
        with applier.locked(module.params["lock_timeout"], shared=True):
            container = inspect(applier)
    except (ContainerfsError, OSError) as exc:
        module.fail_json(msg="container %s: %s" % (plan["name"], exc),
                         **({"cmd": exc.cmd} if isinstance(exc, ApplyError) else {}))
    if container is None:
        module.exit_json(changed=False, exists=False)
    module.exit_json(changed=False, exists=True, container=container)


def inspect(applier):
    """Where the container lives, its mounts and its drift; None when it is not set up."""
    if not applier.exists():
        return None
    container = applier.summary()
    container.update(mounts=applier.live_mounts(), drift=applier.converge())
    return container


if __name__ == "__main__":
    main()
