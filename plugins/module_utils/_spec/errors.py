# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SpecError: every problem found in a spec, each with the path of its field.

Private to the collection; may change without notice.
"""

import re

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError


class SpecError(ContainerfsError):
    """Every problem found in a spec. `errors` is a list of (path, message), sorted."""

    def __init__(self, errors):
        self.errors = sorted(errors, key=lambda e: _path_sort_key(e[0]))
        super().__init__(self.render())

    def render(self):
        lines = ["%s: %s" % (path or "(spec)", message) for path, message in self.errors]
        return "invalid spec (%d error%s):\n  %s" % (
            len(lines), "" if len(lines) == 1 else "s", "\n  ".join(lines))


def _path_sort_key(path):
    """`volumes[10]` after `volumes[2]`: list indexes sort as numbers."""
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", path or "") if p]
