"""Helpers of the lifecycle tests: specs, tasks, the files a container's process leaves,
and a cleanup that kills what a test started (by pid, from RUN/pid and RUN/monitor) and
removes its containers."""
import json
import os
import signal
import subprocess
import sys
import time

import yaml

from tests.lib import collection
from tests.lib.collection import collections_dir

collection.register()

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import applier as _applier  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import host_steps as _host_steps  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "scripts", "containerfs")
MODULE = "fromscratch.containerfs.container"
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
SLEEP = ["sleep", "1000"]


def make_spec(tmp_path, rootfs, name="box", args=None, **extra):
    spec = {
        "name": name,
        "hostname": name,
        "rootfs": {"path": rootfs, "overlay": True},
        "state_dir": str(tmp_path / "state"),
        "run_dir": str(tmp_path / "run"),
        "process": {"args": list(args or SLEEP)},
    }
    spec.update(extra)
    return spec


def task(spec, state, **extra):
    args = {"spec": spec, "state": state}
    args.update(extra)
    return {"name": "container %s" % state, MODULE: args}


def paths_of(spec):
    """The container's paths as the module computes them."""
    return _layout_paths(spec["name"], spec["state_dir"], spec["run_dir"])


def _layout_paths(name, state_dir, run_dir):
    from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
    return _layout.container_paths(name, state_dir, run_dir, overlay=True)


def status(spec):
    return _process.status(paths_of(spec))


def alive(pid):
    return os.path.exists("/proc/%d" % pid)


def ns_inode(path):
    return os.stat(path).st_ino


def wait_for(predicate, timeout=20.0, what="a condition"):
    """Poll until predicate() is true; fail the test when it is not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.05)


def wait_gone(pid, timeout=20.0):
    """Wait for a killed pid to be reaped (or gone); zombies of ours are reaped."""
    def gone():
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # gone before the open, or during the read
            return True
        return state == "Z"
    wait_for(gone, timeout, "pid %d to exit" % pid)


def kill_container(state_dir, run_dir, name):
    """Kill what a container runs (monitor first, then pid 1) and remove it: the test's
    cleanup, whatever state the test left it in."""
    paths = _layout_paths(name, state_dir, run_dir)
    for pid in _process.kill_by_pid_files(paths):
        wait_gone(pid)
    try:
        plan = _host_steps.recorded_plan(state_dir, name)
    except Exception:  # a broken record: remove by the layout's paths
        plan = None
    if plan is not None:
        _applier.Applier(plan).remove()


def kill_all(state_dir, run_dir):
    names = set()
    for base in (os.path.join(state_dir, "containers"), run_dir):
        if os.path.isdir(base):
            names |= set(n for n in os.listdir(base) if not n.endswith(".lock"))
    for name in sorted(names):
        kill_container(state_dir, run_dir, name)


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def render(spec, directory):
    """Render `spec` with scripts/containerfs into directory/NAME.sh; return its path."""
    spec_file = os.path.join(directory, spec["name"] + ".yml")
    script = os.path.join(directory, spec["name"] + ".sh")
    with open(spec_file, "w") as f:
        yaml.safe_dump(spec, f)
    subprocess.run([sys.executable, CLI, "render", spec_file, "-o", script], check=True, env=HOST_ENV)
    return script


def sh(script, *args, timeout=120):
    """Run a script subcommand: (rc, stdout, stderr); stdin is /dev/null."""
    proc = subprocess.run(["sh", script] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=HOST_ENV,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def run_hosts_playbook(tmp_path, hosts, tasks, forks=10):
    """Run `tasks` on several local inventory hosts at once; return {host: [results]}."""
    tmp_path = str(tmp_path)
    inventory = os.path.join(tmp_path, "hosts.yml")
    with open(inventory, "w") as f:
        host_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        yaml.safe_dump({"all": {"hosts": {h: dict(host_vars) for h in hosts}}}, f)
    playbook = os.path.join(tmp_path, "play.yml")
    with open(playbook, "w") as f:
        yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}], f)
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_dir(tmp_path),
        "ANSIBLE_STDOUT_CALLBACK": "test_json",
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(REPO, "tests", "lib", "callback"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": os.path.join(tmp_path, "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": os.path.join(tmp_path, "ansible-remote"),
    })
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
           "--forks", str(forks), playbook]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON:\n%s\n%s" % (proc.stdout, proc.stderr))
    results = {h: [] for h in hosts}
    for play in report["plays"]:
        for one in play["tasks"]:
            for host, result in one["hosts"].items():
                results[host].append(result)
    return results


def signal_pid(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
