"""A container module run killed after any step, or failing half-way (issue 9 item 7).

CONTAINERFS_TEST_KILL_AFTER_STEP=k makes the applier SIGKILL the module process right
after its k-th done step (host steps, the pinning of namespaces, root steps; removal steps
for absent). For a spec with an overlay rootfs, a bind volume, a tmpfs, the /etc files,
masked and read-only paths and a device, and for EVERY k of a fresh set-up: the next
`present` converges (changed) to the very mount table and hostname of a clean set-up and a
second one changes nothing; `absent`, by spec or by name, then leaves nothing. Every k of
an `absent` too, and of a rebuild for a changed spec, after which the old spec comes back
whole. A run that fails half-way is reported failed, never changed: false, and
leaves nothing (a first set-up) or what the next present and absent converge.

The module runs directly (tests/lib/run_module.py), not through ansible-playbook: a few
hundred runs. Everything lives under the test's tmp dir; pytest runs in a private mount
namespace.
"""
import json
import os
import signal
import subprocess

import pytest

from tests.lib import mountinfo
from tests.lib.run_module import container_hostname, container_mounts, leftovers, run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
KILL = "CONTAINERFS_TEST_KILL_AFTER_STEP"
# What the module reports doing beside the applier's steps (not counted by the hook).
NOT_STEPS = ("install the script ",)


@pytest.fixture
def spec(tmp_path, busybox_rootfs):
    data = tmp_path / "data"
    (data / "ro").mkdir(parents=True)
    (data / "secret").mkdir()
    return {
        "name": "crash",
        "hostname": "crash",
        "rootfs": {"path": busybox_rootfs, "overlay": True},
        "state_dir": str(tmp_path / "state"),
        "run_dir": str(tmp_path / "run"),
        "volumes": [{"source": str(data), "target": "/data"},
                    {"type": "tmpfs", "target": "/scratch"}],
        "dns": {"nameservers": ["10.0.0.1"]},
        "add_masked_paths": ["/etc/passwd", "/data/secret"],
        "add_readonly_paths": ["/data/ro"],
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
    }


class Runs:
    """The container module on one spec, run directly in the test's tmp dir."""

    def __init__(self, tmp_path, spec):
        self.tmp_path, self.spec = tmp_path, spec

    def __call__(self, state="present", kill_after=None, by_name=False, **args):
        if by_name:
            args.update(name=self.spec["name"], state_dir=self.spec["state_dir"], run_dir=self.spec["run_dir"])
        else:
            args["spec"] = self.spec
        env = {KILL: str(kill_after)} if kill_after else None
        return run_module(self.tmp_path, "container", dict(args, state=state), env=env)

    def ok(self, state="present", **args):
        result = self(state, **args)
        assert result.rc == 0 and not result.get("failed"), result
        return result

    def killed(self, state, k, **args):
        result = self(state, kill_after=k, **args)
        assert result.signal == signal.SIGKILL and result.result is None, (
            "%s with %s=%d was not killed: %r" % (state, KILL, k, result))


def applier_steps(result):
    return [a for a in result["actions"] if not a.startswith(NOT_STEPS)]


def view(spec):
    """What must match a clean set-up: the mount table inside, and the hostname."""
    return [without_first_mount_uuid(m) for m in container_mounts(spec)], container_hostname(spec)


def without_first_mount_uuid(mount):
    """overlayfs shows uuid=on only on the first mount of an upper dir (uuid=auto finds
    none yet, makes one and stores it); a later mount of that upper dir (a rebuild) uses
    the stored one with the default uuid=auto, which it does not show."""
    if mount.fstype != "overlay":
        return mount
    return mount._replace(super_options=tuple(o for o in mount.super_options if o != "uuid=on"))


def assert_same_view(spec, want, what, any_order=False):
    got = view(spec)
    if any_order:  # a repair mounts what is missing after what is there
        got, want = (sorted(got[0]), got[1]), (sorted(want[0]), want[1])
    assert got == want, "%s:\nwant\n%s\n%s\ngot\n%s\n%s" % (
        what, mountinfo.format_table(want[0]), want[1], mountinfo.format_table(got[0]), got[1])


def test_killed_after_any_step_of_a_set_up_the_next_present_converges(tmp_path, spec):
    runs = Runs(tmp_path, spec)
    fresh = runs.ok()
    done = applier_steps(fresh)
    steps = len(done)
    want = view(spec)
    assert steps > 30 and any(a.startswith("pin fresh namespaces") for a in done)
    assert {"/", "/dev", "/data", "/data/ro", "/data/secret", "/scratch", "/etc/passwd", "/etc/hosts",
            "/sys"} <= set(m.mount_point for m in want[0]) and want[1] == "crash"
    assert runs.ok("absent")["changed"] is True
    # The count is exact: one more than the steps of a set-up and the run ends normally.
    assert runs.ok(kill_after=steps + 1)["actions"] == fresh["actions"]
    assert runs.ok("absent")["changed"] is True
    for k in range(1, steps + 1):
        runs.killed("present", k)
        again = runs.ok()
        assert again["changed"] is True, "k=%d: %r" % (k, again)
        assert_same_view(spec, want, "k=%d: after a run killed after step %r" % (k, done[k - 1]))
        assert runs.ok()["changed"] is False, "k=%d: a second present changed something" % k
        assert runs.ok("absent")["changed"] is True
        assert leftovers(spec) == [], "k=%d" % k


def test_killed_after_any_step_of_a_set_up_absent_by_name_removes_it(tmp_path, spec):
    runs = Runs(tmp_path, spec)
    steps = len(applier_steps(runs.ok()))
    runs.ok("absent")
    for k in range(1, steps + 1):
        runs.killed("present", k)
        gone = runs.ok("absent", by_name=True)
        assert gone["changed"] is True, "k=%d: %r" % (k, gone)
        assert leftovers(spec) == [], "k=%d: absent by name after a kill left these" % k


def test_killed_after_any_step_of_a_rebuild_the_old_spec_comes_back_whole(tmp_path, spec):
    """A changed spec's rebuild killed after any step, then the old spec again: it is
    rebuilt as it was, nothing of the new spec's set-up is kept (its extra tmpfs)."""
    runs = Runs(tmp_path, spec)
    runs.ok()
    want = view(spec)
    changed = dict(spec, volumes=spec["volumes"] + [{"type": "tmpfs", "target": "/extra"}])
    rebuild = Runs(tmp_path, changed)
    done = applier_steps(rebuild.ok())
    assert "/extra" in [m.mount_point for m in container_mounts(spec)]
    assert done[0].startswith("pin fresh namespaces") and runs.ok()["changed"] is True
    for k in range(1, len(done) + 1):
        rebuild.killed("present", k)
        again = runs.ok()
        assert again["changed"] is True, "k=%d: %r" % (k, again)
        assert_same_view(spec, want, "k=%d: the old spec after a rebuild killed after step %r" % (k, done[k - 1]))
    runs.ok("absent", by_name=True)
    assert leftovers(spec) == []


def test_killed_after_any_step_of_absent_the_next_absent_converges(tmp_path, spec):
    """Killed after its last step, absent has done it all: the next one changes nothing."""
    runs = Runs(tmp_path, spec)
    runs.ok()
    steps = len(applier_steps(runs.ok("absent")))
    assert steps == 2
    for k in range(1, steps + 1):
        for by_name in (False, True):
            runs.ok()
            runs.killed("absent", k, by_name=by_name)
            assert bool(leftovers(spec)) == (k < steps), "k=%d: %s" % (k, leftovers(spec))
            gone = runs.ok("absent", by_name=by_name)
            assert gone["changed"] is (k < steps), "k=%d: %r" % (k, gone)
            assert leftovers(spec) == [], "k=%d, by name %s" % (k, by_name)
            assert runs.ok("absent", by_name=by_name)["changed"] is False


# ---------------------------------------------------------------------------------------
# Failing half-way: reported failed; nothing left, or what the next runs converge
# ---------------------------------------------------------------------------------------

def host_table():
    with open("/proc/self/mountinfo") as f:
        return f.read()


def test_a_first_set_up_with_a_missing_volume_source_leaves_nothing(tmp_path, spec):
    missing = str(tmp_path / "no-such-dir")
    spec["volumes"].append({"source": missing, "target": "/missing"})
    before = host_table()
    failed = Runs(tmp_path, spec)()
    assert failed.rc == 1 and failed["failed"] is True and failed.get("changed") is not True, failed
    assert "%s does not exist" % missing in failed["msg"], failed["msg"]
    assert host_table() == before
    assert leftovers(spec) == []
    assert Runs(tmp_path, spec).ok("absent", by_name=True)["changed"] is False


def test_a_first_set_up_failing_at_a_mount_leaves_nothing(tmp_path, spec):
    """A file bound onto a directory of the image fails once the overlay, /dev and the
    volume are mounted: all of them go."""
    source = tmp_path / "a-file"
    source.write_text("x\n")
    spec["volumes"].append({"source": str(source), "target": "/bin"})
    before = host_table()
    failed = Runs(tmp_path, spec)()
    assert failed.rc == 1 and failed["failed"] is True, failed
    assert "mount point" in failed["msg"] and "is a directory" in failed["msg"], failed["msg"]
    assert host_table() == before
    assert leftovers(spec) == []


def test_a_changed_spec_failing_half_way_is_converged_by_the_next_runs(tmp_path, spec):
    """A rebuild that fails loses its half-built namespaces and leaves the record of its
    plan marked incomplete (it names every path): present (the old spec) rebuilds the
    container as it was, absent by name removes it all."""
    runs = Runs(tmp_path, spec)
    runs.ok()
    want = view(spec)
    good_volumes = list(spec["volumes"])
    missing = str(tmp_path / "no-such-dir")
    spec["volumes"] = good_volumes + [{"source": missing, "target": "/missing"}]
    for attempt in range(2):
        failed = runs()
        assert failed.rc == 1 and failed["failed"] is True, "attempt %d: %r" % (attempt, failed)
        assert [m for m in mountinfo.read() if m.mount_point.startswith(spec["run_dir"] + "/")] == []
        with open(os.path.join(spec["state_dir"], "containers", "crash", "plan.json")) as f:
            assert json.load(f)["digest"].startswith("incomplete set-up of sha256:")
    spec["volumes"] = good_volumes
    assert runs.ok()["changed"] is True
    assert_same_view(spec, want, "rebuilt after a failed rebuild")
    assert runs.ok()["changed"] is False
    assert runs.ok("absent", by_name=True)["changed"] is True
    assert leftovers(spec) == []


def test_a_drift_repair_failing_half_way_is_converged_once_the_cause_is_gone(tmp_path, spec):
    """The volume's source disappears and its mount is gone: present fails naming it (not
    changed: false), and converges once the source is back."""
    runs = Runs(tmp_path, spec)
    runs.ok()
    want = view(spec)
    source = spec["volumes"][0]["source"]
    ns = os.path.join(spec["run_dir"], "crash", "ns", "mnt")
    root = os.path.join(spec["run_dir"], "crash", "rootfs")
    subprocess.run(["nsenter", "--mount=" + ns, "umount", "-R", root + "/data"], check=True)
    os.rename(source, source + ".away")
    failed = runs()
    assert failed.rc == 1 and failed["failed"] is True and failed.get("changed") is not True, failed
    assert source in failed["msg"], failed["msg"]
    os.rename(source + ".away", source)
    fixed = runs.ok()
    assert fixed["changed"] is True and "mount bind %s on /data (rbind,rprivate)" % source in fixed["actions"]
    assert_same_view(spec, want, "repaired after a failed repair", any_order=True)
    assert runs.ok()["changed"] is False
    runs.ok("absent")
    assert leftovers(spec) == []
