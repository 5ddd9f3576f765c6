"""A fleet of test hosts on this machine, for tests and benchmarks: one command each way.

    python -m tests.lib.fleet up N ROOT      # prints ROOT/inventory.yml
    python -m tests.lib.fleet down ROOT

Each host is a container of ours (fromscratch.containerfs.container, state started) with
its own network namespace reached through a veth pair, its own hostname, state, run and
store dirs, and sshd as its process; the inventory logs in as the non-root user `cfs` and
becomes root with sudo. The playbooks that do it are extensions/molecule/hosts/create.yml
and destroy.yml (molecule's `default` scenario imports the same ones); this module only
runs them. `down` removes everything `up` made: processes, mounts, namespaces, links and
ROOT itself. Each fleet reserves its 10.X.0.0/16 under /run/cfs-fleet-octets (OCTETS_DIR)
for as long as its root exists, so fleets made at the same time never share addresses.

The hosts' namespaces are pinned by mounts in the mount namespace `up` runs in: run `down`
in the same one (tests run both inside `unshare --mount`, see tests/run).
"""
import argparse
import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tests.lib.collection import REPO_ROOT, collections_dir

HOSTS_DIR = os.path.join(REPO_ROOT, "extensions", "molecule", "hosts")
# 10.<octet>.<i>.0/30 per host; molecule's instances use 212 (extensions/molecule/hosts.yml)
FIRST_OCTET = 213
# ssh's control sockets live under ROOT/cp; a socket path holds at most 108 bytes
MAX_ROOT_LENGTH = 60
# the file create.yml writes in a root it made (cfs_hosts_marker)
MARKER = ".cfs-hosts"
# the machine's end of a host's veth pair: cf<octet>h<index> (extensions/molecule/hosts/vars)
FLEET_LINK = re.compile(r"cf\d+h\d+$")
# OCTETS_DIR/<octet>/root links to the root of the fleet that reserved 10.<octet>.0.0/16
OCTETS_DIR = "/run/cfs-fleet-octets"


class FleetError(Exception):
    """A playbook of the harness failed; the message ends with its output."""


def inventory_path(root):
    return os.path.join(root, "inventory.yml")


def recorded_octet(root):
    """The octet of the fleet already under `root` (its inventory's first address), or None."""
    try:
        with open(inventory_path(root)) as f:
            for line in f:
                if "ansible_host:" in line:
                    return int(line.split('"')[1].split(".")[1])
    except OSError:
        pass
    return None


def octet_in_use(octet):
    """Whether another fleet's veth pairs use 10.<octet>.0.0/16 (their names carry it)."""
    return bool(glob.glob("/sys/class/net/cf%dh*" % octet))


def reservation_holder(octet, octets_dir=OCTETS_DIR):
    """The fleet root holding `octet` (OCTETS_DIR/<octet>/root links to it), or None when the
    octet is free or its holder's root is gone (a stale reservation, which may be taken over).
    A reservation appears with its link (_claim), so one without is stale too."""
    try:
        holder = os.readlink(os.path.join(octets_dir, str(octet), "root"))
    except FileNotFoundError:
        return None
    return holder if os.path.isdir(holder) else None


def reserve_octet(root, octet=None, first=FIRST_OCTET, octets_dir=OCTETS_DIR):
    """Reserve 10.<octet>.0.0/16 for the fleet at `root` (an existing directory) and return
    the octet: `octet` itself (FleetError if another fleet holds it), else the first free one.
    A reservation is a directory holding its link, renamed into place whole (atomic: of two
    fleets picking at once each gets its own octet, and a harness killed half-way leaves no
    reservation without its root); a stale one is taken over under a lock, so that two
    takers do not both win it."""
    os.makedirs(octets_dir, mode=0o755, exist_ok=True)
    for candidate in [octet] if octet is not None else range(first, 255):
        if octet is None and octet_in_use(candidate) and not _holds(candidate, root, octets_dir):
            continue  # a fleet made before reservations, or molecule's instances
        if _claim(candidate, root, octets_dir):
            return candidate
        if octet is not None:
            raise FleetError("octet %d is reserved by the fleet at %s (%s)" % (
                octet, reservation_holder(octet, octets_dir), os.path.join(octets_dir, str(octet))))
    raise FleetError("no free 10.X.0.0/16 for a fleet: every octet from %d is reserved under %s or "
                     "named by a cfXh* veth pair" % (first, octets_dir))


def _holds(octet, root, octets_dir):
    return reservation_holder(octet, octets_dir) == root


def _claim(octet, root, octets_dir):
    """Whether `root` holds `octet` now: newly reserved, already its own, or taken over."""
    place = os.path.join(octets_dir, str(octet))
    claim = tempfile.mkdtemp(prefix=".claim-%d-" % octet, dir=octets_dir)
    os.symlink(root, os.path.join(claim, "root"))
    try:
        if _renamed(claim, place):
            return True
        if _holds(octet, root, octets_dir):
            return True
        with _locked(octets_dir):
            if reservation_holder(octet, octets_dir) is not None:
                return False
            shutil.rmtree(place, ignore_errors=True)  # stale: its root is gone
            return _renamed(claim, place)  # False: a fresh claim (which takes no lock) came first
    finally:
        shutil.rmtree(claim, ignore_errors=True)  # (gone when it became the reservation)


def _renamed(claim, place):
    """Whether the claim dir became `place` (which must not exist: a reservation is never
    an empty dir, and rename() fails onto a non-empty one)."""
    try:
        os.rename(claim, place)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


@contextlib.contextmanager
def _locked(octets_dir):
    with open(os.path.join(octets_dir, ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def release_octet(root, octets_dir=OCTETS_DIR):
    """Remove the reservations that link to `root`."""
    for name in os.listdir(octets_dir) if os.path.isdir(octets_dir) else ():
        place = os.path.join(octets_dir, name)
        link = os.path.join(place, "root")
        if os.path.islink(link) and os.readlink(link) == root:
            shutil.rmtree(place)


def ansible_env(root):
    """Environment for ansible and ansible-playbook against the fleet under `root`: this
    checkout as the collection (linked from ROOT/controller), no localhost warnings."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_dir(os.path.join(root, "controller")),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
    })
    return env


def _run_playbook(name, root, extra_vars, forks):
    playbook = os.path.join(HOSTS_DIR, name)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           "-i", "localhost,", "--forks", str(forks), playbook]
    for key, value in extra_vars.items():
        cmd += ["-e", "%s=%s" % (key, value)]
    proc = subprocess.run(cmd, env=ansible_env(root), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if proc.returncode != 0:
        raise FleetError("%s failed (exit %d): %s\n%s" % (
            " ".join(cmd), proc.returncode, "the end of its output:", proc.stdout[-6000:]))
    return proc.stdout


def up(count, root, octet=None, prefix="host", forks=None):
    """Make `count` hosts under `root` (absolute, at most 60 characters); return the
    inventory's path. Safe to call again on the same root (nothing changes)."""
    create(count, root, octet=octet, prefix=prefix, forks=forks)
    return inventory_path(os.path.abspath(root))


def create(count, root, octet=None, prefix="host", forks=None):
    """`up`, returning the create playbook's output (its PLAY RECAP says what changed)."""
    root = os.path.abspath(root)
    if len(root) > MAX_ROOT_LENGTH:
        raise FleetError("fleet root %s is longer than %d characters: ssh's control sockets "
                         "under it would not fit in a socket path" % (root, MAX_ROOT_LENGTH))
    os.makedirs(root, mode=0o700, exist_ok=True)
    octet = reserve_octet(root, octet if octet is not None else recorded_octet(root))
    return _run_playbook("create.yml", root, {
        "cfs_hosts_root": root,
        "cfs_hosts_count": count,
        "cfs_hosts_octet": octet,
        "cfs_hosts_prefix": prefix,
    }, forks or min(max(count, 5), 16))


def down(root, forks=16):
    """Remove every host under `root`, and `root` itself."""
    root = os.path.abspath(root)
    if not os.path.exists(root):
        release_octet(root)
        return
    if not os.path.exists(os.path.join(root, MARKER)):
        # destroy.yml refuses it too; checked here before anything is written under it
        raise FleetError("%s has no %s: it is not a fleet root, so nothing there is removed" % (root, MARKER))
    _run_playbook("destroy.yml", root, {"cfs_hosts_root": root}, forks)
    release_octet(root)


def changed_counts(output):
    """{host: changed} from the PLAY RECAP of a playbook's output."""
    counts = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1] == ":" and any(f.startswith("changed=") for f in fields):
            counts[fields[0]] = int([f for f in fields if f.startswith("changed=")][0].split("=")[1])
    return counts


def machine_state(root, octet):
    """What a fleet must leave as it found it: the link names (but the veth pairs of other
    fleets, which may come and go meanwhile), the network namespaces of `ip netns`, this
    mount namespace's mount table (without ids) and every process whose root, cwd or
    command line names `root`."""
    links = subprocess.run(["ip", "-o", "link", "show"], stdout=subprocess.PIPE,
                           universal_newlines=True, check=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE,
                           universal_newlines=True, check=True).stdout
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(" ".join(line.split()[3:]) for line in f)
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    ours = re.compile(r"cf%dh\d+$" % octet) if octet is not None else None  # None: before it has one
    return {
        "links": sorted(name for name in names if not FLEET_LINK.match(name) or (ours and ours.match(name))),
        "netns": sorted(netns.splitlines()),
        "mounts": mounts,
        "processes": processes_under(root),
    }


def processes_under(root):
    """The processes whose root, cwd or command line names `root`, as "PID CMDLINE"."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            places = [os.readlink("/proc/%s/%s" % (pid, name)) for name in ("root", "cwd")]
        except OSError:
            continue  # gone meanwhile
        if root in cmdline or any(place == root or place.startswith(root + "/") for place in places):
            found.append("%s %s" % (pid, cmdline))
    return found


@contextlib.contextmanager
def fleet(count, root, **kw):
    """`up` on entry (yields the inventory's path), `down` on exit, even after a failure."""
    try:
        yield up(count, root, **kw)
    finally:
        down(root)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.lib.fleet", description=__doc__.split("\n\n", maxsplit=1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("up", help="make N hosts under ROOT; print the inventory's path")
    make.add_argument("count", type=int, metavar="N")
    make.add_argument("root", metavar="ROOT")
    make.add_argument("--octet", type=int, help="hosts on 10.OCTET.0.0/16 (default: the first free from %d)" % FIRST_OCTET)
    make.add_argument("--prefix", default="host", help="host names: PREFIX01, PREFIX02, ...")
    make.add_argument("--forks", type=int)
    remove = commands.add_parser("down", help="remove the hosts under ROOT, and ROOT")
    remove.add_argument("root", metavar="ROOT")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(up(args.count, args.root, octet=args.octet, prefix=args.prefix, forks=args.forks))
        else:
            down(args.root)
    except FleetError as exc:
        print("fleet: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
