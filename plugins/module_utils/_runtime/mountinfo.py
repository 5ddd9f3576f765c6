# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse /proc/<pid>/mountinfo (proc(5)) into plain records.

Standard library only.
Private to the collection; may change without notice.
"""

import re

_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field):
    """Undo the octal escapes (\\040 for a space) the kernel writes in paths."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse(text):
    """Return one dict per line: id, parent, device, root, mount_point, options (set),
    propagation (list of optional fields), fstype, source, super_options (set)."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _sep, right = line.partition(" - ")
        fields = left.split()
        fstype, source, super_options = (right.split(" ") + ["", "", ""])[:3]
        entries.append({
            "id": int(fields[0]),
            "parent": int(fields[1]),
            "device": fields[2],
            "root": unescape(fields[3]),
            "mount_point": unescape(fields[4]),
            "options": set(fields[5].split(",")),
            "propagation": fields[6:],
            "fstype": fstype,
            "source": unescape(source),
            "super_options": set(super_options.split(",")) if super_options else set(),
        })
    return entries


def read(pid="self"):
    with open("/proc/%s/mountinfo" % pid) as f:
        return parse(f.read())


def top_mount(entries, mount_point):
    """The mount that is visible at `mount_point` (the last one mounted there), or None."""
    found = None
    for entry in entries:
        if entry["mount_point"] == mount_point:
            found = entry
    return found
