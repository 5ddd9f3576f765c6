"""The applier's root steps against a process that changes the root while they run (a
container sharing a plain rootfs, or the running container whose root is converged again):
every mount, mknod and chmod goes through a descriptor taken by the in-root walk, so a
symlink swapped in between the look and the act cannot take it onto the host.

Each race is deterministic: the change lands right before the mount(8) command, or right
after mknod, with real mounts in a tmpfs root (the suite runs in a private mount namespace)."""
import os
import stat
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import mountinfo
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import root_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts


@pytest.fixture
def root(tmp_path):
    """A tmpfs root beside a host directory `outside` (tmp_path/outside)."""
    path = tmp_path / "root"
    path.mkdir()
    (tmp_path / "outside").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    yield str(path)
    subprocess.run(["umount", "-R", str(path)], check=True)


def outside(root):
    return os.path.join(os.path.dirname(root), "outside")


def mounted_on(path):
    return [m for m in mountinfo.read() if m["mount_point"] == path]


def before_first_mount(monkeypatch, change):
    """Run `change` once, just before the first mount(8) command of the step."""
    real = root_steps.run
    state = {"done": False}

    def racing_run(cmd, fds=()):
        if cmd[0] == "mount" and not state["done"]:
            state["done"] = True
            change()
        return real(cmd, fds)
    monkeypatch.setattr(root_steps, "run", racing_run)
    return state


def swap_for_link(path, link_to):
    os.rename(path, path + ".moved")
    os.symlink(link_to, path)


def mount_step(target, fstype="tmpfs", source="tmpfs", options=("nosuid",), create="dir"):
    return {"op": "mount", "fstype": fstype, "source": source, "target": target,
            "options": mountopts.parse(list(options)), "no_symlinks": False, "create": create}


def test_a_mount_point_swapped_for_a_symlink_before_the_mount_keeps_the_mount_in_the_root(root, monkeypatch):
    """CVE-2021-30465: the mount lands on the directory that was looked at, not on the host
    directory a symlink swapped in meanwhile points to."""
    os.makedirs(os.path.join(root, "mnt", "x"))
    state = before_first_mount(monkeypatch, lambda: swap_for_link(os.path.join(root, "mnt", "x"), outside(root)))
    with root_steps.RootSteps(root) as steps:
        steps.do_mount(mount_step("/mnt/x"))
    assert state["done"]
    assert mounted_on(outside(root)) == [], "the mount reached the host"
    assert [m["fstype"] for m in mounted_on(os.path.join(root, "mnt", "x.moved"))] == ["tmpfs"]


def test_null_swapped_for_a_symlink_before_a_mask_still_masks_with_the_null_device(root, monkeypatch):
    """CVE-2025-31133: /dev/null is checked as the null device and bound from the same
    descriptor; a symlink to a host file swapped in meanwhile is not what is bound."""
    os.makedirs(os.path.join(root, "dev"))
    os.mknod(os.path.join(root, "dev", "null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with open(os.path.join(root, "masked"), "w") as f:
        f.write("to be masked")
    host_file = os.path.join(outside(root), "secret")
    with open(host_file, "w") as f:
        f.write("host secret")

    state = before_first_mount(monkeypatch, lambda: swap_for_link(os.path.join(root, "dev", "null"), host_file))
    step = {"op": "mask_path", "path": "/masked", "options": mountopts.parse(["ro"]),
            "file_options": mountopts.parse(["bind"])}
    with root_steps.RootSteps(root) as steps:
        steps.do_mask_path(step)
    assert state["done"]
    masked = os.stat(os.path.join(root, "masked"))
    assert stat.S_ISCHR(masked.st_mode) and masked.st_rdev == os.makedev(1, 3)


def test_a_device_node_swapped_for_a_symlink_after_mknod_leaves_the_host_file_alone(root, monkeypatch):
    """The owner and mode of a new node are set through a descriptor of the node made: a
    symlink to a host file put in its place is refused, the host file keeps its mode."""
    host_file = os.path.join(outside(root), "shadow")
    open(host_file, "w").close()
    os.chmod(host_file, 0o600)
    real_mknod = os.mknod

    def racing_mknod(name, mode, device, dir_fd=None):
        real_mknod(name, mode, device, dir_fd=dir_fd)
        os.unlink(name, dir_fd=dir_fd)
        os.symlink(host_file, name, dir_fd=dir_fd)
    monkeypatch.setattr(root_steps.os, "mknod", racing_mknod)
    step = {"op": "mknod", "path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "mode": "0666",
            "uid": 0, "gid": 0}
    with root_steps.RootSteps(root) as steps:
        with pytest.raises(ApplyError, match="changed right after it was made"):
            steps.do_mknod(step)
    assert stat.S_IMODE(os.stat(host_file).st_mode) == 0o600


def test_a_read_only_bind_sets_its_flags_on_the_new_mount_not_on_the_one_below(root):
    """A bind's flags take a remount after the bind; through a descriptor, that remount is
    made on a descriptor opened after the bind (one opened before names the mount below)."""
    source = os.path.join(outside(root), "data")
    os.mkdir(source)
    with root_steps.RootSteps(root) as steps:
        steps.do_mount(mount_step("/data", fstype="bind", source=source, options=("rbind", "ro", "nosuid"),
                                  create="match_source"))
    top, = mounted_on(os.path.join(root, "data"))
    assert {"ro", "nosuid"} <= top["options"]
    below, = mounted_on(root)
    assert "ro" not in below["options"], "the remount reached the root's own mount"


def test_a_symlink_in_a_proc_target_is_refused_before_any_mount(root):
    os.symlink(outside(root), os.path.join(root, "proc"))
    step = dict(mount_step("/proc", fstype="proc", source="proc"), no_symlinks=True)
    with root_steps.RootSteps(root) as steps:
        with pytest.raises(ApplyError, match="/proc is a symlink; refusing to mount through it"):
            steps.do_mount(step)
    assert mounted_on(outside(root)) == []
