"""Volumes: bind (ro/rw, recursive or not, file or directory, propagation) and tmpfs; and
mount targets in a hostile rootfs (symlinks) that must stay inside the rootfs."""
import os
import uuid

import pytest

from tests.lib import mountinfo


def container_mounts(result):
    text = result.stdout.split("@@mountinfo\n", 1)[1]
    return mountinfo.by_mount_point(mountinfo.parse(text))


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src"
    (path / "sub").mkdir(parents=True)
    (path / "hello").write_text("from the host\n")
    return str(path)


def test_bind_rw_and_ro(make_container, source, tmp_path):
    container = make_container(volumes=[
        {"source": source, "target": "/rw"},
        {"source": source, "target": "/ro", "readonly": True},
    ])
    result = container.inside(
        "cat /rw/hello; echo inside > /rw/written && echo rw-ok;"
        "(echo x > /ro/denied) 2>&1; echo ro-rc=$?;"
        "echo @@mountinfo; cat /proc/self/mountinfo")
    assert result.rc == 0, result
    assert "from the host" in result.stdout and "rw-ok" in result.stdout
    assert "Read-only file system" in result.stdout and "ro-rc=1" in result.stdout, result
    assert (tmp_path / "src" / "written").read_text() == "inside\n"
    assert not (tmp_path / "src" / "denied").exists()
    mounts = container_mounts(result)
    assert "rw" in mounts["/rw"][-1].options
    assert "ro" in mounts["/ro"][-1].options


def test_bind_recursive_or_not(make_container, source):
    """A mount under the source (made on the host) is seen with recursive (the default)
    and not without it."""
    setup = "mount -t tmpfs sub %s/sub && echo in-submount > %s/sub/marker" % (source, source)
    container = make_container(volumes=[
        {"source": source, "target": "/rec"},
        {"source": source, "target": "/flat", "recursive": False},
    ])
    result = container.inside("cat /rec/sub/marker; ls -A /flat/sub | wc -l", setup=setup)
    assert result.rc == 0, result
    assert result.stdout.split() == ["in-submount", "0"], result


def test_file_source_makes_a_file_target(make_container, copy_rootfs, tmp_path):
    rootfs = copy_rootfs()
    source_file = tmp_path / "config"
    source_file.write_text("key=value\n")
    container = make_container(rootfs={"path": rootfs}, volumes=[
        {"source": str(source_file), "target": "/etc/app/config"},
        {"source": str(tmp_path), "target": "/srv/dir"},
    ])
    result = container.inside("cat /etc/app/config; [ -f /etc/app/config ] && echo file;"
                              "[ -d /srv/dir ] && echo dir")
    assert result.rc == 0, result
    assert result.stdout.split() == ["key=value", "file", "dir"], result
    assert os.path.isfile(os.path.join(rootfs, "etc/app/config"))
    assert os.path.isdir(os.path.join(rootfs, "srv/dir"))


@pytest.mark.parametrize("propagation,tag", [("rprivate", ()), ("rslave", ("master",))])
def test_bind_propagation(make_container, source, propagation, tag):
    """rslave: the mount is a slave of the host's (mountinfo 'master:N'); rprivate: none."""
    container = make_container(volumes=[{"source": source, "target": "/vol",
                                         "propagation": propagation}])
    result = container.inside("echo @@mountinfo; cat /proc/self/mountinfo")
    assert result.rc == 0, result
    assert container_mounts(result)["/vol"][-1].propagation == tag


def test_rslave_sees_a_host_mount_made_after_start(make_container, source):
    """A mount made on the host under the source after the container started shows up
    inside an rslave volume."""
    container = make_container(volumes=[{"source": source, "target": "/vol",
                                         "propagation": "rslave"}])
    # The container waits for the host side to mount, then looks.
    setup = ("( while [ ! -e %(s)s/ready ]; do sleep 0.05; done;"
             " mount -t tmpfs late %(s)s/sub && echo late > %(s)s/sub/marker"
             " && : > %(s)s/mounted ) &" % {"s": source})
    result = container.inside(
        ": > /vol/ready; n=0; while [ ! -e /vol/mounted ] && [ $n -lt 100 ]; do"
        " sleep 0.05; n=$((n+1)); done; cat /vol/sub/marker", setup=setup, check_clean=False)
    assert result.rc == 0, result
    assert result.stdout.strip() == "late"


def test_tmpfs_volume_size_and_mode(make_container):
    container = make_container(volumes=[{"type": "tmpfs", "target": "/scratch", "size": "8m",
                                         "mode": "1770"}])
    result = container.inside("stat -c %a /scratch; touch /scratch/x && echo writable;"
                              "echo @@mountinfo; cat /proc/self/mountinfo")
    assert result.rc == 0, result
    assert result.stdout.split()[:2] == ["1770", "writable"], result
    mount = container_mounts(result)["/scratch"][-1]
    assert mount.fstype == "tmpfs"
    assert "size=8192k" in mount.super_options and "mode=1770" in mount.super_options, mount


def test_volume_through_absolute_symlink_stays_in_rootfs(make_container, copy_rootfs, source):
    """rootfs /data -> /etc; a volume at /data/NAME lands on the rootfs's /etc/NAME, never
    on the host's /etc/NAME (CVE-2021-30465)."""
    rootfs = copy_rootfs()
    os.symlink("/etc", os.path.join(rootfs, "data"))
    name = "cfs-test-" + uuid.uuid4().hex[:12]
    container = make_container(rootfs={"path": rootfs},
                               volumes=[{"source": source, "target": "/data/" + name}])
    result = container.inside("cat /etc/%s/hello; echo @@mountinfo; cat /proc/self/mountinfo"
                              % name)
    assert not os.path.lexists("/etc/" + name), "the volume target was created on the host"
    assert result.rc == 0, result
    assert "from the host" in result.stdout
    assert "/etc/" + name in container_mounts(result)
    assert os.path.isdir(os.path.join(rootfs, "etc", name))


def test_volume_through_dotdot_symlink_stays_in_rootfs(make_container, copy_rootfs, source,
                                                       tmp_path):
    """rootfs /up -> ../../..: on the host that leaves the rootfs (TMP/a/b/rootfs/../../..
    is TMP); inside it is clamped at the root, so /up/NAME is the rootfs's /NAME."""
    rootfs = copy_rootfs(tmp_path / "a" / "b" / "rootfs")
    os.symlink("../../..", os.path.join(rootfs, "up"))
    container = make_container(rootfs={"path": rootfs},
                               volumes=[{"source": source, "target": "/up/escaped"}])
    result = container.inside("cat /escaped/hello")
    assert not os.path.lexists(str(tmp_path / "escaped")), "the volume target escaped the rootfs"
    assert result.rc == 0, result
    assert "from the host" in result.stdout
    assert os.path.isdir(os.path.join(rootfs, "escaped"))


@pytest.mark.parametrize("path", ["proc", "sys"])
def test_proc_or_sys_as_symlink_is_refused(make_container, copy_rootfs, tmp_path, path):
    """CVE-2019-19921 / CVE-2023-27561: /proc or /sys replaced by a symlink."""
    rootfs = copy_rootfs()
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    os.rmdir(os.path.join(rootfs, path))
    os.symlink(str(decoy), os.path.join(rootfs, path))
    container = make_container(rootfs={"path": rootfs})
    result = container.inside("echo started")
    assert result.rc != 0, result
    assert "started" not in result.stdout
    assert "/%s" % path in result.stderr and "symlink" in result.stderr, result.stderr
    assert os.listdir(str(decoy)) == []


def test_readonly_path_over_a_volume_with_a_space(make_container, source):
    """A read-only path that is itself a mount point (a writable volume) whose path holds a
    space: mountinfo escapes it (\\040), and the script must still see it is a mount point,
    or `mount --all` skips the line as "already mounted" and the volume stays writable."""
    container = make_container(volumes=[{"source": source, "target": "/my vol"}],
                               add_readonly_paths=["/my vol"])
    result = container.inside("(echo x > '/my vol/denied') 2>&1; echo rc=$?")
    assert result.rc == 0, result
    assert "Read-only file system" in result.stdout and "rc=1" in result.stdout, result


# Issue 8: read-only from the typed options the plan built, applied the way runc does.
# The same three cases run through the container module in test_container_module.py.

def test_readonly_volume_with_rw_option_is_refused_and_readonly_mounts_ro(make_container, source):
    """readonly: true with options [rw] rendered `rbind,ro,rw,...` (the last word won, the
    volume was writable): validation refuses it, and readonly: true alone is read-only."""
    with pytest.raises(AssertionError) as refused:
        make_container(volumes=[{"source": source, "target": "/data", "readonly": True,
                                 "options": ["rw"]}])
    assert "volumes[0].options[0]" in str(refused.value) and "readonly" in str(refused.value)
    container = make_container(volumes=[{"source": source, "target": "/data", "readonly": True}])
    result = container.inside("(echo x > /data/denied) 2>&1; echo rc=$?; echo @@mountinfo;"
                              " cat /proc/self/mountinfo")
    assert result.rc == 0, result
    assert "rc=1" in result.stdout and "Read-only file system" in result.stdout, result
    assert "ro" in container_mounts(result)["/data"][-1].options


def test_readonly_path_on_a_tmpfs_volume_keeps_its_nosuid_nodev(make_container):
    """The read-only bind of a path on a tmpfs volume kept only the flags of the user's
    option words (none): it came out `ro,relatime`, without the tmpfs's nosuid,nodev."""
    container = make_container(volumes=[{"type": "tmpfs", "target": "/scratch"}],
                               process={"args": ["sh"], "cwd": "/scratch/sub"},
                               add_readonly_paths=["/scratch/sub"])
    result = container.inside("echo @@mountinfo; cat /proc/self/mountinfo")
    assert result.rc == 0, result
    options = container_mounts(result)["/scratch/sub"][-1].options
    assert {"ro", "nosuid", "nodev"} <= set(options), options


def test_readonly_tmpfs_volume_with_a_bind_below_it(make_container, source):
    """A read-only tmpfs with a bind below it stopped the script ("a mount failed"): the
    mount point could not be made in it. Mounted read-write, remounted read-only at the end
    (runc's finalizeRootfs): read-only, with the bind below still there."""
    container = make_container(volumes=[{"type": "tmpfs", "target": "/scratch", "readonly": True},
                                        {"source": source, "target": "/scratch/sub"}])
    result = container.inside("cat /scratch/sub/hello; (: > /scratch/x) 2>&1; echo rc=$?;"
                              " echo @@mountinfo; cat /proc/self/mountinfo")
    assert result.rc == 0, result
    assert "from the host" in result.stdout and "rc=1" in result.stdout, result
    mounts = container_mounts(result)
    assert mounts["/scratch"][-1].fstype == "tmpfs"
    assert {"ro", "nosuid", "nodev"} <= set(mounts["/scratch"][-1].options)
    assert "/scratch/sub" in mounts and "rw" in mounts["/scratch/sub"][-1].options
