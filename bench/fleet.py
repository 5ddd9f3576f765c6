# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet benchmark: one playbook across N test hosts (tests/lib/fleet.py), M containers each.

    sudo .venv/bin/python bench/fleet.py [--hosts 1,4,16] [--containers 1,10]
                                         [--pipelining on,off] [--strategy linear,free] [--quick]
                                         [--registry]

For each N a fleet of N hosts is made (containers of ours with sshd, reached over ssh as a
non-root user with sudo; forks = N). For each M, pipelining setting and strategy, in order:
the role fromscratch.containerfs.containers is reset (containers and image absent, untimed),
then run twice with M busybox containers sharing one image - the first run imports and
starts, the second changes nothing - then the floor: the same play shape made of
`ansible.builtin.command: /bin/true` tasks, one per module call of the role (the image and
M containers: M + 1 per host), with become, over the same ssh connections. Each run:
wall time and controller CPU (user + system of ansible-playbook and the processes it
waited for, startup.children_cpu(); the ssh control masters outlive a run
and are not counted), the ratio of the second run to the floor, and CPU per host-task.
Then the store of each host after M containers on one image: disk (du), layers unpacked,
bytes read from the image source. With --registry, for each N: the N hosts pull one image
from one docker-registry on the machine (tests/lib/registry.py) all at once, then 4 at a
time (`throttle: 4`): wall time, controller CPU, the registry process's CPU and the bytes
it wrote (/proc/PID/io wchar: the blobs and manifests it served).

Everything runs inside one private mount namespace and the fleets are removed at the end.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, REPO)

import startup  # noqa: E402  (bench/startup.py: die, children_cpu)
import timed_play  # noqa: E402  (bench/timed_play.py: run a playbook, read task times)
from tests.lib import fleet  # noqa: E402
from tests.lib.collection import collections_dir  # noqa: E402

# the busybox image every test host sees read-only (extensions/molecule/hosts)
IMAGE = "/srv/cfs-images/busybox.tar"
IMAGE_ON_CONTROLLER = os.path.join("image", "busybox.tar")
# the same busybox rootfs as a one-layer OCI image in the registry of --registry
REGISTRY_IMAGE = "bench/busybox:1"


def role_play(containers, state="started"):
    present = state != "absent"
    return [{
        "name": "Containers on the fleet",
        "hosts": "cfs_hosts",
        "gather_facts": False,
        "roles": [{"role": "fromscratch.containerfs.containers", "vars": {
            "containerfs_images": [{"name": "busybox", "source": IMAGE, "format": "tarball",
                                    "state": "present" if present else "absent"}],
            "containerfs_containers": [{
                "name": "app%d" % index,
                "state": state,
                "spec": {
                    "hostname": "app%d" % index,
                    "rootfs": {"image": {"name": "busybox"}},
                    # exits on SIGTERM at once, so the reset does not wait out stop_timeout
                    "process": {"args": ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]},
                },
            } for index in range(1, containers + 1)],
        }}],
    }]


def floor_play(containers):
    """The shape of a no-op role run, each module call a /bin/true instead."""
    return [{
        "name": "The floor: /bin/true per module call",
        "hosts": "cfs_hosts",
        "gather_facts": False,
        "tasks": [{"name": "true #%d" % index, "ansible.builtin.command": "/bin/true", "changed_when": False}
                  for index in range(containers + 1)],
    }]


def timed(tmp, plays, root, forks, settings):
    """Run `plays` on the fleet; return (wall seconds, controller CPU seconds)."""
    inventory_args = ("-i", fleet.inventory_path(root), "--forks", str(forks))
    cpu_before = startup.children_cpu()
    start = time.perf_counter()
    timed_play.run(tmp, plays, collections_dir(os.path.join(root, "controller")), inventory_args, env=settings)
    wall = time.perf_counter() - start
    return wall, startup.children_cpu() - cpu_before


def pull_play(port, throttle=None):
    """Every host pulls the same image from the registry on the machine, which each host
    reaches at its gateway (its own address with .1 for .2, extensions/molecule/hosts)."""
    task = {"name": "pull", "fromscratch.containerfs.image": {
        "name": "pulled", "validate_certs": False,
        "source": "docker://{{ ansible_host | regex_replace('[.]2$', '.1') }}:%d/%s" % (port, REGISTRY_IMAGE)}}
    if throttle:
        task["throttle"] = throttle
    return [{"name": "Pull from one registry", "hosts": "cfs_hosts", "gather_facts": False, "tasks": [task]}]


def remove_pulled_play():
    return [{"name": "Remove the pulled image", "hosts": "cfs_hosts", "gather_facts": False,
             "tasks": [{"name": "remove", "fromscratch.containerfs.image": {"name": "pulled", "state": "absent"}}]}]


def process_usage(pid):
    """(CPU seconds, bytes written) of a process so far, all its threads together."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open("/proc/%d/io" % pid) as f:
        written = int([line.split()[1] for line in f if line.startswith("wchar:")][0])
    # fields[0] is the state (field 3 of proc(5)): utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), written


def bench_registry(count, root, tmp, pulls):
    """N hosts pulling the same image from one docker-registry at once, then `throttle`d to
    4 at a time: wall time, the registry's CPU and the bytes it wrote (the blobs served)."""
    from tests.lib import oci_fixtures, registry  # only this part needs them
    missing = registry.tools_missing()
    if missing:
        print("# registry pulls skipped: missing %s" % ", ".join(missing), flush=True)
        return
    workdir = tempfile.mkdtemp(prefix="cfs-fb-registry-")
    try:
        layout = os.path.join(workdir, "layout")
        with open(os.path.join(root, IMAGE_ON_CONTROLLER), "rb") as f:
            oci_fixtures.oci_layout(layout, [f.read()], tag="t")
        blobs = os.path.join(layout, "blobs", "sha256")
        image_bytes = sum(os.path.getsize(os.path.join(blobs, name)) for name in os.listdir(blobs))
        reg = registry.Registry(os.path.join(workdir, "registry"))
        reg.host = "0.0.0.0:%d" % reg.port  # every host's gateway, not loopback only
        with reg:
            reg.push(layout, REGISTRY_IMAGE, layout_ref="t")
            for throttle in (None, 4):
                before = process_usage(reg.proc.pid)
                wall, cpu = timed(tmp, pull_play(reg.port, throttle), root, count, {"ANSIBLE_PIPELINING": "True"})
                after = process_usage(reg.proc.pid)
                pulls.append((count, throttle or count, wall, cpu, after[0] - before[0], after[1] - before[1],
                              image_bytes))
                print_pull(pulls[-1])
                timed(tmp, remove_pulled_play(), root, count, {})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def store_usage(root):
    """Per host: KiB of its store, layers in it."""
    usage = {}
    hosts_dir = os.path.join(root, "hosts")
    for name in sorted(os.listdir(hosts_dir)):
        store = os.path.join(hosts_dir, name, "store")
        du = subprocess.run(["du", "-sk", "-x", store], stdout=subprocess.PIPE,
                            universal_newlines=True, check=True).stdout.split()[0]
        layers_dir = os.path.join(store, "layers", "sha256")
        layers = len(os.listdir(layers_dir)) if os.path.isdir(layers_dir) else 0
        usage[name] = (int(du), layers)
    return usage


def bench_fleet(count, args, tmp, rows, stores, pulls):
    root = tempfile.mkdtemp(prefix="cfs-fb-", dir="/tmp")  # short: ssh control socket paths
    os.rmdir(root)
    started = time.perf_counter()
    with fleet.fleet(count, root, forks=min(count, 16)):
        print("# fleet of %d made in %.0f s" % (count, time.perf_counter() - started), flush=True)
        image_bytes = os.path.getsize(os.path.join(root, IMAGE_ON_CONTROLLER))
        for containers in args.containers:
            for pipelining in args.pipelining:
                for strategy in args.strategy:
                    settings = {"ANSIBLE_PIPELINING": str(pipelining == "on"), "ANSIBLE_STRATEGY": strategy}
                    timed(tmp, role_play(containers, "absent"), root, count, settings)
                    runs = {
                        "first": timed(tmp, role_play(containers), root, count, settings),
                        "second": timed(tmp, role_play(containers), root, count, settings),
                        "floor": timed(tmp, floor_play(containers), root, count, settings),
                    }
                    row = (count, containers, pipelining, strategy, runs)
                    rows.append(row)
                    print_row(row)
            stores.append((count, containers, image_bytes, store_usage(root)))
            timed(tmp, role_play(containers, "absent"), root, count, {})
        if args.registry:
            bench_registry(count, root, tmp, pulls)


HEADER = ("%4s %4s %5s %6s | %8s %8s %8s | %7s %7s %7s | %6s %6s | %9s %9s"
          % ("N", "M", "pipe", "strat", "first s", "second s", "floor s", "1st cpu", "2nd cpu",
             "flr cpu", "wall x", "cpu x", "ms cpu/ht", "floor/ht"))


def print_row(row):
    count, containers, pipelining, strategy, runs = row
    host_tasks = count * (containers + 1)
    print("%4d %4d %5s %6s | %8.2f %8.2f %8.2f | %7.2f %7.2f %7.2f | %6.2f %6.2f | %9.1f %9.1f" % (
        count, containers, pipelining, strategy,
        runs["first"][0], runs["second"][0], runs["floor"][0],
        runs["first"][1], runs["second"][1], runs["floor"][1],
        runs["second"][0] / runs["floor"][0], runs["second"][1] / runs["floor"][1],
        1000.0 * runs["second"][1] / host_tasks, 1000.0 * runs["floor"][1] / host_tasks), flush=True)


def print_stores(stores):
    print("\nstore per host after the first run (M containers on one image):")
    print("%4s %4s | %10s %10s %10s | %s" % ("N", "M", "KiB min", "KiB max", "layers", "image file"))
    for count, containers, image_bytes, usage in stores:
        sizes = [kib for kib, layers in usage.values()]
        layers = sorted({layers for kib, layers in usage.values()})
        print("%4d %4d | %10d %10d %10s | %d KiB" % (
            count, containers, min(sizes), max(sizes), ",".join(map(str, layers)), image_bytes // 1024))


PULL_HEADER = "%4s %7s | %7s %7s | %8s %10s %10s" % (
    "N", "at once", "wall s", "ctl cpu", "reg cpu", "KiB served", "KiB/host")


def print_pull(row):
    count, at_once, wall, cpu, registry_cpu, served, image_bytes = row
    print("pull %4d %7d | %7.2f %7.2f | %8.2f %10d %10d  (image blobs %d KiB)" % (
        count, at_once, wall, cpu, registry_cpu, served // 1024, served // 1024 // count, image_bytes // 1024),
        flush=True)


def numbers(text):
    return [int(value) for value in text.split(",")]


def choices(allowed):
    def parse(text):
        values = text.split(",")
        for value in values:
            if value not in allowed:
                raise argparse.ArgumentTypeError("%s: one of %s" % (value, ", ".join(allowed)))
        return values
    return parse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=numbers, default=[1, 4, 16], help="fleet sizes N (default 1,4,16)")
    parser.add_argument("--containers", type=numbers, default=[1, 10], help="containers per host M (default 1,10)")
    parser.add_argument("--pipelining", type=choices(["on", "off"]), default=["on", "off"],
                        help="ssh pipelining settings (default on,off)")
    parser.add_argument("--strategy", type=choices(["linear", "free"]), default=["linear", "free"],
                        help="play strategies (default linear,free)")
    parser.add_argument("--quick", action="store_true", help="pipelining on and strategy linear only")
    parser.add_argument("--registry", action="store_true",
                        help="also N hosts pulling one image from one docker-registry on the machine at once, then 4 at a time")
    args = parser.parse_args()
    if args.quick:
        args.pipelining, args.strategy = ["on"], ["linear"]
    startup.in_private_mount_namespace(__file__, "the hosts are containers")
    for tool in ("sshd", "sudo", "du"):
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            startup.die("needs %s" % tool)
    print("wall in s, controller CPU in s; x = second run / floor; ms cpu/ht = controller CPU "
          "per host-task (a task's run on one host; M + 1 per host) of the second run, floor/ht "
          "the same for the floor")
    print(HEADER, flush=True)
    tmp = tempfile.mkdtemp(prefix="cfs-bench-fleet-")
    rows, stores, pulls = [], [], []
    try:
        for count in args.hosts:
            bench_fleet(count, args, tmp, rows, stores, pulls)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_stores(stores)
    if pulls:
        print("\nregistry pulls (pipelining on; ctl cpu = controller CPU; reg cpu = the registry "
              "process's; KiB served = what it wrote):")
        print("     " + PULL_HEADER)
        for row in pulls:
            print_pull(row)


if __name__ == "__main__":
    main()
