# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to the collection; may change without notice.


class ModuleDocFragment(object):
    """The attributes every module of the collection documents (as community.docker's
    _attributes): what each means here. A module gives each one's support and details."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without
      modifying the target.
  diff_mode:
    description: Returns details on what changed (or would change) in C(--diff) mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second run
        reports no change.
      - This assumes the target did not change in between in a way that matters.
  platform:
    description: The target systems it runs on.
    support: full
    platforms: linux
"""

    # Modules that only read: together with DOCUMENTATION.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: It changes nothing, in check mode or not.
  diff_mode:
    support: N/A
    details: It changes nothing, so there is nothing to diff.
  idempotent:
    support: full
    details: It changes nothing.
"""

    # Members of the action group: module_defaults reaches them through the group.
    ACTIONGROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/fromscratch.containerfs.containerfs) in C(module_defaults) to set
      defaults for this module (for example O(state_dir) and O(run_dir) for every module at once).
    support: full
    membership:
      - fromscratch.containerfs.containerfs
"""
