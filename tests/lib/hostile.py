"""Helpers for the standing hostile-input tests (issue 7: nothing a spec, bundle, name or
neighbour writes may reach the host).

- `payloads()`: the hostile strings, each made to show its effect on the host: a canary
  file a command would create, or an fstab line that binds a sentinel directory into the
  container, where the probe command writes to it.
- `HostEnv`: a "host" for one test module: a private rootfs copy, a sentinel directory,
  copies of /etc/hosts, /etc/hostname and /etc/resolv.conf that the wrapper namespace binds
  over the real ones (so a hostile container writes to our copies, never to the VM's),
  and `snapshot()` of everything that must not change.
- `cli()`: scripts/containerfs in-process (fast enough for hundreds of specs) or, with
  `subprocess=True`, as a process with a timeout.
- `run_script()`: `SHELL SCRIPT ARGS...` in a fresh `unshare --mount` wrapper namespace,
  with the mount tables of the wrapper and of pytest's namespace compared before and after.
"""
import concurrent.futures
import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "scripts", "containerfs")
MAKE_ROOTFS = os.path.join(REPO, "tests", "lib", "make-busybox-rootfs")
HOST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
ETC_FILES = ("hosts", "hostname", "resolv.conf")
SECRET = "SECRET-7f3a9c"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Directories the probe and the fstab payloads use; created in the private rootfs.
ROOTFS_DIRS = ("mnt", "vol", "data", "srv", "opt", "root", "tmp", "home")

# Runs in the wrapper namespace: our copies of the host's /etc files over the real ones
# (a container that reaches "the host's /etc/hosts" writes to the copy), / rshared as on a
# systemd host, a mount table snapshot before and after the script.
WRAPPER = r'''
set -e
mount --make-rshared /
for f in hosts hostname resolv.conf; do mount --bind "$CFS_HOST_ETC/$f" "/etc/$f"; done
eval "$CFS_TEST_SETUP"
cat /proc/self/mountinfo > "$CFS_TEST_BEFORE"
set +e
"$@"
rc=$?
cat /proc/self/mountinfo > "$CFS_TEST_AFTER"
exit "$rc"
'''


def payloads(env, canary=None):
    """{label: suffix} of hostile strings; each is appended to a valid value (and the
    command ones are also tried as whole values, see `whole_values`). The commands touch
    `canary` (default: the module's)."""
    fstab = "%s %s/mnt none rbind 0 0" % (env.sentinel, env.rootfs)
    touch = "touch %s" % (canary or env.canary)
    return {
        "newline+fstab": "\n" + fstab,
        "crlf+fstab": "\r\n" + fstab,
        "newline+command": "\n" + touch,
        "crlf+command": "\r\n" + touch,
        "dollar-paren": "$(%s)" % touch,
        "backticks": "`%s`" % touch,
        "single-quote": "'; %s; '" % touch,
        "hash": "#",
        "space": " ",
        "space+word": " nosuid",
        "tab": "\t",
        "nul": "\x00",
        "nel": "\x85",
        "line-separator": "\u2028",
        "trailing-newline": "\n",
        "backslash-octal-newline": "\\012" + fstab.replace(" ", "\\040"),
    }


def whole_values(env, canary=None):
    touch = "touch %s" % (canary or env.canary)
    return {
        "whole:dollar-paren": "$(%s)" % touch,
        "whole:newline+fstab": "x\n%s %s/mnt none rbind 0 0" % (env.sentinel, env.rootfs),
    }


def probe_command():
    """What the container runs: shows a bound sentinel and tries to write to every place
    a hostile mount could have put a host file. Never fails itself."""
    targets = ["/mnt/secret", "/vol/secret", "/data/secret", "/srv/secret"]
    targets += ["/etc/" + f for f in ETC_FILES]
    targets += ["/vol/" + f for f in ETC_FILES] + ["/mnt/" + f for f in ETC_FILES]
    script = "cat /mnt/secret /vol/secret /data/secret /srv/secret 2>/dev/null; "
    script += "for f in %s; do (echo PWNED >> \"$f\") 2>/dev/null; done; exit 0" % " ".join(targets)
    return ["/bin/sh", "-c", script]


class HostEnv:
    """The watched host of one test module (see the module docstring)."""

    def __init__(self, top, busybox_rootfs=None):
        self.top = top
        os.makedirs(top, exist_ok=True)
        self.rootfs = os.path.join(top, "rootfs")
        if busybox_rootfs:
            subprocess.run(["cp", "-a", busybox_rootfs, self.rootfs], check=True)
        else:
            subprocess.run([MAKE_ROOTFS, self.rootfs], check=True, env=HOST_ENV,
                           stdout=subprocess.DEVNULL)
        for d in ROOTFS_DIRS:
            os.makedirs(os.path.join(self.rootfs, d), exist_ok=True)
        open(os.path.join(self.rootfs, "etc", "resolv.conf"), "a").close()
        self.sentinel = os.path.join(top, "sentinel")
        os.makedirs(self.sentinel)
        with open(os.path.join(self.sentinel, "secret"), "w") as f:
            f.write(SECRET + "\n")
        self.host_etc = os.path.join(top, "host-etc")
        os.makedirs(self.host_etc)
        for name in ETC_FILES:
            with open(os.path.join(self.host_etc, name), "w") as f:
                f.write("# the host's %s (a test copy)\n" % name)
        self.canary = os.path.join(top, "CANARY")
        self.cases = os.path.join(top, "cases")
        os.makedirs(self.cases)
        self.watched = [self.sentinel, self.host_etc, self.rootfs] + ["/etc/" + f for f in ETC_FILES]

    def snapshot(self):
        return snapshot(self.watched)

    def check(self, before, result=None, canary=None):
        """Problems (a list of strings) the host shows after a run; [] when clean.
        before: a snapshot, or None to check only the canaries and the run."""
        problems = []
        for path in (self.canary, canary):
            if path and os.path.lexists(path):
                problems.append("the canary exists: a command ran on the host")
                os.unlink(path)
        if before is not None:
            problems += diff_snapshots(before, self.snapshot(), growing=(self.rootfs,))
        if result is not None:
            problems += result.problems()
            if SECRET in result.stdout:
                problems.append("the container read the host's sentinel file")
        return problems


def snapshot(paths):
    """{path: (type, mode, uid, content digest or link target)} of files and trees."""
    out = {}
    for top in paths:
        if not os.path.lexists(top):
            out[top] = None
            continue
        out[top] = _entry(top)
        if os.path.isdir(top) and not os.path.islink(top):
            for dirpath, dirnames, filenames in os.walk(top):
                for name in dirnames + filenames:
                    path = os.path.join(dirpath, name)
                    out[path] = _entry(path)
    return out


def _entry(path):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        content = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            content = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        content = st.st_rdev
    else:
        content = None
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, content)


def diff_snapshots(before, after, growing=()):
    """Problems: what changed between two snapshots. Under a `growing` tree new empty
    directories and files are allowed (the mount points a runtime creates, as runc does)."""
    problems = []
    for path in sorted(set(before) | set(after)):
        new = after.get(path)
        if path not in before and new and any(path.startswith(g + "/") for g in growing) and \
                (new[0] == stat.S_IFDIR or (new[0] == stat.S_IFREG and new[3] == EMPTY_SHA256)):
            continue
        if before.get(path) != new:
            problems.append("host path changed: %r %s -> %s" % (path, before.get(path), after.get(path)))
    return problems


# ---------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------

class CliResult:
    def __init__(self, argv, rc, stdout, stderr):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr

    def __repr__(self):
        return "<containerfs %s: rc=%s\n%s%s>" % (" ".join(map(repr, self.argv)), self.rc,
                                                  self.stdout[-2000:], self.stderr[-2000:])


_CLI_MODULE = []


def _cli_module():
    if not _CLI_MODULE:
        loader = importlib.machinery.SourceFileLoader("containerfs_cli", CLI)
        spec = importlib.util.spec_from_loader("containerfs_cli", loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        _CLI_MODULE.append(module)
    return _CLI_MODULE[0]


def cli(*argv, subprocess_timeout=None, cwd=None):
    """scripts/containerfs ARGV. In-process by default (its main(argv) with stdout and
    stderr captured; an exception escaping main is reported as rc 'traceback');
    `subprocess_timeout`: as a real process with that timeout."""
    argv = [str(a) for a in argv]
    if subprocess_timeout:
        try:
            proc = subprocess.run([sys.executable, CLI] + argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=subprocess_timeout, cwd=cwd,
                                  check=False)
        except subprocess.TimeoutExpired:
            return CliResult(argv, "timeout", "", "timed out after %ss" % subprocess_timeout)
        return CliResult(argv, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                         proc.stderr.decode("utf-8", "replace"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = _cli_module().main(argv)
        except SystemExit as exc:
            rc = exc.code
        except Exception as exc:  # a traceback is a finding, not a test error
            rc = "traceback"
            err.write("%s: %s\n" % (type(exc).__name__, exc))
    return CliResult(argv, rc, out.getvalue(), err.getvalue())


def refused_cleanly(result):
    """A refusal as the CLI promises it: exit 2 (invalid input), a message, no traceback."""
    return result.rc == 2 and "Traceback" not in result.stderr and result.stderr.strip() != ""


# ---------------------------------------------------------------------------------------
# Running a generated script
# ---------------------------------------------------------------------------------------

class RunResult:
    def __init__(self, argv, rc, stdout, stderr, before, after, own_before, own_after, timed_out):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, stdout, stderr
        self.wrapper_before, self.wrapper_after = before, after
        self.own_before, self.own_after = own_before, own_after
        self.timed_out = timed_out

    def __repr__(self):
        return "<rc=%s\n--- stdout\n%s--- stderr\n%s>" % (self.rc, self.stdout[-3000:], self.stderr[-3000:])

    def problems(self):
        out = []
        if self.timed_out:
            out.append("the script hung (killed after the timeout)")
        if self.own_after != self.own_before:
            out.append("pytest's mount table changed:\n" + _diff(self.own_before, self.own_after))
        if self.wrapper_before is None:
            out.append("the wrapper's setup failed: %r" % self)
        elif self.wrapper_after is None and self.timed_out:
            pass  # killed: no snapshot after it
        elif self.wrapper_after != self.wrapper_before:
            out.append("the script left mounts in its host namespace:\n"
                       + _diff(self.wrapper_before, self.wrapper_after))
        if self.rc == 0 and "parse error" in self.stderr:
            out.append("mount(8) reported a parse error yet the run succeeded: %s" % self.stderr[-500:])
        return out


def start_script(script, args, env, cwd, shell=("dash",), setup="", tag="run"):
    """Start `SHELL SCRIPT ARGS` in a wrapper namespace, in its own session; returns
    (Popen, before file, after file, own mount table)."""
    before = os.path.join(cwd, ".mountinfo.before.%s" % tag)
    after = os.path.join(cwd, ".mountinfo.after.%s" % tag)
    for path in (before, after):
        if os.path.exists(path):
            os.unlink(path)
    argv = list(shell) + [script] + list(args)
    full = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", WRAPPER, "wrapper"] + argv
    penv = dict(HOST_ENV, CFS_TEST_SETUP=setup, CFS_TEST_BEFORE=before, CFS_TEST_AFTER=after,
                CFS_HOST_ETC=env.host_etc)
    own = _read("/proc/self/mountinfo")
    proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=penv, cwd=cwd, start_new_session=True)
    return proc, before, after, own


def finish_script(started, timeout, sessions=()):
    """Wait for a started script; on timeout kill its wrapper's session and `sessions`
    (process groups the test started that left the wrapper's, e.g. under setsid)."""
    proc, before, after, own = started
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        for group in (proc.pid,) + tuple(sessions):  # our own sessions only
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, err = proc.communicate()
    return RunResult(proc.args, proc.returncode, out.decode("utf-8", "replace"),
                     err.decode("utf-8", "replace"), _read(before), _read(after), own,
                     _read("/proc/self/mountinfo"), timed_out)


def verbatim_or_refused(env, label, value, case_dir, render_args, run_args):
    """Render (render_args: the CLI's words after `render`) into CASE_DIR/container.sh,
    run it, and return the problems: a refusal must be clean and change nothing; a NUL
    must be refused; otherwise `[value]` must come out of the container as it is."""
    before = env.snapshot()
    script = os.path.join(case_dir, "container.sh")
    rendered = cli("render", *(list(render_args) + ["-o", script]))
    if rendered.rc != 0:
        problems = [] if refused_cleanly(rendered) else ["not refused cleanly: %r" % (rendered,)]
        return ["%s: %s" % (label, p) for p in problems + env.check(before)]
    if "\x00" in value:
        return ["%s: a NUL byte cannot reach exec, yet it rendered" % label]
    result = run_script(script, ["run"] + run_args, env, case_dir)
    found = env.check(before, result)
    if result.rc != 0 or "[%s]" % value not in result.stdout:
        found.append("not verbatim inside the container: %r" % (result,))
    if not found:
        remove_tree(case_dir)
    return ["%s: %s" % (label, p) for p in found]


def render_spec(spec, case_dir):
    """Write SPEC as CASE_DIR/spec.json and render it to CASE_DIR/container.sh."""
    spec_file = os.path.join(case_dir, "spec.json")
    with open(spec_file, "w") as f:
        json.dump(spec, f)
    script = os.path.join(case_dir, "container.sh")
    rendered = cli("render", spec_file, "-o", script)
    assert rendered.rc == 0, rendered
    return script


def run_script(script, args, env, cwd, timeout=20, **kwargs):
    return finish_script(start_script(script, args, env, cwd, **kwargs), timeout)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _diff(before, after):
    b, a = set((before or "").splitlines()), set((after or "").splitlines())
    return "\n".join(["- " + l for l in sorted(b - a)] + ["+ " + l for l in sorted(a - b)])


# ---------------------------------------------------------------------------------------
# Spec and config.json fields
# ---------------------------------------------------------------------------------------

def string_fields(value, path=""):
    """[(field path, list of keys to reach it)] of every string leaf; list items by index."""
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out += [(p, [key] + keys) for p, keys in string_fields(item, _join(path, key))]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += [(p, [index] + keys) for p, keys in string_fields(item, "%s[%d]" % (path, index))]
    elif isinstance(value, str):
        out.append((path, []))
    return out


def _join(path, key):
    return "%s.%s" % (path, key) if path else str(key)


def payload_cases(env, canary=None):
    """{label: (whole value or None, suffix or None)}: every payload as a suffix of a valid
    value, the command ones also as whole values."""
    cases = dict((label, (None, suffix)) for label, suffix in payloads(env, canary).items())
    cases.update((label, (value, None)) for label, value in whole_values(env, canary).items())
    return cases


def canary_of(case_dir):
    return os.path.join(case_dir, "CANARY")


def set_field(spec, field, value):
    """Set the string at `field` (a path from string_fields) in `spec`."""
    for path, keys in string_fields(spec):
        if path == field:
            holder = spec
            for key in keys[:-1]:
                holder = holder[key]
            holder[keys[-1]] = value
            return
    raise KeyError(field)


def field_value(spec, field):
    for path, keys in string_fields(spec):
        if path == field:
            holder = spec
            for key in keys:
                holder = holder[key]
            return holder
    raise KeyError(field)


class Case:
    """One hostile input: `containerfs validate|render SOURCE_ARGS`, then `run RUN_ARGS`.
    names: the ways a refusal may name the field; before_run: makes hostile host paths
    exist before the run."""

    def __init__(self, label, case_dir, source_args, names, run_args, before_run=None):
        self.label, self.dir, self.source_args, self.names = label, case_dir, list(source_args), names
        self.run_args, self.before_run = list(run_args), before_run
        self.script = None
        self.problems = []


def prepare_case(case):
    """Validate and render; refusals must be clean and name the field. Sets case.script
    when the input renders."""
    validated = cli("validate", *case.source_args)
    if validated.rc != 0:
        if not refused_cleanly(validated):
            case.problems.append("not refused cleanly: %r" % validated)
        if not any(name in validated.stderr for name in case.names):
            case.problems.append("the refusal does not name the field: %r" % validated)
        return
    script = os.path.join(case.dir, "container.sh")
    rendered = cli("render", *(case.source_args + ["-o", script]))
    if rendered.rc != 0:
        if not refused_cleanly(rendered):
            case.problems.append("render failed: %r" % rendered)
        return
    case.script = script
    if case.before_run:
        case.before_run()


def run_cases(env, cases, workers=4):
    """Prepare every case (in order: the in-process CLI is not thread safe), run what
    rendered `workers` at a time, then check the host once; returns the cases with their
    problems. A host change is reported on every case that ran (it cannot tell which)."""
    before = env.snapshot()
    for case in cases:
        prepare_case(case)
        case.problems += env.check(None, canary=canary_of(case.dir))
    ran = [case for case in cases if case.script]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda c: run_script(c.script, ["run"] + c.run_args, env, c.dir, timeout=30), ran)
        for case, result in zip(ran, results):
            case.result = result
            case.problems += ["%s (run: %r)" % (p, result)
                              for p in env.check(None, result, canary=canary_of(case.dir))]
    changed = env.check(before)
    for case in (ran or cases) if changed else ():
        case.problems += ["(one of the runs) " + p for p in changed]
    return cases


def report(cases, value_of):
    """The problems of `cases`, three per case, for an assertion message; removes the
    dirs of the clean cases."""
    lines = []
    for case in cases:
        lines += ["%s = %r: %s" % (case.label, value_of(case), p) for p in case.problems[:3]]
        if not case.problems:
            remove_tree(case.dir)
    return "\n\n".join(lines)


def new_case_dir(env, label):
    """A fresh directory for one case (its spec, script, state and run dirs)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[:60]
    index = len(os.listdir(env.cases))
    path = os.path.join(env.cases, "%03d-%s" % (index, safe))
    os.makedirs(path)
    return path


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
