"""Hostile input against the generated script (issue 7): text forced into the plan after
validation, a hostile image, planted symlinks at the host paths the script writes, two
runs of one container at once, signals during `run`, and rootfs shapes found in the wild.

Each case is run for real; the invariant is that nothing of it reaches the host: no
command runs (a canary file stays absent) and watched host files keep their hashes."""
import hashlib
import os
import random
import signal
import subprocess
import time

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan

from conftest import HOST_ENV, SHELLS

HOSTILE = ["a\nb", "a\r\nb", "$(touch {canary})", "`touch {canary}`", "it's", "a #b", "a b\tc",
           "x\n/ {watched} none rbind", "x\ntouch {canary}\n#", "nosuid\n/ {rootfs}/root none rbind"]
# Prints SEEN when a mount point in the container holds the watched host dir's path.
SEEN = "awk -v w=%s 'index($5, w) { print \"SEEN\" }' /proc/self/mountinfo"
HOST_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def watched_dir(tmp_path):
    path = tmp_path / "watched"
    path.mkdir(exist_ok=True)
    (path / "file").write_text("host data\n")
    return str(path)


def host_hashes(watched):
    paths = list(HOST_FILES) + sorted(os.path.join(watched, n) for n in os.listdir(watched))
    out = {}
    for path in paths:
        with open(path, "rb") as f:
            out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def _steps(plan, op, **match):
    return [s for s in plan["steps"] if s["op"] == op and all(s.get(k) == v for k, v in match.items())]


def set_why(text):
    def change(plan):
        for step in plan["steps"]:
            step["why"] = text
    return change


def set_option(text):
    def change(plan):
        _steps(plan, "mount", target="/tmp")[0]["options"]["data"].append(text)
    return change


def set_bind_source(text):
    def change(plan):
        step = _steps(plan, "mount", target="/data")[0]
        step["source"] = step["source"] + text
    return change


def set_name(text):
    def change(plan):
        spec = {"name": plan["name"] + text, "state_dir": os.path.dirname(os.path.dirname(plan["paths"]["state"])),
                "run_dir": os.path.dirname(plan["paths"]["run"]),
                "rootfs": {"path": plan["paths"]["root"], "overlay": False, "image": None}}
        old, new = plan["paths"], _plan.container_paths(spec)
        for step in plan["steps"]:
            for key in ("path", "source"):
                if isinstance(step.get(key), str) and step[key].startswith(old["state"] + "/"):
                    step[key] = new["state"] + step[key][len(old["state"]):]
        plan["name"] = spec["name"]
        plan["paths"] = new
    return change


def set_hostname(text):
    def change(plan):
        _steps(plan, "hostname")[0]["name"] = text
    return change


CHANGES = {"why": set_why, "option": set_option, "bind-source": set_bind_source, "name": set_name,
           "hostname": set_hostname}


@pytest.mark.parametrize("field", sorted(CHANGES))
@pytest.mark.parametrize("hostile", range(len(HOSTILE)))
def test_hostile_plan_text_never_reaches_the_host(make_plan_container, copy_rootfs, tmp_path, field, hostile):
    """The renderer refuses, or the script runs nothing of it: no canary, no host change,
    and the container does not see the watched host dir."""
    watched = watched_dir(tmp_path)
    canary = str(tmp_path / "canary")
    rootfs = copy_rootfs()
    text = HOSTILE[hostile].format(canary=canary, watched=watched, rootfs=rootfs)
    data = tmp_path / "data"
    data.mkdir()
    volumes = [{"type": "tmpfs", "target": "/tmp"}, {"source": str(data), "target": "/data"}]
    before = host_hashes(watched)
    container = make_plan_container(CHANGES[field](text), volumes=volumes, rootfs={"path": rootfs})
    if isinstance(container, Exception):
        return  # refused to render
    # the host's / bound on the rootfs's /root would show the watched dir there
    result = container.inside(SEEN % watched + "; test ! -e /root%s/file || echo SEEN; echo ran" % watched)
    assert not os.path.exists(canary), result
    assert host_hashes(watched) == before, result
    assert "SEEN" not in result.stdout, result
    if field in ("why",):
        assert result.rc == 0 and "ran" in result.stdout, result  # a comment is only a comment


@pytest.mark.parametrize("values", [{"compression": "$(touch x)"}, {"compression": "gzip\n"},
                                    {"format": "oci; x"}, {"size": "1; touch x"}])
def test_layer_values_that_select_code_are_refused(make_plan_container, values):
    def change(plan):
        plan["steps"].insert(0, {
            "op": "unpack_layer", "phase": "host", "why": "layer", "at_start": False, "source": "/img",
            "format": "oci", "blob": "blobs/sha256/ab", "digest": "sha256:ab", "size": 1,
            "diff_id": "sha256:cd", "compression": "gzip", "media_type": None,
            "dest": os.path.join(os.path.dirname(os.path.dirname(plan["paths"]["state"])), "layers", "sha256", "cd")})
        plan["steps"][0].update(values)
    result = make_plan_container(change)
    assert isinstance(result, ValueError), result


def test_option_with_a_space_is_not_silently_dropped(make_plan_container, copy_rootfs):
    """mount(8) skipped such a line ("parse error ... ignored") and exited 0: the container
    ran without the mount."""
    container = make_plan_container(set_option("nosuid size=1m"), volumes=[{"type": "tmpfs", "target": "/tmp"}],
                                    rootfs={"path": copy_rootfs()})
    result = container.inside("grep -q ' /tmp ' /proc/self/mountinfo || echo MISSING")
    assert "MISSING" not in result.stdout, result
    assert result.rc != 0, result


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_mount_parse_errors_are_fatal(make_container, tmp_path, shell):
    """The script's mount_messages, on what mount(8) 2.38 prints for a line it ignores."""
    text = make_container().text
    function = text[text.index("mount_messages() {"):]
    function = function[:function.index("\n}\n") + 3]
    errors = tmp_path / "mount.err"
    for lines, ok in ((["mount: /run/x/fstab: parse error at line 2 -- ignored"], False),
                      (["mount: /x: some other warning"], True), ([], True)):
        errors.write_text("".join(l + "\n" for l in lines))
        code = 'CFS_MOUNT_ERRORS=%s\n%s\nmount_messages' % (errors, function)
        proc = subprocess.run(list(SHELLS[shell]) + ["-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, check=False)
        assert (proc.returncode == 0) == ok, (lines, proc)
        assert proc.stderr == "".join(l + "\n" for l in lines)


def test_hostile_image_symlink_target(make_container, copy_rootfs, tmp_path):
    """An image's /vol -> "x\\n/ WATCHED none rbind": the volume lands inside the rootfs."""
    watched = watched_dir(tmp_path)
    rootfs = copy_rootfs()
    os.symlink("x\n/ %s none rbind" % watched, os.path.join(rootfs, "vol"))
    source = tmp_path / "vol"
    source.mkdir()
    (source / "mark").write_text("volume\n")
    before = host_hashes(watched)
    container = make_container(rootfs={"path": rootfs}, volumes=[{"source": str(source), "target": "/vol"}])
    result = container.inside("cat /vol/mark; awk -v w=%s 'index($5, w) { print $5 }' /proc/self/mountinfo" % watched)
    assert host_hashes(watched) == before, result
    # one mount names the watched dir: the volume, on a directory inside the container
    assert result.rc == 0 and result.stdout.splitlines() == [
        "volume", "/x\\012/\\040%s\\040none\\040rbind" % watched], result


def test_control_character_in_a_mount_path_is_refused(make_container, copy_rootfs, tmp_path):
    rootfs = copy_rootfs()
    os.symlink("x\x01y", os.path.join(rootfs, "vol"))
    source = tmp_path / "vol"
    source.mkdir()
    container = make_container(rootfs={"path": rootfs}, volumes=[{"source": str(source), "target": "/vol"}])
    result = container.inside("echo ran")
    assert result.rc != 0 and "ran" not in result.stdout, result
    assert "control character" in result.stderr, result


# --- planted symlinks -------------------------------------------------------------------

def snapshot(top):
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, top)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


PLANTS = {
    "state dir": lambda c: c.state_dir,
    "containers dir": lambda c: os.path.join(c.state_dir, "containers"),
    "etc": lambda c: os.path.join(c.state_dir, "containers", c.name, "etc"),
    "etc file": lambda c: os.path.join(c.state_dir, "containers", c.name, "etc", "hosts"),
    "run dir": lambda c: os.path.join(c.run_dir, c.name),
    "run base": lambda c: c.run_dir,
    "lock": lambda c: c.lock,
    "dev template": lambda c: c.text.split("\nCFS_DEV_TEMPLATE='", 1)[1].split("'", 1)[0],
}


@pytest.mark.parametrize("where", sorted(PLANTS))
def test_planted_symlink_is_refused(make_container, tmp_path, where):
    target = tmp_path / "target"
    target.mkdir()
    (target / "hosts").write_text("keep\n")
    os.chmod(str(target), 0o700)
    container = make_container()
    container.inside("true")  # everything exists once
    path = PLANTS[where](container)
    _remove(path)
    os.symlink(str(target), path)
    before = snapshot(str(target))
    result = container.inside("echo ran")
    assert result.rc != 0 and "ran" not in result.stdout, result
    assert "is a symlink; refusing" in result.stderr, result
    assert snapshot(str(target)) == before
    assert os.path.islink(path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        subprocess.run(["rm", "-rf", "--", path], check=True)
    elif os.path.lexists(path):
        os.unlink(path)


@pytest.mark.parametrize("how", ["not root's", "group-writable"])
def test_unsafe_host_dir_is_refused(make_container, tmp_path, how):
    container = make_container()
    etc = os.path.join(container.state_dir, "containers", container.name, "etc")
    os.makedirs(etc)
    if how == "not root's":
        os.chown(container.state_dir, 65534, 65534)
    else:
        os.chmod(container.state_dir, 0o775)
    result = container.inside("echo ran")
    assert result.rc != 0 and "ran" not in result.stdout, result
    assert container.state_dir in result.stderr and "refusing" in result.stderr, result
    assert os.listdir(etc) == []


def test_new_host_dirs_are_root_only(make_container):
    container = make_container()
    assert container.inside("true").rc == 0
    for path in (container.state_dir, container.run_dir, os.path.join(container.run_dir, container.name)):
        assert os.stat(path).st_mode & 0o777 == 0o700, path


# --- paths through symlinked directories -----------------------------------------------

def test_paths_through_a_symlinked_directory(make_container, copy_rootfs, tmp_path):
    """/var/run -> /run style: the rootfs, state and run dirs reached through a link."""
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(str(real), str(tmp_path / "link"))
    copy_rootfs(real / "rootfs")
    link = str(tmp_path / "link")
    container = make_container(rootfs={"path": link + "/rootfs"}, state_dir=link + "/state",
                               run_dir=link + "/run")
    result = container.inside("grep -c ' /dev ' /proc/self/mountinfo; grep -c ' /proc ' /proc/self/mountinfo")
    assert result.rc == 0, result
    assert result.stdout.split() == ["1", "1"], result


# --- one container, two runs -----------------------------------------------------------

def test_the_lock_does_not_reach_the_container(make_container):
    container = make_container()
    result = container.inside("for f in /proc/self/fd/*; do readlink $f; done; echo done")
    assert result.rc == 0 and "done" in result.stdout, result
    assert ".lock" not in result.stdout, result


def _start(script, *cmd):
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "dash", script, "run"]
                            + list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=HOST_ENV, universal_newlines=True,
                            start_new_session=True)


def test_two_runs_of_one_container(make_container, copy_rootfs):
    """25 pairs started together: one runs, the other stops at once on the lock."""
    rootfs = copy_rootfs()
    before = snapshot(rootfs)
    container = make_container(rootfs={"path": rootfs})
    started = time.time()
    for attempt in range(25):
        pair = [_start(container.script, "sh", "-c", "echo ran; sleep 0.3") for _side in range(2)]
        results = [p.communicate(timeout=30) + (p.returncode,) for p in pair]
        ran = [r for r in results if r[2] == 0 and "ran" in r[0]]
        locked = [r for r in results if r[2] != 0 and "lock" in r[1] and "ran" not in r[0]]
        assert len(ran) == 1 and len(locked) == 1, (attempt, results)
        assert container.name in locked[0][1] and container.lock in locked[0][1], results
    assert time.time() - started < 60
    assert snapshot(rootfs) == before
    assert container.leftovers() == []


# --- signals ----------------------------------------------------------------------------

# $0: the signal's name, $1: a number no other test's sleep has (a process of the container)
PID1 = 'trap "echo got-$0; exit 7" $0; sleep $1 & echo ready; while :; do sleep 0.1; done'


def _sleepers(seconds):
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", str(seconds).encode()]:
                    found.append(pid)
        except (IOError, OSError):
            continue
    return found


@pytest.mark.parametrize("shell", sorted(SHELLS))
@pytest.mark.parametrize("name,group", [("TERM", False), ("INT", False), ("HUP", False),
                                        ("TERM", True), ("HUP", True)])
def test_signals_reach_the_container(make_container, shell, name, group):
    """Sent to the script (or its process group): pid 1 gets it, the script waits for it,
    exits with its status, and leaves no process and nothing in the run dir."""
    container = make_container()
    seconds = random.randrange(100000, 900000)
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--"] + list(SHELLS[shell])
                            + [container.script, "run", "sh", "-c", PID1, name, str(seconds)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=HOST_ENV,
                            universal_newlines=True, start_new_session=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        number = getattr(signal, "SIG" + name)
        if group:
            os.killpg(proc.pid, number)
        else:
            os.kill(proc.pid, number)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "got-" + name in out, (out, err)
    assert proc.returncode == 7, (proc.returncode, out, err)
    assert _sleepers(seconds) == []
    assert container.leftovers() == []


# --- rootfs shapes of debootstrap and docker export -------------------------------------

@pytest.mark.parametrize("shape", ["dirs", "file-and-link"])
def test_rootfs_with_its_own_dev_entries(make_container, copy_rootfs, shape):
    rootfs = copy_rootfs()
    dev = os.path.join(rootfs, "dev")
    for name in ("pts", "shm"):
        _remove(os.path.join(dev, name))
    if shape == "dirs":
        os.mkdir(os.path.join(dev, "pts"))
        os.mkdir(os.path.join(dev, "shm"))
    else:
        open(os.path.join(dev, "pts"), "w").close()
        os.symlink("/tmp", os.path.join(dev, "shm"))
    before = snapshot(rootfs)
    container = make_container(rootfs={"path": rootfs})
    result = container.inside("test -c /dev/pts/ptmx && grep -c ' /dev/shm ' /proc/self/mountinfo")
    assert result.rc == 0 and result.stdout.strip() == "1", result
    assert snapshot(rootfs) == before
