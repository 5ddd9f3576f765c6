"""The script's `up`: the persistent container filesystem in pinned namespaces, the same
the container module's applier makes (each back-end finds nothing to do after the
other), idempotent, rebuilt for another spec; `run` refuses a container that is up.

These run the script in pytest's own mount namespace (private, see conftest.py): the
pinned namespaces must outlive one script call. Every test ends with `down` and checks
that nothing is left (tests.lib.lifecycle.Kept.assert_down).
"""
import json
import os
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.applier import Applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.image import load as load_spec
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render
from tests.lib import mountinfo
from tests.lib import oci_fixtures as fx
from tests.lib.lifecycle import Kept


def cases(source):
    """name -> spec fields: what the root phase can hold (binds, tmpfs, read-only and
    masked paths, devices, an overlay, a read-only root)."""
    return {
        "plain": {},
        "volumes-and-paths": {
            "volumes": [{"source": source, "target": "/ro", "readonly": True},
                        {"type": "tmpfs", "target": "/scratch", "size": "4m"}],
            "add_masked_paths": ["/mnt"], "add_readonly_paths": ["/etc"]},
        "devices": {"devices": [{"path": "/dev/fuse", "major": 10, "minor": 229}]},
        "overlay-readonly": {"overlay": True, "readonly": True,
                             "volumes": [{"type": "tmpfs", "target": "/run"}]},
        "image": {"image": True, "add_readonly_paths": ["/srv"]},
    }


def make_plan(tmp_path, rootfs, fields):
    spec = dict(fields)
    overlay = spec.pop("overlay", False)
    readonly = spec.pop("readonly", False)
    if spec.pop("image", False):
        layout = str(tmp_path / "image.oci")
        fx.oci_layout(layout, [fx.tar_of_dir(rootfs), fx.make_tar([fx.dir_("srv"), fx.file_("srv/app", b"v2\n")])])
        root = {"image": {"source": layout}, "readonly": readonly}
    else:
        root = {"path": rootfs, "overlay": overlay, "readonly": readonly}
    spec.update(name="cfs-up", hostname="cfs-up", state_dir=str(tmp_path / "state"),
                run_dir=str(tmp_path / "run"), rootfs=root)
    return build_plan(load_spec(spec))


def kept_of(plan, tmp_path, shell="dash"):
    script = str(tmp_path / "cfs-up.sh")
    with open(script, "w") as f:
        f.write(_render.render_script(plan))
    return Kept(script, plan["name"], str(tmp_path / "state"), str(tmp_path / "run"), shell)


@pytest.fixture
def cleanup():
    made = []
    yield made.append
    for one in made:
        one.kill_everything()


def inside_mounts(kept, plan):
    """The container's mount table under its root, seen from the pinned namespaces."""
    return Applier(plan).live_mounts()


@pytest.mark.parametrize("name", sorted(cases("/x")))
def test_after_up_the_applier_has_nothing_to_do(copy_rootfs, tmp_path, cleanup, name):
    source = tmp_path / "src"
    source.mkdir()
    plan = make_plan(tmp_path, copy_rootfs(), cases(str(source))[name])
    kept = kept_of(plan, tmp_path)
    cleanup(kept)
    result = kept.sh("up")
    assert result.returncode == 0, result.stderr
    assert "up: namespaces pinned" in result.stderr
    # the record is the applier's text; the script installed itself, 0700
    assert kept.read("record") == _layout.record_text(plan)
    assert json.loads(kept.read("record")) == plan
    with open(kept.script) as f:
        assert kept.read("script") == f.read()
    assert os.stat(kept.path("script")).st_mode & 0o777 == 0o700
    assert os.stat(kept.path("record")).st_mode & 0o777 == 0o600
    assert Applier(plan).converge() == []
    result = kept.sh("down")
    assert result.returncode == 0, result.stderr
    kept.assert_down()


@pytest.mark.parametrize("name", sorted(cases("/x")))
def test_after_the_applier_up_is_up_already(copy_rootfs, tmp_path, cleanup, name):
    source = tmp_path / "src"
    source.mkdir()
    plan = make_plan(tmp_path, copy_rootfs(), cases(str(source))[name])
    kept = kept_of(plan, tmp_path)
    cleanup(kept)
    assert Applier(plan).converge() != []
    host_before = mountinfo.read()
    inside_before = inside_mounts(kept, plan)
    record_before = kept.read("record")
    result = kept.sh("up")
    assert result.returncode == 0, result.stderr
    assert "up already" in result.stderr, result.stderr
    assert mountinfo.read() == host_before
    assert inside_mounts(kept, plan) == inside_before
    assert kept.read("record") == record_before
    # a container the applier made, removed by the script
    result = kept.sh("down")
    assert result.returncode == 0, result.stderr
    kept.assert_down()


@pytest.mark.parametrize("shell", ["dash", "busybox-ash", "bash"])
def test_up_twice_changes_nothing_and_run_refuses(kept, shell):
    container = kept(shell=shell)
    result = container.sh("up")
    assert result.returncode == 0, result.stderr
    pinned = sorted(m.mount_point for m in mountinfo.read() if m.fstype == "nsfs"
                    and m.mount_point.startswith(container.ns + "/"))
    assert pinned == [os.path.join(container.ns, kind) for kind in ("ipc", "mnt", "net", "uts")]
    before = mountinfo.read()
    result = container.sh("up")
    assert (result.returncode, "up already") == (0, result.stderr.strip().split(": ", 1)[1]), result.stderr
    assert mountinfo.read() == before
    status = container.sh("status")
    assert (status.returncode, status.stdout) == (3, "stopped\n")
    result = container.sh("run", "true")
    assert result.returncode == 1
    assert "is up" in result.stderr and "down" in result.stderr, result.stderr
    assert mountinfo.read() == before
    result = container.sh("down")
    assert result.returncode == 0, result.stderr
    container.assert_down()
    status = container.sh("status")
    assert (status.returncode, status.stdout) == (3, "down\n")


def test_up_from_another_spec_builds_again(make_container, copy_rootfs, tmp_path, cleanup):
    rootfs = {"path": copy_rootfs()}
    first = make_container(rootfs=rootfs, volumes=[{"type": "tmpfs", "target": "/one"}])
    kept = Kept(first.script, first.name, first.state_dir, first.run_dir)
    cleanup(kept)
    assert kept.sh("up").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    second = make_container(directory=str(other), rootfs=rootfs, volumes=[{"type": "tmpfs", "target": "/two"}])
    again = Kept(second.script, second.name, second.state_dir, second.run_dir)
    result = again.sh("up")
    assert result.returncode == 0, result.stderr
    assert "another spec" in result.stderr, result.stderr
    record = json.loads(again.read("record"))
    with open(second.script) as f:
        assert "CFS_DIGEST='%s'" % record["digest"] in f.read()
    look = subprocess.run(["nsenter", "--mount=" + os.path.join(kept.ns, "mnt"), "cat", "/proc/self/mountinfo"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    points = [m.mount_point for m in mountinfo.parse(look)]
    root = first.spec["rootfs"]["path"]
    assert root + "/two" in points and root + "/one" not in points
    assert again.sh("down").returncode == 0
    kept.assert_down()


def test_a_failed_up_leaves_nothing_pinned(kept, copy_rootfs, tmp_path):
    container = kept(rootfs={"path": copy_rootfs()}, volumes=[{"source": str(tmp_path / "missing"), "target": "/data"}])
    result = container.sh("up")
    assert result.returncode == 1
    assert "does not exist" in result.stderr, result.stderr
    assert container.mounts_under_run() == []
    assert not os.path.exists(container.path("record"))
    assert container.sh("down").returncode == 0
    container.assert_down()
