# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of fromscratch.containerfs.container: renders the container's script on
the controller when the target needs it.

The module runs once. When the script installed on the target (STATE/container.sh) is
missing or was rendered from another spec or collection version, the module changes
nothing and returns `needs_script` with the plan; this plugin renders the plan with the
collection's templates and calls the module again with the script (`_script`). A no-op
converge is therefore one module call.
"""

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils._version import collection_version

MODULE = "fromscratch.containerfs.container"
INTERNAL = ("_script", "_script_version")


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        args = dict(self._task.args)
        for key in INTERNAL:
            if key in args:
                raise AnsibleActionFail("%s is internal to %s: do not set it" % (key, MODULE))
        version = collection_version()
        args["_script_version"] = version
        result = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        if result.get("needs_script") and not result.get("failed"):
            try:
                args["_script"] = _render.render_script(result["plan"], version=version)
            except (ValueError, KeyError) as exc:
                raise AnsibleActionFail("cannot render the script of container %s: %s"
                                        % (result.get("plan", {}).get("name"), exc))
            result = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        return self._hide_internal(result)

    @staticmethod
    def _hide_internal(result):
        """The invocation shows what the user gave, not the script text."""
        module_args = result.get("invocation", {}).get("module_args")
        if isinstance(module_args, dict):
            for key in INTERNAL:
                module_args.pop(key, None)
        result.pop("plan", None)
        return result
