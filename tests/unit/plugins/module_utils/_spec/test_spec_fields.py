"""The spec's field table (_spec/fields.py) against the validator and the doc fragment:

- plugins/doc_fragments/_spec.py is what tests/lib/spec_fragment.py renders from the table
  (regenerate it with `.venv/bin/python -m tests.lib.spec_fragment --write`);
- every field of the table is one the validator knows, every other name is refused;
- each documented choice is accepted and a value outside them refused, at that field;
- each documented default is what the validator fills in where the spec is silent.
"""
import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as F
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import registry as spec_registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
from tests.lib import spec_fragment

BASE = {"name": "t", "rootfs": {"path": "/srv/rootfs"}}
# A valid value for each required field of a list item (the item needs it to be checked).
REQUIRED_SAMPLES = {"namespaces.type": "mount", "mounts.target": "/x", "volumes.target": "/x",
                    "devices.path": "/dev/fuse", "etc.extra_hosts.address": "10.0.0.1",
                    "etc.extra_hosts.names": ["h"]}
# What an item needs for its other fields to be checked (a bind volume's fields want a source).
ITEM_CONTEXT = {"volumes": {"source": "/srv"}}
KINDS = {"str", "int", "bool", "list", "dict", "path", "raw"}


def walk(fields=F.SPEC, prefix=""):
    """(dotted path, Field) of every field of the table."""
    for field in fields:
        path = prefix + field.name
        yield path, field
        yield from walk(field.fields, path + ".")


def spec_with(path, value):
    """BASE with `value` at `path`; a list section gets one item (with its required fields).
    Returns (spec, the path the validator names the field by)."""
    spec = {"name": BASE["name"], "rootfs": dict(BASE["rootfs"])}
    parts = path.split(".")
    node, fields, where, prefix = spec, F.SPEC, [], ""
    for index, name in enumerate(parts):
        where.append(name)
        if index == len(parts) - 1:
            node[name] = value
            break
        field = next(f for f in fields if f.name == name)
        if field.kind == "list":
            item = dict((f.name, REQUIRED_SAMPLES[prefix + name + "." + f.name])
                        for f in field.fields if f.required)
            item.update(ITEM_CONTEXT.get(prefix + name, {}))
            node[name] = [item]
            where[-1] += "[0]"
            node = item
        else:
            node = node.setdefault(name, {})
        fields, prefix = field.fields, prefix + name + "."
    return spec, ".".join(where)


def errors(spec):
    try:
        load_spec(spec)
    except SpecError as exc:
        return exc.errors
    return []


def test_the_fragment_is_rendered_from_the_table():
    with open(spec_fragment.FRAGMENT) as f:
        committed = f.read()
    assert committed == spec_fragment.fragment_text(), (
        "plugins/doc_fragments/_spec.py differs from the field table: run "
        "`.venv/bin/python -m tests.lib.spec_fragment --write`")


def test_every_field_is_documented():
    for path, field in walk():
        assert field.description and all(field.description), path
        assert field.kind in KINDS, path
        assert (field.elements is not None) == (field.kind == "list"), path
        if field.choices is not None and field.default is not F.NO_DEFAULT:
            assert field.default in field.choices, path


@pytest.mark.parametrize("path", [p for p, f in walk()])
def test_a_documented_field_is_known(path):
    field = F.field(path)
    sample = {"str": "x", "path": "/x", "int": 1, "bool": True, "list": [], "dict": {}, "raw": []}[field.kind]
    spec, where = spec_with(path, sample)
    assert not [e for e in errors(spec) if e[0] == where and e[1].startswith("unknown field")]


@pytest.mark.parametrize("section", [""] + [p for p, f in walk() if f.fields])
def test_an_undocumented_field_is_refused(section):
    if section:
        spec, where = spec_with(section + ".undocumented_field", 1)
    else:
        spec, where = dict(BASE, undocumented_field=1), "undocumented_field"
    assert [e for e in errors(spec) if e[0] == where and e[1].startswith("unknown field")]


def test_the_registry_fields_are_in_the_table():
    assert set(spec_registry.REGISTRY_FIELDS) <= set(F.names("rootfs.image"))


CHOICES = [(p, choice) for p, f in walk() if f.choices for choice in f.choices]


@pytest.mark.parametrize("path,choice", CHOICES)
def test_a_documented_choice_is_accepted(path, choice):
    spec, where = spec_with(path, choice)
    if path == "namespaces.type" and choice != "mount":
        spec["namespaces"].append("mount")
    assert [e for e in errors(spec) if e[0] == where] == []


@pytest.mark.parametrize("path", sorted(set(p for p, c in CHOICES)))
def test_a_value_outside_the_choices_is_refused(path):
    outside = 2 if F.field(path).kind == "int" else "not-a-choice"
    spec, where = spec_with(path, outside)
    assert [e for e in errors(spec) if e[0] == where]


# Normalised into another shape: namespaces to mappings, devices with the six defaults.
NORMALISED_OTHERWISE = ("namespaces", "devices")


def normalised_defaults():
    """(path, documented default, what the validator filled in) for each field with a
    default that the normalised spec keeps under the same name."""
    out = []
    spec = load_spec(BASE)
    with_items = load_spec(dict(BASE, volumes=[{"source": "/srv", "target": "/b"}],
                                devices=[{"path": "/dev/fuse", "major": 10, "minor": 229}]))
    items = {"volumes": with_items["volumes"][0],
             "devices": [d for d in with_items["devices"] if d["path"] == "/dev/fuse"][0]}
    for path, field in walk():
        if field.default is F.NO_DEFAULT or path in NORMALISED_OTHERWISE:
            continue
        parent, _dot, name = path.rpartition(".")
        node = items.get(parent) if parent in items else (spec.get(parent) if parent else spec)
        if isinstance(node, dict) and name in node:
            out.append((path, field.default, node[name]))
    return out


def test_the_documented_defaults_are_the_validators():
    checked = normalised_defaults()
    assert len(checked) >= 20   # the comparison must not go vacuous
    assert [(path, doc, got) for path, doc, got in checked if doc != got] == []


def test_the_namespaces_default():
    assert [n["type"] for n in load_spec(BASE)["namespaces"]] == sorted(
        F.default("namespaces"), key=F.choices("namespaces.type").index)
