"""The collection's examples as data, and a private world to run them in, as written.

Discovery: every module's EXAMPLES (read with ast: the module is not imported) and every
```yaml block of README.md, docs/*.md and roles/*/README.md that is Ansible (a play list
or a task list; specs and spec fragments are not).

World: the examples name host paths (/srv/images/busybox.oci, /etc/containerfs/web.yml,
/usr/local/sbin/...) and use the default state and run dirs. A World is a mount namespace
of its own, held by a `sleep` process, where those paths are a private tree: /srv is a
bind of the world's tree, /etc, /usr/local, /var/lib, /run and /root are overlays whose
upper dirs are the world's, the state and run dirs are tmpfs, and / is read-only, so
nothing an example does reaches the host. Every playbook runs in it through nsenter.
"""
import ast
import base64
import ctypes
import glob
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time

import yaml

from ansible_collections.fromscratch.containerfs.plugins.plugin_utils._render import shell_quote
from tests.lib import oci_fixtures, registry
from tests.lib.collection import REPO_ROOT, collections_dir

COLLECTION = "fromscratch.containerfs."
CLI = os.path.join(REPO_ROOT, "scripts", "containerfs")
MAKE_ROOTFS = os.path.join(REPO_ROOT, "tests", "lib", "make-busybox-rootfs")
FENCE_RE = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```", re.M | re.S)
# What makes a mapping a play, or a task that is not a module call.
PLAY_KEYS = frozenset(("hosts", "import_playbook"))
TASK_KEYWORDS = frozenset(("name", "register", "when", "loop", "loop_control", "changed_when",
                           "failed_when", "become", "tags", "notify", "vars", "ignore_errors",
                           "delegate_to", "no_log", "environment", "check_mode", "diff",
                           "until", "retries", "delay", "module_defaults", "block"))


class Example:
    """One runnable block: `tasks` (a task list) or `plays` (a playbook), as written."""

    def __init__(self, ident, source, tasks=None, plays=None):
        self.id = ident
        self.source = source
        self.tasks = tasks
        self.plays = plays

    def __repr__(self):
        return "<Example %s>" % self.id


def module_examples(repo=REPO_ROOT):
    """{module name: its EXAMPLES task list}, for every plugins/modules/*.py."""
    found = {}
    for path in sorted(glob.glob(os.path.join(repo, "plugins", "modules", "*.py"))):
        name = os.path.basename(path)[:-3]
        if name.startswith("_"):
            continue
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        text = None
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "EXAMPLES"):
                text = ast.literal_eval(node.value)
        found[name] = yaml.safe_load(text) if text else None
    return found


def yaml_blocks(path):
    """[(line number, parsed YAML)] of the ```yaml blocks of a markdown file."""
    with open(path) as f:
        text = f.read()
    return [(text.count("\n", 0, match.start()) + 1, yaml.safe_load(match.group(1)))
            for match in FENCE_RE.finditer(text)]


def is_task(item):
    """A mapping that calls a module (a key that is not a task keyword) or is a block."""
    return isinstance(item, dict) and (module_of(item) is not None or "block" in item)


def ansible_kind(data):
    """"plays", "tasks" or None (a spec, a spec fragment, anything else)."""
    if not isinstance(data, list) or not data or not all(isinstance(i, dict) for i in data):
        return None
    if all(PLAY_KEYS & set(item) for item in data):
        return "plays"
    if all(is_task(item) for item in data) and any(module_of(item) for item in data):
        return "tasks"
    return None


def module_of(task):
    """The module (or action) a task calls, as written; None for a block."""
    for key in task:
        if key not in TASK_KEYWORDS:
            return key
    return None


def first_task_label(tasks):
    """A task list's name: its first task's, or the module and the name it is given."""
    task = tasks[0]
    if task.get("name"):
        return task["name"]
    args = task.get(module_of(task)) or {}
    return "%s %s" % (module_of(task), args.get("name", "") if isinstance(args, dict) else "")


def markdown_paths(repo=REPO_ROOT):
    """The documents whose ```yaml blocks may be examples."""
    return [os.path.join(repo, "README.md")] + sorted(
        glob.glob(os.path.join(repo, "docs", "*.md"))
        + glob.glob(os.path.join(repo, "roles", "*", "README.md")))


def markdown_examples(repo=REPO_ROOT):
    """[Example] of the Ansible blocks of README.md, docs/*.md and roles/*/README.md. Ids
    name the file and the block's first play or task, so they survive edits above it."""
    found = []
    for path in markdown_paths(repo):
        rel = os.path.relpath(path, repo)
        for line, data in yaml_blocks(path):
            kind = ansible_kind(data)
            if kind == "plays":
                tasks = [t for play in data for t in play.get("tasks") or []]
                label = data[0].get("name") or first_task_label(tasks)
                found.append(Example("%s: %s" % (rel, label), "%s:%d" % (rel, line), plays=data))
            elif kind == "tasks":
                found.append(Example("%s: %s" % (rel, first_task_label(data)),
                                     "%s:%d" % (rel, line), tasks=data))
    return found


def all_examples(repo=REPO_ROOT):
    """Every module's EXAMPLES (id: the module's name) and the markdown examples."""
    found = [Example(name, "plugins/modules/%s.py" % name, tasks=tasks)
             for name, tasks in module_examples(repo).items()]
    return found + markdown_examples(repo)


def is_converge(task):
    """A task that must change nothing the second time: a module of the collection that
    sets a state (not an _info module, not container_exec, which runs a command)."""
    module = module_of(task) or ""
    short = module[len(COLLECTION):] if module.startswith(COLLECTION) else None
    return bool(short) and not short.endswith("_info") and short != "container_exec"


class World:
    """A mount namespace with the examples' paths over a private tree (see the module's
    docstring). `root` is the tree on the host side: root/srv is /srv inside."""

    # What is mounted where in the world, in this order. The directories the examples
    # write to are overlays over the host's (their upper dirs in the world's tree), so a
    # missing directory (/etc/containerfs) is made in the world only; the state and run
    # dirs are tmpfs (an overlay cannot hold the overlay upper dirs of the containers);
    # /srv is the world's tree. Then / is made read-only: an example that writes anywhere
    # else fails (EROFS) instead of reaching the host.
    WRITABLE = ("/tmp",)                        # pytest's tmp dirs, ansible's temp files
    OVERLAYS = ("/etc", "/usr/local", "/var/lib", "/run", "/root")
    DIRS = ("/etc/containerfs",)
    STATE_DIR, RUN_DIR = "/var/lib/containerfs", "/run/containerfs"   # the modules' defaults
    TMPFS = (STATE_DIR, RUN_DIR)
    BIND = {"/srv": "srv"}

    def __init__(self, root):
        self.root = root
        self.holder = None
        os.makedirs(os.path.join(root, "srv"), mode=0o755, exist_ok=True)
        os.chmod(root, 0o755)

    # -- the namespace
    def start(self):
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                                        "sleep", "86400"], stdin=subprocess.DEVNULL,
                                       preexec_fn=_die_with_parent)
        own = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while os.readlink("/proc/%d/ns/mnt" % self.holder.pid) == own:
            if time.monotonic() > deadline or self.holder.poll() is not None:
                raise RuntimeError("unshare did not make a mount namespace")
            time.sleep(0.01)
        self.sh(self._mount_script())
        return self

    def _mount_script(self):
        lines = ["set -eu"]
        for path in self.WRITABLE:
            lines.append("mount --bind %s %s" % (shell_quote(path), shell_quote(path)))
        for path in self.OVERLAYS:
            layer = shell_quote(os.path.join(self.root, "overlay" + path.replace("/", "-")))
            lines.append("mkdir -p %s/upper %s/work" % (layer, layer))
            lines.append("mount -t overlay overlay -o lowerdir=%s,upperdir=%s/upper,workdir=%s/work %s"
                         % (shell_quote(path), layer, layer, shell_quote(path)))
        for path in self.DIRS + self.TMPFS:
            lines.append("mkdir -p %s" % shell_quote(path))
        for path in self.TMPFS:
            lines.append("mount -t tmpfs -o mode=0755 tmpfs %s" % shell_quote(path))
        for path, rel in self.BIND.items():
            lines.append("mount --bind %s %s" % (shell_quote(os.path.join(self.root, rel)),
                                                 shell_quote(path)))
        lines.append("mount -o remount,bind,ro /")
        return "\n".join(lines)

    def enter(self):
        return ["nsenter", "--mount=/proc/%d/ns/mnt" % self.holder.pid, "--"]

    def sh(self, script, *args, stdin=None):
        """Run a shell script (with `args` as $1...) in the world; fail with its output."""
        proc = subprocess.run(self.enter() + ["sh", "-c", script, "sh"] + list(args),
                              input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        if proc.returncode != 0:
            raise AssertionError("in the world: %s\n%s" % (script, proc.stdout))
        return proc.stdout

    def write(self, path, content):
        """Write a file of the world (mode 0644; its directory is made)."""
        self.sh('mkdir -p "$(dirname "$1")" && cat > "$1" && chmod 0644 "$1"', path, stdin=content)

    def reset(self):
        """No container and no image any more: every container set up goes down through
        its installed script (the same one the modules call; KILL 1 s after TERM: some
        examples' processes ignore TERM as pid 1), then the state and run dirs are fresh
        tmpfs. Their umount fails if anything is left mounted in them or holds
        them, and so does the reset: a leak shows here."""
        dirs = " ".join(shell_quote(path) for path in self.TMPFS)
        self.sh("set -eu\n"
                "for script in %s/containers/*/container.sh; do\n"
                '    [ ! -e "$script" ] || sh "$script" down --timeout 1 >/dev/null\n'
                "done\n"
                "umount %s\n"
                "for dir in %s; do mount -t tmpfs -o mode=0755 tmpfs \"$dir\"; done"
                % (shell_quote(self.STATE_DIR), dirs, dirs))

    def stop(self):
        if self.holder is not None and self.holder.poll() is None:
            os.kill(self.holder.pid, signal.SIGTERM)
            self.holder.wait()
        self.holder = None

    def trust_registry(self, named):
        """Make `named` (a started NamedRegistry) known in the world as a host would: its
        name in /etc/hosts, its CA in the system trust store."""
        with open("/etc/hosts") as f:
            hosts = f.read()
        self.write("/etc/hosts", hosts + "127.0.0.1 %s\n" % named.NAME)
        bundle = ssl.get_default_verify_paths().cafile
        with open(bundle) as f, open(named.ca_cert) as ca:
            self.write(bundle, f.read() + ca.read())

    def write_auth_file(self, path, named):
        """The credentials of `named`'s user, in a containers-auth.json at `path`."""
        token = base64.b64encode(("%s:%s" % named.user).encode()).decode()
        self.write(path, json.dumps({"auths": {named.NAME: {"auth": token}}}))

    # -- the images, rootfs trees and bundles the examples name
    def build_fixtures(self):
        """Build under /srv what the examples read, from one busybox rootfs (call once
        started: the bundle is exported in the world, where its paths are /srv/...)."""
        srv = os.path.join(self.root, "srv")
        busybox = os.path.join(srv, "images", "busybox")
        subprocess.run([MAKE_ROOTFS, busybox], check=True)
        layer = oci_fixtures.tar_of_dir(busybox)
        for name in ("busybox.oci", "busybox-oci", "big.oci"):
            oci_fixtures.oci_layout(os.path.join(srv, "images", name), [layer])
        oci_fixtures.oci_layout(os.path.join(srv, "busybox"), [layer], tag="1")
        oci_fixtures.docker_archive(os.path.join(srv, "images", "web.tar"), [layer],
                                    repotag="registry.example.com/web:2.4")
        with open(os.path.join(srv, "rootfs.tar.zst"), "wb") as f:
            f.write(oci_fixtures.compress(layer, "zstd"))
        os.makedirs(os.path.join(srv, "cfs-images"))
        with open(os.path.join(srv, "cfs-images", "busybox.tar"), "wb") as f:
            f.write(layer)
        os.makedirs(os.path.join(srv, "data"))
        self._db_rootfs(busybox, os.path.join(srv, "images", "db"))
        os.makedirs(os.path.join(srv, "web"))
        subprocess.run(["cp", "-a", busybox, os.path.join(srv, "web", "rootfs")], check=True)
        os.makedirs(os.path.join(srv, "bundles"))
        bundle_spec = os.path.join(self.root, "bundle-web.yml")
        with open(bundle_spec, "w") as f:
            yaml.safe_dump({"name": "web", "hostname": "web",
                            "rootfs": {"path": "/srv/bundles/web/rootfs"}}, f)
        self.sh("cp -a /srv/images/busybox /srv/bundles/web-rootfs && mkdir /srv/bundles/web && "
                "mv /srv/bundles/web-rootfs /srv/bundles/web/rootfs && %s %s export %s -o %s"
                % (shell_quote(sys.executable), shell_quote(CLI), shell_quote(bundle_spec),
                   "/srv/bundles/web"))

    @staticmethod
    def _db_rootfs(busybox, dest):
        """busybox with the loader container_exec's example runs, and its data."""
        subprocess.run(["cp", "-a", busybox, dest], check=True)
        os.makedirs(os.path.join(dest, "usr", "bin"), exist_ok=True)
        with open(os.path.join(dest, "usr", "bin", "load"), "w") as f:
            f.write('#!/bin/sh\n# load [--all] FILE: what an example data loader prints\n'
                    'echo "loading $* as $(id -u) in $(pwd)"\n')
        os.chmod(os.path.join(dest, "usr", "bin", "load"), 0o755)
        os.makedirs(os.path.join(dest, "srv", "db"))
        with open(os.path.join(dest, "srv", "db", "data.sql"), "w") as f:
            f.write("INSERT INTO t VALUES (1);\n")
        os.chown(os.path.join(dest, "srv", "db"), 1000, 1000)

    # -- playbooks
    def run_playbook(self, directory, plays):
        """Run `plays` (a playbook as data) in the world on localhost; return the report
        of the test_json callback ({"plays": [{"tasks": [...]}]}) and the output."""
        playbook = os.path.join(directory, "playbook.yml")
        with open(playbook, "w") as f:
            yaml.safe_dump(plays, f, sort_keys=False)
        inventory = os.path.join(directory, "inventory.ini")
        with open(inventory, "w") as f:
            f.write(inventory_text(plays))
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": collections_dir(directory),
            "ANSIBLE_STDOUT_CALLBACK": "test_json",
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "callback"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": os.path.join(directory, "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": os.path.join(directory, "ansible-remote"),
        })
        cmd = self.enter() + [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                              "-i", inventory, playbook]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False, cwd=directory)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("ansible-playbook printed no JSON:\n%s\n%s" % (proc.stdout,
                                                                                proc.stderr))
        return report, proc.stderr


def _die_with_parent():
    """In the child, before exec: SIGKILL when pytest dies (an interrupted run leaves no
    holder of a world behind)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def inventory_text(plays):
    """An INI inventory of localhost (connection local, this Python), also in every group
    a play names (hosts: webservers), as the examples assume their inventory."""
    groups = set()
    for one in plays:
        for pattern in re.split(r"[,:]", str(one.get("hosts", ""))):
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", pattern) and pattern not in ("all", "localhost"):
                groups.add(pattern)
    text = "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
    return text + "".join("[%s]\nlocalhost\n" % group for group in sorted(groups))


class NamedRegistry(registry.Registry):
    """The test registry as the examples name it: https://registry.example.com, on port 443
    of the loopback (the world's /etc/hosts points the name there), its certificate for
    that name signed by its own CA, one user. World.trust_registry makes the world know
    it; port 443 is the host's (a world has no network namespace of its own)."""

    NAME = "registry.example.com"

    def __init__(self, workdir, users):
        super().__init__(workdir, tls=True, users=users)
        self.port = 443
        self.host = "127.0.0.1:443"

    @property
    def user(self):
        """(name, password) of its one user."""
        return sorted(self.users.items())[0]

    def _make_certs(self):
        super()._make_certs()   # the CA, a key and its request; the certificate again:
        ext = os.path.join(self.workdir, "named.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:%s\n" % self.NAME)
        subprocess.run(["openssl", "x509", "-req", "-in", os.path.join(self.workdir, "server.csr"),
                        "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2",
                        "-extfile", ext, "-out", self.cert], check=True, capture_output=True)
