# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pinned namespaces: nsfs bind mounts under ``<run_dir>/<name>/ns/`` keep a container's
mount (and uts, ipc, net, cgroup) namespaces alive with no process in them; setns(2)
enters them.

Private to the collection; may change without notice.
"""

import ctypes
import os
import subprocess

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.commands import run
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError

NS_FILES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "cgroup": "cgroup"}
CLONE_FLAGS = {"mnt": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "net": 0x40000000,
               "cgroup": 0x02000000}
# setns order: the mount namespace last, once the others no longer need host paths.
SETNS_ORDER = ("cgroup", "ipc", "uts", "net", "mnt")


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def setns(path, kind):
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc().setns(fd, CLONE_FLAGS[kind]) != 0:
            err = ctypes.get_errno()
            raise ApplyError("setns(%s) failed" % path, detail=os.strerror(err))
    finally:
        os.close(fd)


class Namespaces:
    """The pinned namespaces of one container under <run>/ns/."""

    def __init__(self, plan, run_dir=None, run_base=None, ns_dir=None):
        # run_dir and ns_dir: canonical (as mountinfo shows them); run_base: the run_dir
        # the user gave, below which every component is ours.
        self.run_dir = run_dir or plan["paths"]["run"]
        self.run_base = run_base or os.path.dirname(self.run_dir)
        self.dir = ns_dir or plan["paths"]["ns"]
        step = [s for s in plan["steps"] if s["op"] == "namespaces"][0]
        self.wanted = [n for n in step["namespaces"] if n["type"] in NS_FILES]
        self.propagation = step["propagation"]

    def files(self):
        """{kind: path} of every namespace the applier enters (pinned or joined)."""
        out = {}
        for ns in self.wanted:
            kind = NS_FILES[ns["type"]]
            out[kind] = ns["path"] or _layout.ns_file(self.dir, kind)
        return out

    def pinned(self, host_mounts):
        """True when every namespace we pin is an nsfs mount in its place."""
        nsfs = set(e["mount_point"] for e in host_mounts if e["fstype"] == "nsfs")
        return all(path in nsfs for kind, path in self.files().items()
                   if path.startswith(self.dir + "/"))

    def create(self):
        """Pin fresh namespaces: nsfs bind mounts need a private mount to live on."""
        _hostfs.make_dirs(self.dir, 0o700, trusted=self.run_base)
        host = mountinfo.read()
        if not mountinfo.top_mount(host, self.dir):
            run(["mount", "--bind", self.dir, self.dir])
        run(["mount", "--make-private", self.dir])
        fresh = [ns["type"] for ns in self.wanted if ns["path"] is None]
        for kind in fresh:
            path = _layout.ns_file(self.dir, NS_FILES[kind])
            if not os.path.exists(path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        # The kernel refuses (EINVAL) to bind a mount namespace that does not look newer
        # than the caller's; on recent kernels the ids are not ordered across CPUs, so a
        # fresh namespace made on another CPU can be refused. Try again, on each CPU.
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None]
        last_error = None
        for attempt in range(2 * len(cpus) + 2):
            try:
                self._pin(fresh, cpus[attempt % len(cpus)])
                return
            except ApplyError as exc:
                last_error = exc
                self.unpin(keep_dir=True)
        raise last_error

    def _pin(self, fresh, cpu):
        """Bind the namespaces of a fresh holder process (on `cpu`) to their files.

        (unshare --mount=FILE does the binding itself but gives no way to retry.)"""
        cmd = ["unshare", "--propagation", self.propagation.lstrip("r")]
        cmd += ["--" + kind for kind in fresh]
        cmd += ["sh", "-c", "echo ready; exec cat >/dev/null"]
        pin_cpu = (lambda: os.sched_setaffinity(0, [cpu])) if cpu is not None else None
        holder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, preexec_fn=pin_cpu)
        try:
            if holder.stdout.readline().strip() != b"ready":
                raise ApplyError("cannot create namespaces: %s" % " ".join(cmd),
                                 detail=holder.stderr.read().decode("utf-8", "replace"))
            for kind in fresh:
                path = _layout.ns_file(self.dir, NS_FILES[kind])
                run(["mount", "--bind", "/proc/%d/ns/%s" % (holder.pid, NS_FILES[kind]), path])
        finally:
            holder.stdin.close()
            holder.wait()

    def unpin(self, keep_dir=False):
        """Unpin every namespace; the mounts inside die with the last reference."""
        host = mountinfo.read()
        for entry in reversed(host):
            point = entry["mount_point"]
            if (point == self.dir and not keep_dir) or point.startswith(self.dir + "/"):
                run(["umount", "--lazy", point])

    def remove(self):
        """Unpin the namespaces and remove the run dir."""
        self.unpin()
        _hostfs.remove_tree(self.run_dir)

    def enter(self):
        """Move the calling (single-threaded, forked) process into the namespaces."""
        files = self.files()
        for kind in SETNS_ORDER:
            if kind in files:
                setns(files[kind], kind)
