# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a playbook and read each task's wall time (bench/callback/task_times.py): the
runner the playbook benchmarks share."""

import json
import os
import subprocess
import sys

import yaml

import startup  # bench/startup.py: die

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def run(tmp, plays, collections_path, inventory_args=("-i", "localhost,", "-c", "local"), env=None):
    """Write `plays` to TMP/play.yml, run it, die with its output when any task failed;
    return the rows of the task_times callback ({task, seconds, failed, ...})."""
    playbook = os.path.join(tmp, "play.yml")
    with open(playbook, "w") as f:
        yaml.safe_dump(plays, f)
    times = os.path.join(tmp, "times.jsonl")
    if os.path.exists(times):
        os.unlink(times)
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path,
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "bench", "callback"),
                   ANSIBLE_CALLBACKS_ENABLED="task_times", CFS_BENCH_TASK_TIMES=times,
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
                   ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-local"), **(env or {}))
    proc = subprocess.run([ANSIBLE] + list(inventory_args) + [playbook], env=run_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    rows = []
    if os.path.exists(times):
        with open(times) as f:
            rows = [json.loads(line) for line in f]
    failed = [row["task"] for row in rows if row["failed"]]
    if proc.returncode != 0 or failed or not rows:
        startup.die("the play failed (%s):\n%s" % (", ".join(failed), proc.stdout.decode(errors="replace")[-3000:]))
    return rows


def milliseconds_by_kind(rows):
    """Task wall times in ms, grouped by the task name before ' #' (the round number)."""
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["task"].split(" #")[0], []).append(row["seconds"] * 1000.0)
    return by_kind
