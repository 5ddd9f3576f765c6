# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI platforms (os/architecture/variant): the host's, parsing, formatting, matching.

Standard library only (the CLI and the modules on the targets both import it).

Private to the collection; may change without notice.
"""

import platform as _platform

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "mips64": "mips64le", "loongarch64": "loong64"}


def host_platform():
    """The host's OCI platform as a dict: os, architecture, variant (maybe None)."""
    machine = _platform.machine().lower()
    if machine.startswith("armv"):
        return {"os": "linux", "architecture": "arm", "variant": "v" + machine[4]}
    arch = _ARCH.get(machine, machine)
    return {"os": "linux", "architecture": arch, "variant": "v8" if arch == "arm64" else None}


def parse_platform(text):
    """'linux/arm64/v8', 'arm64' -> dict; raises ImageInputError."""
    parts = (text or "").split("/")
    if not text or any(not p for p in parts) or len(parts) > 3:
        raise ImageInputError("malformed platform %r (expected os/arch[/variant], e.g. "
                              "linux/amd64 or linux/arm/v7)" % (text,))
    if len(parts) == 1:
        parts = ["linux"] + parts
    return {"os": parts[0], "architecture": parts[1],
            "variant": parts[2] if len(parts) > 2 else None}


def format_platform(p):
    if not p:
        return None
    text = "%s/%s" % (p.get("os"), p.get("architecture"))
    return text + "/" + p["variant"] if p.get("variant") else text


def _variant(p):
    v = p.get("variant")
    if not v and p.get("architecture") == "arm64":
        return "v8"
    return v or None


def platform_rank(candidate, wanted, explicit):
    """0 = exact, 1 = acceptable, None = no match."""
    if not candidate:
        return None
    if candidate.get("os") != wanted["os"] or candidate.get("architecture") != wanted["architecture"]:
        return None
    have, want = _variant(candidate), _variant(wanted)
    if have == want:
        return 0
    if explicit and want:
        return None
    return 1 if have is None or want is None else 2
