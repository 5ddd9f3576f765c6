# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A callback for bench/lifecycle.py: the wall time of every task of a play, from its
start to its last host result, appended as JSON lines to $CFS_BENCH_TASK_TIMES."""

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_times
type: aggregate
short_description: task wall times as JSON lines (bench only)
description: Appends {"task", "seconds", "failed"} per task to $CFS_BENCH_TASK_TIMES.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._task = None
        self._start = None
        self._failed = False

    def _flush(self):
        if self._task is None:
            return
        with open(os.environ["CFS_BENCH_TASK_TIMES"], "a") as f:
            f.write(json.dumps({"task": self._task, "seconds": self._end - self._start,
                                "failed": self._failed}) + "\n")
        self._task = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._flush()
        self._task, self._failed = task.get_name(), False
        self._start = self._end = time.perf_counter()

    def _result(self, failed):
        self._end = time.perf_counter()
        self._failed = self._failed or failed

    def v2_runner_on_ok(self, result):
        self._result(False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(True)

    def v2_runner_on_unreachable(self, result):
        self._result(True)

    def v2_playbook_on_stats(self, stats):
        self._flush()
