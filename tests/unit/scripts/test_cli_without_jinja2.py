"""scripts/containerfs on a host whose python3 has no jinja2 (or no pyyaml): every command
but `render` works, and `render` says in one line what is missing and how to get it.

Each run is a fresh interpreter in which the missing modules cannot be imported
(sys.modules[name] = None makes `import name` fail as if it were not installed).
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CLI = os.path.join(REPO, "scripts", "containerfs")
RUN_WITHOUT = """
import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = [sys.argv[2]] + sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def cli(missing, *args):
    """Run scripts/containerfs ARGS where the modules `missing` cannot be imported."""
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT, ",".join(missing), CLI] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "rootfs").mkdir()
    path = tmp_path / "box.yml"
    path.write_text(yaml.safe_dump({"name": "box", "rootfs": {"path": "rootfs"},
                                    "state_dir": str(tmp_path / "state"),
                                    "run_dir": str(tmp_path / "run")}))
    return str(path)


def test_the_blocker_blocks():
    proc = subprocess.run([sys.executable, "-c", RUN_WITHOUT.replace("runpy.run_path", "import jinja2 #"),
                           "jinja2", "-"], stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr


def test_validate_plan_export_import_work_without_jinja2(tmp_path, spec):
    no_jinja2 = ("jinja2", "markupsafe")
    proc = cli(no_jinja2, "validate", spec)
    assert (proc.returncode, proc.stderr) == (0, "") and "valid spec for container box" in proc.stdout
    proc = cli(no_jinja2, "plan", "--json", spec)
    assert proc.returncode == 0, proc.stderr
    assert any(step["op"] == "pivot_root" for step in json.loads(proc.stdout)["steps"])
    bundle = str(tmp_path / "bundle")
    proc = cli(no_jinja2, "export", spec, "-o", bundle)
    assert proc.returncode == 0, proc.stderr
    proc = cli(no_jinja2, "import", os.path.join(bundle, "config.json"), "--name", "again")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["name"] == "again"


def test_unpack_and_pull_work_without_jinja2(tmp_path):
    source = tmp_path / "tree"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "hostname").write_text("box\n")
    proc = cli(("jinja2",), "unpack", str(source), str(tmp_path / "dest"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dest" / "etc" / "hostname").read_text() == "box\n"
    # (tests/system/test_registry_pull.py pulls for real; here the command runs up to
    # its check of the reference, with no network)
    proc = cli(("jinja2",), "pull", "docker://localhost/Upper", "--store", str(tmp_path / "store"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("containerfs pull: invalid image reference") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("missing", [("jinja2",), ("markupsafe",)])
def test_render_says_in_one_line_what_is_missing(spec, missing):
    proc = cli(missing, "render", spec)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("containerfs: error: render needs the Python module jinja2, which %s "
                           "cannot import: apt-get install python3-jinja2, or pip install jinja2\n"
                           % sys.executable)


def test_import_without_pyyaml_says_so(tmp_path, spec):
    bundle = str(tmp_path / "bundle")
    assert cli((), "export", spec, "-o", bundle).returncode == 0
    proc = cli(("yaml",), "import", os.path.join(bundle, "config.json"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.endswith("import needs the Python module yaml, which %s cannot import: "
                                "apt-get install python3-yaml, or pip install pyyaml\n" % sys.executable)


def test_render_works_with_jinja2(spec):
    proc = cli((), "render", spec)
    assert proc.returncode == 0 and proc.stdout.startswith("#!/bin/sh\n")


def test_an_import_error_of_anything_else_is_not_hidden():
    """A module of ours that fails to import is a bug: a traceback, not 'install jinja2'."""
    import runpy
    cli_globals = runpy.run_path(CLI, run_name="containerfs_cli")
    need, jinja2 = cli_globals["need"], cli_globals["JINJA2"]
    with pytest.raises(ImportError) as raised:
        need("render", jinja2, "ansible_collections.fromscratch.containerfs.plugins.plugin_utils._no_such")
    assert raised.type is not cli_globals["UsageError"]
    assert need("render", jinja2).__name__ == "jinja2"
