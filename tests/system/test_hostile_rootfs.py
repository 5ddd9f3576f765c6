"""A hostile rootfs: symlinks in the image where the set-up mounts, binds or makes
things (runtimes.md's checklist, items 7-13: /proc, /sys, /dev, the generated /etc files, a
volume's target, the working directory). Both back-ends - the script's `run` and the
applier the modules use - must fail closed or keep everything inside the root: a host
directory the links point to (with a 0600 file in it) is left exactly as it was, and no
mount of the applier's namespace lies outside the container's own directories.

The links are absolute host paths (a runtime that follows them as the host sees them lands
on the host) or climb with '..' past the root."""
import os
import shutil
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.applier import Applier
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
from tests.lib import mountinfo
from tests.lib import oci_fixtures as fx

CLIMB = "../../../../../../../../../../.."

# shape -> (links {path in the rootfs: link text, with VICTIM for the host dir}, spec fields,
#           what the script says when it refuses (None: it runs), whether the applier refuses)
SHAPES = {
    "proc": ({"proc": "VICTIM"}, {}, "/proc is a symlink; refusing to mount through it", False),
    "sys": ({"sys": "VICTIM"}, {}, "/sys is a symlink; refusing to mount through it", True),
    "dev": ({"dev": "VICTIM"}, {}, "/dev is a symlink; refusing to mount through it", True),
    "etc": ({"etc": "VICTIM"}, {}, None, False),
    "etc-hosts": ({"etc/hosts": "VICTIM/precious"}, {}, None, False),
    "etc-hostname-climbing": ({"etc/hostname": CLIMB + "VICTIM/precious"}, {}, None, False),
    "volume-target": ({"data": "VICTIM"}, {"volumes": [{"type": "tmpfs", "target": "/data/x"}]}, None, False),
    "volume-target-climbing": ({"data": CLIMB + "VICTIM"},
                               {"volumes": [{"type": "tmpfs", "target": "/data/x/y"}]}, None, False),
    "bind-file-target": ({"etc/motd": "VICTIM/precious"},
                         {"volumes": [{"source": "SOURCE_FILE", "target": "/etc/motd"}]}, None, False),
    "workdir": ({"work": "/proc/self/fd/3"}, {"process": {"args": ["true"], "cwd": "/work"}},
                "cannot create directory", False),
}


@pytest.fixture
def victim(tmp_path):
    """A host directory with a 0600 file (fx.snapshot tells whether anything changed it)."""
    path = tmp_path / "victim"
    path.mkdir()
    (path / "precious").write_text("precious")
    os.chmod(str(path / "precious"), 0o600)
    return str(path)


def hostile_rootfs(copy_rootfs, victim, links):
    rootfs = copy_rootfs()
    for rel, text in links.items():
        path = os.path.join(rootfs, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        os.symlink(text.replace("VICTIM", victim.lstrip("/") if text.startswith("..") else victim), path)
    return rootfs


def fields_for(shape, tmp_path):
    fields = dict(SHAPES[shape][1])
    for volume in fields.get("volumes", []):
        if volume.get("source") == "SOURCE_FILE":
            source = tmp_path / "source-file"
            source.write_text("from the volume")
            volume["source"] = str(source)
    return fields


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_script_fails_closed_or_stays_in_the_root(make_container, copy_rootfs, tmp_path, victim, shape):
    links, _fields, refusal, _applier_refuses = SHAPES[shape]
    before = fx.snapshot(victim)
    rootfs = hostile_rootfs(copy_rootfs, victim, links)
    fields = dict({"process": {"args": ["true"]}}, **fields_for(shape, tmp_path))
    result = make_container(rootfs={"path": rootfs}, **fields).run()
    if refusal is None:
        assert result.rc == 0, result
    else:
        assert result.rc != 0 and refusal in result.stderr, result
    assert fx.snapshot(victim) == before


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_applier_fails_closed_or_stays_in_the_root(copy_rootfs, tmp_path, victim, shape):
    links, _fields, _refusal, refuses = SHAPES[shape]
    before = fx.snapshot(victim)
    rootfs = hostile_rootfs(copy_rootfs, victim, links)
    spec = dict(fields_for(shape, tmp_path), name="cfs-test", hostname="cfs-test", rootfs={"path": rootfs},
                state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"))
    applier = Applier(build_plan(load_spec(spec)))
    try:
        if refuses:
            with pytest.raises(ApplyError, match="is a symlink; refusing to mount through it"):
                applier.converge()
        else:
            applier.converge()
            ns = os.path.join(spec["run_dir"], "cfs-test", "ns", "mnt")
            table = subprocess.run(["nsenter", "--mount=" + ns, "cat", "/proc/self/mountinfo"],
                                   stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
            ours = (rootfs, spec["run_dir"], spec["state_dir"])
            strays = [m.mount_point for m in mountinfo.parse(table)
                      if m.mount_point.startswith(str(tmp_path)) and not m.mount_point.startswith(ours)]
            assert strays == [], "mounts outside the container's directories"
        assert fx.snapshot(victim) == before
    finally:
        applier.remove()
