# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a `run` of the script keeps in its run dir on purpose: its start fifo, for the
next run, and its other files emptied with shell builtins instead of removed (one program
start less per run). Neither names the run: an empty pid file names no process.

The names are the layout's (_layout.container_paths); which files a run empties is the
script's CFS_RUN_FILES, which a unit test holds to RUN_FILES_EMPTIED."""

import os
import stat

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout

# The paths of any container: only their names in its run dir matter here.
_PATHS = _layout.container_paths("any", "/state", "/run", overlay=True)
RUN_FILES_EMPTIED = _layout.run_file_names(_PATHS)
START_FIFO = os.path.basename(_PATHS["fifo"])


def kept_by_a_run(path):
    """True for the run dir's start fifo and for its run files left empty."""
    info = os.lstat(path)
    name = os.path.basename(path)
    if name == START_FIFO:
        return stat.S_ISFIFO(info.st_mode)
    return name in RUN_FILES_EMPTIED and stat.S_ISREG(info.st_mode) and info.st_size == 0
