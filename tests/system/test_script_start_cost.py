"""What a `run` reads on its way to the container's start (issue 13: a run's CPU).

dash reads a file one byte per read(2) for its `read` builtin and a script in blocks: the
script avoids reading what it does not need (/proc/stat, /proc/filesystems, mountinfo on
the host side) and its container side stops reading the script at inside_entry. A
filesystem the kernel lacks is named once a mount fails, and by `check`.
"""
import os
import re
import shutil
import subprocess

import pytest

from tests.system.conftest import HOST_ENV

# dash reads a script in blocks of this size (BUFSIZ)
DASH_BLOCK = 8192


def traced_run(container, tmp_path):
    """`dash SCRIPT run true` under strace -f (read and execve): {pid: [(fd path, bytes)]},
    the pid of the host side and that of the container side's shell."""
    out = str(tmp_path / "strace.txt")
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "strace", "-f", "-qq", "-y", "-e", "trace=read,execve", "-o", out,
            "dash", container.script, "run", "true"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=HOST_ENV, universal_newlines=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    reads, host, inside = {}, None, None
    with open(out) as f:
        for line in f:
            pid = int(line.split()[0])
            host = host or pid
            if "execve(" in line and '"__inside"' in line:
                inside = pid
            match = re.search(r"read\(\d+<([^>]*)>.*= (\d+)$", line)
            if match:
                reads.setdefault(pid, []).append((match.group(1), int(match.group(2))))
    assert inside is not None, "no container side shell in the trace"
    return reads, host, inside


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_host_side_reads_no_proc_file_it_can_do_without(make_container, tmp_path):
    container = make_container()
    container.run("true")  # the first run makes the state (dev template, /etc files)
    reads, host, _inside = traced_run(container, tmp_path)
    files = set(path for path, _count in reads.get(host, []))
    for unneeded in ("/proc/stat", "/proc/filesystems"):
        assert unneeded not in files
    assert not [f for f in files if f.endswith("/mountinfo")], files


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_container_side_reads_the_script_only_up_to_its_entry(make_container, tmp_path):
    container = make_container()
    container.run("true")
    reads, _host, inside = traced_run(container, tmp_path)
    script = os.path.realpath(container.script)
    read = sum(count for path, count in reads.get(inside, []) if path == script)
    text = container.text
    entry = text.index('\ninside_entry "$@"\n')
    assert read > entry, "the container side did not read its part of the script"
    assert read <= entry + DASH_BLOCK < len(text), (read, entry, len(text))


def lacking_filesystem(plan):
    """The plan's /dev/mqueue mount, of a filesystem no kernel has."""
    [mqueue] = [s for s in plan["steps"] if s["op"] == "mount" and s["target"] == "/dev/mqueue"]
    mqueue["fstype"] = "nosuchfs"


def test_a_filesystem_the_kernel_lacks_is_named_once_a_mount_fails(make_plan_container):
    container = make_plan_container(lacking_filesystem)
    result = container.run("true")
    assert result.rc == 1, result
    said = result.stderr.splitlines()
    # mount(8)'s own message first, then which filesystem is missing and what to do
    assert any("nosuchfs" in line and "this kernel" not in line for line in said), result
    assert said[-1].endswith("error: this kernel has no nosuchfs filesystem (try: modprobe nosuchfs)"), result


def test_check_names_a_filesystem_the_kernel_lacks(make_plan_container):
    container = make_plan_container(lacking_filesystem)
    result = subprocess.run(["dash", container.script, "check"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=HOST_ENV,
                            universal_newlines=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "this kernel has no nosuchfs filesystem (try: modprobe nosuchfs)" in result.stderr
