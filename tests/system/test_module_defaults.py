"""module_defaults for the action group reach every module with one name per directory:
`group/fromscratch.containerfs.containerfs: {state_dir: X, run_dir: Y}` alone (no module
is given a directory) imports an image into X, sets a container up in X and Y from it,
finds it with container_info and image_info, runs a command in it and removes it all, and
nothing lands in the default directories.
"""
import os

import pytest
import yaml

from tests.lib.collection import REPO_ROOT
from tests.lib.playbook import run_playbook

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

GROUP = "group/fromscratch.containerfs.containerfs"
NAME = "mdefaults"   # a container name no other test uses: its default dirs must stay empty


def group_members():
    with open(os.path.join(REPO_ROOT, "meta", "runtime.yml")) as f:
        return yaml.safe_load(f)["action_groups"]["containerfs"]


def task(module, **args):
    return {"name": "%s %s" % (module, args.get("state", "")), "fromscratch.containerfs." + module: args}


def test_group_defaults_set_the_dirs_of_every_module(tmp_path, rootfs):
    state_dir, run_dir = str(tmp_path / "state"), str(tmp_path / "run")
    tasks = [
        task("image", name="md", source=rootfs, format="dir"),
        task("container", state="started",
             spec={"name": NAME, "rootfs": {"image": {"name": "md"}}, "process": {"args": ["sleep", "600"]}}),
        task("container_info", name=NAME),
        task("container_info"),
        task("image_info", name=["md"]),
        task("container_exec", name=NAME, argv=["cat", "/etc/hostname"]),
        dict(task("container_exec", name=NAME, argv=["true"], run_dir=str(tmp_path / "elsewhere")),
             ignore_errors=True),
        task("container", name=NAME, state="absent"),
        task("image", name="md", state="absent"),
    ]
    used = set(next(k for k in t if k != "name").split(".")[-1] for t in tasks)
    # every module of the group is tried (container_script, which writes a file, has its own tests)
    assert used <= set(group_members()) <= used | {"container_script"}, group_members()
    block = {"block": tasks, "module_defaults": {GROUP: {"state_dir": state_dir, "run_dir": run_dir}}}
    results = run_playbook(tmp_path, [block], expect_failure=True)
    imported, up, info, listing, images, ran, elsewhere, gone, removed = results
    assert [r["task"] for r in results if r.get("failed")] == [elsewhere["task"]]
    # a run_dir given must be the one the container was set up with
    assert "was set up with run_dir %s, not %s" % (run_dir, tmp_path / "elsewhere") in elsewhere["msg"], elsewhere

    assert imported["changed"] and imported["image"]["name"] == "md"
    assert up["changed"] and up["container"]["root"] == os.path.join(run_dir, NAME, "rootfs")
    assert up["container"]["log"].startswith(os.path.join(state_dir, "containers", NAME) + "/")
    assert info["exists"] is True and info["container"]["root"] == up["container"]["root"]
    assert [c["name"] for c in listing["containers"]] == [NAME]
    assert [i["name"] for i in images["images"]] == ["md"]   # found in state_dir
    assert ran["rc"] == 0 and ran["container_state"] == "running" and ran["cmd"][1] == os.path.join(state_dir, "containers", NAME, "container.sh")
    assert gone["changed"] and removed["changed"]
    assert os.listdir(os.path.join(state_dir, "images")) == []
    for default in ("/var/lib/containerfs/containers", "/run/containerfs"):
        assert not os.path.exists(os.path.join(default, NAME)), default


def test_image_store_is_an_alias_of_state_dir(tmp_path):
    state_dir = str(tmp_path / "state")
    listed = run_playbook(tmp_path, [task("image_info", store=state_dir), task("image_info", state_dir=state_dir)])
    assert listed[0]["images"] == listed[1]["images"] == []
