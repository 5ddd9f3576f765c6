"""fromscratch.containerfs.container_script through real playbooks (connection local): the
script rendered on the controller lands at dest, runs (`run hostname`, in a private mount
namespace), a second run changes nothing, check mode writes nothing, diff mode shows the
script's change, a spec_file is found as template finds its src, a bundle and an image on
the target compile there, a bad spec names every bad field, and the systemd unit is the
container module's with ExecStart on dest (verified by systemd-analyze, its Exec lines run)."""
import os
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

from tests.lib import oci_fixtures as fx
from tests.lib.playbook import run_playbook
from tests.system import _lifecycle as L
from tests.system.test_systemd_unit import FAKE_SYSTEMCTL, calls, systemd_words, verify

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

MODULE = "fromscratch.containerfs.container_script"


def script_task(dest, **args):
    args["dest"] = str(dest)
    return {"name": "container_script", MODULE: args}


def run_in_private_ns(*argv):
    """Run the installed script as a user would, its mounts kept from pytest's namespace."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--"] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=L.HOST_ENV, timeout=120, check=False)


@pytest.fixture
def spec(tmp_path, rootfs):
    spec = L.make_spec(tmp_path, rootfs, name="scripted", args=["hostname"])
    yield spec
    L.kill_all(spec["state_dir"], spec["run_dir"])


def test_installs_a_script_that_runs_and_a_second_run_changes_nothing(tmp_path, spec):
    dest = tmp_path / "bin" / "scripted"
    dest.parent.mkdir()
    first = run_playbook(tmp_path, [script_task(dest, spec=spec)])[0]
    assert first["changed"] is True and first["actions"] == ["write the script %s" % dest]
    text = dest.read_text()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert first["digest"] in text.splitlines()[6]  # the header names the spec's digest
    assert first["size"] == len(text.encode()) and first["unit"] is None
    assert first["name"] == "scripted" and first["dest"] == str(dest)

    ran = run_in_private_ns("sh", str(dest), "run", "hostname")
    assert (ran.returncode, ran.stdout) == (0, "scripted\n"), ran.stderr

    again = run_playbook(tmp_path, [script_task(dest, spec=spec)])[0]
    assert again["changed"] is False and again["actions"] == []
    assert again["sha256"] == first["sha256"] and dest.read_text() == text


def test_check_mode_writes_nothing(tmp_path, spec):
    dest = tmp_path / "scripted"
    checked = run_playbook(tmp_path, [script_task(dest, spec=spec, systemd=True, unit_dir=str(tmp_path))],
                           check=True)[0]
    assert checked["changed"] is True
    assert checked["actions"] == ["write the script %s" % dest,
                                  "write the systemd unit %s" % (tmp_path / "containerfs-scripted.service")]
    assert not dest.exists() and not (tmp_path / "containerfs-scripted.service").exists()


# A script is about 100 KiB, near Ansible's default max_diff_size (104448 bytes), above
# which copy skips the diff: raised, as container_script's docs say.
BIG_DIFFS = {"ANSIBLE_MAX_DIFF_SIZE": str(1 << 20)}


def test_diff_shows_the_scripts_change_after_a_spec_edit(tmp_path, spec):
    dest = tmp_path / "scripted"
    run_playbook(tmp_path, [script_task(dest, spec=spec)])
    before = dest.read_text()
    spec["hostname"] = "edited-name"

    checked = run_playbook(tmp_path, [script_task(dest, spec=spec)], check=True, diff=True, env=BIG_DIFFS)[0]
    assert checked["changed"] is True and dest.read_text() == before
    [diff] = checked["diff"]
    assert diff["before"] == before and "'edited-name'" in diff["after"]

    applied = run_playbook(tmp_path, [script_task(dest, spec=spec)], diff=True, env=BIG_DIFFS)[0]
    assert applied["changed"] is True and applied["diff"][0]["after"] == dest.read_text()
    assert run_in_private_ns("sh", str(dest), "run", "hostname").stdout == "edited-name\n"


def test_a_spec_file_is_found_beside_the_playbook_and_its_paths_are_the_targets(tmp_path, spec):
    app = tmp_path / "app"
    app.mkdir()
    subprocess.run(["cp", "-a", spec["rootfs"]["path"], str(app / "rootfs")], check=True)
    on_disk = dict(spec, rootfs={"path": "rootfs"})  # relative: beside dest on the target
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "scripted.yml").write_text(yaml.safe_dump(on_disk))
    dest = app / "scripted.sh"

    result = run_playbook(tmp_path, [script_task(dest, spec_file="scripted.yml", mode="0700",
                                                 name="renamed")])[0]
    assert result["changed"] is True and result["name"] == "renamed"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert "CFS_NAME='renamed'" in dest.read_text()
    ran = run_in_private_ns("sh", str(dest), "run", "hostname")
    assert (ran.returncode, ran.stdout) == (0, "scripted\n"), ran.stderr


def test_a_bundle_on_the_target(tmp_path, spec):
    bundle = tmp_path / "bundle"
    spec_file = tmp_path / "spec.yml"
    spec_file.write_text(yaml.safe_dump(dict(spec, hostname="bundled", rootfs=dict(spec["rootfs"], overlay=False))))
    subprocess.run([sys.executable, L.CLI, "export", "-o", str(bundle), str(spec_file)], check=True, env=L.HOST_ENV,
                   stdout=subprocess.DEVNULL)
    dest = tmp_path / "bundled.sh"
    result = run_playbook(tmp_path, [script_task(dest, bundle=str(bundle), name="bundled",
                                                 state_dir=spec["state_dir"], run_dir=spec["run_dir"])])[0]
    assert result["changed"] is True and result["name"] == "bundled"
    ran = run_in_private_ns("sh", str(dest), "run", "hostname")
    assert (ran.returncode, ran.stdout) == (0, "bundled\n"), ran.stderr


def test_an_image_on_the_target(tmp_path):
    """The plan of an image lists its layers as the target's source holds them: compiled there."""
    root = fx.busybox_tree(str(tmp_path / "tree"), applets=("sh", "hostname"))
    os.chmod(root, 0o755)
    layout = str(tmp_path / "layout")
    fx.oci_layout(layout, [fx.tar_of_dir(root)], config={"Cmd": ["/bin/hostname"], "Env": ["PATH=/bin"]})
    spec = {"name": "imaged", "hostname": "imaged", "rootfs": {"image": {"source": layout}},
            "state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
    dest = tmp_path / "imaged.sh"
    try:
        result = run_playbook(tmp_path, [script_task(dest, spec=spec)])[0]
        assert result["changed"] is True
        # its layers are unpacked when the script runs, not when it is installed
        assert not os.path.exists(_layout.StoreLayout(spec["state_dir"]).layers_dir)
        ran = run_in_private_ns("sh", str(dest), "run")
        assert (ran.returncode, ran.stdout) == (0, "imaged\n"), ran.stderr
    finally:
        L.kill_all(spec["state_dir"], spec["run_dir"])


def test_a_bad_spec_names_every_bad_field_and_writes_nothing(tmp_path, spec):
    bad = dict(spec, hostnme="x", volumes=[{"source": "/srv", "target": "data"}])
    dest = tmp_path / "bad.sh"
    [failed] = run_playbook(tmp_path, [script_task(dest, spec=bad)], expect_failure=True)
    assert failed["failed"] is True
    assert "hostnme: unknown field (did you mean 'hostname'?)" in failed["msg"]
    assert "volumes[0].target: must be an absolute path inside the container" in failed["msg"]
    assert len(failed["errors"]) == 2
    assert not dest.exists()


def test_bad_task_arguments_are_refused_before_anything_runs(tmp_path, spec):
    dest = tmp_path / "bad.sh"
    tasks = [script_task(dest, spec=spec, spec_file="x.yml"),
             script_task("relative/bad.sh", spec=spec),
             script_task(dest, spec_file="missing.yml"),
             script_task(dest, spec=spec, _step="systemd")]
    for task in tasks:
        task["ignore_errors"] = True
    results = run_playbook(tmp_path, tasks, expect_failure=True)
    assert [r.get("failed") for r in results] == [True] * 4
    assert "mutually exclusive" in results[0]["msg"]
    assert "dest must be an absolute path" in results[1]["msg"]
    assert "spec_file missing.yml not found" in results[2]["msg"]
    assert "_step is internal" in results[3]["msg"]
    assert not dest.exists()


@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    """systemd as pid 1, for the module: CONTAINERFS_TEST_SYSTEMD=DIR runs DIR/systemctl."""
    directory = tmp_path / "systemd"
    directory.mkdir(mode=0o700)
    systemctl = directory / "systemctl"
    systemctl.write_text(FAKE_SYSTEMCTL)
    systemctl.chmod(0o700)
    monkeypatch.setenv(L._process.TEST_SYSTEMD, str(directory))
    return directory


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_is_the_container_modules_and_runs_the_script_at_dest(tmp_path, spec, fake_systemd):
    spec["process"]["args"] = list(L.SLEEP)
    dest = tmp_path / "with space" / "scripted"
    dest.parent.mkdir()
    unit_file = fake_systemd / "containerfs-scripted.service"
    task = script_task(dest, spec=spec, systemd=True, enabled=True, restart_policy="on-failure", stop_timeout=1)

    first = run_playbook(tmp_path, [task])[0]
    assert first["unit"] == str(unit_file)
    assert first["actions"] == ["write the script %s" % dest, "write the systemd unit %s" % unit_file,
                                "reload systemd", "enable the systemd unit %s" % unit_file.name]
    assert calls(fake_systemd) == ["daemon-reload", "is-enabled --quiet " + unit_file.name,
                                   "enable " + unit_file.name]
    plan = dict(_plan.build_plan(_image_spec.load(dict(spec))))
    plan["paths"] = dict(plan["paths"], script=str(dest))
    assert unit_file.read_text() == L._process.unit_text(plan, "on-failure", 1)
    result = verify(str(unit_file))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr

    again = run_playbook(tmp_path, [task])[0]
    assert again["changed"] is False and calls(fake_systemd)[3:] == ["is-enabled --quiet " + unit_file.name]

    start = systemd_words(_line(unit_file, "ExecStart"))
    assert start[:3] == ["/bin/sh", str(dest), "start"] and "--foreground" in start
    stop = systemd_words(_line(unit_file, "ExecStop"))
    assert stop == ["/bin/sh", str(dest), "stop", "--timeout", "1"]
    service = subprocess.Popen(start, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=L.HOST_ENV)
    try:
        L.wait_for(lambda: L.status(spec)["state"] == "running" or service.poll() is not None,
                   what="the container to run")
        assert L.status(spec)["state"] == "running", service.communicate()
        assert L.status(spec)["monitor_pid"] == service.pid
        stopped = subprocess.run(stop, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 universal_newlines=True, env=L.HOST_ENV, timeout=60, check=False)
        assert stopped.returncode == 0, stopped.stderr
        assert service.wait(timeout=60) == 137  # sleep as pid 1 ignores SIGTERM: killed
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def test_without_systemd_as_pid1_the_unit_is_written_with_a_warning(tmp_path, spec):
    if L._process.systemd_is_pid1():
        pytest.skip("systemd is pid 1 here")
    dest = tmp_path / "scripted"
    result = run_playbook(tmp_path, [script_task(dest, spec=spec, systemd=True, unit_dir=str(tmp_path),
                                                 enabled=True)])[0]
    assert result["changed"] is True and (tmp_path / "containerfs-scripted.service").exists()
    assert any("systemd is not pid 1" in w for w in result.get("warnings", []))


def _line(unit_file, key):
    lines = [l[len(key) + 1:] for l in unit_file.read_text().splitlines() if l.startswith(key + "=")]
    assert len(lines) == 1
    return lines[0]
