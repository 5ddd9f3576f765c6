# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument-spec entries the modules share, beside the doc fragments that document them
(plugins/doc_fragments/_dirs.py): one name and one meaning for a host directory in every
module, so that module_defaults for the action group sets them all.

Private to the collection; may change without notice.
"""

from ansible_collections.fromscratch.containerfs.plugins.module_utils._layout import DEFAULT_RUN_DIR, DEFAULT_STATE_DIR

# Modules that find what is already there (doc fragment fromscratch.containerfs._dirs).
HOST_DIRS = {
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
    "run_dir": {"type": "path", "default": DEFAULT_RUN_DIR},
}

# Modules that set a container up from a spec: unset, the spec's own fields (and their
# defaults) apply (doc fragment fromscratch.containerfs._dirs.spec_overrides).
SPEC_DIR_OVERRIDES = {
    "state_dir": {"type": "path"},
    "run_dir": {"type": "path"},
}


def host_dirs(**extra):
    """HOST_DIRS (a copy), each entry updated with `extra[name]` (aliases, say)."""
    return dict((name, dict(entry, **extra.get(name, {}))) for name, entry in HOST_DIRS.items())


def spec_dir_overrides():
    """SPEC_DIR_OVERRIDES (a copy)."""
    return dict((name, dict(entry)) for name, entry in SPEC_DIR_OVERRIDES.items())
