# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to the collection; may change without notice.


class ModuleDocFragment(object):
    """The host directories every module of the collection takes, with one name and one
    meaning each, so that one module_defaults entry for the action group sets them all."""

    # Modules that find what is already there (defaults: _layout.DEFAULT_STATE_DIR, DEFAULT_RUN_DIR):
    # DOCUMENTATION gives state_dir, RUN_DIR run_dir (each fragment one literal: ansible-test's
    # yamllint reads them without evaluating Python).
    DOCUMENTATION = r"""
options:
  state_dir:
    description:
      - The host's state dir, the one the containers were set up with. Each container's state
        lives in C(<state_dir>/containers/<name>/) (its recorded plan, installed script, log,
        C(/etc) files, overlay upper dir); the image store is the state dir too (layers in
        C(<state_dir>/layers/sha256/), image records in C(<state_dir>/images/)).
      - Set it for every module at once with C(module_defaults) for the group
        C(group/fromscratch.containerfs.containerfs).
    type: path
    default: /var/lib/containerfs
"""

    RUN_DIR = r"""
options:
  run_dir:
    description:
      - The host's run dir, the one the containers were set up with. Each container's pinned
        namespaces, rootfs mount point and pid file live in C(<run_dir>/<name>/), its lock in
        C(<run_dir>/<name>.lock).
      - Set it for every module at once with C(module_defaults) for the group
        C(group/fromscratch.containerfs.containerfs).
    type: path
    default: /run/containerfs
"""

    # Modules that set a container up from a spec: the options override the spec's fields.
    SPEC_OVERRIDES = r"""
options:
  state_dir:
    description:
      - Where the container's state lives (C(<state_dir>/containers/<name>/), with its recorded
        plan, installed script, log, C(/etc) files, overlay upper dir) and, unless the spec's
        C(rootfs.image.store) says otherwise, the image store it takes layers from
        (C(<state_dir>/layers/sha256/)).
      - Overrides the spec's C(state_dir) (default there C(/var/lib/containerfs)).
      - Set it for every module at once with C(module_defaults) for the group
        C(group/fromscratch.containerfs.containerfs).
    type: path
  run_dir:
    description:
      - Where the container's pinned namespaces, rootfs mount point and pid file live
        (C(<run_dir>/<name>/)), and its lock (C(<run_dir>/<name>.lock)).
      - Overrides the spec's C(run_dir) (default there C(/run/containerfs)).
      - Set it for every module at once with C(module_defaults) for the group
        C(group/fromscratch.containerfs.containerfs).
    type: path
"""
