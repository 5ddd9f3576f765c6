"""`molecule test --all` on extensions/molecule: its instances are test hosts of ours
(extensions/molecule/hosts), so it runs here without Docker or Podman; afterwards the
machine is as it was."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

from tests.lib import fleet
from tests.lib.collection import REPO_ROOT, collections_dir

VENV_BIN = os.path.dirname(sys.executable)
MOLECULE = os.path.join(VENV_BIN, "molecule")
with open(os.path.join(REPO_ROOT, "extensions", "molecule", "hosts.yml")) as hosts_file:
    MOLECULE_OCTET = yaml.safe_load(hosts_file)["cfs_hosts_octet"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(MOLECULE) or not shutil.which("sshd", path="/usr/sbin:/usr/bin"),
    reason="needs root, molecule in the venv (requirements-dev.txt) and sshd (openssh-server)")


def failed_steps(output):
    """The scenario ➜ step lines molecule marks failed, and the task errors before them."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    return [line.strip() for line in plain.splitlines()
            if "Executed: Failed" in line or "fatal:" in line or "[ERROR]" in line or "FAILED!" in line]


@pytest.fixture
def molecule_root():
    root = tempfile.mkdtemp(prefix="cfs-mol-", dir="/tmp")  # short: ssh socket paths
    os.rmdir(root)  # the default scenario's create.yml makes it
    yield root
    fleet.down(root)  # after a failed run: whatever create.yml left


def test_molecule_all_scenarios(molecule_root, tmp_path):
    before = fleet.machine_state(molecule_root, MOLECULE_OCTET)
    env = dict(os.environ,
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
               ANSIBLE_COLLECTIONS_PATH=collections_dir(str(tmp_path)),
               CFS_MOLECULE_ROOT=molecule_root,
               NO_COLOR="1")
    proc = subprocess.run([MOLECULE, "test", "--all"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False, timeout=1200)
    assert proc.returncode == 0, (
        "molecule test --all failed (exit %d):\n  %s\n\nthe end of its output:\n%s" % (
            proc.returncode, "\n  ".join(failed_steps(proc.stdout)) or "(no failed step found)",
            proc.stdout[-8000:]))
    for scenario in ("modules", "containers", "container_scripts"):
        assert re.search(r"%s\s*:.*failed=0" % scenario, proc.stdout), "scenario %s did not run" % scenario
    assert not os.path.exists(molecule_root)
    assert fleet.machine_state(molecule_root, MOLECULE_OCTET) == before
