"""The shell renderer: quoting, batching, and a script that shells accept."""
import json
import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _render

NASTY = "it's a \"test\" with $HOME, `id`, $(id), \\n and a\ttab ;& |"


def render(**extra):
    raw = {"name": "demo", "rootfs": {"path": "/srv/rootfs"}, "state_dir": "/s", "run_dir": "/r"}
    raw.update(extra)
    return _render.render_script(build_plan(load_spec(raw)))


def full_spec():
    return dict(
        hostname="web", rootfs={"path": "/srv/root fs", "overlay": True, "propagation": "rshared"},
        namespaces=["mount", "uts", "ipc", "pid", "net", "cgroup"],
        volumes=[{"source": "/data dir", "target": "/data", "readonly": True, "propagation": "rslave"},
                 {"type": "tmpfs", "target": "/scratch", "size": "1m", "mode": "0700"},
                 {"source": "/etc/os-release", "target": "/etc/host-os-release"}],
        devices=[{"path": "/dev/fuse", "major": 10, "minor": 229, "uid": 1, "gid": 2},
                 {"path": "/dev/net/tun", "major": 10, "minor": 200}],
        etc={"extra_hosts": [{"address": "10.0.0.9", "names": ["db"]}]},
        dns={"nameservers": ["10.0.0.1"], "search": ["example.org"], "options": ["ndots:2"]},
        add_masked_paths=["/etc/secret"], add_readonly_paths=["/etc"],
        process={"args": ["sh", "-c", NASTY], "env": ["X=" + NASTY], "cwd": "/tmp", "user": "1000:1000"},
    )


@pytest.mark.parametrize("value", ["plain", "", "it's", "a b", "$x", "`id`", "\\", "\n", "'\"'"])
def test_shell_quote_round_trips_through_sh(value):
    out = subprocess.run(["sh", "-c", "printf %s " + _render.shell_quote(value)],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    assert out == value


@pytest.mark.parametrize("shell", ["sh", "dash", "bash", "busybox ash"])
def test_nasty_values_land_literally(shell, tmp_path):
    """Values with quotes, $, backticks and backslashes survive rendering unchanged."""
    if not shutil.which(shell.split()[0]):
        pytest.skip("%s not installed" % shell)
    script = render(**full_spec())
    # (lines of the embedded record, the plan as JSON, start with a quoted key)
    lines = [l for l in script.splitlines() if "X=" in l and "env" in l and not l.startswith('"')]
    assert lines, "the env assignment is rendered"
    # Evaluate the rendered words with the shell itself and compare.
    word = re.search(r"('X=(?:[^']|'\\'')*')", lines[0]).group(1)
    out = subprocess.run(shell.split() + ["-c", "printf %s " + word],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    assert out == "X=" + NASTY


def test_every_value_from_the_spec_is_quoted():
    script = render(**full_spec())
    assert "'/srv/root fs'" in script
    assert "target_in_root '/data'" in script
    assert "NASTY" not in script and NASTY not in script  # never unquoted


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
@pytest.mark.parametrize("dialect", ["sh", "dash"])
@pytest.mark.parametrize("spec", [{}, full_spec()], ids=["default", "full"])
def test_shellcheck_clean(tmp_path, dialect, spec):
    path = tmp_path / "c.sh"
    path.write_text(render(**spec))
    proc = subprocess.run(["shellcheck", "-s", dialect, str(path)], stdout=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox ash"])
def test_shells_parse_it(tmp_path, shell):
    if not shutil.which(shell.split()[0]):
        pytest.skip("%s not installed" % shell)
    path = tmp_path / "c.sh"
    path.write_text(render(**full_spec()))
    subprocess.run(shell.split() + ["-n", str(path)], check=True)


def test_script_shape():
    script = render(hostname="box")
    assert script.startswith("#!/bin/sh\n")
    assert "\nset -eu\n" in script
    assert script.rstrip().endswith('\nmain "$@"')
    code = "\n".join(l for l in script.splitlines() if not l.lstrip().startswith("#"))
    for banned in ("runc", "crun", "docker", "podman", "containerd", "skopeo", "umoci", "python"):
        assert not re.search(r"\b%s\b" % banned, code), banned


def test_mounts_are_batched():
    script = render()
    build = script.split("build_root() {", 1)[1].split("\n}\n", 1)[0]
    # rootfs bind and the seven default mounts need only: one batch for the mounts that
    # sit on fresh filesystems, one for /etc binds... in all far fewer calls than mounts.
    assert build.count("mount_batch") <= 3
    assert build.count("add_mount") + build.count("add_cgroup") == 10


def test_nested_target_on_fresh_filesystem_is_not_resolved_again():
    script = render()
    assert "target_under \"$RESOLVED_" in script  # /dev/pts under the fresh /dev tmpfs


def test_group_steps_splits_under_bind():
    steps = [
        {"op": "mount", "fstype": "bind", "target": "/data", "source": "/a", "create": "dir"},
        {"op": "mount", "fstype": "tmpfs", "target": "/data/sub", "source": "tmpfs", "create": "dir"},
        {"op": "mount", "fstype": "tmpfs", "target": "/t", "source": "tmpfs", "create": "dir"},
        {"op": "mount", "fstype": "tmpfs", "target": "/t/x", "source": "tmpfs", "create": "dir"},
    ]
    blocks = _render.group_steps(steps)
    assert [len(b["steps"]) for b in blocks] == [1, 3]
    assert blocks[1]["bases"] == [None, None, 1]


def test_file_target_on_a_fresh_filesystem_starts_a_batch():
    """A file mount point is made in the fresh filesystem, so only once that is mounted."""
    steps = [
        {"op": "mount", "fstype": "tmpfs", "target": "/t", "source": "tmpfs", "create": "dir"},
        {"op": "mount", "fstype": "bind", "target": "/t/f", "source": "/etc/hosts", "create": "file"},
        {"op": "mount", "fstype": "bind", "target": "/t/g", "source": "/x", "create": "match_source"},
    ]
    blocks = _render.group_steps(steps)
    assert [len(b["steps"]) for b in blocks] == [1, 2]
    assert blocks[1]["bases"] == [None, None]


def test_device_template_changes_with_devices():
    plan_a = build_plan(load_spec({"name": "a", "rootfs": {"path": "/r"}}))
    plan_b = build_plan(load_spec({"name": "a", "rootfs": {"path": "/r"},
                                   "devices": [{"path": "/dev/fuse", "major": 10, "minor": 229}]}))
    assert plan_a["paths"]["dev_template"] != plan_b["paths"]["dev_template"]
    assert "CFS_DEV_TEMPLATE=%s" % _render.shell_quote(plan_b["paths"]["dev_template"]) in _render.render_script(plan_b)


LINE_ENDERS = ["\n", "\r\n", "\r", "\x00", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u2029", "\t"]


@pytest.mark.parametrize("text", LINE_ENDERS)
@pytest.mark.parametrize("shell", ["dash", "bash", "busybox ash"])
def test_a_comment_cannot_be_ended_early(shell, text):
    if not shutil.which(shell.split()[0]):
        pytest.skip("%s not installed" % shell)
    comment = _render.comment_text("why" + text + "echo escaped; #")
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", comment), repr(comment)
    out = subprocess.run(shell.split() + ["-c", "# %s\necho ok" % comment], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    assert out == "ok\n"


def test_hostile_why_and_name_stay_comments():
    plan = build_plan(load_spec({"name": "demo", "rootfs": {"path": "/srv/rootfs"}}))
    for step in plan["steps"]:
        step["why"] = "x\r\ntouch /tmp/canary\n"
    plan["name"] = "demo\ntouch /tmp/canary"
    script = _render.render_script(plan)
    lines = script.splitlines()
    record = record_lines(lines)
    found = [i for i, l in enumerate(lines) if "touch /tmp/canary" in l]
    # a comment, the second line of the quoted name, or a line of the quoted record
    assert found and all(lines[i].lstrip().startswith("#") or lines[i - 1] == "CFS_NAME='demo"
                         or i in record for i in found), [lines[i] for i in found]
    assert any(i in record for i in found)


def record_lines(lines):
    """The line numbers of the quoted record (CFS_RECORD_TEXT='{ ... }'): one top-level key
    a line, each but the last ending with a comma."""
    start = [i for i, l in enumerate(lines) if l.startswith("CFS_RECORD_TEXT='")][0]
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith(","))
    assert lines[end].endswith("}'")
    return range(start, end + 1)


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox ash"])
def test_the_record_is_the_plans_json_in_one_quoted_word(shell):
    """`up` writes STATE/plan.json from CFS_RECORD_TEXT: the applier's text exactly, hostile
    values included."""
    plan = build_plan(load_spec(dict(full_spec(), name="demo", state_dir="/s", run_dir="/r")))
    plan["steps"][0]["why"] = NASTY + "'\n}'\necho broken"
    lines = _render.render_script(plan).splitlines()
    assignment = "\n".join(lines[i] for i in record_lines(lines))
    out = subprocess.run(shell.split() + ["-c", assignment + '\nprintf %s "$CFS_RECORD_TEXT"'],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    assert out == _layout.record_text(plan)
    assert json.loads(out) == plan
    assert out.startswith(_layout.RECORD_DIGEST_PREFIX + plan["digest"] + '",\n')


def shell_function(lines, name):
    start = lines.index("%s() {" % name)
    return "\n".join(lines[start:lines.index("}", start) + 1])


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox ash"])
@pytest.mark.parametrize("complete", [True, False])
def test_the_script_writes_the_appliers_record_complete_or_marked_incomplete(shell, complete, tmp_path):
    """Before a set-up from scratch both back-ends write the record with its digest marked
    incomplete (a nested "digest" of an image layer stays as it is), then the record."""
    plan = build_plan(load_spec(dict(full_spec(), name="demo", state_dir="/s", run_dir="/r")))
    plan["steps"][0]["why"] = ' "digest": "' + _layout.RECORD_DIGEST_PREFIX + NASTY
    lines = _render.render_script(plan).splitlines()
    code = "\n".join([lines[i] for i in record_lines(lines)] +
                     [l for l in lines if l.startswith(("CFS_RECORD_INCOMPLETE=", "CFS_RECORD_DIGEST_PREFIX="))] +
                     [shell_function(lines, "write_record"),
                      'refuse_link() { :; }', 'T_mv=mv', 'CFS_RECORD="$1"',
                      'write_record %s' % ("complete" if complete else "incomplete")])
    record = tmp_path / "plan.json"
    subprocess.run(shell.split() + ["-c", code, "sh", str(record)], check=True)
    assert record.read_text() == _layout.record_text(plan, complete)
    assert json.loads(record.read_text())["digest"].startswith("sha256:" if complete else "incomplete set-up of sha256:")


def test_build_functions_split_the_root_steps_by_at_start():
    """run builds every root step; up the persistent ones; start and exec the process's
    own (its /proc and the paths in it): from one loop, the same step code."""
    script = render()

    def body(name):
        return script.split("\n%s() {\n" % name, 1)[1].split("\n}\n", 1)[0]
    everything, persistent, at_start = body("build_root"), body("build_persistent"), body("build_at_start")
    assert "'proc'" in everything and "'proc'" in at_start and "'proc'" not in persistent
    assert "target_in_root '/proc/kcore'" in at_start and "'/proc/kcore'" not in persistent
    assert "'sysfs'" in persistent and "'sysfs'" not in at_start
    assert "target_in_root '/sys/firmware'" in persistent
    for line in persistent.splitlines() + at_start.splitlines():
        if line.startswith("    add_") or line.startswith("    target_in_root"):
            assert line in everything.splitlines(), line


def test_finalize_lets_only_escaped_values_through():
    env = _render._environment(_render.TEMPLATE_DIR)
    with pytest.raises(_render.RenderError):
        env.from_string("{{ value }}").render(value="x; touch /tmp/canary")
    with pytest.raises(_render.RenderError):
        env.from_string("{{ value }}").render(value=True)
    assert env.from_string("{{ value }} {{ value | sq }}").render(value=5) == "5 '5'"
    assert env.from_string("{{ value | comment }}").render(value="a\nb") == "a\\nb"
    with pytest.raises(_render.RenderError):
        env.from_string("--{{ value | word }}").render(value="pid --mount")


def test_every_template_expression_is_escaped():
    """Renders the full spec: finalize raised on any expression without an escaping filter."""
    assert render(**full_spec())


def layer_plan(**layer):
    plan = build_plan(load_spec({"name": "demo", "rootfs": {"path": "/srv/rootfs"}, "state_dir": "/s"}))
    step = {"op": "unpack_layer", "phase": "host", "why": "layer", "at_start": False, "source": "/img",
            "format": "oci", "blob": "blobs/sha256/ab", "digest": "sha256:ab", "size": 10,
            "diff_id": "sha256:cd", "compression": "gzip", "media_type": None, "dest": "/s/layers/sha256/" + "c" * 64}
    step.update(layer)
    plan["steps"].insert(0, step)
    plan["paths"].update(store="/s", store_lock="/s/.lock", layer_temp="/s/layers/sha256/.tmp-x")
    return plan


@pytest.mark.parametrize("layer", [{"compression": "$(touch /tmp/canary)"}, {"compression": "cat"},
                                   {"format": "dir\n"}, {"size": "10; touch /tmp/canary"}, {"size": True},
                                   {"dest": "/s/layers/sha256/../../../etc"}, {"dest": "/etc/cd"}])
def test_layer_values_that_select_code_are_refused(layer):
    with pytest.raises(_render.RenderError):
        _render.render_script(layer_plan(**layer))


def test_layer_metadata_is_json_from_one_escaper():
    nasty = 'sha256:"}, "size": 1, "x": "\n'
    script = _render.render_script(layer_plan(diff_id=nasty, media_type="a'b\"c"))
    start = script.index("unpack_layer '")
    # up to the metadata's line, without the continuation to the byte budget
    call = script[start + len("unpack_layer"):script.index("\n", script.index('"warnings"', start))].rstrip(" \\")
    out = subprocess.run(["sh", "-c", "set --%s; printf %%s \"$8\"" % call], stdout=subprocess.PIPE,
                         check=True, universal_newlines=True).stdout
    assert json.loads(out)["media_type"] == "a'b\"c" and json.loads(out)["diff_id"] == nasty
    meta = json.loads(_render.layer_metadata(layer_plan(diff_id=nasty)["steps"][0]))
    assert meta["diff_id"] == nasty and meta["size"] == 10 and meta["media_type"] is None


def test_nul_has_no_shell_form():
    with pytest.raises(_render.RenderError):
        _render.shell_quote("a\x00b")


# ---------------------------------------------------------------------------------------
# Issue 8: the template handles every step kind and refuses one it does not know
# ---------------------------------------------------------------------------------------

def plan_of(**extra):
    raw = {"name": "demo", "rootfs": {"path": "/srv/rootfs"}, "state_dir": "/s", "run_dir": "/r"}
    raw.update(extra)
    return build_plan(load_spec(raw))


@pytest.mark.parametrize("phase", ["host", "root", "final"])
def test_an_unknown_step_kind_is_refused_not_rendered_as_a_comment(phase):
    plan = plan_of()
    index = [i for i, s in enumerate(plan["steps"]) if s["phase"] == phase][-1]
    plan["steps"].insert(index, {"op": "mount_everything", "phase": phase, "why": "new kind",
                                 "at_start": False, "path": "/x", "target": "/x"})
    with pytest.raises(_render.RenderError, match="mount_everything"):
        _render.render_script(plan)


@pytest.mark.parametrize("where", ["prepare_host", "build_root_step", "build_root_mounts"])
def test_the_template_raises_on_a_kind_without_a_branch(where, monkeypatch):
    """The renderer's own check aside, each step switch of the template ends in a raise."""
    plan = plan_of(process={"args": ["sh"], "cwd": "/srv"})
    kind = {"prepare_host": "copy_file", "build_root_step": "workdir", "build_root_mounts": "mask_path"}[where]
    for step in plan["steps"]:
        if step["op"] == kind:
            step["op"] = "unknown_" + kind
    monkeypatch.setitem(_render.STEP_HANDLERS, "unknown_" + kind, "nowhere")
    monkeypatch.setattr(_render, "BATCHED", _render.BATCHED + ("unknown_mask_path",))
    with pytest.raises(_render.RenderError, match="unknown_" + kind):
        _render.render_script(plan)


def test_every_step_kind_renders():
    """A plan with every kind (the layer one added by hand) renders, each kind once at least."""
    plan = plan_of(hostname="box", rootfs={"path": "/img", "overlay": True, "propagation": "rshared"},
                   volumes=[{"type": "tmpfs", "target": "/t", "readonly": True},
                            {"source": "/a", "target": "/t/sub"}],
                   process={"args": ["sh"], "cwd": "/srv"}, add_readonly_paths=["/t/sub"])
    kinds = set(s["op"] for s in plan["steps"]) | set(s["op"] for s in layer_plan()["steps"])
    assert kinds == set(_render.STEP_HANDLERS)
    script = _render.render_script(plan)
    assert "fstab_line 'none' \"$RESOLVED\" 'tmpfs' 'remount,nosuid,nodev,ro'" in script
    assert "--propagation slave" in script and "--fork --kill-child" in script


def test_namespace_decisions_come_from_the_plan():
    plan = plan_of(namespaces=["mount", "uts"])
    step = [s for s in plan["steps"] if s["op"] == "namespaces"][0]
    step["propagation"] = "rprivate"
    script = _render.render_script(plan)
    assert "--propagation private --mount --uts --" in script and "--fork" not in script


# ---------------------------------------------------------------------------------------
# Issue 8 item 6: the template as parts (static sh parts, one macro per step kind)
# ---------------------------------------------------------------------------------------

def test_every_static_part_lands_in_the_script_verbatim():
    """A plan with devices and a registry image's layer uses every part; each is copied whole."""
    script = _render.render_script(layer_plan(format="docker", source="docker://registry.example/team/app:1"))
    for name in _render.STATIC_PARTS:
        body = _render.static_part(_render.TEMPLATE_DIR, name)
        assert body.startswith("# ---") and body in script, name
    assert "# shellcheck disable=SC2034,SC2154" not in script  # the parts' own headers stay out


@pytest.mark.parametrize("name", ["../container.sh.j2", "/etc/passwd", "x.sh"])
def test_only_listed_static_parts_are_read(name):
    with pytest.raises(_render.RenderError, match="not a static part"):
        _render.static_part(_render.TEMPLATE_DIR, name)


LOOP_HANDLED = ("prepare_host", "build_root", "build_dev_template", "switch_root")


def test_every_kind_a_step_loop_handles_has_its_macro():
    macros = _render._environment(_render.TEMPLATE_DIR).get_template(_render.STEP_MACROS).module
    kinds = [kind for kind, where in _render.STEP_HANDLERS.items() if where in LOOP_HANDLED]
    assert set(kinds) >= {"mount", "mknod", "symlink", "write_file", "root_propagation"}
    assert [kind for kind in kinds if not callable(getattr(macros, kind, None))] == []


@pytest.mark.parametrize("where, op", [("prepare_host", "hostname"), ("build_root", "write_file"),
                                       ("switch_root", "exec"), ("build_root", "no_such_kind")])
def test_step_code_refuses_a_kind_handled_elsewhere(where, op):
    env = _render._environment(_render.TEMPLATE_DIR)
    with pytest.raises(_render.RenderError, match=op):
        _render.step_code(env, where, {"op": op, "why": "x", "name": "x", "path": "/x", "content": ""})


def test_step_code_is_the_macros_text_as_code():
    env = _render._environment(_render.TEMPLATE_DIR)
    text = _render.step_code(env, "build_root", {"op": "hostname", "name": "it's"})
    assert text == "    printf '%s\\n' 'it'\\''s' > /proc/sys/kernel/hostname"
    assert isinstance(text, _render.Escaped) and text.context == "code"


def test_render_error_is_a_containerfs_error():
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
    assert issubclass(_render.RenderError, ContainerfsError) and issubclass(_render.RenderError, ValueError)


def test_renderer_is_python3_only_with_the_private_header():
    with open(_render.__file__.replace(".pyc", ".py")) as f:
        source = f.read()
    lines = source.splitlines()
    assert lines[0].startswith("# ") and lines[1].startswith("# ") and lines[2].startswith('"""')
    docstring = source.split('"""')[1]
    assert docstring.rstrip().endswith("Private to the collection; may change without notice.")
    for leftover in ("from __future__", "__metaclass__", "(object)", "super("):
        assert leftover not in source, leftover


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox ash"])
@pytest.mark.parametrize("form", ["current", "indented"])
def test_the_script_reads_the_digest_of_a_record(shell, form, tmp_path):
    """recorded_digest finds the top-level digest in the record both back-ends write, and in
    the indented JSON of earlier versions, never a nested one (a layer's digest)."""
    plan = build_plan(load_spec(dict(full_spec(), name="demo", state_dir="/s", run_dir="/r")))
    plan["aaa"] = {"digest": "sha256:nested"}
    text = _layout.record_text(plan) if form == "current" else json.dumps(plan, indent=1, sort_keys=True)
    record = tmp_path / "plan.json"
    record.write_text(text)
    lines = _render.render_script(plan).splitlines()
    code = "\n".join([l for l in lines if l.startswith("CFS_RECORD_DIGEST_PREFIX=")] +
                     [shell_function(lines, "recorded_digest"), 'CFS_RECORD="$1"',
                      'recorded_digest', 'printf %s "$RECORDED"'])
    out = subprocess.run(shell.split() + ["-c", code, "sh", str(record)],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    assert out == plan["digest"]


def fake_env(path, takes_default_signal):
    """An env(1) that counts its calls in path.calls and takes --default-signal or not."""
    path.write_text("#!/bin/sh\necho call >> %s.calls\n%s\n" % (
        path, 'exec /usr/bin/env "$@"' if takes_default_signal else
        'case $1 in --default-signal*) exit 125 ;; esac\nexec /usr/bin/env "$@"'))
    path.chmod(0o755)


def probe_code(plan, env, probe):
    """default_signals as the script has it, with env at `env` and its answer kept at `probe`."""
    lines = _render.render_script(plan).splitlines()
    return "\n".join([shell_function(lines, "default_signals"), shell_function(lines, "refuse_link"),
                      'die() { echo "$*" >&2; exit 1; }', "T_env=%s" % env, "CFS_ENV_PROBE=%s" % probe,
                      'default_signals; printf "[%s]" "$CFS_ENV_SIGNALS"'])


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox ash"])
def test_env_is_asked_once_and_again_when_it_changed(shell, tmp_path):
    """default_signals keeps env's answer (CFS_ENV_PROBE, from the plan's paths) and asks
    env again only when env is newer than that answer (an upgrade or a downgrade)."""
    plan = build_plan(load_spec(dict(full_spec(), name="demo", state_dir="/s", run_dir="/r")))
    plan["paths"]["env_probe"] = "/s/containers/demo/env-signals"
    assert "\nCFS_ENV_PROBE='/s/containers/demo/env-signals'\n" in _render.render_script(plan)
    env, probe = tmp_path / "env", tmp_path / "env-signals"
    fake_env(env, True)

    def ask():
        return subprocess.run(shell.split() + ["-c", probe_code(plan, env, probe)], stdout=subprocess.PIPE,
                              check=True).stdout.decode()
    assert [ask(), ask()] == ["[--default-signal=INT,QUIT]"] * 2
    assert len((tmp_path / "env.calls").read_text().split()) == 1, "env asked on every run"
    fake_env(env, False)  # a downgrade, written after the answer was kept
    os.utime(str(probe), (1, 1))
    assert ask() == "[]" and ask() == "[]"
    assert len((tmp_path / "env.calls").read_text().split()) == 2
    assert probe.read_text() == "\n"


def test_without_a_kept_answer_env_is_asked_every_time():
    plan = build_plan(load_spec(dict(full_spec(), name="demo", state_dir="/s", run_dir="/r")))
    plan["paths"].pop("env_probe", None)
    assert "\nCFS_ENV_PROBE=''\n" in _render.render_script(plan)
