# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's version, as the generated script's header and `containerfs --version`
give it: MANIFEST.json of an installed collection (ansible-galaxy writes it, and does not
ship galaxy.yml), else galaxy.yml of a checkout.

Standard library only (pyyaml when there is only galaxy.yml): the CLI uses it without Ansible.
Private to the collection; may change without notice.
"""

import functools
import json
import os

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSION_FALLBACK = "0.0.0"


# read once per process, not once per loop item (from a checkout it parses galaxy.yml)
@functools.lru_cache(maxsize=None)
def collection_version(root=COLLECTION_ROOT):
    """The version of the collection at `root`; VERSION_FALLBACK when neither file says it."""
    try:
        with open(os.path.join(root, "MANIFEST.json")) as f:
            return str(json.load(f)["collection_info"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        import yaml
        with open(os.path.join(root, "galaxy.yml")) as f:
            return str(yaml.safe_load(f).get("version", VERSION_FALLBACK))
    except (OSError, ValueError, ImportError, AttributeError):
        return VERSION_FALLBACK
