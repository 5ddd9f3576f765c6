# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of fromscratch.containerfs.container on one container: its filesystem (the
applier, under the container's lock) and its process (the installed script, or its
systemd unit), in the order the states need: stop what must stop, converge, install the
script and unit, start.

The module (plugins/modules/container.py) handles its arguments and builds the plan;
this class decides and acts, and fails through the module with a message that says what
to do.

Standard library only. Private to the collection; may change without notice.
"""

import contextlib
import os
import time

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import applier as _applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import drift as _drift
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process


def _read_kept(path):
    """A file recreate keeps (bytes), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


class Lifecycle:
    """One run of the module on one container: its filesystem (the applier, under the
    container's lock) and its process (the installed script, or its systemd unit)."""

    def __init__(self, module, plan):
        self.module = module
        self.params = module.params
        self.state = module.params["state"]
        self.plan = plan
        self.paths = plan["paths"]
        self.check = module.check_mode
        self.applier = _applier.Applier(plan, check_mode=self.check)
        self.systemd = _process.systemd_is_pid1()
        self.unit = _process.unit_path(plan["name"]) if self.systemd else None
        self.actions = []
        self.before = _process.status(self.paths)
        self.restarted = None  # why the process was stopped to start again
        self.changes = None  # what a changed spec changes (diff mode)

    # ------------------------------------------------------------------ decisions

    def running(self):
        return self.before["state"] == "running"

    def active(self):
        """Running, or its monitor waits to restart it: both need a stop."""
        return self.running() or self.before["monitor_pid"] is not None

    def spec_changed(self):
        recorded = self.applier.recorded_digest()
        return recorded is not None and recorded != self.plan["digest"]

    def why_restart(self):
        """Why a running process must stop before the set-up (None: it need not)."""
        if not self.active():
            return None
        if self.state in ("stopped", "absent"):
            return self.state
        if self.state != "started":
            return None
        if self.spec_changed():
            return "spec changed"
        if self.params["recreate"]:
            return "recreate"
        return "restart" if self.params["restart"] else None

    def refuse_present_while_running(self):
        if self.state != "present" or not self.running():
            return
        if self.spec_changed():
            self.fail("it runs (pid %d) with another spec, and state=present never stops a process: use "
                      "state=started to restart it with this spec, or state=stopped" % self.before["pid"])
        if self.params["recreate"]:
            self.fail("it runs (pid %d): recreate needs state=started or state=stopped" % self.before["pid"])

    def fail(self, msg, **extra):
        self.module.fail_json(msg="container %s: %s" % (self.plan["name"], msg), **extra)

    def lock(self):
        if self.check and not os.path.isdir(os.path.dirname(self.paths["lock"])):
            return contextlib.nullcontext()  # nothing set up, and check mode makes no lock file
        return self.applier.locked(self.params["lock_timeout"])

    # ------------------------------------------------------------------ the runs

    def run(self):
        """Converge the container to the state asked; returns (before, after) steps."""
        if self.state == "absent":
            return self.absent()
        self.changes = self.spec_changes()
        self.refuse_present_while_running()
        why = self.why_restart()
        if why:
            self.stop()
            self.restarted = why if self.state == "started" else None
        with self.lock():
            before = self.applier.persistent_steps() if self.applier.exists() else []
            self.set_up()
            after = self.applier.persistent_steps()
            self.install_unit()
        # a monitor waiting to restart the process is left to it (its restart policy)
        if self.state == "started" and (not self.active() or why):
            self.start()
        self.set_enabled()
        return before, after

    def set_up(self):
        """The filesystem (from scratch with recreate) and the installed script."""
        if self.params["recreate"]:
            kept = {key: _read_kept(path) for key, path in self.kept_files().items()}
            self.actions += self.applier.remove()
            if self.check:
                self.actions += ["pin fresh namespaces in %s" % self.paths["ns"]] + self.applier.persistent_steps()
                return
            self.actions += self.applier.converge()
            self.restore(kept)
        else:
            self.actions += self.applier.converge()
        self.install_script()

    def kept_files(self):
        """What recreate keeps: the log, and the installed script."""
        log = self.paths["log"]
        return {"log": log, "log1": log + ".1", "script": self.paths["script"]}

    def restore(self, kept):
        for key, path in self.kept_files().items():
            if kept[key] is not None and not os.path.lexists(path):
                _hostfs.write_file(path, kept[key], 0o700 if key == "script" else 0o600)

    def install_script(self):
        text = self.params["_script"]
        path = self.paths["script"]
        if text is None:
            if not _process.script_is_current(path, self.plan["digest"], self.params["_script_version"]):
                self.actions.append("install the script %s" % path)  # check mode: the action renders it
            return
        header = _process.script_header(text)
        if header is None or header[2] != self.plan["digest"]:
            self.fail("the rendered script is not of this spec (it changed between the two calls?); run again")
        if self.check:
            return
        if _process.install_script(path, text):
            self.actions.append("install the script %s" % path)

    def absent(self):
        if self.active():
            self.stop()
        self.remove_unit()
        with self.lock():
            before = self.applier.persistent_steps() if self.applier.exists() else []
            self.actions += self.applier.remove()
        return before, []

    # ------------------------------------------------------------------ the process

    def stop(self):
        if self.running():
            self.actions.append("stop the process (pid %d)" % self.before["pid"])
        else:
            self.actions.append("stop its monitor (pid %d), which waits to restart it" % self.before["monitor_pid"])
        if self.check:
            return
        timeout = self.params["stop_timeout"]
        if self.unit and os.path.exists(self.unit):
            _process.systemctl("stop", os.path.basename(self.unit))
        if _process.is_active(_process.status(self.paths)):
            if os.path.isfile(self.paths["script"]):
                self.call(_process.stop_args(timeout), timeout)
            else:
                _process.kill_by_pid_files(self.paths)
        now = _process.status(self.paths)
        if _process.is_active(now):
            self.fail("its process (pid %s) or monitor (pid %s) still runs after stop" % (now["pid"], now["monitor_pid"]))

    def start(self):
        self.actions.append("start the process" + (" again (%s)" % self.restarted if self.restarted else ""))
        if self.check:
            return
        if self.unit:
            self.start_unit()
        else:
            self.call(_process.start_args(self.params["restart_policy"], self.params["lock_timeout"]),
                      self.params["lock_timeout"])
        self.check_started()

    def check_started(self):
        """A process that ended at once: a failure when its status says so and nothing will
        restart it (its log's last lines say why), else a warning."""
        now = _process.status(self.paths)
        if _process.is_active(now):
            return
        tail = _process.log_tail(self.paths["log"], 10)
        said = "the process exited at once with status %s; the last lines of its log %s:\n%s" % (
            now["exit_status"], self.paths["log"], tail)
        if now["exit_status"] not in (0, None):
            self.fail(said + "\n(check process.args and what it needs in the container)",
                      exit_status=now["exit_status"], log_tail=tail, actions=self.actions)
        self.module.warn("container %s: %s" % (self.plan["name"], said))

    def start_unit(self):
        unit = os.path.basename(self.unit)
        rc, dummy, err = _process.systemctl("start", unit)
        if rc != 0:
            self.fail("systemctl start %s failed: %s" % (unit, err.strip()),
                      log_tail=_process.log_tail(self.paths["log"]))
        deadline = time.monotonic() + self.params["lock_timeout"] + 30
        while _process.status(self.paths)["state"] != "running" and time.monotonic() < deadline:
            if _process.systemctl("is-failed", "--quiet", unit)[0] == 0:
                break
            time.sleep(0.1)

    def call(self, args, timeout):
        """Run the installed script; fail with what it said and the log's last lines."""
        try:
            return _process.call_script(self.paths, args, timeout)
        except _process.ScriptError as exc:
            tail = _process.log_tail(self.paths["log"])
            self.fail("%s%s" % (exc, ("; the last lines of its log %s:\n%s" % (self.paths["log"], tail)) if tail else ""),
                      rc=exc.rc, cmd=exc.cmd, stdout=exc.stdout, stderr=exc.stderr, log_tail=tail)
        except (OSError, ValueError) as exc:
            self.fail("cannot run %s: %s" % (self.paths["script"], exc))
        return None

    # ------------------------------------------------------------------ systemd

    def wants_unit(self):
        return bool(self.unit) and (self.state in ("started", "stopped") or self.params["enabled"] is not None)

    def install_unit(self):
        if not self.wants_unit():
            return
        try:
            text = _process.unit_text(self.plan, self.params["restart_policy"], self.params["stop_timeout"],
                                      self.params["lock_timeout"])
        except ValueError as exc:
            self.fail("cannot write its systemd unit: %s" % exc)
        try:
            same = _hostfs.read_file(self.unit) == text
        except FileNotFoundError:
            same = False
        if same:
            return
        self.actions.append("write the systemd unit %s" % self.unit)
        if not self.check:
            _process.write_unit(self.unit, text)
            _process.systemctl("daemon-reload")

    def remove_unit(self):
        if not self.unit or not os.path.lexists(self.unit):
            return
        self.actions.append("remove the systemd unit %s" % self.unit)
        if not self.check:
            _process.systemctl("disable", os.path.basename(self.unit))
            os.unlink(self.unit)
            _process.systemctl("daemon-reload")

    def set_enabled(self):
        enabled = self.params["enabled"]
        if enabled is None:
            return
        if not self.unit:
            self.module.warn("enabled is for systemd, which is not pid 1 here; ignored (start it at boot "
                             "yourself: sh %s start)" % self.paths["script"])
            return
        try:
            action = _process.set_unit_enabled(os.path.basename(self.unit), enabled, check=self.check)
        except _process.SystemctlError as exc:
            self.fail(str(exc))
        else:
            if action:
                self.actions.append(action)

    # ------------------------------------------------------------------ the result

    def process_line(self, status):
        if status["state"] == "running":
            return "process: running (pid %d)" % status["pid"]
        return "process: stopped"

    def predicted_process_line(self):
        if self.state == "started":
            if self.running() and not self.restarted:
                return self.process_line(self.before)
            return "process: running" + (" (restarted: %s)" % self.restarted if self.restarted else "")
        if self.state in ("stopped", "absent"):
            return "process: stopped" if self.state == "stopped" else None
        return self.process_line(self.before)

    def summary(self):
        container = self.applier.summary()
        now = _process.status(self.paths)
        container.update(state=now["state"], pid=now["pid"], started_at=now["started_at"],
                         exit_status=now["exit_status"], log=now["log"],
                         unit=self.unit if self.unit and os.path.exists(self.unit) else None)
        return container

    def spec_changes(self):
        """What a changed spec changes ({"removed", "added"} lines), or None when the spec
        is the one recorded or nothing was set up."""
        recorded = self.applier.recorded_plan()
        if recorded is None or recorded.get("digest") == self.plan["digest"]:
            return None
        return _drift.plan_changes(recorded, self.plan)

    def diff(self, before, after):
        """A changed spec: the lines it removes and adds (mounts, files, process settings);
        else the steps done, among those that stay."""
        if self.changes is not None:
            old, new = list(self.changes["removed"]), list(self.changes["added"])
        else:
            unchanged = [line for line in after if line not in self.actions]
            old = unchanged if after else before
            new = list(after)
        if self.state != "absent" or self.running():
            old = old + [self.process_line(self.before)]
        predicted = self.predicted_process_line()
        if predicted:
            new.append(predicted)
        return {
            "before_header": "container %s (live)" % self.plan["name"],
            "after_header": "container %s (spec)" % self.plan["name"],
            "before": "\n".join(old) + "\n" if old else "",
            "after": "\n".join(new) + "\n" if new else "",
        }


def needs_script(module, plan):
    """Whether the action plugin must render the script first (nothing changed yet)."""
    params = module.params
    if params["state"] == "absent" or module.check_mode or params["_script"] is not None:
        return False
    return not _process.script_is_current(plan["paths"]["script"], plan["digest"], params["_script_version"])
