"""One playbook across a fleet (issue 12): M=2 containers on each of N=3 test hosts
(tests/lib/fleet.py) through the role fromscratch.containerfs.containers, reached over ssh
as a non-root user with sudo. First run changed everywhere, second run changed nothing;
a `serial: 1` rolling update restarts one host's containers at a time; a host whose image
source is broken fails alone, and `max_fail_percentage` stops the play only when a batch's
failures exceed it; `--limit` and `--check --diff` across the fleet.

The steps share one fleet and build on each other's state, in file order (pytest keeps it):
each test says what it expects to find."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

from tests.lib import fleet

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
CALLBACKS = os.path.join(os.path.dirname(os.path.abspath(fleet.__file__)), "callback")

HOSTS = ["host01", "host02", "host03"]
CONTAINERS = ["app1", "app2"]
# the busybox image every host sees read-only (extensions/molecule/hosts/tasks/create_host.yml)
IMAGE = "/srv/cfs-images/busybox.tar"
BROKEN_IMAGE = "/srv/cfs-images/no-such-image.tar"
CONVERGE_TASK = "fromscratch.containerfs.containers : Converge the containers"
IMPORT_TASK = "fromscratch.containerfs.containers : Import the images asked present"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("sshd", path="/usr/sbin:/usr/bin") or not shutil.which("sudo"),
    reason="needs root, sshd (openssh-server) and sudo")


class Fleet:
    """The fleet's inventory and a scratch dir for the playbooks run against it."""

    def __init__(self, inventory, scratch):
        self.inventory = inventory
        self.scratch = scratch

    def env(self):
        return dict(fleet.ansible_env(os.path.dirname(self.inventory)),
                    ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="test_json",
                    ANSIBLE_CALLBACK_PLUGINS=CALLBACKS,
                    ANSIBLE_LOCAL_TEMP=os.path.join(self.scratch, "ansible-local"))

    def play(self, version, broken=(), snapshot=False, options=(), **keywords):
        """Converge the containers with VERSION=`version` in their spec (the hosts of `broken`
        import their image from a missing file); return (exit status, [batch]), a batch being
        {"hosts": {task name: {host: result}}} - one per serial batch, in order (ansible
        starts the play again for each batch). `snapshot`: after each batch, every host's
        containers as {host: {container: pid}}, in the batch's "snapshot"."""
        play = {
            "name": "Containers on the fleet",
            "hosts": "cfs_hosts",
            "gather_facts": False,
            "roles": [{"role": "fromscratch.containerfs.containers", "vars": role_vars(version, broken)}],
        }
        if snapshot:
            play["post_tasks"] = [{
                "name": "Snapshot every host's containers",
                "fromscratch.containerfs.container_info": {},
                "delegate_to": "{{ item }}",
                "loop": "{{ groups['cfs_hosts'] }}",
            }]
        play.update(keywords)
        playbook = os.path.join(self.scratch, "play.yml")
        with open(playbook, "w") as f:
            yaml.safe_dump([play], f)
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", self.inventory, playbook] + list(options),
                              env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        return proc.returncode, batches(proc.stdout, proc.stderr)

    def pids(self):
        """{host: {container: pid}} of every host now, read over ssh."""
        proc = subprocess.run([ANSIBLE, "-i", self.inventory, "cfs_hosts", "-m",
                               "fromscratch.containerfs.container_info"],
                              env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        results = batches(proc.stdout, proc.stderr)[0]["tasks"]
        (only_task,) = results.values()
        assert sorted(only_task) == HOSTS and not any(r.get("failed") for r in only_task.values()), only_task
        return {host: container_pids(result) for host, result in only_task.items()}


def role_vars(version, broken):
    source = "{{ '%s' if inventory_hostname in %s else '%s' }}" % (BROKEN_IMAGE, json.dumps(list(broken)), IMAGE)
    return {
        "containerfs_images": [{"name": "busybox", "source": source, "format": "tarball"}],
        "containerfs_containers": [{
            "name": name,
            "state": "started",
            "spec": {
                "hostname": name,
                "rootfs": {"image": {"name": "busybox"}},
                # exits on SIGTERM at once (a pid 1 ignores it by default): a restart does
                # not wait out stop_timeout
                "process": {"args": ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"],
                            "env": ["PATH=/bin", "VERSION=%s" % version]},
            },
        } for name in CONTAINERS],
    }


def batches(stdout, stderr):
    try:
        report = json.loads(stdout)
    except ValueError:
        raise AssertionError("ansible printed no JSON:\n%s\n%s" % (stdout, stderr))
    return [{"tasks": {task["task"]["name"]: task["hosts"] for task in play["tasks"]}}
            for play in report["plays"]]


def container_pids(info_result):
    return {c["name"]: c["pid"] for c in info_result["containers"] if c["name"] in CONTAINERS}


def changed_hosts(batch):
    """The hosts on which a task of `batch` changed something."""
    return sorted({host for results in batch["tasks"].values()
                   for host, result in results.items() if result.get("changed")})


def hosts_in(batch):
    return sorted({host for results in batch["tasks"].values() for host in results})


def failed_hosts(batch):
    return sorted({host for results in batch["tasks"].values()
                   for host, result in results.items() if result.get("failed")})


def snapshot(batch):
    """{host: {container: pid}} of the batch's post task (one delegated result per host)."""
    results = batch["tasks"]["Snapshot every host's containers"]
    (delegating_host,) = results.values()
    return {item["item"]: container_pids(item) for item in delegating_host["results"]}


def restarted(before, after):
    """The hosts whose containers' pids all changed between two {host: {container: pid}};
    a host with some changed and some not is a failure of its own."""
    moved = {}
    for host in before:
        same = [name for name in CONTAINERS if before[host][name] == after[host][name]]
        assert len(same) in (0, len(CONTAINERS)), "%s: only some containers restarted: %s %s" % (
            host, before[host], after[host])
        moved[host] = not same
    return sorted(host for host, changed in moved.items() if changed)


@pytest.fixture(scope="module")
def hosts():
    root = tempfile.mkdtemp(prefix="cfs-fl-", dir="/tmp")  # short: ssh control socket paths
    os.rmdir(root)
    scratch = tempfile.mkdtemp(prefix="cfs-fleet-test-")
    try:
        with fleet.fleet(len(HOSTS), root) as inventory:
            yield Fleet(inventory, scratch)
    finally:
        shutil.rmtree(scratch)


def test_first_run_changes_every_host_second_run_none(hosts):
    status, (batch,) = hosts.play(1)
    assert status == 0, batch
    assert changed_hosts(batch) == HOSTS
    for host, result in batch["tasks"][CONVERGE_TASK].items():
        assert [item["changed"] for item in result["results"]] == [True, True], (host, result)
    pids = hosts.pids()
    assert all(pid for containers in pids.values() for pid in containers.values()), pids

    status, (batch,) = hosts.play(1)
    assert status == 0, batch
    assert hosts_in(batch) == HOSTS
    assert changed_hosts(batch) == []
    assert hosts.pids() == pids


def test_serial_rolling_update_one_host_at_a_time(hosts):
    before = hosts.pids()
    status, rolled = hosts.play(2, serial=1, snapshot=True)
    assert status == 0, rolled

    # one batch per host, in inventory order, each changing its own host only
    assert [hosts_in(batch) for batch in rolled] == [[host] for host in HOSTS]
    assert [changed_hosts(batch) for batch in rolled] == [[host] for host in HOSTS]
    # after batch k, the hosts of batches 1..k run new processes, the others their old ones
    for done, batch in enumerate(rolled, start=1):
        assert restarted(before, snapshot(batch)) == HOSTS[:done], (done, snapshot(batch))
    # and a host restarted in its own turn was not restarted again in a later one
    for earlier, later in zip(rolled, rolled[1:]):
        turn = hosts_in(earlier)[0]
        assert snapshot(later)[turn] == snapshot(earlier)[turn]


def test_a_broken_host_does_not_stop_the_others(hosts):
    # serial 2: host01 and host02, then host03. host01 fails: half its batch, which does
    # not exceed max_fail_percentage 50, so host02 and the batch after converge. (Not
    # serial 1: ansible stops the play after a batch whose hosts all failed, whatever
    # max_fail_percentage says, so that would not show the setting at work.)
    before = hosts.pids()
    status, rolled = hosts.play(3, broken=["host01"], serial=2, max_fail_percentage=50)
    assert status != 0  # a host failed
    assert [hosts_in(batch) for batch in rolled] == [["host01", "host02"], ["host03"]]
    assert failed_hosts(rolled[0]) == ["host01"]
    broken_import = rolled[0]["tasks"][IMPORT_TASK]["host01"]
    assert broken_import["failed"] and BROKEN_IMAGE in json.dumps(broken_import), broken_import
    assert sorted(rolled[0]["tasks"][CONVERGE_TASK]) == ["host02"]
    assert restarted(before, hosts.pids()) == ["host02", "host03"]


def test_max_fail_percentage_exceeded_stops_the_play(hosts):
    # the same with max_fail_percentage 49: host01's failure is 50% of its batch, above it,
    # so the play ends after that task: host02 converges nothing, host03 is never reached
    before = hosts.pids()
    status, rolled = hosts.play(4, broken=["host01"], serial=2, max_fail_percentage=49)
    assert status != 0
    assert [hosts_in(batch) for batch in rolled] == [["host01", "host02"]]
    assert failed_hosts(rolled[0]) == ["host01"]
    assert CONVERGE_TASK not in rolled[0]["tasks"], rolled[0]["tasks"].get(CONVERGE_TASK)
    assert restarted(before, hosts.pids()) == []


def test_limit_touches_only_the_named_host(hosts):
    # host01 still runs VERSION=2 (it failed both runs above); the others run VERSION=3
    before = hosts.pids()
    status, (batch,) = hosts.play(3, options=["--limit", "host01"])
    assert status == 0, batch
    assert hosts_in(batch) == ["host01"]
    assert changed_hosts(batch) == ["host01"]
    assert restarted(before, hosts.pids()) == ["host01"]


def test_check_diff_reports_the_change_without_making_it(hosts):
    before = hosts.pids()
    status, (batch,) = hosts.play(4, options=["--check", "--diff"])
    assert status == 0, batch
    assert changed_hosts(batch) == HOSTS
    for host, result in batch["tasks"][CONVERGE_TASK].items():
        diffs = json.dumps([item.get("diff") for item in result["results"]])
        assert "VERSION=4" in diffs and "VERSION=3" in diffs, (host, diffs)
    assert hosts.pids() == before
    # nothing was written either: the spec in effect is still VERSION=3 everywhere
    status, (batch,) = hosts.play(3)
    assert status == 0, batch
    assert changed_hosts(batch) == []
