"""Run one OCI bundle two ways, runc and the rendered script, and compare what it sees.

Both runs happen inside `unshare --mount --propagation private`, so neither leaves a
mount behind on the host. runc uses its own --root in a tmp dir and a unique id, and
is always deleted (`runc delete -f`). The container process prints PROBE's three parts:
/proc/self/mountinfo, `ls -l /dev` and the hostname.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import uuid

from tests.lib.collection import REPO_ROOT

CONTAINERFS = os.path.join(REPO_ROOT, "scripts", "containerfs")
SEPARATOR = "---containerfs-probe---"
PROBE = ["/bin/sh", "-c", "cat /proc/self/mountinfo; echo %s; ls -l /dev; echo %s; hostname"
         % (SEPARATOR, SEPARATOR)]
TIMEOUT = 30


def runc_path():
    return shutil.which("runc")


def default_config(tmp_dir):
    """`runc spec` in a scratch dir, as a dict."""
    work = os.path.join(tmp_dir, "runc-spec")
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(os.path.join(work, "config.json")):
        subprocess.run(["runc", "spec"], cwd=work, check=True, timeout=TIMEOUT)
    with open(os.path.join(work, "config.json")) as f:
        return json.load(f)


def write_bundle(bundle_dir, config, rootfs, state_dir):
    """A bundle whose process is PROBE and whose root is the shared test rootfs.

    The containerfs annotation gives the script a state and run dir under tmp (a plain
    runc bundle would use /var/lib/containerfs).
    """
    config = copy.deepcopy(config)
    config["root"]["path"] = rootfs
    config["process"]["terminal"] = False
    config["process"]["args"] = list(PROBE)
    config.setdefault("annotations", {})["fromscratch.containerfs.spec"] = json.dumps(
        {"state_dir": os.path.join(state_dir, "lib"), "run_dir": os.path.join(state_dir, "run")})
    os.makedirs(bundle_dir, exist_ok=True)
    with open(os.path.join(bundle_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    return bundle_dir


def _run_oci(runtime, bundle_dir, state_root, wrapper=()):
    """`RUNTIME run` the bundle in a private mount namespace (through `wrapper` argv, if
    any); delete the container whatever happens; return its stdout."""
    cid = "cfs-parity-" + uuid.uuid4().hex[:12]
    try:
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private"] + list(wrapper) +
            [runtime, "--root", state_root, "run", "--bundle", bundle_dir, cid],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
            timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    finally:
        subprocess.run([runtime, "--root", state_root, "delete", "-f", cid],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT,
                       check=False)
    if proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (runtime, proc.returncode, proc.stderr))
    return proc.stdout


def run_runc(bundle_dir, runc_root):
    return _run_oci("runc", bundle_dir, runc_root)


# crun 1.8 refuses a hybrid host whose cgroup2 hierarchy has controllers ("cgroups in
# hybrid mode not supported"); in crun's own mount namespace the unified mount is hidden.
CRUN_WRAPPER = ("if [ -e /sys/fs/cgroup/unified/cgroup.controllers ]; then "
                "umount /sys/fs/cgroup/unified || exit 1; fi; exec \"$@\"")


def run_crun(bundle_dir, crun_root):
    return _run_oci("crun", bundle_dir, crun_root, wrapper=("sh", "-c", CRUN_WRAPPER, "sh"))


def run_script(bundle_dir, work_dir):
    """Render the script from the bundle (--bundle) and run it."""
    return _run_rendered(["--bundle", bundle_dir], work_dir)


def run_script_spec(spec_file, work_dir):
    """Render the script from a spec file and run it."""
    return _run_rendered([spec_file], work_dir)


def _run_rendered(source, work_dir):
    script = os.path.join(work_dir, "container.sh")
    subprocess.run([CONTAINERFS, "render"] + source + ["-o", script], check=True,
                   timeout=TIMEOUT, stderr=subprocess.PIPE)
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", script, "run"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          check=False)
    if proc.returncode != 0:
        raise AssertionError("script failed (%d): %s" % (proc.returncode, proc.stderr))
    return proc.stdout


# ---------------------------------------------------------------------------------------
# Normalising what the probe printed
# ---------------------------------------------------------------------------------------

def split_probe(output):
    parts = output.split(SEPARATOR + "\n")
    assert len(parts) == 3, output
    return parse_mountinfo(parts[0]), parse_ls(parts[1]), parts[2].strip()


def parse_mountinfo(text):
    """One dict per mount, ids and device numbers dropped, options as sorted tuples.

    `propagation` keeps the kinds of optional fields (shared, master, propagate_from,
    unbindable) without their peer-group numbers.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        dash = fields.index("-")
        optional = tuple(sorted(f.split(":")[0] for f in fields[6:dash]))
        mounts.append({
            "target": fields[4], "root": fields[3], "fstype": fields[dash + 1],
            "source": fields[dash + 2], "options": tuple(sorted(fields[5].split(","))),
            "super": tuple(sorted(fields[dash + 3].split(","))), "propagation": optional,
        })
    return mounts


LS_RE = re.compile(r"^(\S+)\s+\d+\s+(\S+)\s+(\S+)\s+(\d+,\s*\d+|\d+)\s+\w+\s+\d+\s+[\d:]+\s+(.*)$")


def parse_ls(text):
    """`ls -l` lines as (mode, owner, group, size or major,minor, name[ -> target])."""
    out = []
    for line in text.splitlines():
        if line.startswith("total "):
            continue
        match = LS_RE.match(line)
        assert match, line
        out.append(match.groups()[:3] + (re.sub(r"\s+", "", match.group(4)), match.group(5)))
    return out


def cgroup_v1_normal(mounts, target="/sys/fs/cgroup"):
    """Sort the per-controller mounts under a v1 cgroup tmpfs and drop their root.

    runc mounts the controllers in its own order and binds the container's cgroup
    (/<id>), which it creates; the script binds the cgroup it runs in (it creates none).
    """
    top = [m for m in mounts if not m["target"].startswith(target + "/")]
    under = sorted((dict(m, root="(cgroup)") if m["fstype"] == "cgroup" else m
                    for m in mounts if m["target"].startswith(target + "/")),
                   key=lambda m: m["target"])
    index = [i for i, m in enumerate(top) if m["target"] == target]
    if not index:
        return mounts
    return top[:index[0] + 1] + under + top[index[0] + 1:]
