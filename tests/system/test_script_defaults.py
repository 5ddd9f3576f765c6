"""The default container, seen from inside, against runc's defaults (runtimes.md 1.2, 8).

One full check per shell (dash, bash, busybox ash): the script must give the same
container whichever shell runs it.
"""
import os
import uuid

import pytest

from tests.lib import mountinfo

from conftest import SHELLS

# runc's default mounts as they must appear in the container's mountinfo (runtimes.md
# 1.2 and 8.1), written down independently of the spec model:
# (mount point, fstype, per-mount options (exact), super-block options (exact)).
# relatime is the kernel's default atime flag; strictatime (/dev) shows no atime flag.
# tmpfs prints mode= only when it is not 1777, so /dev/shm's mode is checked with stat.
RUNC_DEFAULT_MOUNTS = [
    ("/proc", "proc", {"rw", "relatime"}, {"rw"}),
    ("/dev", "tmpfs", {"rw", "nosuid"}, {"rw", "size=65536k", "mode=755"}),
    ("/dev/pts", "devpts", {"rw", "nosuid", "noexec", "relatime"},
     {"rw", "gid=5", "mode=620", "ptmxmode=666"}),
    ("/dev/shm", "tmpfs", {"rw", "nosuid", "nodev", "noexec", "relatime"}, {"rw", "size=65536k"}),
    ("/dev/mqueue", "mqueue", {"rw", "nosuid", "nodev", "noexec", "relatime"}, {"rw"}),
    ("/sys", "sysfs", {"ro", "nosuid", "nodev", "noexec", "relatime"}, {"ro"}),
]
CGROUP_OPTIONS = {"ro", "nosuid", "nodev", "noexec", "relatime"}

RUNC_MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
               "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
               "/proc/scsi"]
RUNC_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
           "tty": (5, 0)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}

PROBE = r'''
echo @@pid; echo $$
echo @@hostname; hostname
echo @@mountinfo; cat /proc/self/mountinfo
echo @@stat
stat -c '%n|%F|%t|%T|%a|%u|%g' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty \
    /dev /dev/shm
echo @@links
for l in fd stdin stdout stderr ptmx core; do
    if [ -L "/dev/$l" ]; then echo "$l $(readlink "/dev/$l")"; fi
done
echo @@etc_hostname; cat /etc/hostname
echo @@etc_hosts; cat /etc/hosts
echo @@etc_resolv; cat /etc/resolv.conf
echo @@masked
for p in $MASKED; do
    if [ -d "$p" ]; then
        echo "$p dir $(ls -A "$p" | wc -l)"
        if mkdir "$p/x" 2>/dev/null; then echo "$p dir-writable"; fi
    elif [ -e "$p" ]; then
        echo "$p file $(cat "$p" | wc -c) $(stat -c '%F|%t|%T' "$p")"
    fi
done
echo @@writes
touch /probe 2>&1; echo "root rc=$?"
(echo hacked > /proc/sys/kernel/hostname) 2>&1; echo "proc-sys rc=$?"
echo @@oldroot
find / \( -path /proc -o -path /sys \) -prune -o -name "$MARKER" -print
[ -e "$MARKER_PATH" ] && echo "host marker reachable"
cd /..; echo "dotdot $(pwd) $(stat -c %i /) $(stat -c %i /..)"; cd /
echo "proc1root $(readlink /proc/1/root)"
echo @@end
'''


def host_cgroup_expectation(host_mounts):
    """What /sys/fs/cgroup must look like: as the host has it (v2, or v1 hierarchies)."""
    by_point = mountinfo.by_mount_point(host_mounts)
    top = by_point.get("/sys/fs/cgroup", [None])[-1]
    if top is not None and top.fstype == "cgroup2":
        return "v2", {}
    hierarchies = {}
    for mount in host_mounts:
        parent, base = os.path.split(mount.mount_point)
        if parent == "/sys/fs/cgroup" and mount.fstype == "cgroup":
            hierarchies[mount.mount_point] = set(
                o for o in mount.super_options if o not in ("rw", "ro"))
    return "v1", hierarchies


def check_mount(mount, fstype, options, super_options):
    problems = []
    if mount.fstype != fstype:
        problems.append("fstype %s, expected %s" % (mount.fstype, fstype))
    if options is not None and set(mount.options) != options:
        problems.append("options %s, expected %s" % (",".join(mount.options),
                                                     ",".join(sorted(options))))
    if super_options is not None and set(mount.super_options) != super_options:
        problems.append("super options %s, expected %s" % (
            ",".join(mount.super_options), ",".join(sorted(super_options))))
    return problems


def check_default_mountinfo(mounts, host_mounts, rootfs, state_dir, name, root_readonly=True):
    """Compare the container's mount table with the expectation; return the problems."""
    problems = []
    table = mountinfo.by_mount_point(mounts)
    seen = set()

    def take(point):
        seen.add(point)
        found = table.get(point)
        if not found:
            problems.append("%s: not mounted" % point)
            return None
        if len(found) > 1:
            problems.append("%s: mounted %d times" % (point, len(found)))
        return found[-1]

    # the root: the rootfs directory's filesystem, read-only on top of its own flags
    root = take("/")
    host_root = mountinfo.mount_of(rootfs, host_mounts)
    if root is not None:
        want = set(host_root.options)
        if root_readonly:
            want = (want - {"rw"}) | {"ro"}
        problems += ["/: " + p for p in check_mount(root, host_root.fstype, want, None)]
        if mounts[0].mount_point != "/":
            problems.append("/ is not the first mount")

    order = []
    for point, fstype, options, super_options in RUNC_DEFAULT_MOUNTS:
        mount = take(point)
        if mount is not None:
            problems += [point + ": " + p for p in check_mount(mount, fstype, options, super_options)]
            order.append(mounts.index(mount))

    mode, hierarchies = host_cgroup_expectation(host_mounts)
    cgroup = take("/sys/fs/cgroup")
    if cgroup is not None:
        order.append(mounts.index(cgroup))
        if mode == "v2":
            problems += ["/sys/fs/cgroup: " + p for p in check_mount(cgroup, "cgroup2", CGROUP_OPTIONS,
                                                                     None)]
        else:
            problems += ["/sys/fs/cgroup: " + p for p in check_mount(cgroup, "tmpfs", CGROUP_OPTIONS,
                                                                     None)]
            if "ro" not in cgroup.super_options or "mode=755" not in cgroup.super_options:
                problems.append("/sys/fs/cgroup: tmpfs super options %s, expected ro,mode=755"
                                % ",".join(cgroup.super_options))
            for point, controllers in hierarchies.items():
                mount = take(point)
                if mount is None:
                    continue
                problems += [point + ": " + p for p in check_mount(mount, "cgroup", CGROUP_OPTIONS,
                                                                   None)]
                if not controllers <= set(mount.super_options):
                    problems.append("%s: super options %s lack %s" % (
                        point, ",".join(mount.super_options), ",".join(sorted(controllers))))
            # Tolerated, not required: the v2 hierarchy of a hybrid host, read-only.
            unified = table.get("/sys/fs/cgroup/unified")
            if unified:
                seen.add("/sys/fs/cgroup/unified")
                if "ro" not in unified[-1].options:
                    problems.append("/sys/fs/cgroup/unified is not read-only")
    if order != sorted(order):
        problems.append("runc's default mounts are not in spec order: %s" % order)

    # the generated /etc files, bound from the state dir
    host_state = mountinfo.mount_of(state_dir, host_mounts)
    for filename in ("hostname", "hosts", "resolv.conf"):
        point = "/etc/" + filename
        mount = take(point)
        if mount is not None:
            problems += [point + ": " + p for p in check_mount(mount, host_state.fstype, None, None)]
            if not mount.root.endswith("/containers/%s/etc/%s" % (name, filename)):
                problems.append("%s: bound from %s, not from the state dir" % (point, mount.root))

    # read-only paths: a bind of the path onto itself, read-only
    for point in RUNC_READONLY:
        if os.path.exists(point):
            mount = take(point)
            if mount is not None:
                problems += [point + ": " + p for p in check_mount(mount, "proc", {"ro", "relatime"},
                                                                   None)]
    # masked paths: a read-only tmpfs over a directory, the null device over a file
    for point in RUNC_MASKED:
        if os.path.isdir(point):
            mount = take(point)
            if mount is not None:
                if mount.fstype != "tmpfs" or "ro" not in mount.options or \
                        "ro" not in mount.super_options:
                    problems.append("%s: not a read-only tmpfs: %s %s %s" % (
                        point, mount.fstype, ",".join(mount.options), ",".join(mount.super_options)))
        elif os.path.exists(point):
            mount = take(point)
            if mount is not None and not mount.root.endswith("/null"):
                problems.append("%s: masked with %s:%s, not a null device" % (
                    point, mount.fstype, mount.root))

    extra = [m for m in mounts if m.mount_point not in seen]
    if extra:
        problems.append("unexpected mounts (host mounts must not be visible):\n" +
                        mountinfo.format_table(extra))
    return problems


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_default_container_seen_from_inside(shell, make_container, host_mounts, busybox_rootfs,
                                            tmp_path):
    marker = "oldroot-marker-" + uuid.uuid4().hex
    marker_path = tmp_path / marker
    marker_path.write_text("host\n")
    masked = " ".join(RUNC_MASKED)
    probe = "MASKED='%s' MARKER='%s' MARKER_PATH='%s'\n%s" % (masked, marker, marker_path, PROBE)
    container = make_container(hostname="box-" + shell)
    result = container.inside(probe, shell=shell)
    assert result.rc == 0, result
    out = result.sections()
    assert "end" in out, result

    # pid 1 of its own pid namespace, its own hostname
    assert out["pid"].strip() == "1"
    assert out["hostname"].strip() == "box-" + shell
    assert out["etc_hostname"] == "box-%s\n" % shell

    # the mount table
    mounts = mountinfo.parse(out["mountinfo"])
    problems = check_default_mountinfo(mounts, host_mounts, busybox_rootfs, container.state_dir,
                                       container.name)
    assert not problems, "\n".join(problems) + "\n\n" + mountinfo.format_table(mounts)

    # device nodes: char devices, 0666, root:root; /dev 0755, /dev/shm 1777
    stats = dict((line.split("|")[0], line.split("|")[1:]) for line in out["stat"].splitlines())
    for dev, (major, minor) in DEVICES.items():
        kind, hex_major, hex_minor, mode, uid, gid = stats["/dev/" + dev]
        assert (kind, int(hex_major, 16), int(hex_minor, 16), mode, uid, gid) == \
            ("character special file", major, minor, "666", "0", "0"), dev
    assert stats["/dev"][3] == "755"
    assert stats["/dev/shm"][3] == "1777"

    # /dev links; core only where the host has /proc/kcore
    links = dict(line.split(" ", 1) for line in out["links"].splitlines())
    want = dict(DEV_LINKS)
    if not os.path.exists("/proc/kcore"):
        del want["core"]
    assert links == want

    # /etc/hosts names localhost and the hostname; resolv.conf is the host's (no dns set)
    hosts = [line.split() for line in out["etc_hosts"].splitlines() if line.strip()]
    assert ["127.0.0.1", "localhost", "box-" + shell] in hosts, out["etc_hosts"]
    with open("/etc/resolv.conf") as f:
        host_resolv = f.read()
    assert out["etc_resolv"].rstrip("\n") == host_resolv.rstrip("\n")

    # masked paths: files read empty and are the null device, directories empty and read-only
    masked_seen = dict((line.split(" ", 1)[0], line.split(" ", 1)[1])
                       for line in out["masked"].splitlines() if not line.endswith("dir-writable"))
    assert not [line for line in out["masked"].splitlines() if line.endswith("dir-writable")]
    for path in RUNC_MASKED:
        if os.path.isdir(path):
            assert masked_seen.get(path) == "dir 0", (path, out["masked"])
        elif os.path.exists(path):
            assert masked_seen.get(path) == "file 0 character special file|1|3", (path, out["masked"])
        else:
            assert path not in masked_seen

    # read-only root and read-only /proc/sys
    writes = out["writes"]
    assert "root rc=1" in writes and "Read-only file system" in writes.split("root rc=")[0], writes
    assert "proc-sys rc=1" in writes and writes.count("Read-only file system") == 2, writes

    # the old root is gone: no path reaches the host's files, '..' of / is /
    assert out["oldroot"].splitlines()[0:1] != ["host marker reachable"]
    lines = out["oldroot"].splitlines()
    assert not [l for l in lines if marker in l or "reachable" in l], out["oldroot"]
    dotdot = [l for l in lines if l.startswith("dotdot ")][0].split()
    assert dotdot[1] == "/" and dotdot[2] == dotdot[3], dotdot
    assert "proc1root /" in lines
    assert marker_path.read_text() == "host\n"
