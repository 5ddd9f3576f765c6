"""Symlinks planted where the project writes on the host are never followed (issue 7 item 7).

For each host path the generated script, the container module or the CLI writes (the
container's state dir and its etc/ files, the run dir and its fstab, fifo and pid file,
the lock file, the dev template, the image store's layer dirs, `render -o` and `export -o`
outputs and their temp names, the image module's store dirs and a `.tmp-` name its
cleaner removes), a symlink is planted there pointing at a sentinel (a file
0600 or a directory 0700 with a file in it, elsewhere). Then the script runs (`run
/bin/true`), the module runs (present, then absent) or the CLI writes; the sentinel's
content, mode and existence must be unchanged, and either the run refused with a message
naming the path, or it replaced the link without following it.

A state dir owned by another user (uid 65534) must be refused.
"""
import json
import os
import re

import pytest

from tests.lib import hostile
from tests.lib import oci_fixtures as fx
from tests.lib.playbook import run_playbook

NAME = "planted"
SENTINEL_TEXT = "SENTINEL: must stay as it is\n"


@pytest.fixture
def env(tmp_path, busybox_rootfs):
    return hostile.HostEnv(str(tmp_path / "host"), busybox_rootfs)


class Sentinels:
    """A file (0600) and a directory (0700, with files) that nothing may touch."""

    def __init__(self, top):
        os.makedirs(top)
        self.file = os.path.join(top, "sentinel-file")
        with open(self.file, "w") as f:
            f.write(SENTINEL_TEXT)
        os.chmod(self.file, 0o600)
        self.dir = os.path.join(top, "sentinel-dir")
        os.makedirs(self.dir)
        # a temp-looking name too: the image store's cleaner removes its own `.tmp-*`
        os.makedirs(os.path.join(self.dir, ".tmp-victim"))
        for rel in ("inside", ".tmp-victim/inside"):
            with open(os.path.join(self.dir, rel), "w") as f:
                f.write(SENTINEL_TEXT)
        os.chmod(self.dir, 0o700)
        self.before = hostile.snapshot([top])
        self.top = top

    def changes(self):
        changed = hostile.diff_snapshots(self.before, hostile.snapshot([self.top]))
        return changed[:4] + (["... and %d more changes" % (len(changed) - 4)] if len(changed) > 4 else [])


def plant(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


def judge(path, target, rc, message, sentinels):
    """Problems after a run over a planted link at `path` (pointing at `target`). A link
    at a temporary name may also be left alone: a per-run temporary name never meets it."""
    problems = sentinels.changes()
    still_planted = os.path.islink(path) and os.readlink(path) == target
    temporary = ".tmp" in os.path.basename(path)
    if rc == 0 and still_planted and not problems and not temporary:
        # it neither refused nor replaced the link: did it write through it elsewhere?
        problems.append("the run succeeded and kept the planted link %s" % path)
    if rc != 0 and os.path.basename(path) not in message:
        problems.append("refused without naming %s: %s" % (path, message[-600:]))
    return problems


def write_spec(case_dir, **fields):
    spec = {"name": NAME, "hostname": NAME, "state_dir": os.path.join(case_dir, "state"),
            "run_dir": os.path.join(case_dir, "run")}
    spec.update(fields)
    path = os.path.join(case_dir, "spec.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path, spec


def render(case_dir, **fields):
    spec_file, spec = write_spec(case_dir, **fields)
    script = os.path.join(case_dir, "container.sh")
    rendered = hostile.cli("render", spec_file, "-o", script)
    assert rendered.rc == 0, rendered
    return script, spec


def dev_template(script):
    with open(script) as f:
        match = re.search(r"CFS_DEV_TEMPLATE=.*?(dev\.[0-9a-f]+)", f.read())
    return match.group(1) if match else None


# Where the script writes, relative to the state dir S, the run dir R and the container's
# own state dir C (= S/containers/NAME); "dir" links point at the sentinel dir.
SCRIPT_PATHS = [
    ("C", "dir"), ("C/etc", "dir"), ("C/etc/hosts", "file"), ("C/etc/hostname", "file"),
    ("C/etc/resolv.conf", "file"), ("C/DEV", "dir"),
    ("R/" + NAME, "dir"), ("R/%s/fstab" % NAME, "file"), ("R/%s/go" % NAME, "file"),
    ("R/%s/pid" % NAME, "file"), ("R/%s.lock" % NAME, "file"),
]


def expand(rel, spec, script):
    container = os.path.join(spec["state_dir"], "containers", NAME)
    if "DEV" in rel:
        assert dev_template(script), "test bug: no CFS_DEV_TEMPLATE in the script"
        rel = rel.replace("DEV", dev_template(script))
    for key, value in (("C", container), ("S", spec["state_dir"]), ("R", spec["run_dir"])):
        if rel == key or rel.startswith(key + "/"):
            return value + rel[len(key):]
    raise ValueError(rel)


@pytest.mark.parametrize("rel,kind", SCRIPT_PATHS, ids=[p for p, _k in SCRIPT_PATHS])
def test_script_run_over_a_planted_link(env, tmp_path, rel, kind):
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    script, spec = render(case_dir, rootfs={"path": env.rootfs})
    sentinels = Sentinels(str(tmp_path / "elsewhere"))
    path = expand(rel, spec, script)
    target = sentinels.dir if kind == "dir" else sentinels.file
    plant(path, target)
    result = hostile.run_script(script, ["run", "/bin/true"], env, case_dir)
    problems = judge(path, target, result.rc, result.stderr, sentinels) + result.problems()
    assert not problems, "%s\n%r" % ("\n".join(problems), result)


@pytest.fixture
def layout(tmp_path):
    """A one-layer OCI layout (tag latest) of a busybox tree."""
    tree = fx.busybox_tree(str(tmp_path / "tree"))
    path = str(tmp_path / "oci")
    fx.oci_layout(path, [fx.tar_of_dir(tree)], tag="latest")
    return path


@pytest.mark.parametrize("rel", ["layers", "layers/sha256", "LAYER"])
def test_script_image_store_over_a_planted_link(env, tmp_path, layout, rel):
    """The script unpacks image layers into <store>/layers/sha256/<diff_id>."""
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    store = os.path.join(case_dir, "store")
    script, spec = render(case_dir, rootfs={"image": {"source": layout, "tag": "latest", "store": store}})
    if rel == "LAYER":
        with open(script) as f:
            rel = "layers/sha256/" + re.search(r"layers/sha256/([0-9a-f]{64})", f.read()).group(1)
    sentinels = Sentinels(str(tmp_path / "elsewhere"))
    path = os.path.join(store, rel)
    plant(path, sentinels.dir)
    result = hostile.run_script(script, ["run", "/bin/true"], env, case_dir, timeout=60)
    problems = judge(path, sentinels.dir, result.rc, result.stderr, sentinels) + result.problems()
    assert not problems, "%s\n%r" % ("\n".join(problems), result)


# ---------------------------------------------------------------------------------------
# The CLI's outputs
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["container.sh", "container.sh.tmp"])
def test_render_output_over_a_planted_link(env, tmp_path, name):
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    spec_file, _spec = write_spec(case_dir, rootfs={"path": env.rootfs})
    sentinels = Sentinels(str(tmp_path / "elsewhere"))
    path = os.path.join(case_dir, name)
    plant(path, sentinels.file)
    result = hostile.cli("render", spec_file, "-o", os.path.join(case_dir, "container.sh"))
    output = os.path.join(case_dir, "container.sh")
    problems = sentinels.changes()
    if result.rc == 0 and (os.path.islink(output) or not os.path.isfile(output)):
        problems.append("render said ok but %s is not the script" % output)
    if result.rc != 0 and name not in result.stderr:
        problems.append("refused without naming %s: %r" % (name, result))
    assert not problems, "%s\n%r" % ("\n".join(problems), result)


@pytest.mark.parametrize("name,kind", [("config.json", "file"), ("config.json.tmp", "file"),
                                       ("etc", "dir"), ("etc/hosts", "file"), ("etc/hosts.tmp", "file")])
def test_export_output_over_a_planted_link(env, tmp_path, name, kind):
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    spec_file, _spec = write_spec(case_dir, rootfs={"path": env.rootfs})
    sentinels = Sentinels(str(tmp_path / "elsewhere"))
    bundle = os.path.join(case_dir, "bundle")
    path = os.path.join(bundle, name)
    target = sentinels.dir if kind == "dir" else sentinels.file
    plant(path, target)
    result = hostile.cli("export", spec_file, "-o", bundle)
    problems = judge(path, target, result.rc, result.stderr, sentinels)
    if result.rc == 0 and os.path.islink(os.path.join(bundle, "config.json")):
        problems.append("export said ok but config.json is a link")
    assert not problems, "%s\n%r" % ("\n".join(problems), result)


# ---------------------------------------------------------------------------------------
# The container module
# ---------------------------------------------------------------------------------------

MODULE_PATHS = [("C", "dir"), ("C/etc", "dir"), ("C/etc/hosts", "file"), ("R/" + NAME, "dir"),
                ("R/%s.lock" % NAME, "file")]


def module_tasks(spec):
    return [{"name": "container %s" % state, "ignore_errors": True,
             "fromscratch.containerfs.container": {"spec": spec, "state": state}}
            for state in ("present", "absent")]


@pytest.mark.parametrize("rel,kind", MODULE_PATHS, ids=[p for p, _k in MODULE_PATHS])
def test_module_present_absent_over_a_planted_link(env, tmp_path, rel, kind):
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    _spec_file, spec = write_spec(case_dir, rootfs={"path": env.rootfs, "overlay": True})
    sentinels = Sentinels(str(tmp_path / "elsewhere"))
    path = expand(rel, spec, "/dev/null")
    target = sentinels.dir if kind == "dir" else sentinels.file
    plant(path, target)
    before = env.snapshot()
    play = tmp_path / "play"
    play.mkdir()
    try:
        present, absent = run_playbook(play, module_tasks(spec), expect_failure=True)
    finally:
        leftover = [line.split()[4] for line in open("/proc/self/mountinfo") if case_dir in line.split()[4]]
    problems = sentinels.changes() + env.check(before)
    if not present.get("failed") and os.path.islink(path) and os.readlink(path) == target:
        problems.append("present succeeded and kept the planted link %s" % path)
    for result in (present, absent):
        if result.get("failed") and os.path.basename(path) not in result.get("msg", ""):
            problems.append("%s refused without naming %s: %s" % (result["task"], path, result.get("msg")))
    if leftover:
        problems.append("mounts left after absent: %s" % leftover)
    assert not problems, "%s\npresent: %s\nabsent: %s" % ("\n".join(problems), present, absent)


# ---------------------------------------------------------------------------------------
# The image module's store
# ---------------------------------------------------------------------------------------

STORE_PATHS = ["layers", "layers/sha256", "images", "refs", "layers/sha256/.tmp-planted"]


@pytest.mark.parametrize("rel", STORE_PATHS)
def test_image_module_store_over_a_planted_link(tmp_path, layout, rel):
    """Import then remove an image with a link planted in its store: the store neither
    writes through it nor lets its temp cleaner delete what the link points at."""
    store = str(tmp_path / "store")
    sentinels = Sentinels(str(tmp_path / "elsewhere"))
    path = os.path.join(store, rel)
    plant(path, sentinels.dir)
    args = {"name": "planted:1", "source": layout, "tag": "latest", "store": store}
    tasks = [{"name": "image %s" % state, "ignore_errors": True,
              "fromscratch.containerfs.image": dict(args, state=state)} for state in ("present", "absent")]
    play = tmp_path / "play"
    play.mkdir()
    results = run_playbook(play, tasks, expect_failure=True)
    problems = sentinels.changes()
    for result in results:
        if result.get("failed") and os.path.basename(path) not in result.get("msg", ""):
            problems.append("%s refused without naming %s: %s" % (result["task"], path, result.get("msg")))
    assert not problems, "%s\n%s" % ("\n".join(problems), results)


# ---------------------------------------------------------------------------------------
# A state dir that is not root's
# ---------------------------------------------------------------------------------------

def test_state_dir_owned_by_another_user_is_refused(env, tmp_path):
    case_dir = str(tmp_path / "case")
    os.makedirs(case_dir)
    script, spec = render(case_dir, rootfs={"path": env.rootfs})
    os.makedirs(spec["state_dir"])
    os.chown(spec["state_dir"], 65534, 65534)
    result = hostile.run_script(script, ["run", "/bin/true"], env, case_dir)
    assert result.rc != 0, "a state dir owned by uid 65534 was used: %r" % result
    assert spec["state_dir"] in result.stderr or "owned" in result.stderr, result
    assert result.problems() == []
    play = tmp_path / "play"
    play.mkdir()
    spec["rootfs"]["overlay"] = True
    present, absent = run_playbook(play, module_tasks(spec), expect_failure=True)
    assert present.get("failed"), "the module used a state dir owned by uid 65534: %s" % present
