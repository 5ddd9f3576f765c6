"""Every module's EXAMPLES and the playbooks of README.md, docs/ and the roles run as written.

The examples are found, not listed (tests/lib/examples.py): a new module's EXAMPLES, or a
new ```yaml block of Ansible in a README or docs/, runs here without a change to this
file, and fails it when it does not run. They run for real through ansible-playbook,
unchanged, in a World: a mount namespace where the paths they name (/srv/...,
/etc/containerfs/web.yml, /usr/local/sbin/...) and the default state and run dirs are a
private tree, and the rest of / is read-only, so nothing reaches the host.

Each example starts from a world reset (no container, no image), then gets what it
assumes (WORLD_FILES, WORLD_TASKS: "the web container runs"; REGISTRY_WORLDS: the image
on registry.example.com), then runs as written. In a task list each converge task is
followed by a second run of itself that must change nothing: the tasks of one block
converge one container to alternative forms in turn, so running the whole block twice
would not be idempotent, and is not what a reader does. A play that applies roles runs
twice instead, and its second run must change nothing.

Run time, 15 examples on a 2-core VM: 2 minutes at load 1.3, up to 4 at load 5; most of
it is Ansible's own start-up per task.
"""
import copy
import os

import pytest
import yaml

from tests.lib import examples, registry

# Examples not run, with the reason. Keys: an example's id (the whole block) or
# (id, task name) for one task of it. Every entry must still name an example.
NOT_RUN = {
    ("image", "Import the arm64 variant of a multi-platform layout, pinned by digest"):
        "pins a placeholder digest that no content can hash to",
}

# The processes of the containers the worlds start: busybox's httpd for web, and a shell
# that waits. pid 1 of a pid namespace ignores the signals it has no handler for, so each
# traps TERM (or every stop would wait for the KILL, 10 s later).
HTTPD = ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h / & wait"]
IDLE = ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"]
WEB_YML = "/etc/containerfs/web.yml"
DB_YML = "/etc/containerfs/db.yml"
DB_SPEC = {"name": "db", "rootfs": {"path": "/srv/images/db"}, "process": {"args": IDLE}}


def web_spec(**rootfs):
    """The web container of the examples: busybox under an overlay, /srv/data at /data."""
    return {"name": "web", "hostname": "web",
            "rootfs": dict({"path": "/srv/images/busybox", "overlay": True}, **rootfs),
            "volumes": [{"source": "/srv/data", "target": "/data"}],
            "process": {"args": HTTPD}}


def container(**args):
    return {"name": "A container the example assumes: %s" % args.get("name", args),
            "fromscratch.containerfs.container": args}


IMPORT_BUSYBOX = {"name": "An image the example assumes: busybox",
                  "fromscratch.containerfs.image": {"name": "busybox", "source": "/srv/busybox",
                                                    "tag": "1"}}

# What an example assumes beyond the files under /srv (World.build_fixtures): files
# written in the world, then tasks run before the example.
WORLD_FILES = {
    "container": {WEB_YML: web_spec()},
    "container_info": {WEB_YML: web_spec(), DB_YML: DB_SPEC},
    # web's /etc is written to (/etc/motd): its root is writable.
    "container_exec": {WEB_YML: web_spec(readonly=False)},
    "README.md: Import the image into the layer store": {
        WEB_YML: dict(web_spec(), rootfs={"image": {"source": "/srv/images/busybox.oci"}})},
}
WORLD_TASKS = {
    "image_info": [IMPORT_BUSYBOX,
                   container(name="web", spec={"rootfs": {"image": {"name": "busybox"}}})],
    # web has drifted: its /data volume was unmounted behind the modules' back; db lost
    # its run dir, as in a reboot.
    "container_info": [
        container(spec_file=WEB_YML), container(spec_file=DB_YML),
        {"name": "web drifts: /data is unmounted",
         "ansible.builtin.command": "nsenter --mount=/run/containerfs/web/ns/mnt umount /run/containerfs/web/rootfs/data"},
        {"name": "db loses its run dir, as in a reboot",
         "ansible.builtin.shell": "findmnt -rn -o TARGET | grep '^/run/containerfs/db/' | sort -r | xargs -r umount "
                                  "&& rm -r /run/containerfs/db"}],
    "container_exec": [container(spec_file=WEB_YML, state="started"),
                       container(spec=DB_SPEC, state="started")],
}

# Examples that pull from registry.example.com: the repository they name (the busybox
# image is pushed there) and the auth file they read (the registry's user is written there).
REGISTRY_WORLDS = {
    "README.md: fromscratch.containerfs.image app": ("team/app:1.4",
                                                     "/root/.config/containers/auth.json"),
}


def web_yml_beside(rootfs):
    """A web.yml beside a playbook (container_script reads it on the controller)."""
    return yaml.safe_dump({"name": "web", "hostname": "web",
                           "rootfs": {"path": rootfs, "overlay": True}, "process": {"args": HTTPD}})


# Files an example reads beside its playbook (lookup('file', ...), a spec_file found on
# the controller).
PLAYBOOK_FILES = {
    "container_exec": {"motd": "Welcome to the web container.\n"},
    # "relative paths in web.yml: from /srv/web" (the dest's directory): /srv/web/rootfs
    "docs/container-script.md: The script of a busybox container": {"web.yml": web_yml_beside("rootfs")},
    "README.md: The script of web, rendered on the controller, for a host without Python at run time": {
        "web.yml": web_yml_beside("/srv/images/busybox")},
    "roles/container_scripts/README.md: Container scripts for hosts without Python at run time": {
        "files/job.yml": yaml.safe_dump({"name": "job", "rootfs": {"path": "/srv/images/busybox"},
                                         "process": {"args": ["sh", "-c", "echo done"]}})},
}

# The handlers of the play a task list is written for (what its `notify` names). No
# systemd here: the handler says what it would do.
HANDLERS = {
    "docs/container-script.md: The script of a busybox container": [
        {"name": "Restart web", "ansible.builtin.debug": {
            "msg": "ansible.builtin.systemd_service would restart containerfs-web here"}}],
}

AGAIN = " [again: must change nothing]"


def example_order(found):
    """The examples in the order a reader meets them: images, then containers, then what
    uses a container; the README, docs and roles after the modules."""
    rank = {"image": 0, "image_info": 1, "container": 2, "container_info": 3}
    return sorted(found, key=lambda e: (e.source.endswith(".md"), rank.get(e.id, 9), e.source))


EXAMPLES = example_order(examples.all_examples())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One world for the module: the fixtures are built once; each example resets it."""
    made = examples.World(str(tmp_path_factory.mktemp("world"))).start()
    try:
        made.build_fixtures()
        yield made
        made.reset()
    finally:
        made.stop()


@pytest.fixture(scope="module")
def named_registry(world, tmp_path_factory):
    """registry.example.com in the world (started for the first example that needs it)."""
    missing = registry.tools_missing()
    if missing:
        pytest.skip("the registry needs: %s" % ", ".join(missing))
    served = examples.NamedRegistry(str(tmp_path_factory.mktemp("registry")),
                                    users={"team": "team-secret"}).start()
    try:
        world.trust_registry(served)
        yield served
    finally:
        served.stop()


def play(name, tasks, handlers=None):
    made = {"name": name, "hosts": "localhost", "gather_facts": False, "tasks": tasks}
    if handlers:
        made["handlers"] = handlers
    return made


def with_idempotence_runs(tasks, left_out):
    """The tasks as written (but those in NOT_RUN), each converge followed by a second
    run of itself."""
    out = []
    for task in tasks:
        if task.get("name") in left_out:
            continue
        out.append(task)
        if examples.is_converge(task):
            again = copy.deepcopy(task)
            again["name"] = (task.get("name") or examples.module_of(task)) + AGAIN
            out.append(again)
    return out


def example_plays(example):
    left_out = set(key[1] for key in NOT_RUN if isinstance(key, tuple) and key[0] == example.id)
    if example.tasks is not None:
        return [play(example.id, with_idempotence_runs(example.tasks, left_out),
                     HANDLERS.get(example.id))]
    plays = []
    for written in example.plays:
        one = copy.deepcopy(written)
        one["tasks"] = with_idempotence_runs(one.get("tasks") or [], left_out)
        plays.append(one)
        if one.get("roles"):
            again = copy.deepcopy(written)
            again["name"] = (written.get("name") or "the play") + AGAIN
            plays.append(again)
    return plays


def problems(plays_report):
    """What went wrong in the example's plays: failed tasks, and second runs that changed
    something."""
    found = []
    for play_report in plays_report:
        play_again = play_report["play"]["name"].endswith(AGAIN)
        for task in play_report["tasks"]:
            name = task["task"]["name"]
            for host, result in task["hosts"].items():
                if result.get("failed"):
                    found.append("%s on %s failed: %s" % (name, host, result.get("msg") or result))
                elif (play_again or name.endswith(AGAIN)) and result.get("changed"):
                    found.append("%s on %s changed the second time: %s" % (name, host, result))
    return found


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.id not in NOT_RUN],
                         ids=lambda e: e.id)
def test_example_runs_as_written(world, example, tmp_path, request):
    world.reset()
    if example.id in REGISTRY_WORLDS:
        repository, auth_file = REGISTRY_WORLDS[example.id]
        served = request.getfixturevalue("named_registry")
        served.push(os.path.join(world.root, "srv", "images", "busybox.oci"), repository,
                    creds=served.user)
        world.write_auth_file(auth_file, served)
    for path, spec in WORLD_FILES.get(example.id, {}).items():
        world.write(path, yaml.safe_dump(spec))
    for name, content in PLAYBOOK_FILES.get(example.id, {}).items():
        os.makedirs(os.path.dirname(str(tmp_path / name)), exist_ok=True)
        with open(str(tmp_path / name), "w") as f:
            f.write(content)
    setup = [play("the world of %s" % example.id, WORLD_TASKS[example.id])
             ] if example.id in WORLD_TASKS else []
    plays = example_plays(example)
    report, stderr = world.run_playbook(str(tmp_path), setup + plays)
    assert not problems(report["plays"][:len(setup)]), "the world of %s could not be made: %s" % (
        example.id, problems(report["plays"][:len(setup)]))
    found = problems(report["plays"][len(setup):])
    assert not found, "%s (%s), as written:\n%s" % (example.id, example.source, "\n".join(found))
    ran = [sum(1 for t in p["tasks"] if t["hosts"]) for p in report["plays"][len(setup):]]
    written = [len(p.get("tasks") or []) for p in plays]
    assert len(ran) == len(plays) and all(r >= max(w, 1) for r, w in zip(ran, written)), (
        "the example did not run whole (tasks run per play: %s, written: %s):\n%s" % (
            ran, written, stderr))


def test_every_example_is_known_and_the_lists_are_current():
    ids = set(e.id for e in EXAMPLES)
    stale = [key for key in NOT_RUN if (key[0] if isinstance(key, tuple) else key) not in ids]
    assert not stale, "NOT_RUN names examples that no longer exist: %s" % stale
    tables = (WORLD_FILES, WORLD_TASKS, PLAYBOOK_FILES, HANDLERS, REGISTRY_WORLDS)
    unknown = [key for table in tables for key in table if key not in ids]
    assert not unknown, "worlds made for examples that no longer exist: %s" % unknown
    missing = [e.id for e in EXAMPLES if not (e.tasks or e.plays)]
    assert not missing, "modules without EXAMPLES: %s" % missing


def test_every_ansible_block_of_the_docs_is_found():
    """A ```yaml block that names the collection is an example unless it is a mapping (a
    spec): a task list or a play this test could not classify would go unrun."""
    unclassified = []
    for path in examples.markdown_paths():
        for line, data in examples.yaml_blocks(path):
            if (examples.COLLECTION in yaml.safe_dump(data) and not isinstance(data, dict)
                    and examples.ansible_kind(data) is None):
                unclassified.append("%s:%d" % (os.path.relpath(path, examples.REPO_ROOT), line))
    assert not unclassified, "Ansible blocks this test does not run: %s" % unclassified


def test_the_world_does_not_reach_the_host(world):
    """The examples' paths are the world's, and the rest of / is read-only in it."""
    assert "busybox.oci" in world.sh("ls /srv/images")
    for path in ("/srv/images", "/srv/bundles", "/srv/busybox", "/etc/containerfs/web.yml"):
        assert not os.path.exists(path), "%s reached the host" % path
    assert "Read-only" in world.sh("touch /cfs-world-probe 2>&1 || true")
