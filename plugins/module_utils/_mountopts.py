# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mount option words: the one table the validator, the plan, the renderers and the
OCI importer/exporter share (runc keeps the same knowledge in specconv's mountFlags).

Private to the collection; may change without notice.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# word -> (MS_* flag name, True if the word clears the flag)
FLAG_WORDS = {
    "ro": ("MS_RDONLY", False),
    "rw": ("MS_RDONLY", True),
    "nosuid": ("MS_NOSUID", False),
    "suid": ("MS_NOSUID", True),
    "nodev": ("MS_NODEV", False),
    "dev": ("MS_NODEV", True),
    "noexec": ("MS_NOEXEC", False),
    "exec": ("MS_NOEXEC", True),
    "sync": ("MS_SYNCHRONOUS", False),
    "async": ("MS_SYNCHRONOUS", True),
    "dirsync": ("MS_DIRSYNC", False),
    "remount": ("MS_REMOUNT", False),
    "mand": ("MS_MANDLOCK", False),
    "nomand": ("MS_MANDLOCK", True),
    "atime": ("MS_NOATIME", True),
    "noatime": ("MS_NOATIME", False),
    "diratime": ("MS_NODIRATIME", True),
    "nodiratime": ("MS_NODIRATIME", False),
    "relatime": ("MS_RELATIME", False),
    "norelatime": ("MS_RELATIME", True),
    "strictatime": ("MS_STRICTATIME", False),
    "nostrictatime": ("MS_STRICTATIME", True),
    "bind": ("MS_BIND", False),
    "rbind": ("MS_BIND|MS_REC", False),
    "silent": ("MS_SILENT", False),
    "loud": ("MS_SILENT", True),
}

PROPAGATION_WORDS = (
    "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable",
)

# Recursive attribute words (mount_setattr(AT_RECURSIVE)); runc and crun accept them.
RECURSIVE_WORDS = (
    "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
    "rnodiratime", "rdiratime", "rrelatime", "rnorelatime", "rnoatime", "ratime",
    "rstrictatime", "rnostrictatime",
)

# Words that only mean something to the runtime, never to mount(2).
RUNTIME_WORDS = ("tmpcopyup", "idmap", "ridmap", "copy-symlink", "src-nofollow", "dest-nofollow")

# Filesystem types the plan knows how to mount.
FILESYSTEM_TYPES = ("proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind", "none")


def split_options(options):
    """Split option words into (flag words, propagation words, data words), keeping order."""
    flags, propagation, data = [], [], []
    for word in options:
        if word in FLAG_WORDS or word in RECURSIVE_WORDS:
            flags.append(word)
        elif word in PROPAGATION_WORDS:
            propagation.append(word)
        else:
            data.append(word)
    return flags, propagation, data


def is_bind(options):
    return "bind" in options or "rbind" in options


def is_readonly(options):
    """True when the last ro/rw word says ro (option strings apply in order; last wins)."""
    state = False
    for word in options:
        if word in ("ro", "rro"):
            state = True
        elif word in ("rw", "rrw"):
            state = False
    return state


def wanted_flags(options):
    """The nosuid/nodev/noexec/ro flags that option words leave set (last word wins)."""
    flags = set()
    for word in options:
        if word in ("ro", "nosuid", "nodev", "noexec"):
            flags.add(word)
        elif word in ("rw", "suid", "dev", "exec"):
            flags.discard("ro" if word == "rw" else "no" + word)
    return flags
