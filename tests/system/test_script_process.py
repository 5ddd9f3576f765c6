"""The container process: user, environment, arguments (quoted literally), cwd."""
import os

NASTY = [
    "with space",
    "single 'quoted'",
    'double "quoted"',
    "dollar $HOME ${PATH} $(id)",
    "backtick `id`",
    "back\\slash \\n \\\\",
    "",
    "*",
    "-n",
    "tab\there",
    "new\nline",
]

PRINT_ARGS = 'for a; do printf "<%s>\\n" "$a"; done'


def expected_args(args):
    return "".join("<%s>\n" % a for a in args)


def test_user_from_the_spec(make_container, public_dir):
    """process.user "65534:65534" runs the process as that uid and gid. The script is in a
    directory uid 65534 can read: after the drop, the script re-runs itself as that user."""
    container = make_container(directory=public_dir, process={"user": "65534:65534",
                                                              "args": ["sh"]})
    result = container.inside("id -u; id -g; id -G; echo $$; cat /proc/1/status")
    assert result.rc == 0, result
    assert result.stdout.split()[:4] == ["65534", "65534", "65534", "1"], result
    status = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert status["Uid"].split() == ["65534"] * 4 and status["Gid"].split() == ["65534"] * 4


def test_user_from_the_spec_script_only_root_can_read(make_container):
    """The same with the script in a directory only root can read (pytest's tmp dir, as
    a script under /root would be)."""
    container = make_container(process={"user": "65534:65534", "args": ["sh"]})
    result = container.inside("id -u; id -g")
    assert result.rc == 0, result
    assert result.stdout.split() == ["65534", "65534"], result


def test_env_lands_literally(make_container):
    env = ["PATH=/bin", "V%d=%s" % (0, NASTY[0])] + \
        ["V%d=%s" % (i, value) for i, value in enumerate(NASTY) if "\n" not in value][1:]
    container = make_container(process={"args": ["sh"], "env": env})
    result = container.inside("env")
    assert result.rc == 0, result
    seen = [line for line in result.stdout.splitlines() if line.startswith(("V", "PATH="))]
    assert sorted(seen) == sorted(env), result.stdout


def test_args_from_the_spec_land_literally(make_container):
    container = make_container(process={"args": ["sh", "-c", PRINT_ARGS, "sh"] + NASTY})
    result = container.run()
    assert result.rc == 0, result
    assert result.stdout == expected_args(NASTY)


def test_args_from_the_command_line_land_literally(make_container):
    container = make_container()
    result = container.run("sh", "-c", PRINT_ARGS, "sh", *NASTY)
    assert result.rc == 0, result
    assert result.stdout == expected_args(NASTY)


def test_cwd(make_container):
    container = make_container(process={"cwd": "/etc", "args": ["pwd"]})
    result = container.run()
    assert result.rc == 0 and result.stdout == "/etc\n", result


def test_missing_working_directory_is_made(make_container, copy_rootfs):
    """An image's WorkingDir need not exist: it is made (runc does), root read-only or not."""
    rootfs = copy_rootfs()
    container = make_container(rootfs={"path": rootfs},
                               process={"cwd": "/srv/app data", "args": ["sh", "-c", "pwd"]})
    result = container.run()
    assert result.rc == 0, result
    assert result.stdout.strip() == "/srv/app data"
    assert os.path.isdir(os.path.join(rootfs, "srv", "app data"))
