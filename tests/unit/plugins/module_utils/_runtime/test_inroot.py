"""Paths in a container root held as descriptors (inroot.InRoot) while another process
changes the root: a set-up on a plain rootfs shared with a running container, or a running
container's root converged again (CVE-2024-45310 class: mkdir or create by path through a
symlink swapped in meanwhile makes empty directories or files on the host).

Each race is made deterministic: the other process's change lands right after a chosen
system call of ours (os.open of a component, os.mkdir, the create of a file)."""
import os

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import inroot
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError


@pytest.fixture
def root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    return str(tmp_path / "root")


def outside(root):
    return os.path.join(os.path.dirname(root), "outside")


def race_before(monkeypatch, call, when, change):
    """Run `change` once, just before the first os.`call` (a mkdir, a create) whose
    arguments satisfy when(args): the other process got there first. A dict whose "done"
    says it ran."""
    real = getattr(os, call)
    state = {"done": False}

    def racing(*args, **kwargs):
        if not state["done"] and when(args):
            state["done"] = True
            change()
        return real(*args, **kwargs)
    monkeypatch.setattr(inroot.os, call, racing)
    return state


def race_after_open(monkeypatch, name, change):
    """Run `change` once, right after the walk opens the component `name` (by its parent's
    descriptor): what was looked at is then changed under the held descriptor."""
    real = os.open
    state = {"done": False}

    def racing(path, flags, *args, **kwargs):
        fd = real(path, flags, *args, **kwargs)
        if path == name and kwargs.get("dir_fd") is not None and not state["done"]:
            state["done"] = True
            change()
        return fd
    monkeypatch.setattr(inroot.os, "open", racing)
    return state


def swap_for_link(path, link_to):
    """Move `path` aside (to path.moved) and put a symlink to `link_to` in its place."""
    os.rename(path, path + ".moved")
    os.symlink(link_to, path)


def test_a_directory_made_meanwhile_is_taken(root, monkeypatch):
    target = os.path.join(root, "a", "b")
    state = race_before(monkeypatch, "mkdir", lambda a: a[0] == "b", lambda: os.makedirs(target))
    with inroot.InRoot(root) as r:
        r.make_mount_point("/a/b", "dir", None)
    assert state["done"] and os.path.isdir(target)


def test_a_file_made_meanwhile_is_taken(root, monkeypatch):
    os.makedirs(os.path.join(root, "etc"))
    target = os.path.join(root, "etc", "hosts")
    state = race_before(monkeypatch, "open", lambda a: a[0] == "hosts" and a[1] & os.O_CREAT,
                        lambda: open(target, "w").close())
    with inroot.InRoot(root) as r:
        r.make_mount_point("/etc/hosts", "file", None)
    assert state["done"] and os.path.isfile(target) and not os.path.islink(target)


@pytest.mark.parametrize("create, call", [("file", "open"), ("dir", "mkdir")])
def test_a_symlink_planted_meanwhile_is_refused_and_nothing_is_made_through_it(root, monkeypatch, create, call):
    target = os.path.join(root, "mnt")
    host = os.path.join(outside(root), "target")
    if create == "file":
        with open(host, "w") as f:
            f.write("host file")
    else:
        os.mkdir(host)
    state = race_before(monkeypatch, call, lambda a: a[0] == "mnt" and (call == "mkdir" or a[1] & os.O_CREAT),
                        lambda: os.symlink(host, target))
    with inroot.InRoot(root) as r:
        with pytest.raises(ApplyError, match="appeared meanwhile as a symlink"):
            r.make_mount_point("/mnt", create, None)
    assert state["done"] and os.readlink(target) == host
    assert (open(host).read() == "host file") if create == "file" else os.listdir(host) == []


@pytest.mark.parametrize("create", ["dir", "file"])
def test_a_parent_swapped_for_a_symlink_during_the_walk_keeps_the_make_in_the_root(root, monkeypatch, create):
    """CVE-2024-45310: `a` is looked at as a directory, then replaced by a link to a host
    directory before a/b/c is made: it is made in the directory that was looked at."""
    os.mkdir(os.path.join(root, "a"))
    state = race_after_open(monkeypatch, "a", lambda: swap_for_link(os.path.join(root, "a"), outside(root)))
    with inroot.InRoot(root) as r:
        r.make_mount_point("/a/b/c", create, None)
    assert state["done"]
    assert os.listdir(outside(root)) == [], "something was made on the host"
    made = os.path.join(root, "a.moved", "b", "c")
    assert os.path.isdir(made) if create == "dir" else os.path.isfile(made)


def test_a_directory_moved_out_of_the_root_during_the_walk_is_refused(root, monkeypatch):
    os.makedirs(os.path.join(root, "a", "b"))
    moved = os.path.join(outside(root), "b")
    state = race_after_open(monkeypatch, "b", lambda: os.rename(os.path.join(root, "a", "b"), moved))
    with inroot.InRoot(root) as r:
        with pytest.raises(ApplyError, match="left the container root meanwhile .* %s" % moved):
            r.make_dir("/a/b/c")
    assert state["done"] and not os.path.exists(os.path.join(moved, "c"))


@pytest.mark.parametrize("create, existing, message", [
    ("dir", "file", "is not a directory, but the source is one"),
    ("file", "dir", "is a directory, but the source is a file"),
])
def test_the_wrong_kind_of_mount_point_is_refused(root, create, existing, message):
    path = os.path.join(root, "t")
    if existing == "dir":
        os.mkdir(path)
    else:
        open(path, "w").close()
    with inroot.InRoot(root) as r:
        with pytest.raises(ApplyError, match=message):
            r.make_mount_point("/t", create, None)


def test_a_walk_follows_links_in_the_root_and_names_the_symlink_it_refuses(root):
    os.makedirs(os.path.join(root, "usr", "lib"))
    os.symlink("/usr/lib", os.path.join(root, "lib"))
    os.symlink("../../../../etc", os.path.join(root, "usr", "up"))
    with inroot.InRoot(root) as r:
        assert r.resolve("/lib/x") == os.path.join(root, "usr", "lib", "x")
        assert r.resolve("/usr/up/passwd") == os.path.join(root, "etc", "passwd")
        with pytest.raises(ApplyError, match="^/lib/x: /lib is a symlink; refusing to mount through it$"):
            r.resolve("/lib/x", nofollow=True)
        with pytest.raises(ApplyError, match="does not exist in the container root"):
            r.open("/lib/x")


def test_every_descriptor_is_closed(root):
    before = set(os.listdir("/proc/self/fd"))
    os.makedirs(os.path.join(root, "a", "b"))
    os.symlink("a", os.path.join(root, "l"))
    with inroot.InRoot(root) as r:
        r.resolve("/l/b/c")
        r.make_mount_point("/l/b/d", "dir", None)
        r.make_mount_point("/l/b/e/f", "file", None)
        with pytest.raises(ApplyError):
            r.make_mount_point("/l/b/d", "file", None)
        r.parent_of("/l/x")
    assert set(os.listdir("/proc/self/fd")) == before
