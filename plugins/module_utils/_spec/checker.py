# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Checker: walks a spec's fields and collects every error with its field path.

Private to the collection; may change without notice.
"""

import difflib

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import bad_char, key_text, type_name


class Checker:
    """Collects errors while walking the spec; never stops at the first one."""

    def __init__(self):
        self.errors = []

    def error(self, path, message):
        self.errors.append((path, message))

    def fields(self, path, value, allowed):
        """Check `value` is a mapping with only `allowed` keys; return it (or {})."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, "must be a mapping, got %s" % type_name(value))
            return {}
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                where = "%s.%s" % (path, key_text(key)) if path else key_text(key)
                self.error(where, "unknown field" + (" (did you mean '%s'?)" % hint[0] if hint else
                                                     "; allowed: %s" % ", ".join(sorted(allowed))))
        return value

    def typed(self, path, value, types, what):
        if isinstance(value, bool) and bool not in types:
            self.error(path, "must be %s, got a boolean" % what)
            return False
        if not isinstance(value, types):
            self.error(path, "must be %s, got %s" % (what, type_name(value)))
            return False
        return True

    def text(self, path, value, refuse="", free=False, what="a string", why=""):
        """True when `value` is a string its place allows (see bad_char); else reported."""
        if not self.typed(path, value, (str,), what):
            return False
        bad = bad_char(value, refuse, free)
        if bad is not None:
            self.error(path, "must not contain %r%s, got %r" % (bad, why, value))
            return False
        return True

    def string_list(self, path, value, refuse="", free=False):
        """The strings of the list `value` that their place allows (the others reported)."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, "must be a list of strings, got %s" % type_name(value))
            return []
        return [item for index, item in enumerate(value)
                if self.text("%s[%d]" % (path, index), item, refuse, free)]

    def integer(self, path, value, maximum):
        """True when `value` is an integer in 0..maximum; else reported."""
        if not self.typed(path, value, (int,), "an integer"):
            return False
        if not 0 <= value <= maximum:
            self.error(path, "must be between 0 and %d, got %d" % (maximum, value))
            return False
        return True

    def items(self, path, value, allowed):
        """Yield (field path, mapping) for each item of the list `value`, unknown keys
        reported; report a `value` that is not a list and yield nothing."""
        if not isinstance(value, list):
            self.error(path, "must be a list, got %s" % type_name(value))
            return
        for index, item in enumerate(value):
            where = "%s[%d]" % (path, index)
            if not isinstance(item, dict):
                self.error(where, "must be a mapping, got %s" % type_name(item))
                continue
            yield where, self.fields(where, item, allowed)

    def path_field(self, where, item, key):
        """item[key] when it is there and a valid container path, else None (reported)."""
        if key not in item:
            self.error("%s.%s" % (where, key), "is required")
            return None
        if not self.container_path("%s.%s" % (where, key), item[key]):
            return None
        return item[key]

    def container_path(self, path, value, allow_root=False):
        """An absolute, normalised path inside the container."""
        if not self.text(path, value):
            return False
        if not value.startswith("/"):
            self.error(path, "must be an absolute path inside the container, got %r" % value)
            return False
        parts = value.split("/")
        if ".." in parts or "." in parts:
            self.error(path, "must not contain '.' or '..' components, got %r" % value)
            return False
        if value.rstrip("/") == "" and not allow_root:
            self.error(path, "must not be '/': a mount over the container root is refused")
            return False
        return True

    def host_dir(self, where, value, default):
        """A host directory the container's state lives in (also in overlayfs options):
        `value` when allowed (else `default`, reported)."""
        if not self.text(where, value, refuse=",:\\", why=" (overlayfs option syntax; no control "
                         "characters)"):
            return default
        if not value.startswith("/"):
            self.error(where, "must be an absolute host path, got %r" % value)
        return value
