"""The fleet harness (tests/lib/fleet.py, extensions/molecule/hosts): hosts that are
containers of ours, reached over ssh as a non-root user with become, able to run
containers inside, and removed without a trace."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.lib import fleet

ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
CALLBACKS = os.path.join(os.path.dirname(os.path.abspath(fleet.__file__)), "callback")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("sshd", path="/usr/sbin:/usr/bin") or not shutil.which("sudo"),
    reason="needs root, sshd (openssh-server) and sudo")


def ad_hoc(inventory, pattern, module, args, *options):
    """Run one module on the fleet; return {host: result}."""
    env = dict(fleet.ansible_env(os.path.dirname(inventory)), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="test_json", ANSIBLE_CALLBACK_PLUGINS=CALLBACKS)
    proc = subprocess.run([ANSIBLE, "-i", inventory, pattern, "-m", module, "-a", args] + list(options),
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible printed no JSON:\n%s\n%s" % (proc.stdout, proc.stderr))
    return report["plays"][0]["tasks"][0]["hosts"]


@pytest.fixture
def fleet_root():
    root = tempfile.mkdtemp(prefix="cfs-fleet-", dir="/tmp")  # short: ssh socket paths
    os.rmdir(root)
    yield root
    fleet.down(root)


def test_fleet_up_use_down(fleet_root):
    before = fleet.machine_state(fleet_root, None)
    inventory = fleet.up(2, fleet_root)
    octet = fleet.recorded_octet(fleet_root)
    assert fleet.reservation_holder(octet) == fleet_root

    # the non-root login user, and root through become (sudo)
    who = ad_hoc(inventory, "cfs_hosts", "ansible.builtin.command", "id -un", "-e", "ansible_become=false")
    assert {host: result["stdout"] for host, result in who.items()} == {"host01": "cfs", "host02": "cfs"}
    root_who = ad_hoc(inventory, "cfs_hosts", "ansible.builtin.command", "id -un")
    assert {result["stdout"] for result in root_who.values()} == {"root"}

    # each host is its own machine: own hostname, own store (not the controller's)
    made = ad_hoc(inventory, "cfs_hosts", "fromscratch.containerfs.image",
                  "name=busybox source=/srv/cfs-images/busybox.tar format=tarball")
    assert all(result["changed"] for result in made.values()), made
    for name in ("host01", "host02"):
        assert os.path.isdir(os.path.join(fleet_root, "hosts", name, "store", "layers"))

    # a container inside a host, its process running there
    spec = json.dumps({"spec": {"name": "inner", "hostname": "inner", "rootfs": {"image": {"name": "busybox"}},
                                "process": {"args": ["sleep", "1000"]}}, "state": "started"})
    started = ad_hoc(inventory, "host01", "fromscratch.containerfs.container", spec)
    assert started["host01"]["changed"], started
    inner = ad_hoc(inventory, "host01", "fromscratch.containerfs.container_exec", "name=inner argv=hostname")
    assert inner["host01"]["stdout"].strip() == "inner"
    assert fleet.processes_under(fleet_root)

    # a second `up` changes nothing
    assert set(fleet.changed_counts(fleet.create(2, fleet_root)).values()) == {0}

    fleet.down(fleet_root)
    assert not os.path.exists(fleet_root)
    assert fleet.machine_state(fleet_root, octet) == before
    assert not os.path.exists(os.path.join(fleet.OCTETS_DIR, str(octet)))
