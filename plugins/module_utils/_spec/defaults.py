# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a spec gets where it is silent: the defaults of ``runc spec`` (runtimes.md section 1).

Private to the collection; may change without notice.
"""

# runc spec (libcontainer/specconv/example.go), in order. See runtimes.md section 1.2.
RUNC_DEFAULT_MOUNTS = (
    {"target": "/proc", "type": "proc", "source": "proc", "options": []},
    {"target": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"target": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"target": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"target": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"target": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"target": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
)

RUNC_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
)

RUNC_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The nodes every container gets (runtime-spec "Default Devices"; runc AllowedDevices).
DEFAULT_DEVICES = (
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
)

# /dev symlinks (runtime-linux.md "Dev symbolic links"; core only if /proc/kcore exists).
# `link_to` is the content of the link.
DEFAULT_DEV_SYMLINKS = (
    {"path": "/dev/fd", "link_to": "/proc/self/fd"},
    {"path": "/dev/stdin", "link_to": "/proc/self/fd/0"},
    {"path": "/dev/stdout", "link_to": "/proc/self/fd/1"},
    {"path": "/dev/stderr", "link_to": "/proc/self/fd/2"},
    {"path": "/dev/ptmx", "link_to": "pts/ptmx"},
    {"path": "/dev/core", "link_to": "/proc/kcore", "if_exists": "/proc/kcore"},
)

SPEC_VERSION = 1

DEFAULT_NAMESPACES = ("pid", "net", "ipc", "uts", "mount")
NAMESPACE_TYPES = ("mount", "uts", "ipc", "pid", "net", "cgroup")
NAMESPACE_ALIASES = {"network": "net", "mnt": "mount"}

DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm")
ROOT_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                     "runbindable")
VOLUME_PROPAGATIONS = ROOT_PROPAGATIONS
VOLUME_TYPES = ("bind", "tmpfs")
DEVICE_TYPES = ("c", "b", "p")
DEVICE_TYPE_ALIASES = {"u": "c"}   # as mknod(1): an unbuffered character device
IMAGE_FORMATS = ("auto", "oci", "docker-archive", "tarball", "dir")
