"""Run a real ansible-playbook against localhost and return the per-task results."""
import json
import os
import subprocess
import sys

import yaml

from tests.lib.collection import collections_dir


def run_playbook(tmp_path, tasks, check=False, diff=False, extra_vars=None, expect_failure=False, env=None):
    """Run `tasks` (a list of task dicts) on localhost; return the list of task results.
    `env`: more environment for ansible-playbook (ANSIBLE_* settings).

    Each result is the module's returned dict, with "task" set to the task name.
    """
    tmp_path = str(tmp_path)
    play = [{
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable},
        "tasks": tasks,
    }]
    playbook = os.path.join(tmp_path, "play.yml")
    with open(playbook, "w") as f:
        yaml.safe_dump(play, f)
    env = dict(os.environ, **(env or {}))
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_dir(tmp_path),
        "ANSIBLE_STDOUT_CALLBACK": "test_json",
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": os.path.join(tmp_path, "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": os.path.join(tmp_path, "ansible-remote"),
    })
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           "-i", "localhost,", "-c", "local", playbook]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON:\n%s\n%s" % (proc.stdout, proc.stderr))
    results = []
    for play_report in report["plays"]:
        for task in play_report["tasks"]:
            result = dict(task["hosts"].get("localhost", {}))
            result["task"] = task["task"]["name"]
            results.append(result)
    failed = any(r.get("failed") for r in results)
    if failed and not expect_failure:
        raise AssertionError("playbook failed:\n%s" % json.dumps(results, indent=2))
    return results
