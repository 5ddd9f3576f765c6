"""drift.plan_changes: what a person reads when a spec changed, one line per change."""
import copy

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.drift import plan_changes, plan_lines
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec


def plan_of(**fields):
    spec = {"name": "web", "hostname": "web", "rootfs": {"path": "/srv/rootfs"},
            "state_dir": "/var/lib/cfs", "run_dir": "/run/cfs",
            "process": {"args": ["sh"], "env": ["A=1"]}}
    spec.update(fields)
    return build_plan(load_spec(spec))


def test_the_same_plan_changes_nothing():
    assert plan_changes(plan_of(), plan_of()) == {"removed": [], "added": []}


def test_nothing_recorded_adds_every_line():
    plan = plan_of()
    changes = plan_changes(None, plan)
    assert changes == {"removed": [], "added": plan_lines(plan)}
    assert "process args [\"sh\"]" in changes["added"] and "hostname web" in changes["added"]


def test_a_volume_and_a_device_added_are_one_line_each():
    before = plan_of()
    after = plan_of(volumes=[{"type": "tmpfs", "target": "/scratch"}],
                    devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])
    assert plan_changes(before, after) == {"removed": [], "added": [
        "mount tmpfs tmpfs on /scratch (nosuid,nodev)",
        "mknod /dev/fuse c 10:229 mode 0666 uid 0 gid 0"]}
    assert plan_changes(after, before) == {"added": [], "removed": [
        "mount tmpfs tmpfs on /scratch (nosuid,nodev)",
        "mknod /dev/fuse c 10:229 mode 0666 uid 0 gid 0"]}


def test_process_settings_are_one_line_each():
    before = plan_of()
    after = plan_of(process={"args": ["sh", "-c", "sleep 1"], "env": ["A=1", "B=2"], "cwd": "/srv",
                             "user": "1000:1000"})
    changes = plan_changes(before, after)
    assert changes["removed"] == ['process args ["sh"]', "process user 0:0", "process cwd /"]
    assert changes["added"] == ["mkdir -p /srv (if missing)",  # the working directory it makes
                                'process args ["sh", "-c", "sleep 1"]', "process user 1000:1000",
                                "process cwd /srv", "process env B=2"]


def test_a_hostname_change_shows_the_hostname_and_its_files():
    changes = plan_changes(plan_of(), plan_of(hostname="api"))
    etc = "/var/lib/cfs/containers/web/etc/"
    for key, name in (("removed", "web"), ("added", "api")):
        assert [line.rsplit(", sha256 ", 1)[0] for line in changes[key]] == [
            "write %shostname (4 bytes, mode 0644)" % etc, "write %shosts (65 bytes, mode 0644)" % etc,
            "hostname %s" % name], key


def test_a_file_edit_of_the_same_length_shows():
    before = plan_of()
    after = copy.deepcopy(before)
    step = [s for s in after["steps"] if s["op"] == "write_file" and s["path"].endswith("/hosts")][0]
    step["content"] = step["content"].replace("web", "bew")
    changes = plan_changes(before, after)
    assert len(changes["removed"]) == len(changes["added"]) == 1
    assert changes["removed"][0].startswith("write %s (" % step["path"])
    assert changes["removed"][0] != changes["added"][0]


def test_a_repeated_line_counts_once_per_time():
    before = plan_of(add_masked_paths=["/a"])
    after = copy.deepcopy(before)
    mask = [s for s in after["steps"] if s["op"] == "mask_path" and s["path"] == "/a"][0]
    after["steps"].append(copy.deepcopy(mask))
    assert plan_changes(before, after) == {"removed": [], "added": ["mask /a (if it exists)"]}
