"""A reboot under a container set up by the module (issue 9 item 8).

A reboot empties the run dir (/run is a tmpfs) and ends every namespace, while the state
dir (the record, the overlay's upper dir, the /etc files) stays. Simulated here: every
mount under the container's ns dir lazily unmounted (the pinned namespaces die), then the
run dir removed, the container's own or the whole run dir base. container_info then says
needs_rebuild (not absent); present rebuilds it (changed) to what a fresh set-up makes;
absent after a reboot removes the state too.

The modules run directly (tests/lib/run_module.py). Everything lives under the test's tmp
dir; pytest runs in a private mount namespace.
"""
import os
import shutil
import subprocess

import pytest

from tests.lib import mountinfo
from tests.lib.run_module import container_hostname, container_mounts, leftovers, run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def spec(tmp_path, busybox_rootfs):
    data = tmp_path / "data"
    (data / "ro").mkdir(parents=True)
    return {
        "name": "boot",
        "hostname": "boot",
        "rootfs": {"path": busybox_rootfs, "overlay": True},
        "state_dir": str(tmp_path / "state"),
        "run_dir": str(tmp_path / "run"),
        "volumes": [{"source": str(data), "target": "/data"}, {"type": "tmpfs", "target": "/scratch"}],
        "dns": {"nameservers": ["10.0.0.1"]},
        "add_masked_paths": ["/etc/passwd"],
        "add_readonly_paths": ["/data/ro"],
    }


def container(tmp_path, spec, state="present", by_name=False):
    args = ({"name": spec["name"], "state_dir": spec["state_dir"], "run_dir": spec["run_dir"]}
            if by_name else {"spec": spec})
    result = run_module(tmp_path, "container", dict(args, state=state))
    assert result.rc == 0 and not result.get("failed"), result
    return result


def info(tmp_path, spec, **args):
    result = run_module(tmp_path, "container_info",
                        dict(args, state_dir=spec["state_dir"], run_dir=spec["run_dir"]))
    assert result.rc == 0 and not result.get("failed"), result
    return result


def reboot(spec, whole_run_dir):
    """What a reboot does to the container: its namespaces end, its run dir is gone."""
    ns = os.path.join(spec["run_dir"], spec["name"], "ns")
    points = [m.mount_point for m in mountinfo.read() if m.mount_point == ns or m.mount_point.startswith(ns + "/")]
    assert points, "nothing pinned in %s" % ns
    for point in reversed(points):
        subprocess.run(["umount", "--lazy", point], check=True)
    shutil.rmtree(spec["run_dir"] if whole_run_dir else os.path.join(spec["run_dir"], spec["name"]))
    assert leftovers(spec) == [os.path.join(spec["state_dir"], "containers", spec["name"])]


def view(spec):
    """The mount table inside (overlay's uuid=on dropped: it shows only on the first mount
    of an upper dir, see test_container_crash.py) and the hostname."""
    mounts = [m._replace(super_options=tuple(o for o in m.super_options if o != "uuid=on"))
              for m in container_mounts(spec)]
    return mounts, container_hostname(spec)


@pytest.mark.parametrize("whole_run_dir", [False, True], ids=["container-run-dir", "whole-run-dir"])
def test_after_a_reboot_info_says_needs_rebuild_and_present_rebuilds(tmp_path, spec, whole_run_dir):
    first = container(tmp_path, spec)
    want = view(spec)
    reboot(spec, whole_run_dir)
    by_name = info(tmp_path, spec, name="boot")
    assert (by_name["state"], by_name["exists"]) == ("needs_rebuild", False), by_name
    listed = info(tmp_path, spec)["containers"]
    assert [(c["name"], c["state"]) for c in listed] == [("boot", "needs_rebuild")], listed
    rebuilt = container(tmp_path, spec)
    assert rebuilt["changed"] is True
    assert "pin fresh namespaces in %s" % os.path.join(spec["run_dir"], "boot", "ns") in rebuilt["actions"]
    # the host steps that made the state dir have nothing to redo: only what lives in /run
    assert [a for a in first["actions"] if a not in rebuilt["actions"]] == [
        a for a in first["actions"] if spec["state_dir"] in a and not a.startswith("mount ")]
    assert view(spec) == want
    assert container(tmp_path, spec)["changed"] is False
    assert info(tmp_path, spec, name="boot")["state"] == "present"
    container(tmp_path, spec, "absent")
    assert leftovers(spec) == []


@pytest.mark.parametrize("by_name", [False, True], ids=["by-spec", "by-name"])
def test_absent_after_a_reboot_removes_the_state(tmp_path, spec, by_name):
    container(tmp_path, spec)
    reboot(spec, whole_run_dir=True)
    gone = container(tmp_path, spec, "absent", by_name=by_name)
    assert gone["changed"] is True
    assert gone["actions"] == ["remove %s" % os.path.join(spec["state_dir"], "containers", "boot")]
    assert leftovers(spec) == []
    assert info(tmp_path, spec, name="boot")["state"] == "absent"
    assert container(tmp_path, spec, "absent", by_name=by_name)["changed"] is False
