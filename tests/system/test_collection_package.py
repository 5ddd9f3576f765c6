"""The collection as a package: `ansible-galaxy collection build` of a tree with junk in it
ships exactly the files listed below; the tarball installs into a fresh collections path;
a playbook run from the INSTALLED copy starts a container (the action plugin renders its
script with the installed copy's templates) and removes it; the installed CLI works, and
works without jinja2 except for `render`, which says what is missing.

Both ends of the supported range: the newest ansible-core in .venv and the oldest that
meta/runtime.yml declares, in .venv-oldest (tests/setup-env makes both).
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from tests.system import _lifecycle as L

REPO = L.REPO
NAMESPACE, NAME = "fromscratch", "containerfs"
# ansible-core of each end of the supported range: the directory of its ansible-* commands.
ANSIBLE_BINS = {
    "newest": os.path.dirname(sys.executable),
    "oldest": os.path.join(REPO, ".venv-oldest", "bin"),
}
# A line the test adds to the installed copy's template: a script that has it was rendered
# from the installed copy, not from the checkout.
INSTALLED_MARK = "# rendered from the installed copy (test_collection_package)"

# Every file the tarball holds, and nothing else. Adding a module, a role file or a doc
# means adding it here: the test fails on a file that slips in or goes missing.
EXPECTED_FILES = """
MANIFEST.json FILES.json
README.md LICENSE CHANGELOG.rst requirements.txt bindep.txt
changelogs/changelog.yaml changelogs/config.yaml
meta/runtime.yml meta/execution-environment.yml
docs/architecture.md docs/container-script.md docs/image-hazards.md docs/lifecycle-modules.md
docs/lifecycle.md docs/runc-users.md docs/spec.md docs/testing-with-molecule.md docs/fleet.md
examples/busybox.yml examples/web-volumes.yml
plugins/action/container.py plugins/action/container_script.py
plugins/doc_fragments/_attributes.py plugins/doc_fragments/_dirs.py
plugins/doc_fragments/_registry.py plugins/doc_fragments/_spec.py
plugins/modules/container.py plugins/modules/container_exec.py plugins/modules/container_info.py
plugins/modules/container_script.py plugins/modules/image.py plugins/modules/image_info.py
plugins/module_utils/_errors.py plugins/module_utils/_layout.py plugins/module_utils/_module_args.py
plugins/module_utils/_image/__init__.py plugins/module_utils/_image/blob.py
plugins/module_utils/_image/errors.py plugins/module_utils/_image/flatten.py
plugins/module_utils/_image/layers.py plugins/module_utils/_image/platforms.py
plugins/module_utils/_image/registry.py plugins/module_utils/_image/source.py
plugins/module_utils/_image/source_fs.py plugins/module_utils/_image/source_registry.py
plugins/module_utils/_image/store.py plugins/module_utils/_image/tar.py
plugins/module_utils/_image/tree.py plugins/module_utils/_image/unpack.py
plugins/module_utils/_image/budget.py plugins/module_utils/_image/parallel.py
plugins/module_utils/_oci/__init__.py plugins/module_utils/_oci/bundle.py
plugins/module_utils/_plan/__init__.py plugins/module_utils/_plan/plan.py
plugins/module_utils/_runtime/__init__.py plugins/module_utils/_runtime/applier.py
plugins/module_utils/_runtime/commands.py plugins/module_utils/_runtime/drift.py
plugins/module_utils/_runtime/errors.py plugins/module_utils/_runtime/host_steps.py
plugins/module_utils/_runtime/hostfs.py plugins/module_utils/_runtime/inroot.py
plugins/module_utils/_runtime/lifecycle.py plugins/module_utils/_runtime/mountinfo.py
plugins/module_utils/_runtime/namespaces.py plugins/module_utils/_runtime/process.py
plugins/module_utils/_runtime/root_steps.py
plugins/module_utils/_spec/__init__.py plugins/module_utils/_spec/checker.py
plugins/module_utils/_spec/defaults.py plugins/module_utils/_spec/errors.py
plugins/module_utils/_spec/fields.py plugins/module_utils/_spec/files.py
plugins/module_utils/_spec/image.py plugins/module_utils/_spec/mountopts.py
plugins/module_utils/_spec/mounts.py plugins/module_utils/_spec/registry.py
plugins/module_utils/_spec/rootfs.py plugins/module_utils/_spec/text.py
plugins/module_utils/_spec/validate.py
plugins/plugin_utils/_render.py plugins/plugin_utils/_unpack_cli.py plugins/plugin_utils/_version.py
roles/containers/README.md roles/containers/defaults/main.yml roles/containers/handlers/main.yml
roles/containers/meta/argument_specs.yml roles/containers/meta/main.yml
roles/containers/tasks/containers.yml roles/containers/tasks/main.yml roles/containers/vars/main.yml
roles/container_scripts/README.md roles/container_scripts/defaults/main.yml roles/container_scripts/meta/argument_specs.yml
roles/container_scripts/meta/main.yml roles/container_scripts/tasks/main.yml
scripts/containerfs
scripts/templates/container.sh.j2 scripts/templates/steps.j2 scripts/templates/wait.sh.j2
scripts/templates/sh/devices.sh scripts/templates/sh/host.sh scripts/templates/sh/inside.sh scripts/templates/sh/layers.sh
scripts/templates/sh/lifecycle.sh scripts/templates/sh/messages.sh scripts/templates/sh/monitor.sh
scripts/templates/sh/mounts.sh scripts/templates/sh/paths.sh scripts/templates/sh/pin.sh
scripts/templates/sh/registry.sh
""".split()

# What a working tree may hold and must never ship (the README's tour, pytest, editors,
# ansible-test, an earlier build), beside what git tracks and does not ship (tests/, bench/,
# .ci/, galaxy.yml, examples/demo, changelogs/fragments/).
JUNK = {
    "examples/rootfs/bin/busybox": "\x7fELF",
    "examples/rootfs/etc/hostname": "busybox\n",
    "busybox.sh": "#!/bin/sh\n",
    ".pytest_cache/v/cache/lastfailed": "{}\n",
    "plugins/modules/__pycache__/container.cpython-311.pyc": "",
    "plugins/module_utils/_spec/validate.py~": "",
    "scripts/templates/.steps.j2.swp": "",
    "tests/output/.tmp/sanity.txt": "",
    ".ansible/collections/ansible_collections/x/y/MANIFEST.json": "{}",
    "changelogs/.plugin-cache.yaml": "{}\n",
    "changelogs/fragments/unreleased.yml": "---\nbugfixes:\n  - x.\n",
    "docs/notes.txt": "draft\n",
    "fromscratch-containerfs-0.0.1.tar.gz": "",
}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (starts a container)")


def run(cmd, **kwargs):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, **kwargs)
    assert proc.returncode == 0, "%s failed (%d):\n%s" % (" ".join(cmd), proc.returncode, proc.stdout)
    return proc.stdout


def ansible_env(tmp_path, collections):
    """Only `collections` holds collections: not the checkout, ~/.ansible or sys.path."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("ANSIBLE_")]:
        del env[key]
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections,
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    })
    return env


@pytest.fixture(scope="module")
def junk_tree(tmp_path_factory):
    """A copy of the checkout's files (what git tracks and what it would add) plus JUNK."""
    tree = tmp_path_factory.mktemp("tree") / NAME
    listed = run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for rel in listed.split("\0"):
        src = os.path.join(REPO, rel)
        if rel and os.path.isfile(src) and not rel.startswith("bench/"):
            os.makedirs(os.path.dirname(str(tree / rel)), exist_ok=True)
            shutil.copy2(src, str(tree / rel))
    for rel, content in JUNK.items():
        os.makedirs(os.path.dirname(str(tree / rel)) or str(tree), exist_ok=True)
        (tree / rel).write_text(content)
    return tree


def ansible_bin(version):
    bin_dir = ANSIBLE_BINS[version]
    if not os.path.exists(os.path.join(bin_dir, "ansible-galaxy")):
        pytest.fail("%s has no ansible-core: run tests/setup-env" % bin_dir)
    return bin_dir


def declared_oldest():
    with open(os.path.join(REPO, "meta", "runtime.yml")) as f:
        return re.match(r">=(\d+\.\d+\.\d+)$", yaml.safe_load(f)["requires_ansible"]).group(1)


def core_version(bin_dir):
    out = run([os.path.join(bin_dir, "ansible"), "--version"])
    return re.match(r"ansible \[core ([^\]]+)\]", out).group(1)


@pytest.fixture(scope="module", params=sorted(ANSIBLE_BINS))
def installed(request, junk_tree, tmp_path_factory):
    """Build junk_tree with one ansible-core, install the tarball into a fresh path:
    (ansible-core's bin dir, the tarball, the collections path, the installed copy)."""
    bin_dir = ansible_bin(request.param)
    work = tmp_path_factory.mktemp("package-" + request.param)
    env = ansible_env(work, str(work / "unused"))
    run([os.path.join(bin_dir, "ansible-galaxy"), "collection", "build", "--output-path",
         str(work / "dist"), str(junk_tree)], env=env)
    tarball, = [str(p) for p in (work / "dist").iterdir()]
    collections = str(work / "collections")
    run([os.path.join(bin_dir, "ansible-galaxy"), "collection", "install", "-p", collections, tarball],
        env=env)
    copy = os.path.join(collections, "ansible_collections", NAMESPACE, NAME)
    return bin_dir, tarball, collections, copy


def test_oldest_is_the_declared_minimum_and_newest_is_newer():
    assert core_version(ansible_bin("oldest")) == declared_oldest()
    newest = core_version(ansible_bin("newest"))
    assert tuple(int(n) for n in newest.split(".")[:3]) >= tuple(int(n) for n in declared_oldest().split("."))


def test_the_tarball_holds_exactly_what_ships(installed):
    tarball = installed[1]
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    files = sorted(m.name for m in members if not m.isdir())
    missing = sorted(set(EXPECTED_FILES) - set(files))
    extra = sorted(set(files) - set(EXPECTED_FILES))
    assert not missing and not extra, (
        "the tarball differs from EXPECTED_FILES: missing %s, not to ship %s (galaxy.yml "
        "manifest: or this list)" % (missing, extra))
    modes = {m.name: m.mode for m in members}
    assert modes["scripts/containerfs"] == 0o755
    assert os.path.basename(tarball) == "%s-%s-%s.tar.gz" % (NAMESPACE, NAME, _galaxy_version())


def _galaxy_version():
    with open(os.path.join(REPO, "galaxy.yml")) as f:
        return str(yaml.safe_load(f)["version"])


@pytest.fixture
def spec(tmp_path, rootfs):
    spec = L.make_spec(tmp_path, rootfs, name="pkg")
    yield spec
    L.kill_all(spec["state_dir"], spec["run_dir"])


def test_a_playbook_runs_from_the_installed_copy(installed, spec, tmp_path):
    bin_dir, _tarball, collections, copy = installed
    assert os.path.realpath(copy) != os.path.realpath(REPO)    # never mark the checkout
    template = os.path.join(copy, "scripts", "templates", "container.sh.j2")
    with open(template) as f:
        if INSTALLED_MARK not in f.read():
            with open(template, "a") as out:
                out.write(INSTALLED_MARK + "\n")
    module = "fromscratch.containerfs.container"
    play = [{
        "name": "the installed collection starts and removes a container",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [
            {"name": "start", module: {"spec": spec, "state": "started"}, "register": "started"},
            {"name": "start again", module: {"spec": spec, "state": "started"}, "register": "again"},
            {"name": "read the installed script", "ansible.builtin.slurp": {"src": L.paths_of(spec)["script"]},
             "register": "script"},
            {"name": "check", "ansible.builtin.assert": {"that": [
                "started is changed", "started.container.state == 'running'",
                "again is not changed", "again.container.pid == started.container.pid",
                "(script.content | b64decode) is search(%r)" % re.escape(INSTALLED_MARK)]}},
            {"name": "remove", module: {"spec": spec, "state": "absent"}, "register": "removed"},
            {"name": "check removed", "ansible.builtin.assert": {"that": ["removed is changed"]}},
        ],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    run([os.path.join(bin_dir, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
        env=ansible_env(tmp_path, collections), cwd=str(tmp_path))
    assert not os.path.exists(L.paths_of(spec)["script"])
    assert L.mounts_under(spec["state_dir"]) == []


@pytest.fixture(scope="module")
def python_without_jinja2(tmp_path_factory):
    """A venv whose python3 imports pyyaml (linked from this one) but not jinja2."""
    venv = tmp_path_factory.mktemp("nojinja2") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    site = run([str(venv / "bin" / "python3"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    os.symlink(os.path.dirname(yaml.__file__), os.path.join(site.strip(), "yaml"))
    probe = subprocess.run([str(venv / "bin" / "python3"), "-c", "import yaml, jinja2"],
                           stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert "No module named 'jinja2'" in probe.stderr, probe.stderr
    return str(venv / "bin")


def test_the_installed_cli(installed, tmp_path, python_without_jinja2):
    """`scripts/containerfs` of the installed copy, run as a user runs it (its shebang picks
    python3 from PATH): with jinja2, and on a host whose python3 has no jinja2."""
    copy = installed[3]
    cli = os.path.join(copy, "scripts", "containerfs")
    (tmp_path / "rootfs").mkdir()
    spec_file = tmp_path / "box.yml"
    spec_file.write_text(yaml.safe_dump(L.make_spec(tmp_path, str(tmp_path / "rootfs"))))
    with_jinja2 = dict(L.HOST_ENV, PATH=os.path.dirname(sys.executable) + ":" + L.HOST_ENV["PATH"])
    without = dict(L.HOST_ENV, PATH=python_without_jinja2 + ":" + L.HOST_ENV["PATH"])

    assert run([cli, "--version"], env=with_jinja2).strip() == "containerfs %s" % _galaxy_version()
    script = run([cli, "render", str(spec_file)], env=with_jinja2)
    assert script.startswith("#!/bin/sh\n")
    for env in (with_jinja2, without):
        assert "valid spec for container box" in run([cli, "validate", str(spec_file)], env=env)
        assert "pivot_root" in run([cli, "plan", str(spec_file)], env=env)
    proc = subprocess.run([cli, "render", str(spec_file)], env=without, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("containerfs: error: render needs the Python module jinja2, which %s "
                           "cannot import: apt-get install python3-jinja2, or pip install jinja2\n"
                           % os.path.join(python_without_jinja2, "python3"))
