# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Startup benchmark: wall time of `run /bin/true` with the default spec, side by side
with runc, crun and bubblewrap doing the same mounts on the same busybox rootfs.

    sudo .venv/bin/python bench/startup.py [--runs N] [--warmup N] [--keep]

Everything is built in a fresh tmp dir (rootfs, rendered script, OCI bundle, runtime
state) and removed at the end. All runners run inside one private mount namespace
(`unshare --mount --propagation private`), so nothing is mounted on the host even if the
bench dies. runc, crun and bwrap are yardsticks only; the product never needs them.

Output: median / p90 / min wall ms per runner, the ratios ours/runc, ours/crun,
ours/bwrap, the median CPU ms per run (user + system time of the run and of everything it
waited for: less sensitive than wall time to other load on a shared machine), then the
programs our script starts per run (from strace), with the time
each one lives under strace, so the cost can be attributed.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
INNER_FLAG = "CFS_BENCH_INNER"
TIMEOUT = 20  # seconds; a run that takes longer hangs
NAME = "busybox"
MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
          "/proc/scsi")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
ETC_FILES = ("hostname", "hosts", "resolv.conf")


def die(msg):
    sys.stderr.write("bench/startup: %s\n" % msg)
    sys.exit(1)


def need(tool):
    path = shutil.which(tool)
    if not path:
        die("%s not found (apt-get install %s)" % (tool, tool))
    return path


def in_private_mount_namespace(script, why):
    """Re-exec `script` (the benchmark's own file) as root inside one private mount namespace,
    so nothing it mounts can reach the host even if it dies; return once inside."""
    if os.geteuid() != 0:
        die("must run as root (%s)" % why)
    if os.environ.get(INNER_FLAG) != "1":
        env = dict(os.environ, **{INNER_FLAG: "1"})
        os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                               sys.executable, os.path.realpath(script)] + sys.argv[1:], env)


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


# ---------------------------------------------------------------------------
# Setup: rootfs, our script, the OCI bundle, the bwrap command line
# ---------------------------------------------------------------------------

def make_rootfs(tmp):
    rootfs = os.path.join(tmp, "rootfs")
    sh([os.path.join(REPO, "tests/lib/make-busybox-rootfs"), rootfs])
    # bwrap cannot create a mount point on its read-only root: make it beforehand
    # (our script and runc create it on the first run anyway).
    open(os.path.join(rootfs, "etc/resolv.conf"), "a").close()
    return rootfs


def render_ours(tmp, rootfs):
    import yaml
    with open(os.path.join(REPO, "examples/busybox.yml")) as f:
        spec = yaml.safe_load(f)
    spec["rootfs"]["path"] = rootfs
    spec["state_dir"] = os.path.join(tmp, "state")
    spec["run_dir"] = os.path.join(tmp, "run")
    spec_file = os.path.join(tmp, "spec.yml")
    with open(spec_file, "w") as f:
        yaml.safe_dump(spec, f)
    script = os.path.join(tmp, "container.sh")
    sh([sys.executable, os.path.join(REPO, "scripts/containerfs"), "render", spec_file,
        "-o", script])
    etc_dir = os.path.join(spec["state_dir"], "containers", NAME, "etc")
    return script, etc_dir, spec["hostname"]


def make_bundle(tmp, rootfs, etc_dir, hostname):
    """`runc spec` defaults, adjusted to what our default spec builds."""
    bundle = os.path.join(tmp, "bundle")
    os.mkdir(bundle)
    sh(["runc", "spec", "--bundle", bundle])
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["root"] = {"path": rootfs, "readonly": True}
    config["hostname"] = hostname
    # our spec binds generated /etc files over the image's; runc's default has none
    for name in ETC_FILES:
        config["mounts"].append({"destination": "/etc/" + name, "type": "bind",
                                 "source": os.path.join(etc_dir, name), "options": ["bind"]})
    config["linux"]["maskedPaths"] = list(MASKED)
    config["linux"]["readonlyPaths"] = list(READONLY)
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return bundle


def bwrap_argv(rootfs, etc_dir, hostname):
    """The same mounts with bwrap: ro root, proc, dev (+pts), shm, mqueue, sys with its
    cgroups, the /etc binds, readonly and masked paths. Namespaces as ours: mnt, uts,
    ipc, pid, net (no user, no cgroup namespace, unlike --unshare-all)."""
    argv = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--hostname", hostname, "--ro-bind", rootfs, "/", "--proc", "/proc",
            "--dev", "/dev", "--tmpfs", "/dev/shm", "--mqueue", "/dev/mqueue",
            "--ro-bind", "/sys", "/sys"]
    for name in ETC_FILES:
        argv += ["--bind", os.path.join(etc_dir, name), "/etc/" + name]
    for path in READONLY:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for path in MASKED:
        if os.path.isdir(path):
            argv += ["--tmpfs", path, "--remount-ro", path]
        elif os.path.exists(path):
            argv += ["--ro-bind", "/dev/null", path]
    return argv + ["/bin/true"]


def crun_cgroup_workaround():
    """Debian's crun 1.8.1 refuses a hybrid v1/v2 layout; hide the unified controllers
    file (in this private mount namespace only)."""
    hidden = "/sys/fs/cgroup/unified/cgroup.controllers"
    if os.path.exists(hidden):
        sh(["mount", "--bind", "/dev/null", hidden])
        return hidden
    return None


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

class Runner:
    def __init__(self, name, make_argv, cleanup=None):
        self.name, self.make_argv, self.cleanup = name, make_argv, cleanup
        self.times = []
        self.cpu = []
        self.count = 0
        self.failures = 0

    def run_once(self, record=True):
        self.count += 1
        argv = self.make_argv(self.count)
        start = time.perf_counter()
        # own session: a hung run is killed with everything it started
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        # a timer, not communicate(timeout=): Popen.wait(timeout) polls with sleeps of up
        # to 50 ms, which would quantise the times
        hung = []
        timer = threading.Timer(TIMEOUT, lambda: (hung.append(1),
                                                  os.killpg(proc.pid, signal.SIGKILL)))
        timer.start()
        used = children_cpu()
        _out, err = proc.communicate()
        elapsed = time.perf_counter() - start
        used = children_cpu() - used
        timer.cancel()
        if hung:
            err = b"hung for %ds, killed\n" % TIMEOUT + (err or b"")
        if self.cleanup:
            self.cleanup(self.count)
        if proc.returncode != 0:
            # a flaky failure is a finding, not a reason to lose the run: count it, show
            # the first one, stop only when it is not flaky
            self.failures += 1
            if self.failures == 1 or self.failures > max(3, self.count // 10):
                sys.stderr.write("bench/startup: %s failed (exit %d, %d of %d runs): %s\n%s" % (
                    self.name, proc.returncode, self.failures, self.count, " ".join(argv),
                    err.decode(errors="replace")))
            if self.failures > max(3, self.count // 10):
                die("%s fails too often" % self.name)
            return
        if record:
            self.times.append(elapsed * 1000.0)
            self.cpu.append(used * 1000.0)


def children_cpu():
    """Seconds of CPU used so far by the children we waited for (and by theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def oci_runner(name, tmp, bundle):
    state = os.path.join(tmp, name + "-state")
    os.mkdir(state)

    def argv(n):
        return [name, "--root", state, "run", "--bundle", bundle, "bench-%s-%d" % (name, n)]

    def cleanup(n):
        # `run` without --detach deletes the container itself; make sure of it
        cid = "bench-%s-%d" % (name, n)
        if os.path.exists(os.path.join(state, cid)):
            subprocess.run([name, "--root", state, "delete", "--force", cid], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Runner(name, argv, cleanup)


def percentile(values, pct):
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---------------------------------------------------------------------------
# Where our time goes: the programs the script starts (strace)
# ---------------------------------------------------------------------------

LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")


def trace_ours(script, tmp):
    """Run our script once under strace; return [(pid, program argv, lifetime ms)],
    total ms under strace, the number of forks."""
    out = os.path.join(tmp, "strace.txt")
    cmd = ["strace", "-f", "-q", "-ttt", "-s", "256", "--decode-pids=pidns",
           "-e", "trace=process", "-e", "signal=none", "-o", out,
           "/bin/sh", script, "run", "/bin/true"]
    # --seccomp-bpf stops only on the traced calls: far less overhead
    probe = subprocess.run(["strace", "--seccomp-bpf", "-f", "-o", "/dev/null", "true"],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode == 0:
        cmd.insert(1, "--seccomp-bpf")
    start = time.perf_counter()
    sh(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    total = (time.perf_counter() - start) * 1000.0
    born, died, execs, forks = {}, {}, [], 0
    first = None
    with open(out) as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            first = ts if first is None else first
            born.setdefault(pid, ts)
            # "= 5 /* 8254 in strace's PID NS */" for a child in another pid namespace
            fork = re.match(r"^(?:<\.\.\. )?(clone3?|fork|vfork)\b.*= (\d+)"
                            r"(?: /\* (\d+) in strace's PID NS \*/)?$", rest)
            if fork:
                forks += 1
                child = int(fork.group(3) or fork.group(2))
                born[child] = min(born.get(child, ts), ts)
            elif rest.startswith("execve(") and not re.search(r"= -1 ", rest):
                prog = re.match(r'execve\("([^"]*)", \[(.*?)\](?:, 0x|\.\.\.)', rest)
                args = prog.group(2) if prog else ""
                args = [a.strip('"') for a in re.findall(r'"(?:[^"\\]|\\.)*"', args)][1:]
                execs.append((pid, ts, prog.group(1) if prog else "?", args))
            elif "+++ exited with" in rest or "+++ killed by" in rest:
                died[pid] = ts
    rows = []
    for i, (pid, ts, path, args) in enumerate(execs):
        # a program lives from its fork (or its exec, when exec'd over a live process)
        # to the next exec of the same pid or its exit
        later = [e[1] for e in execs[i + 1:] if e[0] == pid]
        end = later[0] if later else died.get(pid, ts)
        begin = born.get(pid, ts) if not any(e[0] == pid for e in execs[:i]) else ts
        rows.append((pid, path, args, (end - begin) * 1000.0, (ts - first) * 1000.0))
    return rows, total, forks


# ---------------------------------------------------------------------------

def inner(args):
    for tool in ("runc", "crun", "bwrap", "unshare", "mount"):
        need(tool)
    tmp = tempfile.mkdtemp(prefix="cfs-bench-startup-")
    try:
        rootfs = make_rootfs(tmp)
        script, etc_dir, hostname = render_ours(tmp, rootfs)
        # first run of ours: builds the state dir (dev template, /etc files) the others bind
        ours = Runner("ours", lambda n: ["/bin/sh", script, "run", "/bin/true"])
        ours.run_once(record=False)
        if ours.failures:
            die("our script does not run; nothing to compare")
        bundle = make_bundle(tmp, rootfs, etc_dir, hostname)
        crun_cgroup_workaround()
        bw = bwrap_argv(rootfs, etc_dir, hostname)
        runners = [ours, oci_runner("runc", tmp, bundle), oci_runner("crun", tmp, bundle),
                   Runner("bwrap", lambda n: bw),
                   Runner("/bin/true", lambda n: ["/bin/true"])]  # floor: one program start
        for _round in range(args.warmup):
            for r in runners:
                r.run_once(record=False)
        for i in range(args.runs):
            # rotate the order each round: no runner always follows the same one
            k = i % len(runners)
            for r in runners[k:] + runners[:k]:
                r.run_once()
        report(runners, args)
        if not args.no_trace:
            if shutil.which("strace"):
                report_trace(*trace_ours(script, tmp), median=statistics.median(ours.times))
            else:
                print("\n(strace not found: apt-get install strace, for the list of programs)")
    finally:
        if args.keep:
            print("\nkept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(runners, args):
    print("startup: `run /bin/true`, default spec, busybox rootfs; %d rounds after %d warm-up, "
          "interleaved" % (args.runs, args.warmup))
    print("%-10s %8s %8s %8s %8s" % ("runner", "median", "p90", "min", "mean"))
    med = {}
    for r in runners:
        med[r.name] = statistics.median(r.times)
        print("%-10s %8.2f %8.2f %8.2f %8.2f  ms%s" % (
            r.name, med[r.name], percentile(r.times, 90), min(r.times), statistics.mean(r.times),
            "  (%d of %d runs failed)" % (r.failures, r.count) if r.failures else ""))
    print()
    for other in ("runc", "crun", "bwrap"):
        ratio = med["ours"] / med[other]
        print("ours/%-5s %6.2fx  (%s)" % (other, ratio,
                                          "faster" if ratio < 1 else "slower"))
    cpu = dict((r.name, statistics.median(r.cpu)) for r in runners)
    print("\nCPU ms per run (median): %s" % ", ".join("%s %.2f" % (r.name, cpu[r.name]) for r in runners))
    print("CPU ours/runc %.2fx, ours/crun %.2fx" % (cpu["ours"] / cpu["runc"], cpu["ours"] / cpu["crun"]))


def report_trace(rows, total, forks, median):
    print("\nprograms our script starts per run: %d execve (%d forks); one traced run took "
          "%.1f ms under strace (%.1f ms untraced median)" % (len(rows), forks, total, median))
    print("%8s %8s  %s" % ("at ms", "life ms", "program (lifetime under strace: fork or "
                                               "exec to exit)"))
    for _pid, path, argv, life, at in rows:
        text = " ".join([os.path.basename(path)] + argv)
        print("%8.1f %8.1f  %s" % (at, life, text[:110]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=50, help="timed rounds (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the tmp dir")
    parser.add_argument("--no-trace", action="store_true", help="skip the strace of ours")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    in_private_mount_namespace(__file__, "namespaces, mounts")
    inner(args)


if __name__ == "__main__":
    main()
