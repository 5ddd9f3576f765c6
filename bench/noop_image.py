# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""No-op converge benchmark: a container from a big image costs what one from a small image does.

    sudo .venv/bin/python bench/noop_image.py [--size-mib N] [--rounds N] [--collection DIR]

Two rootfs tarballs (busybox plus a file of random bytes: N MiB, default 150, and 1 MiB)
feed three containers: `rootfs.image.source` of each tarball, and `rootfs.image.name` of the
big one imported with `fromscratch.containerfs.image`. After a first converge, no-op
converges (`state: present`) run interleaved over several rounds; the median task wall
times are printed next to an `ansible.builtin.command: /bin/true` task.
`--collection DIR` runs another checkout of the collection (for example `git archive HEAD`
unpacked), to compare before and after a change; one without `image_info` has no
`rootfs.image.name`, and that container is left out.

Everything is built in a fresh tmp dir and removed at the end, inside one private mount
namespace.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile


REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, REPO)

import startup  # noqa: E402  (bench/startup.py: die, need)
import timed_play  # noqa: E402  (bench/timed_play.py: run a playbook, read task times)
from tests.lib import oci_fixtures as fx  # noqa: E402


def tarball(tmp, name, mib):
    """busybox plus `mib` MiB of random bytes, as a plain rootfs tarball."""
    root = fx.busybox_tree(os.path.join(tmp, name + "-tree"))
    os.chmod(root, 0o755)
    with open(os.path.join(root, "random"), "wb") as f:
        for _mib in range(mib):
            f.write(os.urandom(1 << 20))
    path = os.path.join(tmp, name + ".tar")
    startup.sh(["tar", "-C", root, "--numeric-owner", "-cf", path, "."])
    shutil.rmtree(root)
    return path


def play(tmp, images, named, rounds):
    state, run = os.path.join(tmp, "state"), os.path.join(tmp, "run")

    def converge(name, image, title):
        return {"name": title, "fromscratch.containerfs.container": {
            "name": name, "state_dir": state, "run_dir": run,
            "spec": {"rootfs": {"image": image}, "process": {"args": ["true"]}}}}

    forms = {"big": {"source": images["big"]}, "small": {"source": images["small"]}}
    if named:
        forms["named"] = {"name": "big"}
    setup = [{"name": "import big", "fromscratch.containerfs.image":
              {"name": "big", "source": images["big"], "store": state}}] if named else []
    setup += [converge(n, image, "first %s" % n) for n, image in sorted(forms.items())]
    timed = []
    for r in range(rounds):
        batch = [converge(n, image, "noop %s #%d" % (n, r)) for n, image in sorted(forms.items())]
        batch.append({"name": "true #%d" % r, "ansible.builtin.command": "/bin/true", "changed_when": False})
        timed += batch if r % 2 == 0 else list(reversed(batch))
    absent = [{"name": "remove %s" % n, "fromscratch.containerfs.container":
               {"name": n, "state": "absent", "state_dir": state, "run_dir": run}} for n in sorted(forms)]
    return [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable},
             "tasks": setup + timed + absent}]


def collections(tmp, collection):
    base = os.path.join(tmp, "collections")
    os.makedirs(os.path.join(base, "ansible_collections", "fromscratch"))
    os.symlink(collection, os.path.join(base, "ansible_collections", "fromscratch", "containerfs"))
    return base


def run(tmp, args):
    named = os.path.exists(os.path.join(args.collection, "plugins", "modules", "image_info.py"))
    images = {"big": tarball(tmp, "big", args.size_mib), "small": tarball(tmp, "small", 1)}
    rows = timed_play.run(tmp, play(tmp, images, named, args.rounds), collections(tmp, args.collection))
    by_kind = timed_play.milliseconds_by_kind(rows)
    print("collection %s; big tarball %d MiB; %d rounds; median task wall time:" % (
        args.collection, args.size_mib, args.rounds))
    for kind in sorted(k for k in by_kind if k.startswith(("noop", "true", "first", "import"))):
        print("  %-12s %8.1f ms" % (kind, statistics.median(by_kind[kind])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--size-mib", type=int, default=150, help="size of the big image's random file (default 150)")
    parser.add_argument("--rounds", type=int, default=5, help="no-op converge rounds (default 5)")
    parser.add_argument("--collection", default=REPO, help="the collection checkout to run (default: this one)")
    args = parser.parse_args()
    args.collection = os.path.realpath(args.collection)
    startup.in_private_mount_namespace(__file__, "namespaces, mounts")
    startup.need("tar")
    tmp = tempfile.mkdtemp(prefix="cfs-bench-noop-image-")
    os.chmod(tmp, 0o700)
    try:
        run(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
