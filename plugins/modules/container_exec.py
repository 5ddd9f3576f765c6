#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: container_exec
short_description: Run a command in a container
version_added: 0.1.0
description:
  - Runs a command in a container set up by M(fromscratch.containerfs.container) (or by its
    rendered script's C(up)), with the container's installed script
    (C(sh <state_dir>/containers/<name>/container.sh exec)).
  - When the container runs, the command joins its process's namespaces (it sees its
    pid 1); when it is set up but not running, the command runs as the container's pid 1
    would, in a fresh pid namespace inside its filesystem, in the foreground.
  - Like M(ansible.builtin.command), it always reports V(changed) (set C(changed_when)),
    fails when the command exits with a status other than 0 (set C(failed_when)), and is
    skipped in check mode.
author:
  - fromscratch.containerfs developers (@fromscratch)
requirements:
  - Linux, as root on the target
  - Python 3.9 or later on the target
  - The container's installed script runs the command, with C(/bin/sh) and util-linux
    (C(nsenter) to join a running container, C(unshare) and C(pivot_root) otherwise)
extends_documentation_fragment:
  - fromscratch.containerfs._dirs
  - fromscratch.containerfs._attributes
  - fromscratch.containerfs._attributes.actiongroup
options:
  name:
    description: Container name.
    type: str
    required: true
  argv:
    description:
      - The command and its arguments, as a list (nothing is split or expanded).
      - Exactly one of O(argv) and O(command).
    type: list
    elements: str
  command:
    description:
      - The command as one string, split into words as M(ansible.builtin.command) does
        (shell quoting rules, no shell).
    type: str
  chdir:
    description:
      - The directory inside the container to run the command in (absolute).
      - In a running container it is opened after entering the container's root (C(nsenter --wdns), util-linux 2.38
        or later), so its symlinks resolve inside that root even when a process of the container changes them meanwhile.
        With an older C(nsenter) it is resolved in the root first and opened from the host's view of it; there, name
        only directories that no process of the container can write to.
    type: str
  env:
    description:
      - Environment variables added to the container's own (given after them, so they win).
    type: dict
  user:
    description:
      - V(UID) or V(UID:GID) to run the command as, instead of the container's user.
    type: str
  stdin:
    description: Text given to the command on its standard input.
    type: str
  stdin_add_newline:
    description: Whether a newline is added to O(stdin).
    type: bool
    default: true
  run_dir:
    description:
      - The run dir the container was set up with. Unset, the one its recorded plan names; given,
        a container recorded with another run dir is refused.
      - Set it for every module at once with C(module_defaults) for the group
        C(group/fromscratch.containerfs.containerfs).
    type: path
attributes:
  check_mode:
    support: partial
    details: The command is not run in check mode; the task is skipped (V(changed) false,
      RV(rc) and the output are not returned), as M(ansible.builtin.command) without
      C(creates) or C(removes) is.
  diff_mode:
    support: none
    details: Nothing to diff; the command's output is returned.
  idempotent:
    support: none
    details: The command runs on every run, and the task always reports V(changed).
seealso:
  - module: fromscratch.containerfs.container
  - module: fromscratch.containerfs.container_info
"""

EXAMPLES = r"""
- name: Ask the web container for its processes
  fromscratch.containerfs.container_exec:
    name: web
    command: ps -o pid,comm
  register: ps
  changed_when: false

- name: Load data as an unprivileged user, from a directory of the container
  fromscratch.containerfs.container_exec:
    name: db
    argv: [/usr/bin/load, --all, data.sql]
    chdir: /srv/db
    user: "1000:1000"
    env:
      LANG: C.UTF-8

- name: Feed a file to a command
  fromscratch.containerfs.container_exec:
    name: web
    argv: [sh, -c, "cat > /etc/motd"]
    stdin: "{{ lookup('file', 'motd') }}"
"""

RETURN = r"""
rc:
  description: The command's exit status (128+N when killed by signal N).
  returned: always, unless skipped
  type: int
  sample: 0
stdout:
  description: What the command wrote on its standard output.
  returned: always, unless skipped
  type: str
stderr:
  description: What the command wrote on its standard error.
  returned: always, unless skipped
  type: str
stdout_lines:
  description: RV(stdout) split into lines.
  returned: always, unless skipped
  type: list
  elements: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: always, unless skipped
  type: list
  elements: str
cmd:
  description: The host command that ran it (the container's script, its exec and the command).
  returned: always, unless skipped
  type: list
  elements: str
  sample: [/bin/sh, /var/lib/containerfs/containers/web/container.sh, exec, --, ps]
container_state:
  description: V(running) when the command joined the running process, else V(stopped).
  returned: always, unless skipped
  type: str
"""

import os
import shlex

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _module_args
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import process as _process
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.host_steps import check_host_dir, recorded_plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import ENV_NAME_RE, USER_RE


def command_argv(params):
    """The command to run inside, as a list of words."""
    if params["argv"] is not None:
        argv = list(params["argv"])
    else:
        try:
            argv = shlex.split(params["command"])
        except ValueError as exc:
            raise ValueError("cannot split command into words: %s" % exc)
    if not argv or not argv[0]:
        raise ValueError("no command to run")
    return argv


def exec_args(params, argv):
    """The arguments of the script's exec."""
    args = ["exec"]
    user = params["user"]
    if user is not None:
        if not USER_RE.fullmatch(user):
            raise ValueError("user must be UID or UID:GID (numbers), got %r" % (user,))
        args += ["--user", user]
    if params["chdir"] is not None:
        if not params["chdir"].startswith("/"):
            raise ValueError("chdir must be an absolute path inside the container, got %r" % (params["chdir"],))
        args += ["--cwd", params["chdir"]]
    for name, value in sorted((params["env"] or {}).items()):
        if not ENV_NAME_RE.fullmatch(str(name)):
            raise ValueError("env name %r is not a variable name" % (name,))
        args += ["--env", "%s=%s" % (name, "" if value is None else value)]
    return args + ["--"] + argv


def check_run_dir(plan, run_dir):
    """A run_dir given must be the one the container was set up with (a module_defaults
    entry for the group names the same dirs for every module)."""
    if plan is None or run_dir is None:
        return
    recorded = os.path.normpath(os.path.dirname(plan["paths"]["run"]))
    if check_host_dir(run_dir, "run_dir") != recorded:
        raise ValueError("container %s was set up with run_dir %s, not %s" % (plan["name"], recorded, run_dir))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            argv=dict(type="list", elements="str"),
            command=dict(type="str"),
            chdir=dict(type="str"),
            env=dict(type="dict"),
            user=dict(type="str"),
            stdin=dict(type="str"),
            stdin_add_newline=dict(type="bool", default=True),
            state_dir=_module_args.host_dirs()["state_dir"],
            run_dir=dict(type="path"),
        ),
        mutually_exclusive=[("argv", "command")],
        required_one_of=[("argv", "command")],
        supports_check_mode=True,
    )
    params = module.params
    if module.check_mode:
        module.exit_json(changed=False, skipped=True, msg="skipped in check mode")
    if os.geteuid() != 0:
        module.fail_json(msg="fromscratch.containerfs.container_exec must run as root (become: true)")
    try:
        argv = command_argv(params)
        args = exec_args(params, argv)
        if any("\0" in word for word in args):
            raise ValueError("a NUL byte cannot be passed to a command")
        plan = recorded_plan(params["state_dir"], params["name"])
        check_run_dir(plan, params["run_dir"])
    except (ContainerfsError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    if plan is None:
        module.fail_json(msg="container %s is not set up in %s: set it up with fromscratch.containerfs.container "
                             "(state present or started)" % (params["name"], params["state_dir"]))
    paths = plan["paths"]
    if not os.path.isfile(paths["script"]) or os.path.islink(paths["script"]):
        module.fail_json(msg="container %s has no installed script %s: run fromscratch.containerfs.container "
                             "on it (state present) to install it" % (params["name"], paths["script"]))
    stdin = params["stdin"]
    if stdin is not None and params["stdin_add_newline"]:
        stdin += "\n"
    state = _process.status(paths)["state"]
    cmd = _process.script_command(paths, *args)
    try:
        rc, out, err = _process.call_script(paths, args, None, stdin=stdin, check=False)
    except OSError as exc:
        module.fail_json(msg="cannot run %s: %s" % (paths["script"], exc), cmd=cmd)
    result = dict(changed=True, rc=rc, stdout=out, stderr=err, stdout_lines=out.splitlines(),
                  stderr_lines=err.splitlines(), cmd=cmd, container_state=state)
    if rc != 0:
        tail = "\n".join(err.splitlines()[-5:])
        module.fail_json(msg="non-zero return code %d%s" % (rc, (": " + tail) if tail else ""), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
