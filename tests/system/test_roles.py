"""The collection's roles, for real through ansible-playbook (connection local, as root):

- fromscratch.containerfs.containers: images first, containers next, absent images last;
  a second run changes nothing; a changed spec (or a re-imported image) restarts a started
  container; absent items go; check mode changes nothing; a wrong type in an item fails
  before anything is touched;
- fromscratch.containerfs.container_scripts: the script (and unit) at dest, once;
- both: meta/argument_specs.yml agree with the modules' options (names, types, choices,
  defaults), and `ansible-doc -t role` renders them.

Every test works under its own tmp dir (state dir, run dir, image layout); the cleanup kills
what a test started (by the pids in RUN/pid and RUN/monitor) and removes its containers.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.lib import oci_fixtures as fx
from tests.lib.collection import REPO_ROOT, collections_dir
from tests.lib.playbook import run_playbook
from tests.system import _lifecycle as L

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

ROLES = os.path.join(REPO_ROOT, "roles")
BIN = os.path.dirname(sys.executable)
SLEEP = ["sleep", "1000"]
APPLETS = ("sh", "cat", "echo", "hostname", "sleep")


# ---------------------------------------------------------------------------- helpers

@pytest.fixture
def dirs(tmp_path):
    """The state and run dirs of a test; whatever it left running is killed afterwards."""
    out = {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    yield out
    L.kill_all(out["state_dir"], out["run_dir"])


@pytest.fixture
def layout(tmp_path):
    """make(name, marker): an OCI layout of a busybox image whose /marker says `marker`."""
    def make(name="busybox", marker="one"):
        root = busybox_root(str(tmp_path / ("tree-" + name + "-" + marker)))
        top = fx.make_tar([fx.file_("marker", marker.encode() + b"\n")])
        path = str(tmp_path / ("layout-" + name + "-" + marker))
        fx.oci_layout(path, [fx.tar_of_dir(root), top], config={"Cmd": SLEEP, "Env": ["PATH=/bin"]})
        return path
    return make


def busybox_root(path):
    """A tiny busybox rootfs with the applets the tests run and its mount points."""
    root = fx.busybox_tree(path, applets=APPLETS)
    os.chmod(root, 0o755)
    for mount_point in ("proc", "sys", "dev"):  # as images have them (a read-only root)
        os.mkdir(os.path.join(root, mount_point))
    return root


def role(tmp_path, name, role_vars, then=(), **kwargs):
    """Run the role `name` (fromscratch.containerfs.NAME) with `role_vars`, then the tasks
    `then`; return the results of its tasks (the argument validation first), each with
    "task" set to the task's name without the role's."""
    fqcn = "fromscratch.containerfs." + name
    task = {"name": "role " + name, "ansible.builtin.include_role": {"name": fqcn}}
    play_vars = dict(role_vars, ansible_python_interpreter=sys.executable)
    results = [r for r in run_playbook(tmp_path, [task] + list(then), extra_vars=play_vars, **kwargs)
               if r["task"] != task["name"]]
    for result in results:
        result["task"] = result["task"].split(fqcn + " : ", 1)[-1]
    return results


def is_validation(result):
    return result["task"].startswith("Validating arguments against arg spec 'main'")


def by_task(results):
    return {r["task"]: r for r in results}


def changed(results):
    """The tasks that changed something (loops: any item)."""
    return [r["task"] for r in results if r.get("changed")]


def items(result):
    """{label: item result} of a loop task (skipped items included)."""
    return {r["_ansible_item_label"]: r for r in result.get("results", [])}


def containers_vars(dirs, images=(), containers=()):
    return {"containerfs_state_dir": dirs["state_dir"], "containerfs_run_dir": dirs["run_dir"],
            "containerfs_images": list(images), "containerfs_containers": list(containers)}


def web(state="started", image="busybox", **spec):
    spec.setdefault("hostname", "web")
    spec.setdefault("rootfs", {"image": {"name": image}})
    return {"name": "web", "state": state, "stop_timeout": 1, "spec": spec}


def status(dirs, name="web"):
    return L._process.status(L._layout_paths(name, dirs["state_dir"], dirs["run_dir"]))


def inside(dirs, name, command):
    """Run `command` in the container's pinned mount namespace, at its root."""
    paths = L._layout_paths(name, dirs["state_dir"], dirs["run_dir"])
    return subprocess.run(["nsenter", "--mount=" + os.path.join(paths["ns"], "mnt"), "sh", "-c",
                           "cd %s && %s" % (paths["root"], command)],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout


def tree(path):
    out = []
    for base, dirnames, filenames in os.walk(path):
        out += [os.path.relpath(os.path.join(base, n), path) for n in dirnames + filenames]
    return sorted(out)


# ------------------------------------------------------------- the containers role

def test_converge_twice_then_a_changed_spec_restarts_the_started_container(tmp_path, dirs, layout):
    images = [{"name": "busybox", "source": layout()}]
    data = {"name": "data", "spec": {"rootfs": {"image": {"name": "busybox"}}}}
    first = role(tmp_path, "containers", containers_vars(dirs, images, [web(), data]))
    tasks = by_task(first)
    assert is_validation(first[0]), first[0]
    assert tasks["Import the images asked present"]["changed"] is True
    converged = items(tasks["Converge the containers"])
    assert sorted(converged) == ["data (present)", "web (started)"], "labels are names, no spec"
    assert converged["web (started)"]["container"]["state"] == "running"
    assert converged["data (present)"]["container"]["state"] == "stopped"
    assert inside(dirs, "web", "cat marker") == "one\n"
    pid = status(dirs)["pid"]

    again = role(tmp_path, "containers", containers_vars(dirs, images, [web(), data]))
    assert changed(again) == [], again
    assert status(dirs)["pid"] == pid

    renamed = role(tmp_path, "containers", containers_vars(dirs, images, [web(hostname="renamed"), data]),
                   diff=True)
    assert changed(renamed) == ["Converge the containers"]
    result = items(by_task(renamed)["Converge the containers"])["web (started)"]
    assert result["actions"][0] == "stop the process (pid %d)" % pid
    assert result["actions"][-1] == "start the process again (spec changed)"
    assert status(dirs)["pid"] not in (None, pid)
    assert items(by_task(renamed)["Converge the containers"])["data (present)"]["changed"] is False


def test_the_restart_handler_restarts_the_started_containers_only(tmp_path, dirs, layout):
    images = [{"name": "busybox", "source": layout()}]
    data = {"name": "data", "state": "stopped", "spec": {"rootfs": {"image": {"name": "busybox"}}}}
    role_vars = containers_vars(dirs, images, [web(), data])
    role(tmp_path, "containers", role_vars)
    pid = status(dirs)["pid"]
    # a task of the user's changes what the spec cannot see (a file in a volume, say)
    notify = {"name": "Change a file the container reads", "ansible.builtin.command": "true",
              "changed_when": True, "notify": "containerfs restart containers"}
    role(tmp_path, "containers", role_vars, then=[notify])
    # (tests/lib/callback records no handler task of its own: the effects tell)
    assert status(dirs)["pid"] not in (None, pid)
    assert status(dirs, "data")["state"] == "stopped"
    L.wait_gone(pid)


def test_a_reimported_image_restarts_the_containers_that_use_it(tmp_path, dirs, layout):
    first = role(tmp_path, "containers", containers_vars(
        dirs, [{"name": "busybox", "source": layout(marker="one")}], [web()]))
    assert inside(dirs, "web", "cat marker") == "one\n"
    pid = status(dirs)["pid"]
    assert first

    new = role(tmp_path, "containers", containers_vars(
        dirs, [{"name": "busybox", "source": layout(marker="two")}], [web()]))
    assert changed(new) == ["Import the images asked present", "Converge the containers"]
    result = items(by_task(new)["Converge the containers"])["web (started)"]
    assert result["actions"][-1] == "start the process again (spec changed)", result["actions"]
    assert status(dirs)["pid"] not in (None, pid)
    assert inside(dirs, "web", "cat marker") == "two\n"


def test_absent_items_go_containers_before_their_images(tmp_path, dirs, layout):
    images = [{"name": "busybox", "source": layout()}]
    role(tmp_path, "containers", containers_vars(dirs, images, [web()]))
    pid = status(dirs)["pid"]

    # the image is listed first, but goes last: without force it would be refused while
    # the container still used it
    gone = role(tmp_path, "containers", containers_vars(
        dirs, [{"name": "busybox", "state": "absent"}], [web(state="absent")]))
    tasks = by_task(gone)
    assert items(tasks["Import the images asked present"])["busybox"]["skipped"] is True
    assert items(tasks["Converge the containers"])["web (absent)"]["changed"] is True
    removed = items(tasks["Remove the images asked absent, now that the containers removed above no longer use them"])
    assert removed["busybox"]["changed"] is True and removed["busybox"]["users"] == []
    L.wait_gone(pid)
    assert not os.path.exists(os.path.join(dirs["state_dir"], "containers", "web"))
    assert not os.path.exists(os.path.join(dirs["run_dir"], "web"))
    assert os.listdir(os.path.join(dirs["state_dir"], "layers", "sha256")) == []
    assert L.mounts_under(str(tmp_path)) == []

    again = role(tmp_path, "containers", containers_vars(
        dirs, [{"name": "busybox", "state": "absent"}], [web(state="absent")]))
    assert changed(again) == []


def test_check_mode_changes_nothing(tmp_path, dirs, layout):
    images = [{"name": "busybox", "source": layout()}]
    fresh = role(tmp_path, "containers", containers_vars(dirs, images, [web()]), check=True)
    # the container cannot be planned on an image not imported yet: reported, not failed
    assert changed(fresh) == ["Import the images asked present",
                              "Report the containers that would converge once their image is imported (check mode)"]
    assert not os.path.exists(dirs["state_dir"]) and not os.path.exists(dirs["run_dir"])

    role(tmp_path, "containers", containers_vars(dirs, images, [web()]))
    pid = status(dirs)["pid"]
    before = tree(dirs["state_dir"])
    predicted = role(tmp_path, "containers", containers_vars(dirs, images, [web(hostname="renamed")]),
                     check=True, diff=True)
    assert changed(predicted) == ["Converge the containers"]
    result = items(by_task(predicted)["Converge the containers"])["web (started)"]
    assert result["actions"][-1] == "start the process again (spec changed)"
    assert status(dirs)["pid"] == pid and tree(dirs["state_dir"]) == before
    with open(os.path.join(L._layout_paths("web", dirs["state_dir"], dirs["run_dir"])["etc"], "hostname")) as f:
        assert f.read() == "web\n"

    # removing both: the image is predicted removed, not refused for the container that
    # this run would remove first
    gone = role(tmp_path, "containers", containers_vars(
        dirs, [{"name": "busybox", "state": "absent"}], [web(state="absent")]), check=True)
    assert changed(gone) == ["Converge the containers",
                             "Remove the images asked absent, now that the containers removed above no longer use them"]
    assert status(dirs)["pid"] == pid and tree(dirs["state_dir"]) == before


def test_a_registry_password_shows_nowhere(tmp_path, dirs):
    secret = "s3cret-Pa55word"
    images = [{"name": "private", "source": "docker://127.0.0.1:9/app:1", "username": "me", "password": secret,
               "validate_certs": False}]
    results = role(tmp_path, "containers", containers_vars(dirs, images), expect_failure=True)
    assert by_task(results)["Import the images asked present"]["failed"] is True
    assert secret not in json.dumps(results)


@pytest.mark.parametrize("bad, says", [
    ({"containerfs_containers": [dict(web(), stop_timeout="soon")]}, "stop_timeout"),
    ({"containerfs_containers": [dict(web(), state="running")]}, "state"),
    ({"containerfs_containers": [dict(web(), spec="not a dict")]}, "spec"),
    ({"containerfs_containers": [dict(web(), stop_timeuot=1)]}, "stop_timeuot"),
    ({"containerfs_images": [{"source": "/nowhere"}]}, "name"),
    ({"containerfs_images": [{"name": "busybox", "validate_certs": "maybe"}]}, "validate_certs"),
    ({"containerfs_images": {"name": "busybox"}}, "containerfs_images"),
])
def test_a_bad_item_fails_before_any_change(tmp_path, dirs, layout, bad, says):
    role_vars = containers_vars(dirs, [{"name": "busybox", "source": layout()}], [web()])
    role_vars.update(bad)
    results = role(tmp_path, "containers", role_vars, expect_failure=True)
    assert len(results) == 1 and is_validation(results[0]), results
    assert results[0]["failed"] is True and says in results[0]["msg"], results[0]["msg"]
    assert not os.path.exists(dirs["state_dir"]) and not os.path.exists(dirs["run_dir"])


# --------------------------------------------------------- the container_scripts role

def test_container_scripts_deploys_the_script_once(tmp_path, dirs):
    if not os.path.exists(os.path.join(REPO_ROOT, "plugins", "modules", "container_script.py")):
        pytest.fail("plugins/modules/container_script.py is not there yet (being written): "
                    "this test runs once it is")
    rootfs = busybox_root(str(tmp_path / "rootfs"))
    os.mkdir(str(tmp_path / "bin"))
    dest = str(tmp_path / "bin" / "web.sh")
    spec = {"name": "web", "hostname": "from-the-role", "rootfs": {"path": rootfs},
            "process": {"args": ["/bin/sh"]}}
    unit_dir = str(tmp_path / "units")
    os.mkdir(unit_dir)
    job = {"name": "job", "spec": dict(spec, name="ignored"), "dest": str(tmp_path / "bin" / "job.sh"),
           "systemd": True, "unit_dir": unit_dir, "restart_policy": "on-failure"}
    scripts = {"containerfs_state_dir": dirs["state_dir"], "containerfs_run_dir": dirs["run_dir"],
               "containerfs_scripts": [{"spec": spec, "dest": dest}, job]}
    # what README.md shows to restart the units whose script changed, as a debug task
    units = {"name": "Units to restart", "ansible.builtin.debug": {"msg": "{{ item.unit | basename }}"},
             "loop": "{{ containerfs_scripts_result.results | selectattr('changed') | selectattr('unit') | list }}"}
    first = role(tmp_path, "container_scripts", scripts, then=[units])
    assert changed(first) == ["Put the container scripts at their dest"], first
    assert sorted(items(by_task(first)["Put the container scripts at their dest"])) == [
        "job -> " + job["dest"], "web -> " + dest], "labels are names and dests, no spec"
    assert os.stat(dest).st_mode & 0o777 == 0o755
    with open(os.path.join(unit_dir, "containerfs-job.service")) as f:
        assert "ExecStart=/bin/sh %s start" % job["dest"] in f.read()
    assert [r["msg"] for r in by_task(first)["Units to restart"]["results"]] == ["containerfs-job.service"]
    again = role(tmp_path, "container_scripts", scripts, then=[units])
    assert changed(again) == [], again
    assert by_task(again)["Units to restart"]["results"] == []
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", dest, "run",
                          "hostname"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, env=L.HOST_ENV, timeout=120, check=False)
    assert run.returncode == 0 and run.stdout == "from-the-role\n", (run.stdout, run.stderr)

    bad = dict(scripts, containerfs_scripts=[{"spec": spec}])  # no dest
    refused = role(tmp_path, "container_scripts", bad, expect_failure=True)
    assert len(refused) == 1 and "dest" in refused[0]["msg"], refused


# ------------------------------------------------------------ docs and argument specs

def ansible_doc(tmp_path, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_dir(str(tmp_path)), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(BIN, "ansible-doc")] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=env, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), (args, proc.stdout, proc.stderr)
    return proc.stdout


def role_items(name):
    """{list variable: item options} of a role's main entry point."""
    with open(os.path.join(ROLES, name, "meta", "argument_specs.yml")) as f:
        options = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    return {var: spec["options"] for var, spec in options.items() if spec.get("elements") == "dict"}


# The item options whose default is a role variable.
ROLE_DIRS = {"state_dir": "containerfs_state_dir", "run_dir": "containerfs_run_dir"}

# Options a module takes that its role items leave out, and why.
NOT_ITEM_OPTIONS = {
    "image": {"run_dir": "the image module does not use it (it takes it for module_defaults of the group)"},
}


def role_defaults(name):
    with open(os.path.join(ROLES, name, "defaults", "main.yml")) as f:
        return yaml.safe_load(f)


ITEM_MODULES = [("containers", "containerfs_images", "image"),
                ("containers", "containerfs_containers", "container"),
                ("container_scripts", "containerfs_scripts", "container_script")]


@pytest.mark.parametrize("role_name, var, module", ITEM_MODULES)
def test_role_items_take_the_modules_options(tmp_path, role_name, var, module):
    """An item's options are its module's: same names, types, choices, defaults (an
    option the role must not pass through, like the module's internal ones, is not one)."""
    if not os.path.exists(os.path.join(REPO_ROOT, "plugins", "modules", module + ".py")):
        pytest.fail("plugins/modules/%s.py is not there yet (being written)" % module)
    doc = json.loads(ansible_doc(tmp_path, "--json", "fromscratch.containerfs." + module))
    module_options = {k: v for k, v in doc["fromscratch.containerfs." + module]["doc"]["options"].items()
                      if not k.startswith("_") and k not in NOT_ITEM_OPTIONS.get(module, {})}
    item_options = role_items(role_name)[var]
    assert sorted(item_options) == sorted(module_options)
    for key, option in item_options.items():
        want = module_options[key]
        got = (option.get("type", "str"), option.get("choices"), option.get("default"), option.get("elements"))
        if key in ROLE_DIRS:  # unset in an item, the role's variable is passed
            role_default = role_defaults(role_name)[ROLE_DIRS[key]]
            assert want.get("default") in (None, role_default), key
            want = dict(want, default=None)
        assert got == (want.get("type", "str"), want.get("choices"), want.get("default"), want.get("elements")), key


@pytest.mark.parametrize("role_name", ["containers", "container_scripts"])
def test_argument_specs_defaults_are_the_roles_defaults(role_name):
    with open(os.path.join(ROLES, role_name, "meta", "argument_specs.yml")) as f:
        options = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    assert {var: spec.get("default") for var, spec in options.items()} == role_defaults(role_name)


@pytest.mark.parametrize("role_name", ["containers", "container_scripts"])
def test_ansible_doc_renders_the_role(tmp_path, role_name):
    text = ansible_doc(tmp_path, "-t", "role", "fromscratch.containerfs." + role_name)
    for var in role_items(role_name):
        assert var in text
    assert "containerfs_state_dir" in text
