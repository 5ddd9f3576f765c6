"""Fixtures for the integration tests of the generated container script.

These tests run the rendered script for real: as root, with real namespaces, mounts and
pivot_root. Each script run is wrapped in its own `unshare --mount --propagation private`
namespace (a "host" namespace for the script, whose / is made rshared like a systemd
host's), so a bug cannot leak mounts into the namespace pytest runs in, and every run
checks that neither namespace's mount table changed.

Fixtures:
  busybox_rootfs   a busybox rootfs built once per session (treat it as read-only)
  make_plan_container  make_plan_container(change, **spec): a plan edited after validation
  copy_rootfs      copy_rootfs(dest=None) -> a private copy for a test that writes to it
  make_container   make_container(**spec) -> Container (spec dict -> YAML -> rendered script)
  host_mounts      the mount table of the namespace pytest runs in (list of Mount)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import yaml

from tests.lib import mountinfo
from tests.lib.run_files import kept_by_a_run
from tests.lib.hostile import _diff, _read  # pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "scripts", "containerfs")
MAKE_ROOTFS = os.path.join(REPO, "tests", "lib", "make-busybox-rootfs")

# How a test names a shell, and the command that runs a script with it.
SHELLS = {
    "dash": ("dash",),
    "bash": ("bash",),
    "busybox-ash": ("busybox", "ash"),
}

HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

# Runs in the wrapper namespace: make / rshared (as on a systemd host), run the test's
# setup, snapshot the mount table, run the script, snapshot again.
WRAPPER = r'''
set -e
mount --make-rshared /
eval "$CFS_TEST_SETUP"
cat /proc/self/mountinfo > "$CFS_TEST_BEFORE"
set +e
"$@"
rc=$?
cat /proc/self/mountinfo > "$CFS_TEST_AFTER"
exit "$rc"
'''

REQUIRED_TOOLS = ("unshare", "nsenter", "mount", "umount", "pivot_root", "setpriv", "dash", "bash",
                  "busybox")


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (real namespaces and mounts)"
    else:
        missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
        if missing:
            reason = "missing commands: %s" % ", ".join(missing)
    if reason:
        here = os.path.dirname(os.path.abspath(__file__))
        for item in items:
            if str(item.fspath).startswith(here):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    """A busybox rootfs of the test module's own (the module tests lay overlays on it)."""
    path = tmp_path_factory.mktemp("image") / "rootfs"
    subprocess.run([MAKE_ROOTFS, str(path)], check=True, env=HOST_ENV)
    return str(path)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """A busybox rootfs shared by the session. Tests that write to it use copy_rootfs."""
    path = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    subprocess.run([MAKE_ROOTFS, path], check=True, env=HOST_ENV)
    # The script creates a missing /etc/resolv.conf mount point; have it already, so
    # running a container leaves the shared tree as it is.
    open(os.path.join(path, "etc", "resolv.conf"), "a").close()
    return path


@pytest.fixture
def copy_rootfs(busybox_rootfs, tmp_path):
    def copy(dest=None):
        dest = str(dest or tmp_path / "rootfs")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        subprocess.run(["cp", "-a", busybox_rootfs, dest], check=True)
        return dest
    return copy


@pytest.fixture
def host_mounts():
    return mountinfo.read()


def render(spec, directory, name):
    """Write `spec` as YAML in `directory` and render it; return the script path."""
    spec_file = os.path.join(directory, name + ".yml")
    script = os.path.join(directory, name + ".sh")
    with open(spec_file, "w") as f:
        yaml.safe_dump(spec, f, default_flow_style=False)
    result = subprocess.run([sys.executable, CLI, "render", spec_file, "-o", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, check=False)
    if result.returncode != 0:
        raise AssertionError("render failed (rc %d):\n%s%s" % (result.returncode, result.stdout,
                                                               result.stderr))
    return script


class RunResult:
    def __init__(self, argv, rc, stdout, stderr, before, after):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr
        self.wrapper_before, self.wrapper_after = before, after

    def __repr__(self):
        return "<rc=%s\n--- stdout\n%s--- stderr\n%s>" % (self.rc, self.stdout, self.stderr)

    def sections(self):
        """Split stdout at '@@name' lines into {name: text}."""
        out, name = {}, None
        for line in self.stdout.splitlines(True):
            if line.startswith("@@"):
                name = line[2:].strip()
                out[name] = ""
            elif name is not None:
                out[name] += line
        return out


class Container:
    """A rendered spec in a test's tmp dir, and a way to run it."""

    def __init__(self, spec, directory, script=None):
        self.spec = spec
        self.dir = directory
        self.name = spec["name"]
        self.state_dir = spec["state_dir"]
        self.run_dir = spec["run_dir"]
        self.script = script or render(spec, directory, self.name)

    @property
    def text(self):
        with open(self.script) as f:
            return f.read()

    def run(self, *cmd, shell="dash", setup="", user=None, check_clean=True, timeout=60,
            one_cpu=False):
        """Run `SHELL SCRIPT run CMD...` in a fresh wrapper mount namespace.

        setup: shell code run in the wrapper namespace first (e.g. host-side mounts).
        user: "uid:gid" to run the script as (via setpriv) instead of root.
        one_cpu: pin the script to CPU 0 (taskset), which makes races between its host side
        and its container side show up far more often.
        check_clean: assert that the wrapper's and pytest's mount tables are unchanged
        (the run dir is checked by its own tests, see test_script_lifecycle.py).
        """
        before = os.path.join(self.dir, ".mountinfo.before")
        after = os.path.join(self.dir, ".mountinfo.after")
        for path in (before, after):
            if os.path.exists(path):
                os.unlink(path)
        argv = list(SHELLS[shell]) + [self.script, "run"] + list(cmd)
        if user is not None:
            uid, gid = user.split(":")
            argv = ["setpriv", "--reuid=" + uid, "--regid=" + gid, "--clear-groups", "--"] + argv
        if one_cpu:
            argv = ["taskset", "-c", "0"] + argv
        full = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", WRAPPER,
                "wrapper"] + argv
        env = dict(HOST_ENV, CFS_TEST_SETUP=setup, CFS_TEST_BEFORE=before, CFS_TEST_AFTER=after)
        own_before = _read(("/proc/self/mountinfo"))
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=self.dir,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: the wrapper and its children
            out, err = proc.communicate()
            raise AssertionError("timed out after %ss: %s\n%s%s" % (
                timeout, " ".join(argv), out.decode(errors="replace"), err.decode(errors="replace")))
        result = RunResult(argv, proc.returncode, out.decode("utf-8", "replace"),
                           err.decode("utf-8", "replace"), _read(before), _read(after))
        if check_clean:
            self.assert_clean(result, own_before)
        return result

    def assert_clean(self, result, own_before):
        own_after = _read("/proc/self/mountinfo")
        assert own_after == own_before, "the test's own mount table changed:\n%s" % _diff(
            own_before, own_after)
        assert result.wrapper_before is not None, "wrapper setup failed: %r" % (result,)
        assert result.wrapper_after == result.wrapper_before, (
            "the script left mounts behind in its host namespace:\n%s\n%r" % (
                _diff(result.wrapper_before, result.wrapper_after or ""), result))

    @property
    def lock(self):
        """The container's lock file, beside its run dir (it stays: flock needs no cleanup)."""
        return os.path.join(self.run_dir, self.name + ".lock")

    def leftovers(self):
        """What a run left in the run dir tree, but the lock file and what a run keeps
        on purpose (kept_by_a_run)."""
        return [f for f in files_under(self.run_dir) if f != self.lock and not kept_by_a_run(f)]

    def inside(self, script, **kwargs):
        """Run `sh -c SCRIPT` as the container process."""
        return self.run("sh", "-c", script, **kwargs)


def files_under(top):
    """Every non-directory under `top` (fifos, pid files, fstabs...)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        found += [os.path.join(dirpath, f) for f in filenames]
    return sorted(found)


@pytest.fixture
def public_dir():
    """A directory every user can read (pytest's tmp dirs are 0700), for scripts that a
    non-root user must read. Removed afterwards."""
    path = tempfile.mkdtemp(prefix="cfs-test-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def make_plan_container(tmp_path, busybox_rootfs):
    """make_plan_container(change, **fields) -> Container, or the exception rendering raised.
    The spec is validated and planned, then change(plan) edits the plan in place (values no
    validator saw, as an attacker past validation would write them) and it is rendered."""
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
    from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render

    def make(change, **fields):
        spec = {"name": "cfs-test", "hostname": "cfs-test", "rootfs": {"path": busybox_rootfs},
                "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
        spec.update(fields)
        plan = build_plan(load_spec(spec))
        change(plan)
        try:
            text = _render.render_script(plan)
        except Exception as error:  # the renderer refused: what the caller checks
            return error
        script = str(tmp_path / "plan.sh")
        with open(script, "w") as f:
            f.write(text)
        spec["name"] = plan["name"]
        return Container(spec, str(tmp_path), script=script)
    return make


@pytest.fixture
def make_container(tmp_path, busybox_rootfs):
    """make_container(directory=None, **fields) -> Container. Defaults: the session busybox
    rootfs, name 'cfs-test', state_dir and run_dir under the test's tmp dir; the spec and
    script go to `directory` (default: the tmp dir). A field given as None is dropped."""
    def make(directory=None, **fields):
        spec = {
            "name": "cfs-test",
            "hostname": "cfs-test",
            "rootfs": {"path": busybox_rootfs},
            "state_dir": str(tmp_path / "state"),
            "run_dir": str(tmp_path / "run"),
        }
        spec.update(fields)
        spec = dict((k, v) for k, v in spec.items() if v is not None)
        return Container(spec, str(directory or tmp_path))
    return make


@pytest.fixture
def kept(make_container):
    """kept(shell="dash", **fields) -> tests.lib.lifecycle.Kept: a rendered container (the
    make_container defaults) to drive with its lifecycle commands, in pytest's own mount
    namespace. Afterwards whatever the test left running or pinned is killed (by pid) and
    unpinned, so a failing test cannot leak it into the next."""
    from tests.lib.lifecycle import Kept
    made = []

    def make(shell="dash", **fields):
        container = make_container(**fields)
        one = Kept(container.script, container.name, container.state_dir, container.run_dir, shell)
        made.append(one)
        return one
    yield make
    for one in made:
        one.kill_everything()
