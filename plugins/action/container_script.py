# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of fromscratch.containerfs.container_script: the plan is compiled on the
target (its paths name the target's files), rendered into the script here, on the
controller, and written by ansible.legacy.copy (check mode, diff, mode and owner as copy
does them); with systemd, the container module's unit too.

Calls, in order: the module (_step=plan, read-only) for the plan; copy for the script;
with systemd, copy for the unit and the module again (_step=systemd) to reload and enable
it. The target needs neither jinja2 nor the collection (AnsiballZ ships module_utils).
"""

import hashlib
import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.fromscratch.containerfs.plugins.plugin_utils._version import collection_version
from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import files as _spec_file
from ansible_collections.fromscratch.containerfs.plugins.modules import container_script as _doc
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render

MODULE = "fromscratch.containerfs.container_script"
UNIT_MODE = "0644"
# What the target-side part needs to compile the plan (the rest is for copy and the unit).
PLAN_ARGS = ("name", "spec", "bundle", "lenient", "dest", "state_dir", "run_dir", "systemd", "unit_dir")


def given(args):
    """The arguments that have a value: a module's mutually_exclusive counts a None too."""
    return dict((key, value) for key, value in args.items() if value is not None)


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp is unused since ansible-core 2.10
        for key in _doc.INTERNAL:
            if key in self._task.args:
                raise AnsibleActionFail("%s is internal to %s: do not set it" % (key, MODULE))
        dummy, args = self.validate_argument_spec(_doc.ARGUMENT_SPEC, mutually_exclusive=_doc.MUTUALLY_EXCLUSIVE,
                                                  required_one_of=_doc.REQUIRED_ONE_OF)
        if not os.path.isabs(args["dest"]):
            raise AnsibleActionFail("dest must be an absolute path on the target, got %r" % args["dest"])
        warnings = []
        try:
            planned = self._plan(args, task_vars, warnings)
            plan = planned["plan"]
            script = self._render(plan)
            actions, diffs = [], []
            written = self._copy(task_vars, "script", content=script, dest=args["dest"], mode=args["mode"],
                                 owner=args["owner"], group=args["group"])
            if written.get("changed"):
                actions.append("write the script %s" % args["dest"])
            diffs += written.get("diff") or []
            if args["systemd"]:
                actions += self._install_unit(args, plan, planned["unit"], task_vars, diffs, warnings)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

        encoded = script.encode("utf-8")
        result.update(changed=bool(actions), actions=actions, dest=args["dest"], name=plan["name"],
                      digest=plan["digest"], sha256=hashlib.sha256(encoded).hexdigest(), size=len(encoded),
                      unit=planned["unit"])
        if diffs:
            result["diff"] = diffs
        if warnings:
            result["warnings"] = warnings
        return result

    def _plan(self, args, task_vars, warnings):
        """The plan and the unit path, from the target-side part (read-only)."""
        module_args = dict((key, args[key]) for key in PLAN_ARGS)
        source = "spec"
        if args["spec_file"] is not None:
            module_args["spec"] = self._read_spec_file(args["spec_file"])
            source = "spec_file %s" % args["spec_file"]
        module_args["_step"] = "plan"
        found = self._execute_module(module_name=MODULE, module_args=given(module_args), task_vars=task_vars)
        warnings += found.get("warnings") or []
        if found.get("failed"):
            message = found.get("msg") or "the target could not compile the plan"
            if args["spec_file"] is not None and found.get("errors"):
                message = "%s: %s" % (source, message)
            raise AnsibleActionFail(message, result=dict((k, found[k]) for k in ("errors",) if k in found))
        return found

    def _read_spec_file(self, spec_file):
        """spec_file's data, found on the controller as template finds its src."""
        try:
            path = self._find_needle("files", spec_file)
        except AnsibleError as exc:
            raise AnsibleActionFail("spec_file %s not found: %s" % (spec_file, exc.message))
        try:
            return _spec_file.read(path)
        except OSError as exc:
            raise AnsibleActionFail("cannot read spec_file %s: %s" % (path, exc.strerror or exc))
        except ContainerfsError as exc:
            raise AnsibleActionFail("spec_file %s: %s" % (path, exc))

    @staticmethod
    def _render(plan):
        try:
            return _render.render_script(plan, version=collection_version())
        except (ValueError, KeyError) as exc:
            raise AnsibleActionFail("cannot render the script of container %s: %s" % (plan.get("name"), exc))

    def _install_unit(self, args, plan, unit_file, task_vars, diffs, warnings):
        """The container module's unit, its ExecStart and ExecStop running the script at dest;
        then systemd reloaded (when it changed) and the unit enabled as asked."""
        at_dest = dict(plan, paths=dict(plan["paths"], script=args["dest"]))
        try:
            text = _process.unit_text(at_dest, args["restart_policy"], args["stop_timeout"])
        except ValueError as exc:
            raise AnsibleActionFail("cannot write the systemd unit of container %s: %s" % (plan["name"], exc))
        written = self._copy(task_vars, "systemd unit", content=text, dest=unit_file, mode=UNIT_MODE)
        diffs += written.get("diff") or []
        actions = ["write the systemd unit %s" % unit_file] if written.get("changed") else []
        if written.get("changed") or args["enabled"] is not None:
            settled = self._execute_module(
                module_name=MODULE, task_vars=task_vars,
                module_args=given(dict(name=plan["name"], dest=args["dest"], unit_dir=args["unit_dir"],
                                       enabled=args["enabled"], _step="systemd",
                                       _reload=bool(written.get("changed")))))
            warnings += settled.get("warnings") or []
            if settled.get("failed"):
                raise AnsibleActionFail("the systemd unit %s: %s" % (unit_file, settled.get("msg")))
            actions += settled.get("actions") or []
        return actions

    def _copy(self, task_vars, what, **copy_args):
        """Write a file on the target through ansible.legacy.copy, as template does."""
        new_task = self._task.copy()
        new_task.args = given(copy_args)
        copy_action = self._shared_loader_obj.action_loader.get(
            "ansible.legacy.copy", task=new_task, connection=self._connection, play_context=self._play_context,
            loader=self._loader, templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        written = copy_action.run(task_vars=task_vars)
        if written.get("failed"):
            raise AnsibleActionFail("cannot write the %s %s: %s" % (what, copy_args["dest"], written.get("msg")))
        return written
