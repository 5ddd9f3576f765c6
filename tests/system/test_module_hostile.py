"""The modules against hostile names, planted plans and symlinks, concurrency, symlinked
dirs and full disks (issue 7, items 5-10 and 13), through real playbooks.

Everything lives under the test's tmp dir; tests/run gives a private mount namespace.
"""
import fcntl
import glob
import json
import os
import subprocess
import sys
import threading

import pytest

from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, make_tar
from tests.lib.playbook import run_playbook

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "scripts", "containerfs")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def spec(tmp_path, rootfs):
    return {"name": "box", "hostname": "box", "rootfs": {"path": rootfs, "overlay": True},
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}


def task(spec=None, state="present", **args):
    if spec is not None:
        args["spec"] = spec
    args["state"] = state
    return {"name": "container %s" % state, "fromscratch.containerfs.container": args}


def info_task(**args):
    return {"name": "info", "fromscratch.containerfs.container_info": args}


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if l.split()[4].startswith(path)]


def ns_mount_count(spec, root):
    """How many mounts the container's mount namespace holds at or under its root."""
    ns = os.path.join(spec["run_dir"], spec["name"], "ns", "mnt")
    out = subprocess.run(["nsenter", "--mount=" + ns, "cat", "/proc/self/mountinfo"],
                         stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    points = [line.split()[4] for line in out.splitlines()]
    return len([p for p in points if p == root or p.startswith(root + "/")])


def victim_dir(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep\n")
    return str(victim)


# --------------------------------------------------------------------- item 5: names first

def test_absent_and_info_refuse_a_name_with_a_path_in_it(tmp_path):
    """name: ../../evil used to read <state>/../evil/plan.json and rmtree what it named."""
    victim = victim_dir(tmp_path)
    state_dir = tmp_path / "a" / "b" / "state"
    evil = tmp_path / "a" / "evil"
    evil.mkdir(parents=True)
    (evil / "plan.json").write_text(json.dumps({
        "name": "../../evil", "digest": "x",
        "paths": {"state": victim, "run": victim, "root": victim, "etc": victim},
        "steps": [{"op": "namespaces", "phase": "host", "namespaces": [], "propagation": "rslave"}]}))
    results = run_playbook(tmp_path, [
        dict(task(name="../../evil", state="absent", state_dir=str(state_dir)), ignore_errors=True),
        info_task(name="../../evil", state_dir=str(state_dir))], expect_failure=True)
    for result in results:
        assert result["failed"] and "invalid container name '../../evil'" in result["msg"], result
    assert os.listdir(victim) == ["precious"]
    assert os.path.exists(str(evil / "plan.json"))


def test_a_recorded_plan_naming_other_paths_is_refused(tmp_path):
    victim = victim_dir(tmp_path)
    state_dir = tmp_path / "state"
    record = state_dir / "containers" / "box" / "plan.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({
        "name": "box", "digest": "x",
        "paths": {"state": victim, "run": str(tmp_path / "run" / "box"), "root": victim},
        "steps": [{"op": "namespaces", "phase": "host", "namespaces": [], "propagation": "rslave"}]}))
    results = run_playbook(tmp_path, [
        dict(task(name="box", state="absent", state_dir=str(state_dir)), ignore_errors=True),
        info_task(name="box", state_dir=str(state_dir))], expect_failure=True)
    for result in results:
        assert result["failed"], result
        assert "the recorded plan %s" % record in result["msg"] and "paths.state" in result["msg"]
    assert os.listdir(victim) == ["precious"]


def test_bad_state_and_run_dirs_are_refused_before_use(tmp_path):
    results = run_playbook(tmp_path, [
        dict(task(name="box", state="absent", state_dir="relative/state"), ignore_errors=True),
        dict(task(name="box", state="absent", state_dir=str(tmp_path / "s"),
                  run_dir=str(tmp_path) + "/r\n/etc"), ignore_errors=True)], expect_failure=True)
    assert "state_dir must be an absolute path" in results[0]["msg"]
    assert "run_dir must not hold control characters" in results[1]["msg"]


# ------------------------------------------------------------- items 6, 9: one lock per container

def test_parallel_runs_on_one_container_stack_no_mounts(tmp_path, spec):
    single = dict(spec, name="single")
    run_playbook(tmp_path, [task(single)])
    want = ns_mount_count(single, os.path.join(spec["run_dir"], "single", "rootfs"))
    for round_ in range(3):
        results = parallel_playbooks(tmp_path / ("round%d" % round_), [task(spec)], 6)
        assert all(not r.get("failed") for r in results), results
        assert ns_mount_count(spec, os.path.join(spec["run_dir"], "box", "rootfs")) == want
        assert run_playbook(tmp_path, [task(spec)])[0]["changed"] is False
        run_playbook(tmp_path, [task(spec, "absent")])
    run_playbook(tmp_path, [task(single, "absent")])
    assert mounts_under(spec["run_dir"]) == []


def parallel_playbooks(work, tasks, count):
    """`count` ansible-playbook runs of `tasks` at once; the first result of each."""
    results = [None] * count

    def one(i):
        where = work / str(i)
        where.mkdir(parents=True)
        results[i] = run_playbook(where, tasks, expect_failure=True)[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_held_lock_times_out_naming_the_container_and_file(tmp_path, spec):
    os.makedirs(spec["run_dir"])
    lock = os.path.join(spec["run_dir"], "box.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = run_playbook(tmp_path, [task(spec, lock_timeout=1)], expect_failure=True)[0]
        info = run_playbook(tmp_path, [info_task(name="box", state_dir=spec["state_dir"],
                                                 lock_timeout=1)], expect_failure=True)[0]
    finally:
        os.close(fd)
    assert result["failed"] and "container box" in result["msg"] and lock in result["msg"]
    assert not os.path.exists(os.path.join(spec["run_dir"], "box"))
    assert info.get("exists") is False  # nothing recorded: no lock needed to say so
    run_playbook(tmp_path, [task(spec), task(spec, "absent")])


def image_spec(tmp_path, store):
    layout = str(tmp_path / "layout")
    base = fx.tar_of_dir(fx.busybox_tree(str(tmp_path / "base-tree")))
    top = make_tar([dir_("srv"), file_("srv/app", b"app\n")])
    fx.oci_layout(layout, [base, top])
    return {"name": "gcbox", "rootfs": {"image": {"source": layout, "store": store}},
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}


def test_gc_racing_a_container_present_never_takes_its_layers(tmp_path):
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import ImageStore
    store = str(tmp_path / "store")
    spec = image_spec(tmp_path, store)
    stop = threading.Event()
    errors = []

    def collect():
        while not stop.is_set():
            try:
                ImageStore(store).gc()
            except Exception as exc:  # a GC error is a finding too
                errors.append(exc)

    gc = threading.Thread(target=collect)
    gc.start()
    try:
        for _round in range(4):
            present = run_playbook(tmp_path, [task(spec)])[0]
            assert present["changed"] is True
            assert len(glob.glob(os.path.join(store, "layers", "sha256", "*.json"))) == 2
            run_playbook(tmp_path, [task(spec, "absent")])
    finally:
        stop.set()
        gc.join()
    assert errors == []


def test_unpack_errors_name_the_layer_that_failed(tmp_path):
    spec = image_spec(tmp_path, str(tmp_path / "store"))
    index = json.load(open(os.path.join(spec["rootfs"]["image"]["source"], "index.json")))
    blobs = os.path.join(spec["rootfs"]["image"]["source"], "blobs", "sha256")
    manifest = json.load(open(os.path.join(blobs, index["manifests"][0]["digest"][7:])))
    top = os.path.join(blobs, manifest["layers"][1]["digest"][7:])
    size = os.path.getsize(top)
    os.chmod(top, 0o644)
    with open(top, "wb") as f:
        f.write(b"\0" * size)
    result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
    assert "layer 1 (" in result["msg"], result["msg"]
    assert "layer 0 (" not in result["msg"]


# ------------------------------------------------------------ item 7: planted symlinks

def test_planted_symlinks_in_the_state_dir_are_never_followed(tmp_path, spec):
    victim = victim_dir(tmp_path)
    etc = os.path.join(spec["state_dir"], "containers", "box", "etc")
    os.makedirs(etc)
    hosts = os.path.join(etc, "hosts")
    os.symlink(os.path.join(victim, "precious"), hosts)       # the file itself
    os.symlink(os.path.join(victim, "tmp"), os.path.join(etc, "hostname.tmp"))  # the old temp name
    os.symlink(os.path.join(victim, "plan"), os.path.join(etc, "..", "plan.json.tmp"))
    run_playbook(tmp_path, [task(spec)])
    assert sorted(os.listdir(victim)) == ["precious"]
    assert open(os.path.join(victim, "precious")).read() == "keep\n"
    assert not os.path.islink(hosts) and "localhost" in open(hosts).read()
    run_playbook(tmp_path, [task(spec, "absent")])
    assert os.listdir(victim) == ["precious"]


def test_a_state_dir_component_that_is_a_symlink_is_refused(tmp_path, spec):
    victim = victim_dir(tmp_path)
    os.makedirs(os.path.join(spec["state_dir"], "containers", "box"))
    os.symlink(victim, os.path.join(spec["state_dir"], "containers", "box", "etc"))
    result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
    assert "containers/box/etc is a symlink; refusing to use it" in result["msg"]
    assert os.listdir(victim) == ["precious"]
    os.chmod(os.path.join(spec["state_dir"], "containers"), 0o777)
    result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
    assert "containers is writable by group or others" in result["msg"]


def test_a_run_dir_planted_as_a_symlink_is_refused(tmp_path, spec):
    victim = victim_dir(tmp_path)
    os.makedirs(spec["run_dir"])
    os.symlink(victim, os.path.join(spec["run_dir"], "box"))
    result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
    assert "run/box is a symlink; refusing to use it" in result["msg"]
    assert os.listdir(victim) == ["precious"]
    assert mounts_under(victim) == []


def test_cli_outputs_never_write_through_planted_links(tmp_path, rootfs):
    victim = victim_dir(tmp_path)
    target = os.path.join(victim, "precious")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"name": "box", "rootfs": {"path": rootfs}, "hostname": "box"}))
    out = tmp_path / "out.sh"
    os.symlink(target, str(out) + ".tmp")
    subprocess.run([sys.executable, CLI, "render", str(spec_file), "-o", str(out)], check=True)
    bundle = tmp_path / "bundle"
    (bundle / "etc").mkdir(parents=True)
    os.symlink(target, str(bundle / "config.json.tmp"))
    os.symlink(target, str(bundle / "etc" / "hostname"))
    subprocess.run([sys.executable, CLI, "export", str(spec_file), "-o", str(bundle)], check=True)
    assert open(target).read() == "keep\n" and os.stat(target).st_mode & 0o777 == 0o644
    assert os.path.isfile(str(out)) and not os.path.islink(str(bundle / "etc" / "hostname"))
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(victim, str(linked / "etc"))
    proc = subprocess.run([sys.executable, CLI, "export", str(spec_file), "-o", str(linked)],
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 1 and "etc is a symlink" in proc.stderr
    assert sorted(os.listdir(victim)) == ["precious"]


# ------------------------------------------------------ item 8: paths through symlinked dirs

def test_run_dir_through_a_symlinked_dir_is_seen_as_set_up(tmp_path, spec):
    real = tmp_path / "real-run"
    real.mkdir()
    os.symlink(str(real), str(tmp_path / "var-run"))
    spec["run_dir"] = str(tmp_path / "var-run" / "containerfs")
    run_playbook(tmp_path, [task(spec)])
    assert run_playbook(tmp_path, [task(spec)])[0]["changed"] is False
    run_playbook(tmp_path, [task(spec, "absent")])
    assert mounts_under(str(real)) == []
    assert not os.path.exists(str(real / "containerfs" / "box"))


def test_rootfs_through_a_symlinked_dir_is_seen_as_set_up(tmp_path, spec, rootfs):
    images = tmp_path / "images"
    images.mkdir()
    subprocess.run(["cp", "-a", rootfs, str(images / "rootfs")], check=True)
    os.symlink(str(images), str(tmp_path / "srv"))
    spec["rootfs"] = {"path": str(tmp_path / "srv" / "rootfs"), "overlay": False}
    run_playbook(tmp_path, [task(spec)])
    count = ns_mount_count(spec, str(images / "rootfs"))
    again = run_playbook(tmp_path, [task(spec)])[0]
    assert again["changed"] is False, again["actions"]
    assert ns_mount_count(spec, str(images / "rootfs")) == count
    run_playbook(tmp_path, [task(spec, "absent")])
    assert mounts_under(str(tmp_path)) == []


# ------------------------------------------------------------- item 10: flatten is ours only

def test_flatten_never_replaces_a_directory_it_did_not_make(tmp_path):
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, [make_tar([dir_("etc"), file_("etc/motd", b"hi\n")])])
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "mine").write_text("keep\n")
    args = {"name": "web", "source": layout, "store": str(tmp_path / "store"), "flatten": str(flat)}
    result = run_playbook(tmp_path, [{"name": "image", "fromscratch.containerfs.image": args}],
                          expect_failure=True)[0]
    assert "was not made by flatten" in result["msg"] and str(flat) in result["msg"]
    assert os.listdir(str(flat)) == ["mine"]


# ------------------------------------------------------------- item 13: host step errors

def test_a_state_dir_under_a_file_fails_naming_the_step(tmp_path, spec):
    (tmp_path / "file").write_text("x")
    spec["state_dir"] = str(tmp_path / "file" / "state")
    result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
    assert result["msg"].startswith("container box: mkdir -p %s/containers/box/etc:" % spec["state_dir"])
    assert "Traceback" not in result.get("module_stderr", "") + result["msg"]


def test_a_full_state_dir_fails_naming_the_step_and_leaves_no_temp(tmp_path, spec):
    state = spec["state_dir"]
    os.makedirs(state)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", state], check=True)
    try:
        fd = os.open(os.path.join(state, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        result = run_playbook(tmp_path, [task(spec)], expect_failure=True)[0]
        assert "container box: write %s/containers/box/etc/hostname" % state in result["msg"]
        assert "No space left on device" in result["msg"]
        leftovers = [p for p in glob.glob(os.path.join(state, "**"), recursive=True)
                     if p.endswith(".tmp") or ".tmp" in os.path.basename(p)]
        assert leftovers == []
    finally:
        subprocess.run(["umount", state], check=True)
