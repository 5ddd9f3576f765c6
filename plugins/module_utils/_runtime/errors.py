# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ApplyError: a step of the Linux applier failed, and how an OS error is shown in it.

Private to the collection; may change without notice.
"""

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs


class ApplyError(ContainerfsError):
    """A step failed: `step` is its description, `detail` what the system said."""

    def __init__(self, message, step=None, cmd=None, detail=None):
        self.step = step
        self.cmd = cmd
        self.detail = detail
        text = message
        if step:
            text = "%s: %s" % (step, message)
        if detail:
            text = "%s (%s)" % (text, detail.strip())
        super().__init__(text)


def os_error_text(exc):
    """An OSError as a message: the file it concerns and the reason (a refused host path
    says it all itself)."""
    if isinstance(exc, _hostfs.UnsafePathError) or not exc.filename:
        return str(exc)
    return "%s: %s" % (exc.filename, exc.strerror or exc)
