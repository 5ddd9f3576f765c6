"""The rendered script as text: shellcheck, every shell parses it, no container runtime."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, render

from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render

EXAMPLE = os.path.join(REPO, "examples", "busybox.yml")
RUNTIMES = ("runc", "crun", "docker", "podman", "containerd", "skopeo", "umoci", "python",
            "python3")


def every_feature_spec(tmp_path):
    """A spec that turns on every feature the spec model has."""
    return {
        "name": "all-features",
        "hostname": "all.features",
        "rootfs": {"path": str(tmp_path / "rootfs"), "overlay": True, "readonly": True,
                   "propagation": "rslave"},
        "namespaces": ["mount", "uts", "ipc", "pid", "net", "cgroup"],
        "volumes": [
            {"type": "bind", "source": str(tmp_path / "src dir"), "target": "/mnt/it's here",
             "readonly": True, "recursive": False, "propagation": "rslave"},
            {"type": "bind", "source": str(tmp_path / "file"), "target": "/etc/app.conf",
             "propagation": "rshared"},
            {"type": "tmpfs", "target": "/scratch", "size": "16m", "mode": "1770",
             "options": ["nosuid", "nodev"]},
        ],
        "devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "mode": "0660",
             "uid": 0, "gid": 5},
            {"path": "/dev/loop-test", "type": "b", "major": 7, "minor": 0},
        ],
        "etc": {"extra_hosts": [{"address": "10.0.0.1", "names": ["db", "db.local"]}]},
        "dns": {"nameservers": ["10.0.0.53", "fd00::53"], "search": ["example.org"],
                "options": ["ndots:2", "edns0"]},
        "add_masked_paths": ["/etc/secret", "/var/secret dir"],
        "add_readonly_paths": ["/usr"],
        "process": {"args": ["sh", "-c", "echo \"$HOME\" `id` 'q' \\\\"], "cwd": "/tmp",
                    "user": "65534:65534",
                    "env": ["PATH=/bin:/usr/bin", "WEIRD=a 'b' \"c\" $d `e` \\f"]},
        "state_dir": str(tmp_path / "state"),
        "run_dir": str(tmp_path / "run"),
    }


@pytest.fixture(params=["example", "every-feature"])
def script(request, tmp_path):
    if request.param == "example":
        with open(EXAMPLE) as f:
            text = f.read()
        # render the example as it is, from a copy next to a (missing) rootfs
        spec_file = tmp_path / "busybox.yml"
        spec_file.write_text(text)
        out = tmp_path / "busybox.sh"
        subprocess.run([os.path.join(REPO, ".venv", "bin", "python")
                        if os.path.exists(os.path.join(REPO, ".venv", "bin", "python"))
                        else "python3", os.path.join(REPO, "scripts", "containerfs"), "render",
                        str(spec_file), "-o", str(out)], check=True)
        return str(out)
    return render(every_feature_spec(tmp_path), str(tmp_path), "all-features")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("dialect", ["sh", "dash"])
def test_shellcheck_clean(script, dialect):
    result = subprocess.run(["shellcheck", "-s", dialect, "-S", "style", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


@pytest.mark.parametrize("shell", [("dash", "-n"), ("bash", "-n"), ("busybox", "ash", "-n")],
                         ids=["dash", "bash", "busybox-ash"])
def test_every_shell_parses_it(script, shell):
    result = subprocess.run(list(shell) + [script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


STATIC_DIR = os.path.join(REPO, "scripts", "templates", "sh")
STATIC_PARTS = sorted(name for name in os.listdir(STATIC_DIR) if name.endswith(".sh"))


def test_the_static_parts_are_the_ones_the_renderer_lists():
    assert STATIC_PARTS == sorted(_render.STATIC_PARTS)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("dialect", ["sh", "dash"])
@pytest.mark.parametrize("part", STATIC_PARTS)
def test_static_part_is_shellcheck_clean_on_its_own(part, dialect):
    path = os.path.join(STATIC_DIR, part)
    with open(path) as f:
        assert f.readline() == "# shellcheck shell=dash\n"
    result = subprocess.run(["shellcheck", "-s", dialect, "-S", "style", path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


@pytest.mark.parametrize("shell", [("dash", "-n"), ("bash", "-n"), ("busybox", "ash", "-n")],
                         ids=["dash", "bash", "busybox-ash"])
@pytest.mark.parametrize("part", STATIC_PARTS)
def test_every_shell_parses_each_static_part(part, shell):
    result = subprocess.run(list(shell) + [os.path.join(STATIC_DIR, part)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


@pytest.mark.parametrize("part", STATIC_PARTS)
def test_static_part_holds_no_template_syntax(part):
    """Copied as it is: a `{{ value }}` in it would reach the script as text, not a value."""
    with open(os.path.join(STATIC_DIR, part)) as f:
        text = f.read()
    assert "{{" not in text and "{%" not in text


def code_lines(text):
    """The script without its comments (comments may name runc as the model it copies)."""
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("#"):
            continue
        lines.append(re.sub(r"\s#\s.*$", "", line))
    return lines


def test_uses_no_container_runtime(script):
    with open(script) as f:
        text = f.read()
    found = []
    for number, line in enumerate(code_lines(text), 1):
        for word in RUNTIMES:
            if re.search(r"(?<![\w.-])%s(?![\w.-])" % re.escape(word), line):
                found.append("%s: %s" % (word, line.strip()))
    assert not found, "\n".join(found)
