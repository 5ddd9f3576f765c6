"""The script of a registry image: the reference is split by the renderer (the store's
parser), every value is one quoted word, and the script stays shellcheck clean."""
import shutil
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render

DIFF_ID = "sha256:" + "d" * 64
BLOB = "sha256:" + "b" * 64
RESOLVED = {"format": "docker", "manifest_digest": "sha256:" + "a" * 64, "config_digest": "sha256:" + "c" * 64,
            "rootfs": None, "layers": [{"digest": BLOB, "size": 10, "diff_id": DIFF_ID, "compression": "gzip",
                                        "path": "blobs/sha256/" + "b" * 64, "media_type": None}]}
NASTY = "/etc/it's $(id) `id`\\ \"x\""


def script(source="docker://alpine:3.20", **image):
    raw = {"name": "app", "state_dir": "/s", "run_dir": "/r", "process": {"args": ["/bin/sh"]},
           "rootfs": {"image": dict({"source": source}, **image)}}
    return _render.render_script(build_plan(load_spec(raw, resolved_image=RESOLVED)))


def registry_words(text):
    line = [l for l in text.splitlines() if l.strip().startswith("registry_source ")][0]
    out = subprocess.run(["sh", "-c", "set -- %s; shift; printf '%%s\\n' \"$@\"" % line.strip()],
                         stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    return out.split("\n")[:-1]


def test_the_reference_is_split_by_the_renderer():
    words = registry_words(script())
    assert words == ["docker://docker.io/library/alpine:3.20", "registry-1.docker.io", "library/alpine",
                     "docker.io/library/alpine docker.io/library docker.io index.docker.io index.docker.io "
                     "registry-1.docker.io", "", "", "true"]


def test_registry_options_are_quoted_words():
    words = registry_words(script("docker://127.0.0.1:5000/team/app@" + "sha256:" + "e" * 64,
                                  auth_file=NASTY, ca_cert="/ca dir/ca.pem", tls_verify=False))
    assert words[:3] == ["docker://127.0.0.1:5000/team/app@sha256:" + "e" * 64, "127.0.0.1:5000", "team/app"]
    assert words[4:] == [NASTY, "/ca dir/ca.pem", "false"]


def test_only_a_registry_image_carries_the_registry_code():
    assert "registry_blob()" in script()
    plain = _render.render_script(build_plan(load_spec({"name": "x", "rootfs": {"path": "/srv"}})))
    assert "registry_blob" not in plain and "CFS_JSON_AWK" not in plain


def test_a_bad_reference_in_a_plan_is_refused():
    plan = build_plan(load_spec({"name": "app", "state_dir": "/s", "process": {"args": ["/bin/sh"]},
                                 "rootfs": {"image": {"source": "docker://alpine"}}}, resolved_image=RESOLVED))
    for step in plan["steps"]:
        if step["op"] == "unpack_layer":
            step["source"] = "docker://$(touch /tmp/x)/app"
    with pytest.raises(_render.RenderError):
        _render.render_script(plan)


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
@pytest.mark.parametrize("dialect", ["sh", "dash", "bash"])
def test_shellcheck_clean(tmp_path, dialect):
    path = tmp_path / "s.sh"
    path.write_text(script(auth_file="/root/auth.json", ca_cert="/ca.pem"))
    proc = subprocess.run(["shellcheck", "-s", dialect, str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("shell", [("dash", "-n"), ("bash", "-n"), ("busybox", "ash", "-n")])
def test_shells_parse_it(tmp_path, shell):
    if not shutil.which(shell[0]):
        pytest.skip("%s not installed" % shell[0])
    path = tmp_path / "s.sh"
    path.write_text(script())
    subprocess.run(list(shell) + [str(path)], check=True)


JSON_CASES = [
    ('{"auths": {"https://Reg.Example:5000/v1/": {"auth": "YTpi"}}}', "reg.example:5000", "auth\tYTpi"),
    ('{"auths": {"r.io/team": {"auth": "eDp5"}, "r.io": {"auth": "YTpi"}}}', "r.io/team/app r.io/team r.io",
     "auth\teDp5"),
    ('{"auths": {"r.io": {"username": "u", "password": "p\\"w\\\\"}}}', "r.io", 'userpass\tu:p"w\\'),
    ('{"credsStore": "x", "auths": {"r.io": {}}}', "r.io", ""),
    ('{"auths": {"r.io": {"auth": "YTpi"}', "r.io", "error"),
    ('{"auths": {"r.io": {"auth": "\\u0041"}}}', "r.io", "error"),
    ('{"token": "abc", "access_token": "def"}', None, "abc"),
    ('{"access_token": "def", "n": [1, {"token": "no"}]}', None, "def"),
]


@pytest.mark.parametrize("awk", ["mawk", "gawk", "original-awk", "busybox awk"])
@pytest.mark.parametrize("text,keys,expected", JSON_CASES)
def test_the_json_reader_of_the_script(awk, text, keys, expected, tmp_path):
    """The awk program that reads auth files and token answers, in the awks a host has."""
    if not shutil.which(awk.split()[0]):
        pytest.skip("%s not installed" % awk)
    part = _render.static_part(_render.TEMPLATE_DIR, "registry.sh")
    mode = "-v mode=token" if keys is None else "-v mode=auth -v keys='%s'" % keys
    prog = "%s\n%s %s \"$CFS_JSON_AWK\"" % (part, awk, mode)
    out = subprocess.run(["sh", "-c", prog], input=text, stdout=subprocess.PIPE, check=True,
                         universal_newlines=True).stdout
    assert out == (expected + "\n" if expected else "")
