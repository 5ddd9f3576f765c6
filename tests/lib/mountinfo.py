"""Parse and normalise /proc/PID/mountinfo for comparisons in tests.

A mountinfo line (proc(5)):

    36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2) (3)   (4)     (5)         (6)       (7)   (8) (9)    (10)      (11)

`parse()` keeps what describes a mount as a user sees it and drops what changes from
one boot or namespace to the next (mount ids, parent ids, device numbers, peer group
numbers): the mount point, the filesystem type, the source, the root inside the
filesystem, the per-mount options, the propagation tags and the super-block options.
"""
import collections
import re

Mount = collections.namedtuple(
    "Mount", "mount_point fstype source root options super_options propagation")
Mount.__doc__ = """One line of mountinfo, normalised.

mount_point, root, source: unescaped strings. options, super_options: tuples in the
kernel's order. propagation: tuple of tags without their group numbers, e.g.
('shared',), ('master',), ('shared', 'master'), () for private.
"""

_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field):
    """Undo the octal escapes the kernel writes for space, tab, newline and backslash."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_line(line):
    fields = line.split(" ")
    try:
        dash = fields.index("-", 6)
    except ValueError:
        raise ValueError("not a mountinfo line: %r" % line)
    optional = fields[6:dash]
    fstype, source, super_options = fields[dash + 1:dash + 4]
    return Mount(
        mount_point=unescape(fields[4]),
        fstype=fstype,
        source=unescape(source),
        root=unescape(fields[3]),
        options=tuple(fields[5].split(",")),
        super_options=tuple(super_options.split(",")),
        propagation=tuple(tag.split(":", 1)[0] for tag in optional),
    )


def parse(text):
    """Return the list of `Mount`s of a mountinfo text, in the kernel's order."""
    return [parse_line(line) for line in text.splitlines() if line.strip()]


def read(path="/proc/self/mountinfo"):
    with open(path) as f:
        return parse(f.read())


def by_mount_point(mounts):
    """{mount point: [Mount, ...]} (a point can be mounted over more than once)."""
    table = collections.OrderedDict()
    for mount in mounts:
        table.setdefault(mount.mount_point, []).append(mount)
    return table


def mount_of(path, mounts):
    """The mount that holds host `path` (the longest mount point that is a prefix of it;
    the last one mounted wins)."""
    best = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") + "/"
        if (path.rstrip("/") + "/").startswith(point):
            if best is None or len(mount.mount_point) >= len(best.mount_point):
                best = mount
    return best


def format_table(mounts):
    """A readable dump for assertion messages."""
    return "\n".join(
        "%-40s %-10s %-40s %-30s %s" % (m.mount_point, m.fstype, ",".join(m.options),
                                        ",".join(m.super_options), " ".join(m.propagation))
        for m in mounts)
