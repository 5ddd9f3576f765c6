# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lifecycle benchmark: what a running container costs an operator.

    sudo .venv/bin/python bench/lifecycle.py [--rounds N] [--containers N] [--runs N]

1. A no-op converge: `fromscratch.containerfs.container` with `state: started` on 1 and on
   N (default 20) containers that run already, against an `ansible.builtin.command: /bin/true`
   task (1 and N loop items) in the same play, interleaved over several rounds: the ratio
   of the median task wall times (the target for one container is under 1.3x).
2. Start and stop latency of the rendered script (`start` of a container whose
   filesystem is up, `up` + `start` from nothing, `stop`, `stop` + `down`) against
   `runc run -d` and `runc kill` (+ waiting until it stopped, + `runc delete`), on the same
   busybox rootfs and the same process (a shell that exits on SIGTERM).

Everything is built in a fresh tmp dir and removed at the end; everything runs inside one
private mount namespace, so nothing is mounted on the host even if the bench dies. runc is
a yardstick only; the product never needs it.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, REPO)

import startup  # noqa: E402  (bench/startup.py: rootfs and bundle helpers)
import timed_play  # noqa: E402  (bench/timed_play.py: run a playbook, read task times)
from tests.lib.collection import collections_dir  # noqa: E402

# pid 1 that ends on SIGTERM at once (a shell waits for `wait`, not for sleep to end)
PROCESS = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]


def spec_for(tmp, rootfs, name):
    return {"name": name, "hostname": name, "rootfs": {"path": rootfs, "overlay": True},
            "process": {"args": PROCESS}, "state_dir": os.path.join(tmp, "state"),
            "run_dir": os.path.join(tmp, "run")}


# ---------------------------------------------------------------------------
# 1. No-op converge against a command task
# ---------------------------------------------------------------------------

def play(tmp, rootfs, count, rounds):
    names = ["bench%d" % i for i in range(count)]
    specs = {n: spec_for(tmp, rootfs, n) for n in names}
    started = [{"name": "start %s" % n, "fromscratch.containerfs.container":
                {"spec": specs[n], "state": "started"}} for n in names]
    timed = []
    for r in range(rounds):
        one = [{"name": "converge 1 #%d" % r, "fromscratch.containerfs.container":
                {"spec": specs[names[0]], "state": "started"}},
               {"name": "true 1 #%d" % r, "ansible.builtin.command": "/bin/true",
                "changed_when": False}]
        many = [{"name": "converge %d #%d" % (count, r), "fromscratch.containerfs.container":
                 {"spec": "{{ specs[item] }}", "state": "started"}, "loop": names},
                {"name": "true %d #%d" % (count, r), "ansible.builtin.command": "/bin/true",
                 "changed_when": False, "loop": names}]
        # alternate which goes first: neither always follows the other
        timed += (one + many) if r % 2 == 0 else (list(reversed(one)) + list(reversed(many)))
    absent = [{"name": "remove %s" % n, "fromscratch.containerfs.container":
               {"name": n, "state": "absent", "state_dir": specs[n]["state_dir"],
                "run_dir": specs[n]["run_dir"]}} for n in names]
    return [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable, "specs": specs},
             "tasks": started + timed + absent}]


def converge_bench(tmp, rootfs, args):
    rows = timed_play.run(tmp, play(tmp, rootfs, args.containers, args.rounds), collections_dir(tmp))
    by_kind = timed_play.milliseconds_by_kind(rows)
    print("no-op converge of started containers vs `command: /bin/true`, %d rounds, "
          "median task wall time:" % args.rounds)
    for count in (1, args.containers):
        ours, true = by_kind["converge %d" % count], by_kind["true %d" % count]
        print("  %2d container(s): container %8.1f ms   command %8.1f ms   ratio %.2fx" % (
            count, statistics.median(ours), statistics.median(true),
            statistics.median(ours) / statistics.median(true)))


# ---------------------------------------------------------------------------
# 2. start / stop latency against runc
# ---------------------------------------------------------------------------

def timed(argv):
    start = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   timeout=60)
    return (time.perf_counter() - start) * 1000.0


def runc_bundle(tmp, rootfs):
    bundle = os.path.join(tmp, "bundle")
    os.mkdir(bundle)
    startup.sh(["runc", "spec", "--bundle", bundle])
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"].update(terminal=False, args=PROCESS)
    config["root"] = {"path": rootfs, "readonly": True}
    with open(path, "w") as f:
        json.dump(config, f)
    return bundle


def runc_stop(state, cid):
    """`runc kill` TERM, wait until runc says stopped, delete: what `stop` + cleanup does."""
    startup.sh(["runc", "--root", state, "kill", cid, "TERM"])
    while True:
        out = subprocess.run(["runc", "--root", state, "state", cid], stdout=subprocess.PIPE,
                             check=True).stdout
        if json.loads(out)["status"] == "stopped":
            break
        time.sleep(0.002)
    startup.sh(["runc", "--root", state, "delete", cid])


def latency_bench(tmp, rootfs, args):
    spec_file = os.path.join(tmp, "latency.yml")
    spec = spec_for(tmp, rootfs, "latency")
    spec["rootfs"] = {"path": rootfs, "readonly": True}
    with open(spec_file, "w") as f:
        yaml.safe_dump(spec, f)
    script = os.path.join(tmp, "latency.sh")
    startup.sh([sys.executable, os.path.join(REPO, "scripts/containerfs"), "render", spec_file,
                "-o", script])

    def ours(*cmd):
        return ["/bin/sh", script] + list(cmd)
    bundle, state = runc_bundle(tmp, rootfs), os.path.join(tmp, "runc-state")
    times = {k: [] for k in ("start (up)", "up + start", "stop", "stop + down", "runc run -d",
                             "runc kill + delete")}
    for i in range(args.runs):
        times["up + start"].append(timed(ours("up")) + timed(ours("start")))
        times["stop"].append(timed(ours("stop")))
        times["start (up)"].append(timed(ours("start")))
        times["stop + down"].append(timed(ours("stop")) + timed(ours("down")))
        cid = "bench-%d" % i
        times["runc run -d"].append(timed(["runc", "--root", state, "run", "-d", "--bundle",
                                           bundle, cid]))
        start = time.perf_counter()
        runc_stop(state, cid)
        times["runc kill + delete"].append((time.perf_counter() - start) * 1000.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("\nstart/stop latency, %d runs, median ms (process: a shell that exits on TERM):" % args.runs)
    for key in times:
        print("  %-20s %8.1f ms" % (key, med[key]))
    print("  start (fs up) / runc run -d     %.2fx" % (med["start (up)"] / med["runc run -d"]))
    print("  up + start / runc run -d        %.2fx" % (med["up + start"] / med["runc run -d"]))
    print("  stop / runc kill + delete       %.2fx" % (med["stop"] / med["runc kill + delete"]))
    print("  stop + down / runc kill + delete %.2fx" % (med["stop + down"] / med["runc kill + delete"]))


def kill_leftovers(tmp):
    """After a failure: kill the monitors and processes the bench started (by their pid
    files), and the runc containers."""
    run = os.path.join(tmp, "run")
    for name in os.listdir(run) if os.path.isdir(run) else []:
        for kind in ("monitor", "pid"):
            try:
                with open(os.path.join(run, name, kind)) as f:
                    os.kill(int(f.read().split()[0]), 9)
            except (OSError, ValueError, IndexError):
                pass
    state = os.path.join(tmp, "runc-state")
    for cid in os.listdir(state) if os.path.isdir(state) else []:
        subprocess.run(["runc", "--root", state, "delete", "--force", cid], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="converge rounds (default 5)")
    parser.add_argument("--containers", type=int, default=20, help="containers (default 20)")
    parser.add_argument("--runs", type=int, default=10, help="start/stop runs (default 10)")
    args = parser.parse_args()
    startup.in_private_mount_namespace(__file__, "namespaces, mounts")
    for tool in ("runc", "unshare", "nsenter"):
        startup.need(tool)
    tmp = tempfile.mkdtemp(prefix="cfs-bench-lifecycle-")
    os.chmod(tmp, 0o700)
    try:
        rootfs = startup.make_rootfs(tmp)
        converge_bench(tmp, rootfs, args)
        latency_bench(tmp, rootfs, args)
    finally:
        kill_leftovers(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
