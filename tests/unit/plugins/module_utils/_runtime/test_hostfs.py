"""Host-side files (_hostfs) and the applier's input checks: no planted link is followed."""
import json
import os
import stat

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan, describe_step
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import host_steps
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import inroot
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as H


def test_make_dirs_creates_the_chain_with_its_mode(tmp_path):
    base = str(tmp_path / "base")
    made = H.make_dirs(os.path.join(base, "a", "b"), 0o700, trusted=base)
    assert made == [base, base + "/a", base + "/a/b"]
    assert stat.S_IMODE(os.stat(base + "/a").st_mode) == 0o700
    assert H.make_dirs(os.path.join(base, "a", "b"), 0o700, trusted=base) == []
    assert H.make_dirs(base + "/a/c/d", trusted=base, create=False) == [base + "/a/c", base + "/a/c/d"]
    assert not os.path.exists(base + "/a/c")


def test_make_dirs_takes_a_base_a_concurrent_run_made_first(tmp_path, monkeypatch):
    """Ten containers set up at once under one new state dir: the base is missing when
    one run looks and made by another before it makes it (seen as EEXIST under load)."""
    base = str(tmp_path / "state")
    real_isdir = os.path.isdir

    def made_meanwhile(path):
        if path == base and not real_isdir(path):
            os.mkdir(path, 0o755)  # the other run, between the look and the make
            return False
        return real_isdir(path)

    monkeypatch.setattr(H.os.path, "isdir", made_meanwhile)
    made = H.make_dirs(os.path.join(base, "containers", "c1"), 0o700, trusted=base)
    assert made == [os.path.join(base, "containers"), os.path.join(base, "containers", "c1")]
    assert stat.S_IMODE(os.stat(os.path.join(base, "containers", "c1")).st_mode) == 0o700


@pytest.mark.parametrize("plant, message", [
    (lambda p, v: os.symlink(v, p), "is a symlink"),
    (lambda p, v: open(p, "w").close(), "is not a directory"),
    (lambda p, v: (os.mkdir(p), os.chmod(p, 0o777)), "is writable by group or others"),
    (lambda p, v: (os.mkdir(p), os.chown(p, 1000, 1000)), "is owned by uid 1000, not by root"),
])
def test_make_dirs_refuses_a_component_that_is_not_ours(tmp_path, plant, message):
    if os.geteuid() != 0 and "uid" in message:
        pytest.skip("needs root")
    victim = str(tmp_path / "victim")
    os.mkdir(victim)
    base = str(tmp_path / "base")
    os.mkdir(base)
    plant(os.path.join(base, "a"), victim)
    with pytest.raises(H.UnsafePathError, match="base/a %s.*; refusing to use it" % message):
        H.make_dirs(os.path.join(base, "a", "b"), trusted=base)
    assert os.listdir(victim) == []


def test_the_last_component_may_have_changed_owner_but_not_be_a_link(tmp_path):
    base = str(tmp_path)
    os.mkdir(base + "/upper")
    os.chmod(base + "/upper", 0o1777)  # what a container's chmod of its own / does
    assert H.make_dirs(base + "/upper", trusted=base) == []
    os.symlink("/", base + "/link")
    with pytest.raises(H.UnsafePathError, match="link is a symlink"):
        H.make_dirs(base + "/link", trusted=base)


def test_write_file_replaces_a_planted_link_and_never_writes_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.chmod(str(victim), 0o600)
    path = str(tmp_path / "file")
    os.symlink(str(victim), path)
    os.symlink(str(victim), path + ".tmp")
    H.write_file(path, "new\n", 0o755)
    assert victim.read_text() == "keep" and stat.S_IMODE(os.stat(str(victim)).st_mode) == 0o600
    assert not os.path.islink(path) and open(path).read() == "new\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert sorted(os.listdir(str(tmp_path))) == ["file", "file.tmp", "victim"]


def test_write_file_refuses_a_directory_and_leaves_no_temp(tmp_path):
    os.mkdir(str(tmp_path / "dir"))
    with pytest.raises(H.UnsafePathError, match="is a directory"):
        H.write_file(str(tmp_path / "dir"), "x")
    with pytest.raises(TypeError):
        H.write_file(str(tmp_path / "f"), 5)
    assert os.listdir(str(tmp_path)) == ["dir"]


def test_read_file_and_remove_tree_never_follow_a_link(tmp_path):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    os.symlink(str(victim), str(tmp_path / "link"))
    with pytest.raises(OSError):
        H.read_file(str(tmp_path / "link"))
    H.remove_tree(str(tmp_path / "link"))
    assert os.path.isdir(str(victim / "sub")) and not os.path.lexists(str(tmp_path / "link"))
    H.remove_tree(str(victim))
    H.remove_tree(str(victim))  # missing is fine
    assert not os.path.exists(str(victim))


def test_lock_times_out_naming_what_and_the_file(tmp_path):
    lock = str(tmp_path / "box.lock")
    with H.locked(lock, 1, what="container box"):
        with pytest.raises(H.LockTimeout, match="container box: another run holds the lock %s" % lock):
            with H.locked(lock, 0.3, shared=True, what="container box"):
                pass
    with H.locked(lock, 1, shared=True), H.locked(lock, 1, shared=True):
        pass
    assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
    os.unlink(lock)
    os.symlink(str(tmp_path / "elsewhere"), lock)
    with pytest.raises(OSError):
        with H.locked(lock, 1):
            pass
    assert not os.path.exists(str(tmp_path / "elsewhere"))


@pytest.mark.parametrize("name", ["../../evil", "web\n", "a/b", "", ".x", "x" * 129, None])
def test_container_names_are_checked_whole(name):
    with pytest.raises(ApplyError, match="invalid container name"):
        host_steps.check_name(name)


@pytest.mark.parametrize("path", ["relative", "/x\n/etc", "/x\x7f", None])
def test_host_dirs_are_absolute_without_control_characters(path):
    with pytest.raises(ApplyError):
        host_steps.check_host_dir(path, "state_dir")


def test_a_symlink_refused_on_the_way_is_named_in_the_message(tmp_path):
    root = str(tmp_path)
    os.symlink("/", os.path.join(root, "proc"))
    with pytest.raises(ApplyError) as exc:
        inroot.InRoot(root).resolve("/proc/sys", nofollow=True)
    assert str(exc.value) == "/proc/sys: /proc is a symlink; refusing to mount through it"


def test_every_error_of_ours_is_a_containerfs_error_and_keeps_its_other_base(tmp_path):
    assert issubclass(ApplyError, ContainerfsError)
    assert issubclass(SpecError, ContainerfsError)
    for kind in (H.UnsafePathError, H.LockTimeout):
        assert issubclass(kind, ContainerfsError) and issubclass(kind, OSError)
    refused = H.UnsafePathError("/x", "is a symlink")
    assert (refused.errno, refused.filename, str(refused)) == (1, "/x", "/x is a symlink; refusing to use it")


def test_a_plan_recorded_with_a_symlink_target_reads_as_link_to(tmp_path):
    """Plans recorded before the rename name a symlink's content `target`."""
    state_dir, run_dir = str(tmp_path / "s"), str(tmp_path / "r")
    plan = build_plan(load_spec({"name": "web", "rootfs": {"path": str(tmp_path / "root")},
                                 "state_dir": state_dir, "run_dir": run_dir}))
    for step in plan["steps"]:
        if step["op"] == "symlink":
            step["target"] = step.pop("link_to")
    os.makedirs(os.path.dirname(plan["paths"]["record"]))
    with open(plan["paths"]["record"], "w") as f:
        json.dump(plan, f)
    links = [s for s in host_steps.recorded_plan(state_dir, "web")["steps"] if s["op"] == "symlink"]
    assert links and all("target" not in s for s in links)
    assert {s["path"]: s["link_to"] for s in links}["/dev/ptmx"] == "pts/ptmx"
    assert describe_step(links[0]).startswith("ln -s /proc/self/fd /dev/fd")
