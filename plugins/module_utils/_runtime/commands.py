# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the stock commands the applier uses (mount, umount, unshare).

Private to the collection; may change without notice.
"""

import subprocess

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError


def run(cmd, fds=()):
    """Run a command (argv list) with the descriptors `fds` open in it (same numbers); raise
    ApplyError with its stderr when it fails."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=tuple(fds))
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise ApplyError("command failed: %s" % " ".join(cmd), cmd=cmd,
                         detail=err.decode("utf-8", "replace") or "exit %d" % proc.returncode)
    return out.decode("utf-8", "replace")
