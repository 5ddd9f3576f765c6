"""The root filesystem: read-only or not, overlay, masked and read-only paths, /etc files."""
import os


def test_readonly_root_refuses_writes(make_container):
    result = make_container().inside("touch /x 2>&1; echo rc=$?")
    assert "Read-only file system" in result.stdout and "rc=1" in result.stdout, result


def test_writable_root_allows_writes(make_container, copy_rootfs):
    rootfs = copy_rootfs()
    container = make_container(rootfs={"path": rootfs, "readonly": False})
    result = container.inside("echo written > /x && cat /x")
    assert result.rc == 0 and result.stdout == "written\n", result
    with open(os.path.join(rootfs, "x")) as f:
        assert f.read() == "written\n"


def tree(path):
    """Every path under `path` with its type and, for files, content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                out[rel] = "-> " + os.readlink(full)
            elif os.path.isdir(full):
                out[rel] = "dir %o" % (os.stat(full).st_mode & 0o7777)
            else:
                with open(full, "rb") as f:
                    out[rel] = f.read()
    return out


def test_overlay_keeps_the_source_pristine(make_container, copy_rootfs, tmp_path):
    rootfs = copy_rootfs()
    pristine = tree(rootfs)
    container = make_container(rootfs={"path": rootfs, "overlay": True, "readonly": False})
    result = container.inside("echo new > /newfile && echo changed > /etc/hosts.orig"
                              " && rm /bin/vi && mkdir /newdir && cat /newfile")
    assert result.rc == 0 and result.stdout == "new\n", result
    assert tree(rootfs) == pristine, "the overlay's lower dir (the rootfs) changed"
    upper = os.path.join(container.state_dir, "containers", container.name, "upper")
    with open(os.path.join(upper, "newfile")) as f:
        assert f.read() == "new\n"
    assert os.path.isdir(os.path.join(upper, "newdir"))
    # the deletion is a whiteout (a 0:0 char device) in the upper dir
    st = os.lstat(os.path.join(upper, "bin", "vi"))
    assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    # a second run sees the container's own changes again
    result = container.inside("cat /newfile; [ -e /bin/vi ] || echo vi-gone")
    assert result.stdout.split() == ["new", "vi-gone"], result


def test_overlay_readonly_root(make_container, busybox_rootfs):
    container = make_container(rootfs={"path": busybox_rootfs, "overlay": True})
    result = container.inside("touch /x 2>&1; echo rc=$?; grep ' / ' /proc/self/mountinfo")
    assert "Read-only file system" in result.stdout and "rc=1" in result.stdout, result
    assert " - overlay " in result.stdout


def test_added_masked_and_readonly_paths(make_container, copy_rootfs):
    rootfs = copy_rootfs()
    os.makedirs(os.path.join(rootfs, "secret-dir", "inner"))
    with open(os.path.join(rootfs, "secret-dir", "file"), "w") as f:
        f.write("hidden\n")
    with open(os.path.join(rootfs, "etc", "secret"), "w") as f:
        f.write("password\n")
    os.makedirs(os.path.join(rootfs, "frozen"))
    container = make_container(
        rootfs={"path": rootfs, "readonly": False},
        add_masked_paths=["/secret-dir", "/etc/secret", "/does/not/exist"],
        add_readonly_paths=["/frozen", "/also/missing"])
    result = container.inside(
        "echo @@masked-dir; ls -A /secret-dir;"
        "echo @@masked-file; cat /etc/secret;"
        "echo @@writes; (touch /secret-dir/x) 2>&1; echo rc=$?;"
        "(touch /frozen/x) 2>&1; echo rc=$?;"
        "touch /elsewhere && echo root-writable;"
        "echo @@proc; cat /proc/keys 2>/dev/null | wc -c")
    assert result.rc == 0, result
    out = result.sections()
    assert out["masked-dir"] == "" and out["masked-file"] == "", result
    assert out["writes"].count("Read-only file system") == 2, out["writes"]
    assert out["writes"].count("rc=1") == 2 and "root-writable" in out["writes"]
    # the runc defaults still apply next to the added paths
    assert out["proc"].strip() == "0"
    # nothing was created for the paths that do not exist
    assert not os.path.lexists(os.path.join(rootfs, "does"))
    assert not os.path.lexists(os.path.join(rootfs, "also"))


def test_etc_files_from_the_spec(make_container):
    container = make_container(
        hostname="web.example.org",
        etc={"extra_hosts": [{"address": "10.1.2.3", "names": ["db", "db.internal"]},
                             {"address": "fd00::1", "names": ["v6host"]}]},
        dns={"nameservers": ["10.0.0.53", "10.0.0.54"], "search": ["example.org", "corp"],
             "options": ["ndots:2", "edns0"]})
    result = container.inside("echo @@hosts; cat /etc/hosts; echo @@hostname; cat /etc/hostname;"
                              "hostname; echo @@resolv; cat /etc/resolv.conf")
    assert result.rc == 0, result
    out = result.sections()
    hosts = [line.split() for line in out["hosts"].splitlines() if line.strip()]
    assert ["10.1.2.3", "db", "db.internal"] in hosts, out["hosts"]
    assert ["fd00::1", "v6host"] in hosts, out["hosts"]
    assert any(h[0] == "127.0.0.1" and "localhost" in h and "web.example.org" in h
               for h in hosts), out["hosts"]
    assert out["hostname"] == "web.example.org\nweb.example.org\n"
    resolv = [line.split() for line in out["resolv"].splitlines()
              if line.strip() and not line.startswith("#")]
    assert [l for l in resolv if l[0] == "nameserver"] == [["nameserver", "10.0.0.53"],
                                                           ["nameserver", "10.0.0.54"]]
    assert ["search", "example.org", "corp"] in resolv
    assert ["options", "ndots:2", "edns0"] in resolv
