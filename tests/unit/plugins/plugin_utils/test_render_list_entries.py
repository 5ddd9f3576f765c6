"""Twin check: the script's list_entries (awk over tar's listing) counts entries and depth
as _image.budget.LayerBudget does ("" and "." are no component), on the same names, with
the real awk of this machine."""
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import BudgetExceededError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render
from tests.unit.plugins.plugin_utils.test_render_budget_fields import image_spec
from tests.unit.plugins.plugin_utils.test_render_run_files import shell_function

NAMES = ["a", "./a/b/", "/abs/x/y", "a//b///c", "./././a", ".", "./", "a/./b/./c/.", "x/.../y", "..a/b"]


def script_verdict(tmp_path, names, max_entries, max_depth):
    lines = _render.render_script(build_plan(image_spec(tmp_path))).splitlines()
    code = "\n".join(["set -eu", "T_awk=awk", "CFS_MAX_ENTRIES=%d" % max_entries,
                      "CFS_MAX_DEPTH=%d" % max_depth, shell_function(lines, "list_entries"),
                      "list_entries"])
    out = subprocess.run(["dash", "-c", code], input="".join(n + "\n" for n in names),
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def python_verdict(names, max_entries, max_depth):
    layer = _budget.Budget({"layer_entries": max_entries, "depth": max_depth}).layer("x")
    try:
        for name in names:
            layer.add_entry(name)
    except BudgetExceededError as exc:
        return exc.limit
    return "entries %d" % len(names)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_depth_is_counted_as_python_counts_it(tmp_path, name, depth):
    script = script_verdict(tmp_path, [name], 10, depth)
    python = python_verdict([name], 10, depth)
    assert (script.startswith("over depth"), script.startswith("entries")) == (
        python == "depth", python == "entries 1"), (name, script, python)


@pytest.mark.parametrize("count, limit", [(5, 5), (6, 5), (0, 3)])
def test_entries_are_counted_as_python_counts_them(tmp_path, count, limit):
    names = ["f%d" % i for i in range(count)]
    script = script_verdict(tmp_path, names, limit, 255)
    python = python_verdict(names, limit, 255)
    assert script == ("over entries" if python == "layer_entries" else python)
