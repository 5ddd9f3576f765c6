"""The applier's mount points (root_steps._make_mount_point) on a root another set-up may be
changing at the same time (containers sharing a plain rootfs): what the other made between
our look and our make is taken, not an error; a symlink or the wrong kind is refused.

The race is made deterministic: the other set-up's mkdir or file lands right after our last
look before making it (that os.path call answers as it would have just before)."""
import os

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import root_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError


def made_meanwhile(monkeypatch, look, path, make):
    """The last look at `path` before making it (os.path.`look`: isdir for a directory,
    exists for a file) sees it missing; right after it `make` makes it."""
    real = getattr(os.path, look)
    state = {"done": False}

    def racing_look(p):
        if p == path and not state["done"]:
            state["done"] = True
            make()
            return False
        return real(p)
    monkeypatch.setattr(root_steps.os.path, look, racing_look)
    return state


def test_a_directory_made_meanwhile_is_taken(tmp_path, monkeypatch):
    target = str(tmp_path / "a" / "b")
    state = made_meanwhile(monkeypatch, "isdir", target, lambda: os.makedirs(target))
    root_steps._make_mount_point(target, "dir", None)
    assert state["done"] and os.path.isdir(target)


def test_a_file_made_meanwhile_is_taken(tmp_path, monkeypatch):
    target = str(tmp_path / "etc" / "hosts")
    os.makedirs(os.path.dirname(target))

    def other():
        with open(target, "w") as f:
            f.write("")
    state = made_meanwhile(monkeypatch, "exists", target, other)
    root_steps._make_mount_point(target, "file", None)
    assert state["done"] and os.path.isfile(target)


@pytest.mark.parametrize("create, look, points_to", [("file", "exists", "/etc/hostname"),
                                                     ("dir", "isdir", "/etc")])
def test_a_symlink_planted_meanwhile_is_refused(tmp_path, monkeypatch, create, look, points_to):
    target = str(tmp_path / "mnt")
    state = made_meanwhile(monkeypatch, look, target, lambda: os.symlink(points_to, target))
    with pytest.raises(ApplyError, match="appeared meanwhile as a symlink"):
        root_steps._make_mount_point(target, create, None)
    assert state["done"] and os.readlink(target) == points_to
