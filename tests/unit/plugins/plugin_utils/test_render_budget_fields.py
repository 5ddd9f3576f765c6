"""The spec field that raises an image budget is named in one place (_spec.fields:
IMAGE_LIMITS_PATH, IMAGE_LIMIT_FIELD): the validator, the loader's budget errors and the
script's message all take it from there, and no template spells it."""
import os
import re
import shlex

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as _fields
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render
from tests.lib import oci_fixtures as fx


def image_spec(tmp_path, **limits):
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, [fx.make_tar([fx.file_("a", b"x")])])
    raw = {"name": "demo", "rootfs": {"image": {"source": layout}}, "state_dir": str(tmp_path / "s"),
           "run_dir": "/r"}
    if limits:
        raw["rootfs"]["image"]["limits"] = limits
    return _image_spec.load(raw, base_dir=str(tmp_path))


def header_value(lines, name):
    line = [text for text in lines if text.startswith(name + "=")][0]
    return shlex.split(line[len(name) + 1:])[0]


def test_no_template_spells_a_budget_field():
    spelled = re.compile(r"limits\.(%s)\b" % "|".join(_budget.LIMIT_NAMES))
    found = []
    for dirpath, dirnames, filenames in os.walk(_render.TEMPLATE_DIR):
        dirnames.sort()
        for filename in sorted(filenames):
            with open(os.path.join(dirpath, filename)) as f:
                found += ["%s: %s" % (filename, line.strip()) for line in f if spelled.search(line)]
    assert found == []


@pytest.mark.parametrize("limits, expected", [
    ({}, [("10737418240", "bytes"), ("2000000", "entries"), ("255", "depth"),
          ("10737418240", "bytes"), ("2000000", "entries")]),
    ({"layer_bytes": 7, "entries": 9, "depth": 3},
     [("7", "layer_bytes"), ("9", "entries"), ("3", "depth"), ("10737418240", "bytes"), ("9", "entries")]),
    ({"layer_entries": 5, "bytes": 11},
     [("11", "bytes"), ("5", "layer_entries"), ("255", "depth"), ("11", "bytes"), ("2000000", "entries")]),
])
def test_the_script_names_each_limit_and_its_field_as_python_does(tmp_path, limits, expected):
    """layer_limits: per checked limit (layer bytes, layer entries, depth, image bytes, image
    entries) its value and the field that raises it: a layer limit left unset is the
    image's, as LayerBudget raises it."""
    lines = _render.render_script(build_plan(image_spec(tmp_path, **limits))).splitlines()
    calls = [shlex.split(text) for text in lines if text.strip().startswith("layer_limits ")]
    hint = _image_spec.budget_of({}).hint
    assert hint == _fields.IMAGE_LIMIT_FIELD
    assert calls == [["layer_limits"] + [word for value, name in expected for word in (value, hint % {"name": name})]]
    python = _budget.Budget(limits).layer("x")
    assert (python.max_bytes, python.max_entries, python.max_depth) == tuple(int(v) for v, _n in expected[:3])


def test_a_bad_limit_is_named_by_its_field(tmp_path):
    with pytest.raises(SpecError) as exc:
        image_spec(tmp_path, layer_bytes=0)
    assert _fields.IMAGE_LIMIT_FIELD % {"name": "layer_bytes"} + ":" in str(exc.value)
