"""Back-end parity: the same spec set up by the rendered script (seen from inside the
running container) and by the applier the container module uses (seen from inside its
pinned namespaces) gives the same mount table, the same /dev and the same hostname.

Left out: what a started process adds (/proc and the paths in it). Normalised: mount ids,
devices and sources (a bind shows the host's device, an overlay its own dirs), and the
super-block options but for the tmpfs data a spec sets (size, mode).
"""
import os
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.applier import Applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.image import load as load_with_image
from tests.lib import mountinfo
from tests.lib import oci_fixtures as fx

FLAGS = ("ro", "nosuid", "nodev", "noexec")
DEV_FORMAT = "%n|%f|%u|%g|%t|%T"
LOOK = ("echo @@mountinfo; cat /proc/self/mountinfo; echo @@dev; stat -c '%s' /dev/*;"
        " echo @@hostname; hostname" % DEV_FORMAT)


def specs(source):
    """name -> spec fields (the rootfs and dirs are added per back-end)."""
    return {
        "plain": {},
        "volumes": {"volumes": [
            {"source": source, "target": "/rw"},
            {"source": source, "target": "/ro", "readonly": True},
            {"type": "tmpfs", "target": "/scratch", "size": "4m", "mode": "1770"},
            {"type": "tmpfs", "target": "/frozen", "readonly": True},
            {"source": source, "target": "/frozen/sub"}]},
        "devices-and-paths": {
            "devices": [{"path": "/dev/fuse", "major": 10, "minor": 229, "uid": 1, "gid": 2},
                        {"path": "/dev/net/tun", "major": 10, "minor": 200}],
            "volumes": [{"type": "tmpfs", "target": "/scratch"}],
            "process": {"args": ["sh"], "cwd": "/scratch/work"},
            "add_masked_paths": ["/etc/hostname", "/mnt"], "add_readonly_paths": ["/etc", "/scratch/work"]},
        "overlay": {"overlay": True, "hostname": "other",
                    "volumes": [{"type": "tmpfs", "target": "/run", "mode": "0755"}]},
    }


def normalise_mounts(entries, root):
    """(mount point relative to the container root, fstype, flags, tmpfs size/mode) of each
    mount in the container's tree, in mount order; /proc and below left out."""
    out = []
    for entry in entries:
        point = entry.mount_point
        if root != "/":
            if point != root and not point.startswith(root + "/"):
                continue
            point = point[len(root):] or "/"
        if point == "/proc" or point.startswith("/proc/"):
            continue
        flags = tuple(f for f in FLAGS if f in entry.options)
        data = tuple(o for o in entry.super_options if entry.fstype == "tmpfs" and o.startswith(("size=", "mode=")))
        out.append((point, entry.fstype, flags, data))
    return out


def rootfs_field(rootfs, spec):
    """rootfs.path (overlay when the case asks), or an image given as {"image": layout}."""
    if isinstance(rootfs, dict):
        return {"image": {"source": rootfs["image"]}}
    return {"path": rootfs, "overlay": spec.pop("overlay", False)}


def by_script(make_container, rootfs, fields):
    spec = dict(fields)
    root = rootfs_field(rootfs, spec)
    spec.setdefault("process", {"args": ["sh"]})
    spec["process"] = dict(spec["process"], args=["sh", "-c", LOOK])
    container = make_container(rootfs=root, **spec)
    result = container.run()
    assert result.rc == 0, result
    parts = result.sections()
    return (normalise_mounts(mountinfo.parse(parts["mountinfo"]), "/"),
            sorted(parts["dev"].splitlines()), parts["hostname"].strip())


def by_applier(tmp_path, rootfs, fields):
    spec = dict(fields)
    spec.update(name="cfs-test", rootfs=rootfs_field(rootfs, spec),
                state_dir=str(tmp_path / "astate"), run_dir=str(tmp_path / "arun"))
    spec.setdefault("hostname", "cfs-test")
    applier = Applier(build_plan(load_with_image(spec)))
    applier.converge()
    try:
        ns = os.path.join(spec["run_dir"], "cfs-test", "ns")
        enter = ["nsenter", "--mount=%s/mnt" % ns, "--uts=%s/uts" % ns, "--"]
        look = subprocess.run(enter + ["sh", "-c", "cat /proc/self/mountinfo; echo @@; cd %s/dev &&"
                                       " stat -c '%s' *; echo @@; hostname" % (applier.root, DEV_FORMAT)],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
        table, dev, hostname = look.split("@@\n")
        dev = ["/dev/" + line for line in dev.splitlines()]
        return normalise_mounts(mountinfo.parse(table), applier.root), sorted(dev), hostname.strip()
    finally:
        applier.remove()


@pytest.mark.parametrize("name", sorted(specs("/x")))
def test_script_and_applier_build_the_same_container(make_container, copy_rootfs, tmp_path, name):
    source = tmp_path / "src"
    source.mkdir()
    (source / "sub").mkdir()
    fields = specs(str(source))[name]
    script = by_script(make_container, copy_rootfs(tmp_path / "srootfs"), fields)
    applier = by_applier(tmp_path, copy_rootfs(tmp_path / "arootfs"), fields)
    assert script[0] == applier[0], "mount tables differ:\nscript  %s\napplier %s" % (script[0], applier[0])
    assert script[1] == applier[1], "/dev differs"
    assert script[2] == applier[2]
    assert script[0] and script[1], "something was compared"


def test_script_and_applier_build_the_same_container_from_an_image(make_container, busybox_rootfs, tmp_path):
    """An image rootfs: both back-ends unpack its layers into their own store and mount
    them as overlayfs lower layers under the same volumes and masks."""
    layout = str(tmp_path / "image.oci")
    fx.oci_layout(layout, [fx.tar_of_dir(busybox_rootfs),
                           fx.make_tar([fx.dir_("srv"), fx.file_("srv/app", b"v2\n")])])
    fields = {"volumes": [{"type": "tmpfs", "target": "/srv/cache", "readonly": True}],
              "add_readonly_paths": ["/srv"]}
    script = by_script(make_container, {"image": layout}, fields)
    applier = by_applier(tmp_path, {"image": layout}, fields)
    assert script[0] == applier[0], "mount tables differ:\nscript  %s\napplier %s" % (script[0], applier[0])
    assert script[1] == applier[1], "/dev differs"
    assert script[2] == applier[2]
    assert ("/", "overlay") == script[0][0][:2], script[0]
