"""Parity with runc: one OCI bundle, run by `runc run` and by the script rendered from
`containerfs render --bundle`, must show the same normalised /proc/self/mountinfo (mount
point, fstype, source, root, per-mount and superblock options, propagation kinds; ids and
device numbers ignored), the same `ls -l /dev` and the same hostname.

Debian's runc (1.1.x) is the yardstick; it is never a dependency. Where we differ on
purpose, the difference is a named function below that turns runc's view into ours, and
docs/runc-users.md says why:

  cgroup_tmpfs_readonly   on a v1 (or hybrid) host runc leaves the tmpfs under the
                          per-controller cgroup mounts read-write; we make it read-only.
  masked_dir_tmpfs        a masked directory is an empty tmpfs that is also nosuid, nodev,
                          noexec and 1 block/1 inode (nr_blocks=1,nr_inodes=1), as runc's
                          main branch does; runc 1.1 mounts a plain read-only tmpfs.
  shared_root_honoured    rootfsPropagation shared/rshared: runc 1.1 leaves / private
                          (runc #1755, #5390); we make it shared as the runtime-spec says.
Normalisations that are no difference: the v1 controller mounts are compared sorted and
without their root (runc binds the cgroup it creates for the container, /<id>; the script
creates no cgroup and binds the one it runs in).
"""
import copy
import os
import shutil
import subprocess

import pytest

from tests.lib import runc as R
from tests.lib.collection import REPO_ROOT

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces and mounts"),
    pytest.mark.skipif(R.runc_path() is None, reason="runc (the yardstick) is not installed"),
]

PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                "runbindable")


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    base = tmp_path_factory.mktemp("runc-parity")
    rootfs = str(base / "rootfs")
    subprocess.run([os.path.join(REPO_ROOT, "tests", "lib", "make-busybox-rootfs"), rootfs],
                   check=True)
    source = base / "source"
    (source / "sub").mkdir(parents=True)
    (source / "file").write_text("data\n")
    return {"base": str(base), "rootfs": rootfs, "source": str(source),
            "config": R.default_config(str(base)), "runc_root": str(base / "runc-root")}


def run_both(parity, name, mutate):
    config = copy.deepcopy(parity["config"])
    mutate(config, parity)
    bundle = R.write_bundle(os.path.join(parity["base"], name), config, parity["rootfs"],
                            os.path.join(parity["base"], name + "-state"))
    theirs = R.split_probe(R.run_runc(bundle, parity["runc_root"]))
    ours = R.split_probe(R.run_script(bundle, bundle))
    return theirs, ours


# Intended differences: each turns runc's view into ours ---------------------------------

def cgroup_tmpfs_readonly(mounts):
    out = []
    for m in mounts:
        if m["target"] == "/sys/fs/cgroup" and m["fstype"] == "tmpfs":
            m = dict(m, options=_swap(m["options"], "rw", "ro"), super=_swap(m["super"], "rw", "ro"))
        out.append(m)
    return out


def masked_dir_tmpfs(masked_dirs):
    def apply(mounts):
        out = []
        for m in mounts:
            if m["target"] in masked_dirs and m["fstype"] == "tmpfs" and m["super"] == ("ro",):
                m = dict(m, options=tuple(sorted(set(m["options"]) | {"nosuid", "nodev", "noexec"})),
                         super=("nr_inodes=1", "ro", "size=4k"))
            out.append(m)
        return out
    return apply


def shared_root_honoured(recursive):
    def apply(mounts):
        return [dict(m, propagation=("shared",)) if m["target"] == "/" or recursive else m
                for m in mounts]
    return apply


def _swap(options, old, new):
    return tuple(sorted(new if o == old else o for o in options))


DEFAULT_MASKED_DIRS = ("/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware")
DEFAULT_DIFFERENCES = (cgroup_tmpfs_readonly, masked_dir_tmpfs(DEFAULT_MASKED_DIRS))


def assert_parity(theirs, ours, differences=DEFAULT_DIFFERENCES):
    expected = R.cgroup_v1_normal(theirs[0])
    for difference in differences:
        expected = difference(expected)
    assert R.cgroup_v1_normal(ours[0]) == expected
    assert ours[1] == theirs[1], "ls -l /dev differs"
    assert ours[2] == theirs[2], "hostname differs"


# Variants ---------------------------------------------------------------------------------

def add_mounts(*mounts):
    def mutate(config, parity):
        for mount in mounts:
            mount = dict(mount)
            if mount.get("source") == "SOURCE":
                mount["source"] = parity["source"]
            config["mounts"].append(mount)
    return mutate


VARIANTS = {
    "runc-spec-default": lambda c, p: None,
    "writable-root": lambda c, p: c["root"].update(readonly=False),
    "hostname": lambda c, p: c.update(hostname="parity-host"),
    "read-only-bind": add_mounts({"destination": "/mnt/ro", "type": "bind", "source": "SOURCE",
                                  "options": ["rbind", "ro", "nosuid", "nodev"]}),
    "tmpfs-size-mode": add_mounts(
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "size=1m", "mode=700"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "strictatime", "mode=1777", "size=2m"]}),
    "bind-propagation": add_mounts(*[
        {"destination": "/mnt/" + p, "type": "bind", "source": "SOURCE", "options": ["rbind", p]}
        for p in PROPAGATIONS] + [
        {"destination": "/mnt/plain-" + p, "type": "bind", "source": "SOURCE",
         "options": ["bind", "ro", p]} for p in ("private", "rslave", "shared")]),
    "cgroup2-type": lambda c, p: c["mounts"].__setitem__(-1, {
        "destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    "root-propagation-private": lambda c, p: c["linux"].update(rootfsPropagation="private"),
    "root-propagation-rslave": lambda c, p: c["linux"].update(rootfsPropagation="rslave"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_parity(parity, variant):
    assert_parity(*run_both(parity, variant, VARIANTS[variant]))


def test_parity_changed_masked_and_readonly_paths(parity):
    def mutate(config, _parity):
        # files, directories, paths on proc, sysfs, the rootfs and mount points themselves
        config["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["nosuid", "nodev"]})
        config["linux"]["maskedPaths"] = ["/proc/kcore", "/proc/keys", "/proc/acpi",
                                          "/sys/firmware", "/etc/passwd", "/root", "/run",
                                          "/does/not/exist"]
        config["linux"]["readonlyPaths"] = ["/proc/sys", "/proc/sysrq-trigger", "/etc",
                                            "/sys/kernel", "/dev/shm", "/does/not/exist"]
    theirs, ours = run_both(parity, "masked-readonly", mutate)
    assert_parity(theirs, ours, (cgroup_tmpfs_readonly,
                                 masked_dir_tmpfs(("/proc/acpi", "/sys/firmware", "/root", "/run"))))


@pytest.mark.parametrize("propagation", ["shared", "rshared"])
def test_root_propagation_shared_is_honoured_unlike_runc(parity, propagation):
    theirs, ours = run_both(parity, "root-" + propagation,
                            lambda c, p: c["linux"].update(rootfsPropagation=propagation))
    assert [m["propagation"] for m in theirs[0] if m["target"] == "/"] == [()]
    assert_parity(theirs, ours, DEFAULT_DIFFERENCES + (
        shared_root_honoured(recursive=propagation == "rshared"),))


def test_root_propagation_unbindable_runs_where_runc_fails(parity):
    """runc 1.1 makes / unbindable first and then cannot bind the rootfs (EINVAL)."""
    config = copy.deepcopy(parity["config"])
    config["linux"]["rootfsPropagation"] = "unbindable"
    bundle = R.write_bundle(os.path.join(parity["base"], "unbindable"), config,
                            parity["rootfs"], os.path.join(parity["base"], "unbindable-state"))
    mounts = R.split_probe(R.run_script(bundle, bundle))[0]
    assert [m["propagation"] for m in mounts if m["target"] == "/"] == [("unbindable",)]


def test_exported_bundle_runs_under_runc_and_crun_as_the_script_does(parity, tmp_path):
    """`containerfs export` of examples/busybox.yml: runc and crun run it; runc sees what
    the script rendered from the spec itself sees (the /etc binds come from the bundle)."""
    import yaml
    with open(os.path.join(REPO_ROOT, "examples", "busybox.yml")) as f:
        raw = yaml.safe_load(f)
    raw["rootfs"]["path"] = parity["rootfs"]
    raw.update(state_dir=str(tmp_path / "lib"), run_dir=str(tmp_path / "run"))
    raw["process"]["args"] = list(R.PROBE)
    spec_file = tmp_path / "spec.yml"
    spec_file.write_text(yaml.safe_dump(raw))
    bundle = str(tmp_path / "bundle")
    subprocess.run([R.CONTAINERFS, "export", str(spec_file), "-o", bundle], check=True)
    theirs = R.split_probe(R.run_runc(bundle, parity["runc_root"]))
    ours = R.split_probe(R.run_script_spec(str(spec_file), str(tmp_path)))

    def etc_root_basename(mounts):  # bundle/etc/hosts vs STATE/containers/NAME/etc/hosts
        return [dict(m, root=os.path.basename(m["root"])) if m["target"].startswith("/etc/")
                else m for m in mounts]
    assert_parity((etc_root_basename(theirs[0]),) + theirs[1:],
                  (etc_root_basename(ours[0]),) + ours[1:])
    assert ours[2] == "busybox"
    if shutil.which("crun"):
        crun = R.split_probe(R.run_crun(bundle, str(tmp_path / "crun-root")))
        assert crun[2] == "busybox"
        assert [m["target"] for m in crun[0]][:7] == [m["target"] for m in ours[0]][:7]
