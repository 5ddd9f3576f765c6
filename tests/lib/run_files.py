# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a `run` of the script keeps in its run dir on purpose: its start fifo, for the
next run, and its other files emptied with shell builtins instead of removed (one program
start less per run). Neither names the run: an empty pid file names no process."""

import os
import stat

RUN_FILES_EMPTIED = ("fstab", "pid", "mount.err", "signal")
START_FIFO = "go"


def kept_by_a_run(path):
    """True for the run dir's start fifo and for its run files left empty."""
    info = os.lstat(path)
    name = os.path.basename(path)
    if name == START_FIFO:
        return stat.S_ISFIFO(info.st_mode)
    return name in RUN_FILES_EMPTIED and stat.S_ISREG(info.st_mode) and info.st_size == 0
