# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Linux applier: converge a host to a plan, step by step, against live state.

A persistent container filesystem lives in pinned namespaces (namespaces.py), so it can
be checked for drift, entered with ``nsenter --mount=<run_dir>/<name>/ns/mnt``, and later
started. What belongs to a running process tree (steps with ``at_start``: the /proc of
its pid namespace and the paths in it, pivot_root, exec) is left for start.

The host steps (host_steps.py) are done first; then each root step (root_steps.py) is
checked against the live state seen from inside the namespaces and done only when
missing: a second run changes nothing. When the spec itself changed (its digest differs
from the one recorded), the namespaces are rebuilt from scratch, so nothing of the old
spec lingers. The plan is recorded last: a set-up interrupted at any point has no record
of its digest, and after a reboot nothing is pinned; either way the next run rebuilds it
from scratch (tests/system/test_container_crash.py kills a run after each step in turn).

Standard library only; raises `ApplyError`, never exits.
Private to the collection; may change without notice.
"""

import contextlib
import json
import os
import signal

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import describe_step
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError, os_error_text
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.host_steps import HostSteps, canonical
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.namespaces import Namespaces
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.root_steps import RootSteps


# Test-only hooks (tests/system/test_container_crash.py, test_concurrent_runs.py): set to k,
# the module process is sent a signal right after its k-th done step (host steps, the
# pinning of namespaces, root steps, removal steps, in that order). KILL: SIGKILL, to show
# that the next run converges whatever an interrupted one left. STOP: SIGSTOP to the
# process doing the step (a test holds a run still, lock held, and resumes it with
# SIGCONT). Ignored when unset or not a positive integer.
TEST_STEP_HOOKS = (("CONTAINERFS_TEST_KILL_AFTER_STEP", signal.SIGKILL),
                   ("CONTAINERFS_TEST_STOP_AFTER_STEP", signal.SIGSTOP))


def _test_step_hook():
    """(k, signal) of the test-only hook that is set, or (None, None)."""
    for name, signum in TEST_STEP_HOOKS:
        text = os.environ.get(name, "")
        if text.isdigit() and int(text) > 0:
            return int(text), signum
    return None, None


INCOMPLETE = _layout.RECORD_INCOMPLETE


def _root_steps(plan):
    return [s for s in plan["steps"] if s["phase"] == "root" and not s["at_start"]]


def _in_child(func):
    """Run func() in a forked child (single-threaded, so it may setns); return its result
    (JSON-able) or raise its ApplyError."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            result = {"ok": func()}
        except ApplyError as exc:
            result = {"error": str(exc), "cmd": exc.cmd}
        except Exception as exc:  # report anything to the parent, never a traceback
            result = {"error": "%s: %s" % (type(exc).__name__, exc), "cmd": None}
        with os.fdopen(write_fd, "w") as f:
            json.dump(result, f)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data) if data else {"error": "the applier process died", "cmd": None}
    if "error" in result:
        raise ApplyError(result["error"], cmd=result.get("cmd"))
    return result["ok"]


class Applier:
    """Converge or remove the persistent container filesystem of one plan."""

    def __init__(self, plan, check_mode=False):
        self.plan = plan
        self.check_mode = check_mode
        paths = plan["paths"]
        # The bases the user gave, below which every component is ours; and the paths we
        # compare with mountinfo, canonicalised once (a run dir under /var/run -> /run).
        self.state_base = os.path.dirname(os.path.dirname(paths["state"]))
        self.run_base = os.path.dirname(paths["run"])
        self.bases = [self.state_base, self.run_base]
        if paths.get("image_ref") and os.path.dirname(paths["image_ref"]) != paths["state"]:
            self.bases.append(os.path.dirname(os.path.dirname(paths["image_ref"])))
        run_dir = canonical(paths["run"], self.run_base)
        self.root = (canonical(paths["root"], self.run_base) if _hostfs.within(paths["root"], paths["run"])
                     else os.path.realpath(paths["root"]))
        self.namespaces = Namespaces(plan, run_dir, os.path.realpath(self.run_base),
                                     canonical(paths["ns"], self.run_base))
        self.record = paths["record"]
        self.steps_done = 0
        self.hook_step, self.hook_signal = _test_step_hook()
        self.module_pid = os.getpid()

    def _step_done(self):
        """Count one done step; the test-only hooks (TEST_STEP_HOOKS) act after the k-th:
        KILL takes the module process, and this forked child too if it is one, so no later
        step runs; STOP stops this process."""
        self.steps_done += 1
        if self.steps_done == self.hook_step:
            if self.hook_signal == signal.SIGKILL:
                os.kill(self.module_pid, signal.SIGKILL)
            os.kill(os.getpid(), self.hook_signal)

    def locked(self, timeout, shared=False):
        """The per-container lock (the script takes the same file with flock(1)), as a
        context manager; a timeout says which lock and what to do about it."""
        lock = self.plan["paths"]["lock"]
        _hostfs.make_dirs(os.path.dirname(lock), 0o755)
        held = contextlib.ExitStack()
        try:
            held.enter_context(_hostfs.locked(lock, timeout, shared=shared,
                                              what="container %s" % self.plan["name"]))
        except _hostfs.LockTimeout as exc:
            raise ApplyError("%s (wait for that run to end and try again, or give a longer "
                             "lock_timeout; `lslocks` shows which process holds %s)" % (exc, lock))
        return held

    def recorded_plan(self):
        """The plan the container was last set up from (its record), or None when there is
        none or it cannot be read as JSON. A set-up from scratch that did not end left
        the record of its plan with the digest INCOMPLETE + digest."""
        try:
            plan = json.loads(_hostfs.read_file(self.record))
        except (OSError, ValueError):
            return None
        return plan if isinstance(plan, dict) else None

    def recorded_digest(self):
        try:
            return json.loads(_hostfs.read_file(self.record)).get("digest")
        except (OSError, ValueError, AttributeError):
            return None

    def exists(self):
        return self.namespaces.pinned(mountinfo.read())

    def converge(self):
        """Make the container filesystem match the plan; return the steps done (or that
        would be done in check mode), each described in one line. A set-up that fails
        half-way keeps nothing mounted: a first one leaves nothing at all."""
        first_time = not os.path.lexists(self.plan["paths"]["state"]) and not self.exists()
        fresh = False
        try:
            done = HostSteps(self.plan, self.bases, self.check_mode, on_done=self._step_done).converge()
            fresh = not self.exists() or self.recorded_digest() != self.plan["digest"]
            if fresh:
                done.append("pin fresh namespaces in %s" % self.namespaces.dir)
                if self.check_mode:
                    return done + [describe_step(s) for s in _root_steps(self.plan)]
                self._write_record(complete=False)
                self.namespaces.unpin()
                self.namespaces.create()
                self._step_done()
            done += _in_child(self._converge_root)
        except (ApplyError, OSError):
            if not self.check_mode:
                self._roll_back(first_time, fresh)
            raise
        if not self.check_mode:
            self._write_record()
        return done

    def _roll_back(self, first_time, fresh):
        """After a failed set-up: a container that did not exist before is removed whole; a
        half-built rebuild loses its namespaces (the next run rebuilds). Best effort: the
        error that stopped the set-up is the one to report."""
        try:
            if first_time:
                self.remove()
            elif fresh:
                self.namespaces.remove()
        except (ApplyError, OSError):
            pass

    def _converge_root(self):
        self.namespaces.enter()
        with RootSteps(self.root, _root_steps(self.plan)) as steps:
            done = []
            for step in _root_steps(self.plan):
                if getattr(steps, "check_" + step["op"])(step):
                    continue
                done.append(describe_step(step))
                if self.check_mode:
                    continue
                try:
                    getattr(steps, "do_" + step["op"])(step)
                except OSError as exc:
                    raise ApplyError(os.strerror(exc.errno) if exc.errno else str(exc),
                                     step=describe_step(step))
                except ApplyError as exc:
                    raise ApplyError(str(exc), step=describe_step(step), cmd=exc.cmd)
                steps.refresh()
                self._step_done()
            return done

    def _write_record(self, complete=True):
        """Record the plan: once set up; and, marked incomplete, before a set-up from
        scratch begins, so a run killed half-way leaves a record that names every path
        (absent by name finds them) but no spec's digest (every run rebuilds it, the
        script's `up` too), never the record of a previous spec over half of this one."""
        try:
            _hostfs.write_file(self.record, _layout.record_text(self.plan, complete), 0o600)
        except OSError as exc:
            raise ApplyError(os_error_text(exc), step="record the plan in %s" % self.record)

    def summary(self):
        """Where the container lives: name, spec digest, root, namespace files, and the
        nsenter command that enters them."""
        files = self.namespaces.files()
        flags = {"mnt": "mount"}
        return {
            "name": self.plan["name"],
            "digest": self.plan["digest"],
            "root": self.plan["paths"]["root"],
            "namespaces": files,
            "enter": "nsenter " + " ".join("--%s=%s" % (flags.get(kind, kind), path)
                                           for kind, path in sorted(files.items())),
        }

    def live_mounts(self):
        """The container's mount table as seen from inside its mount namespace: one dict
        per mount under its root (mount_point relative to it, fstype, source, options)."""
        if not self.exists():
            return []
        return _in_child(self._mounts_inside)

    def _mounts_inside(self):
        self.namespaces.enter()
        root = self.root.rstrip("/")
        out = []
        for entry in mountinfo.read():
            point = entry["mount_point"]
            if point == root or point.startswith(root + "/"):
                out.append({"mount_point": point[len(root):] or "/", "fstype": entry["fstype"],
                            "source": entry["source"], "options": sorted(entry["options"]),
                            "super_options": sorted(entry["super_options"])})
        return out

    def persistent_steps(self):
        """One line per step a persistent container filesystem keeps (host and root)."""
        return [describe_step(s) for s in self.plan["steps"]
                if s["phase"] == "host" and s["op"] != "namespaces"] + \
            [describe_step(s) for s in _root_steps(self.plan)]

    def remove(self):
        """Remove every mount, pinned namespace and file of the container."""
        done = []
        state = self.plan["paths"]["state"]
        try:
            if self.exists() or os.path.lexists(self.namespaces.run_dir):
                done.append("unpin namespaces and remove %s" % self.namespaces.run_dir)
                if not self.check_mode:
                    self.namespaces.remove()
                    self._step_done()
            if os.path.lexists(state):
                done.append("remove %s" % state)
                if not self.check_mode:
                    _hostfs.remove_tree(state)
                    self._step_done()
            ref = self.plan["paths"].get("image_ref")
            if ref and os.path.lexists(ref):  # a reference kept in a store of its own
                done.append("remove %s" % ref)
                if not self.check_mode:
                    os.unlink(ref)
                    self._step_done()
        except OSError as exc:
            raise ApplyError(os_error_text(exc), step=done[-1] if done else "remove")
        return done
