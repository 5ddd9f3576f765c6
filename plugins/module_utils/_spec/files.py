# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading spec files (YAML or JSON) and OCI config.json files as hostile input.

`load_text(data, name)` turns the bytes of a spec file into plain data, or raises
`SpecError` with a message naming the file: input that is not UTF-8, a mapping key given
twice (named with its line), nesting deeper than `text.MAX_DEPTH` and more than
`text.MAX_NODES` values once aliases are expanded (an alias bomb) are refused before
anything is built from them. `read(path)` does the same for a file. `load_json(data,
name)` reads a config.json under the same rules.

PyYAML is needed only to read YAML.
Private to the collection; may change without notice.
"""

import json

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import MAX_DEPTH, MAX_NODES, check_structure

try:
    import yaml
    HAS_YAML = True
except ImportError:
    HAS_YAML = False

MERGE_TAG = "tag:yaml.org,2002:merge"
_LOADER = []   # the loader class, made on first use (it subclasses PyYAML's)


def read(path):
    """The data of the spec file at `path` (see load_text); OSError when unreadable."""
    with open(path, "rb") as f:
        return load_text(f.read(), path)


def load_text(data, name="spec"):
    """The data of a YAML or JSON spec given as bytes (or text), or raise SpecError."""
    text = _decode(data, name)
    if not HAS_YAML:
        raise SpecError([("", "%s: reading a spec file needs PyYAML (pip install pyyaml)" % name)])
    loader = _loader_class()(text)
    loader.name = name   # PyYAML's marks (and so its messages) name the file
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SpecError([("", "%s: not valid YAML or JSON: %s" % (name, exc))])
    finally:
        loader.dispose()
    check_structure(value, "spec file")
    return value


def load_json(data, name="config.json"):
    """The data of a JSON document given as bytes (or text), or raise SpecError."""
    text = _decode(data, name)
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs(name))
    except RecursionError:
        raise SpecError([("", "%s: nested more than %d levels deep" % (name, MAX_DEPTH))])
    except ValueError as exc:
        raise SpecError([("", "%s is not valid JSON: %s" % (name, exc))])
    check_structure(value, name)
    return value


def _decode(data, name):
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([("", "%s is not UTF-8 text (byte 0x%02x at offset %d)"
                          % (name, data[exc.start], exc.start))])


def _unique_pairs(name):
    def pairs_to_dict(pairs):
        out = {}
        for key, value in pairs:
            if key in out:
                raise SpecError([("", "%s: key %r is given twice in one object" % (name, key))])
            out[key] = value
        return out
    return pairs_to_dict


def _loader_class():
    if not _LOADER:
        _LOADER.append(_make_loader())
    return _LOADER[0]


def _make_loader():
    class SpecLoader(yaml.SafeLoader):
        """SafeLoader that bounds nesting while composing (PyYAML composes recursively)
        and refuses a key given twice in one mapping (PyYAML keeps the last in silence)."""

        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise SpecError([("", "%s is nested more than %d levels deep (line %d)"
                                      % (self.name, MAX_DEPTH, self.peek_event().start_mark.line + 1))])
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def compose_mapping_node(self, anchor):
            node = super().compose_mapping_node(anchor)
            seen = set()
            for key_node, _value in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise SpecError([("", "%s gives the key %r twice in one mapping (line %d)"
                                          % (self.name, key_node.value, key_node.start_mark.line + 1))])
                    seen.add(key)
            return node

        def flatten_mapping(self, node):
            # Merge keys (<<) copy their mapping's entries: bound them like aliases.
            super().flatten_mapping(node)
            if len(node.value) > MAX_NODES:
                raise SpecError([("", "%s holds more than %d values (merge keys expanded)"
                                  % (self.name, MAX_NODES))])

    return SpecLoader
