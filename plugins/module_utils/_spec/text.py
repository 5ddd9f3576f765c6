# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What text each place of a spec allows: the patterns, the characters refused, the limits.

Private to the collection; may change without notice.
"""

import re

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError

# Every pattern is used with fullmatch: `$` would accept a trailing newline.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
HOSTNAME_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
SIZE_RE = re.compile(r"[0-9]+[kKmMgG%]?")
MODE_RE = re.compile(r"0?[0-7]{3,4}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USER_RE = re.compile(r"([0-9]+)(?::([0-9]+))?")
IPV4_RE = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
FIELD_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# Characters no path, name or word may hold: C0 (newline and tab included), DEL, C1, and
# the line separators Python's splitlines honours (U+0085 is C1; U+2028, U+2029).
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# One mount option word: what would end the word in `mount -o`, an fstab field or a quote.
OPTION_WORD_REFUSED = ",#\\\"' "
# One word of /etc/hosts or resolv.conf: no separator, no comment.
DNS_WORD_REFUSED = " ,#;"
MAX_ID = 2 ** 32 - 2           # uid_t/gid_t; (uid_t)-1 means "unchanged"
MAX_MAJOR, MAX_MINOR = 2 ** 12, 2 ** 20   # Linux dev_t: 12-bit major, 20-bit minor
MAX_DEPTH, MAX_NODES = 64, 100000          # a spec is small; an alias bomb is not


def bad_char(value, refuse="", free=False):
    """The first character of the string `value` its place does not allow, or None.

    Free text (process.args, env values) may hold anything but NUL; every other place
    refuses control characters and any character of `refuse` (" " in `refuse` stands for
    all whitespace)."""
    if free:
        return "\0" if "\0" in value else None
    match = CONTROL_RE.search(value)
    if match:
        return match.group()
    for ch in value:
        if ch in refuse or (" " in refuse and ch.isspace()):
            return ch
    return None


def key_text(key):
    """A mapping key as it may appear in a field path (a hostile key is shown quoted)."""
    return key if isinstance(key, str) and FIELD_KEY_RE.fullmatch(key) else repr(key)


def type_name(value):
    """The kind of a value as an error message names it ("a mapping", "null")."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def clean_path(path):
    """Normalise a container path: collapse '//' and drop a trailing '/'."""
    return "/" + "/".join(p for p in path.split("/") if p)


def is_hostname(text):
    return len(text) <= 253 and all(HOSTNAME_LABEL_RE.fullmatch(label) for label in text.split("."))


def looks_like_ip(text):
    if IPV4_RE.fullmatch(text):
        return all(int(p) < 256 for p in text.split("."))
    return IPV6_RE.fullmatch(text) is not None and ":" in text


def is_digest(value):
    return isinstance(value, str) and DIGEST_RE.fullmatch(value) is not None


def is_relative_path(value):
    """A clean relative path: not empty, not absolute, no control character, no '..'."""
    return (isinstance(value, str) and value != "" and not value.startswith("/")
            and bad_char(value) is None and ".." not in value.split("/"))


def check_structure(value, what="spec"):
    """Refuse data nested deeper than MAX_DEPTH or holding more than MAX_NODES values once
    aliases (shared objects) are expanded. Each container is measured once, so an alias
    bomb costs as little as its text; a cycle is infinitely deep."""
    sizes = {}

    def measure(item, depth):
        if not isinstance(item, (dict, list)):
            return 1, 0
        if depth >= MAX_DEPTH or sizes.get(id(item)) is None and id(item) in sizes:
            raise SpecError([("", "the %s is nested more than %d levels deep" % (what, MAX_DEPTH))])
        if id(item) not in sizes:
            sizes[id(item)] = None   # in progress: meeting it again is a cycle
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            count, height = 1, 0
            for child in children:
                child_count, child_height = measure(child, depth + 1)
                count, height = count + child_count, max(height, child_height + 1)
                if count > MAX_NODES:
                    raise SpecError([("", "the %s holds more than %d values (aliases expanded)"
                                      % (what, MAX_NODES))])
            sizes[id(item)] = (count, height)
        count, height = sizes[id(item)]
        if depth + height > MAX_DEPTH:
            raise SpecError([("", "the %s is nested more than %d levels deep" % (what, MAX_DEPTH))])
        return count, height

    total = measure(value, 0)[0]
    if total > MAX_NODES:
        raise SpecError([("", "the %s holds more than %d values (aliases expanded)" % (what, MAX_NODES))])
