"""Run a module of the checkout directly (no ansible-playbook): fast enough for tests
that run a module hundreds of times.

The module file runs with the venv's python and an args file {"ANSIBLE_MODULE_ARGS": ...}
(AnsibleModule reads a file path given as its first argument), with the checkout on the
python path as ansible_collections.fromscratch.containerfs.
"""
import json
import os
import subprocess
import sys
import tempfile

from tests.lib import mountinfo
from tests.lib.collection import REPO_ROOT, collections_dir

MODULES = os.path.join(REPO_ROOT, "plugins", "modules")
TEST_HOOKS = ("CONTAINERFS_TEST_KILL_AFTER_STEP", "CONTAINERFS_TEST_STOP_AFTER_STEP")


class ModuleRun:
    """One finished module run: rc, the signal that killed it (or None), its JSON result
    (or None when it printed none)."""

    def __init__(self, rc, stdout, stderr):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        self.signal = -rc if rc < 0 else None
        try:
            self.result = json.loads(stdout)
        except ValueError:
            self.result = None

    def __repr__(self):
        shown = dict((k, v) for k, v in (self.result or {}).items() if k not in ("invocation", "plan"))
        return "<rc=%s result=%s\n--- stdout\n%s--- stderr\n%s>" % (
            self.rc, json.dumps(shown, indent=1), "" if self.result else self.stdout, self.stderr)

    def __getitem__(self, key):
        assert self.result is not None, "the module printed no JSON: %r" % self
        return self.result[key]

    def get(self, key, default=None):
        return (self.result or {}).get(key, default)


def start_module(tmp_path, module, args, env=None, check=False, diff=False):
    """Start plugins/modules/MODULE.py with `args` (a Popen, its output piped). `env`:
    variables added to the run's environment (e.g. CONTAINERFS_TEST_KILL_AFTER_STEP). The
    container module gets what its action plugin adds (action_args)."""
    if module == "container":
        args = action_args(args)
    module_args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    fd, args_file = tempfile.mkstemp(prefix=".module-args-", suffix=".json", dir=str(tmp_path))
    with os.fdopen(fd, "w") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": module_args}, f)
    run_env = dict((k, v) for k, v in os.environ.items() if k not in TEST_HOOKS)
    run_env["PYTHONPATH"] = collections_dir(str(tmp_path))
    run_env.update(env or {})
    return subprocess.Popen([sys.executable, os.path.join(MODULES, module + ".py"), args_file],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=run_env, cwd=str(tmp_path))


def finish_module(proc, timeout=120):
    """Wait for a started module run; its ModuleRun."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("the module run did not end in %ss:\n%s%s" % (timeout, out, err))
    return ModuleRun(proc.returncode, out, err)


def run_module(tmp_path, module, args, env=None, check=False, diff=False, timeout=120):
    """Run plugins/modules/MODULE.py with `args` to its end; its ModuleRun. The container
    module answering needs_script (a spec given by file or bundle) is run again with the
    script rendered from the plan it returned, as its action plugin does."""
    run = finish_module(start_module(tmp_path, module, args, env, check, diff), timeout)
    if module == "container" and run.get("needs_script") and not run.get("failed"):
        args = dict(args, _script=_render().render_script(run["plan"], version=_version()))
        run = finish_module(start_module(tmp_path, module, args, env, check, diff), timeout)
    return run


# The scripts rendered for the specs of the session (by the spec's JSON text).
_SCRIPTS = {}


def action_args(args):
    """The container module's args as its action plugin passes them: the collection's
    version, and with a spec to set up, the script rendered from it (so one run does, not
    a needs_script answer and a second run)."""
    args = dict(args, _script_version=_version())
    spec = args.get("spec")
    if spec and args.get("state", "present") != "absent" and "_script" not in args:
        key = json.dumps(spec, sort_keys=True)
        if key not in _SCRIPTS:
            from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan
            from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec
            plan = _plan.build_plan(_image_spec.load(dict(spec)))
            _SCRIPTS[key] = _render().render_script(plan, version=args["_script_version"])
        args["_script"] = _SCRIPTS[key]
    return args


def _version():
    from ansible_collections.fromscratch.containerfs.plugins.plugin_utils._version import collection_version
    return collection_version()


def _render():
    from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render as render
    return render


# ---------------------------------------------------------------------------------------
# What a container module run left: the container's view and the host's
# ---------------------------------------------------------------------------------------

def container_mounts(spec):
    """The mount table inside the container's pinned mount namespace, under its root
    (mount points relative to it), normalised (tests.lib.mountinfo), in mount order."""
    run = os.path.join(spec["run_dir"], spec["name"])
    root = os.path.join(run, "rootfs")
    out = subprocess.run(["nsenter", "--mount=" + os.path.join(run, "ns", "mnt"), "cat", "/proc/self/mountinfo"],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return [m._replace(mount_point=m.mount_point[len(root):] or "/") for m in mountinfo.parse(out)
            if m.mount_point == root or m.mount_point.startswith(root + "/")]


def container_hostname(spec):
    uts = os.path.join(spec["run_dir"], spec["name"], "ns", "uts")
    return subprocess.run(["nsenter", "--uts=" + uts, "hostname"], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout.strip()


def leftovers(spec):
    """What is left of a container on the host: mounts under its run dir base (as this
    process sees them), its run dir, its state dir."""
    found = ["mount %s" % m.mount_point for m in mountinfo.read()
             if m.mount_point.startswith(spec["run_dir"].rstrip("/") + "/")]
    for path in (os.path.join(spec["run_dir"], spec["name"]),
                 os.path.join(spec["state_dir"], "containers", spec["name"])):
        if os.path.lexists(path):
            found.append(path)
    return found
