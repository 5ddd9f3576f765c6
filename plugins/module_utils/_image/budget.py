# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Budgets: how much an image may unpack, so that a hostile one cannot exhaust the host.

Standard library only (the CLI and the modules on the targets both import it).

One `Budget` is made per image pull or unpack and shared by its layers, which may be
unpacked concurrently (the image counters are updated under a lock); each layer reads
through its own `LayerBudget` (`budget.layer(name)`), which `_tar.TarReader` feeds while
it streams:

* ``bytes``: the uncompressed tar stream (file data, 512-byte headers, padding, what
  follows the end-of-archive marker). Counting the stream rather than the data written
  also bounds the time spent on entries that write nothing (skipped data, trailers).
* ``entries``: tar members (a pax or GNU long-name header belongs to its member).
* ``depth``: the number of components of a member's name (``a/b/c`` is 3).

``bytes`` and ``entries`` hold for the whole image, ``layer_bytes`` and ``layer_entries``
for each layer (unset: the image's). Only what is unpacked now counts: a layer the store
holds already is not read again. The defaults, justified in docs/image-hazards.md, fit
real images with a margin:

* 10 GiB: most images unpack to well under 2 GiB; only the biggest (CUDA and machine
  learning development images) may need it raised;
* 2,000,000 entries: a very large image has a few hundred thousand files;
* 255 levels: real trees stay within a few dozen; Linux's PATH_MAX (4096) allows at most
  2048, and the layer code walks paths recursively.

The error names the layer (source, index, digest), the limit and the option that raises
it (`hint`, a %-format of the limit's ``name``, or of ``flag``, the name with dashes:
``the option limits.%(name)s`` for the image module, ``--max-%(flag)s`` for the CLI,
``rootfs.image.limits.%(name)s`` for a spec).

Private to the collection; may change without notice.
"""

import threading

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    BudgetExceededError, ImageInputError,
)

GiB = 1 << 30
# (name, default, what it limits); a default None: the image's limit of the same kind
LIMITS = (
    ("bytes", 10 * GiB, "uncompressed bytes of the image's layers: their tar streams, file data and headers"),
    ("entries", 2000000, "tar entries of the image: files, directories, links, whiteouts"),
    ("depth", 255, "path components of an entry's name"),
    ("layer_bytes", None, "uncompressed bytes of one layer"),
    ("layer_entries", None, "tar entries of one layer"),
)
LIMIT_NAMES = tuple(name for name, _default, _what in LIMITS)
DEFAULT_LIMITS = dict((name, default) for name, default, _what in LIMITS)
LIMIT_DESCRIPTIONS = dict((name, what) for name, _default, what in LIMITS)
DEFAULT_HINT = "limits.%(name)s"
# The image module's `limits` option (the spec checks the same names: _spec.rootfs).
ARGUMENT_SPEC = {"type": "dict", "options": dict((name, {"type": "int"}) for name in LIMIT_NAMES)}


def check_limits(limits):
    """The complete limits: `limits` (a mapping of some LIMIT_NAMES to positive integers,
    or None for the default) over DEFAULT_LIMITS. Raises ImageInputError naming the bad
    one."""
    out = dict(DEFAULT_LIMITS)
    if limits is None:
        return out
    if not isinstance(limits, dict):
        raise ImageInputError("limits must be a mapping of %s" % ", ".join(LIMIT_NAMES))
    for name, value in limits.items():
        problem = limit_problem(name, value)
        if problem:
            raise ImageInputError("limits.%s %s" % (name, problem))
        if value is not None:
            out[name] = value
    return out


def limit_problem(name, value):
    """What is wrong with one limit (None: unset, the default), or None when it is fine."""
    if name not in DEFAULT_LIMITS:
        return "is not a limit; allowed: %s" % ", ".join(LIMIT_NAMES)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return "must be a positive integer (a count, or bytes), got %r" % (value,)
    return None


# The per-layer limits whose unset value means the image's limit of the same kind.
LAYER_LIMITS = {"layer_bytes": "bytes", "layer_entries": "entries"}
# What the generated script checks of each layer, in the order it takes them (layer_limits).
SCRIPT_LIMITS = ("layer_bytes", "layer_entries", "depth", "bytes", "entries")


def effective_limit(limits, name):
    """(value, name) of limit `name` under complete `limits` (check_limits): a layer limit
    left unset is the image's limit of the same kind, and that is the one to raise."""
    if limits[name] is None and name in LAYER_LIMITS:
        name = LAYER_LIMITS[name]
    return limits[name], name


def script_limits(limits):
    """[(value, name)] of SCRIPT_LIMITS under `limits` (as check_limits takes them): what
    the generated script holds each layer and the whole image to as it unpacks them."""
    limits = check_limits(limits)
    return [effective_limit(limits, name) for name in SCRIPT_LIMITS]


class Budget:
    """What an image may still unpack. Thread-safe for the image-wide counters."""

    def __init__(self, limits=None, hint=DEFAULT_HINT):
        self.limits = check_limits(limits)
        self.hint = hint
        self.bytes = 0
        self.entries = 0
        self._lock = threading.Lock()

    def layer(self, name):
        """The budget of one layer (`name`: how errors name it, with its digest)."""
        return LayerBudget(self, name)

    def _take(self, layer, bytes_=0, entries=0):
        with self._lock:
            self.bytes += bytes_
            self.entries += entries
            over_bytes = self.bytes > self.limits["bytes"]
            over_entries = self.entries > self.limits["entries"]
        if over_bytes:
            self.exceeded(layer, "bytes", "the image unpacks more than %d bytes" % self.limits["bytes"])
        if over_entries:
            self.exceeded(layer, "entries", "the image has more than %d entries" % self.limits["entries"])

    def exceeded(self, layer, name, what):
        raise BudgetExceededError(
            "%s: %s (limit %s); refusing it as a possible decompression bomb. If the image is "
            "trusted, raise %s" % (layer, what, name, self.hint % {"name": name, "flag": name.replace("_", "-")}),
            limit=name)


class LayerBudget:
    """The counters of one layer, read by one thread; the image's are shared."""

    def __init__(self, image, name):
        self.image = image
        self.name = name
        self.bytes = 0
        self.entries = 0
        limits = image.limits
        self.max_bytes = effective_limit(limits, "layer_bytes")[0]
        self.max_entries = effective_limit(limits, "layer_entries")[0]
        self.max_depth = limits["depth"]

    def add_bytes(self, count):
        """`count` more bytes of the uncompressed tar stream were read."""
        self.bytes += count
        if self.bytes > self.max_bytes:
            self._exceeded("layer_bytes", "the layer unpacks more than %d bytes" % self.max_bytes)
        self.image._take(self.name, bytes_=count)

    def add_entry(self, name):
        """One more tar member named `name` (None: a member that writes nothing)."""
        self.entries += 1
        if self.entries > self.max_entries:
            self._exceeded("layer_entries", "the layer has more than %d entries" % self.max_entries)
        if name is not None:
            parts = name.split("/")
            depth = len(parts) - parts.count("") - parts.count(".")
            if depth > self.max_depth:
                self._exceeded("depth", "entry %r is %d levels deep, more than %d" % (
                    name[:200], depth, self.max_depth))
        self.image._take(self.name, entries=1)

    def _exceeded(self, name, what):
        # a layer limit left unset is the image's: raise that one
        self.image.exceeded(self.name, effective_limit(self.image.limits, name)[1], what)
