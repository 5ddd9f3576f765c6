# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What changes between the plan a container was set up from and a new one, for people.

`plan_changes` gives one line per mount, file, device or process setting that is gone or
new, not the whole list: what diff mode shows when a spec changed. Pure: it reads only
the two plans.

Standard library only. Private to the collection; may change without notice.
"""

import collections
import hashlib
import json

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import describe_step


def plan_changes(recorded_plan, plan):
    """{"removed": [lines], "added": [lines]}: the lines of `recorded_plan` (None: nothing
    set up) that `plan` no longer has, and those it adds, each in plan order. A line kept
    in both is left out; a line that appears more often counts once per extra time."""
    before = plan_lines(recorded_plan) if recorded_plan else []
    after = plan_lines(plan) if plan else []
    return {"removed": _minus(before, after), "added": _minus(after, before)}


def plan_lines(plan):
    """One line per step of a plan (describe_step; a file with a digest of its content, so
    an edit of the same length shows), then one per setting of the process it starts."""
    lines = []
    for step in plan.get("steps") or []:
        if step.get("op") == "exec":
            lines += _process_lines(step)
        elif step.get("op") == "write_file":
            lines.append("%s, sha256 %s" % (describe_step(step), _short_digest(step["content"])))
        else:
            lines.append(describe_step(step))
    return lines


def _process_lines(step):
    """The settings of the container's process, one per line (each variable on its own)."""
    lines = ["process args %s" % json.dumps(step["args"]),
             "process user %d:%d" % (step["uid"], step["gid"]),
             "process cwd %s" % step["cwd"]]
    lines += ["process env %s" % entry for entry in step["env"]]
    return lines


def _short_digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _minus(lines, others):
    """`lines` without one occurrence of each line in `others`, in order."""
    left = collections.Counter(others)
    out = []
    for line in lines:
        if left[line]:
            left[line] -= 1
        else:
            out.append(line)
    return out
