# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# Messages and tools
# ---------------------------------------------------------------------------

say() {
    printf 'containerfs[%s]: %s\n' "$CFS_NAME" "$*" >&2
}

die() {
    say "error: $*"
    exit 1
}

usage() {
    cat <<'EOT'
Usage: sh THIS_FILE run [CMD [ARG...]]
       sh THIS_FILE up
       sh THIS_FILE start [--restart no|on-failure|always] [--foreground]
                          [--log-size BYTES] [--lock-timeout SECONDS]
       sh THIS_FILE exec [--user UID[:GID]] [--cwd DIR] [--env NAME=VALUE]... [--] CMD [ARG...]
       sh THIS_FILE status | logs [-f] | stop [--timeout SECONDS] | down [--timeout SECONDS]
       sh THIS_FILE check
       sh THIS_FILE --help

  run     build the container filesystem in fresh namespaces and run the container
          process (CMD replaces the spec's process.args) as pid 1; exits with its status
  up      build the container filesystem in pinned namespaces, to keep (idempotent)
  start   up when needed, then the process, detached under a monitor (log, exit status,
          restart policy); --foreground: wait for it and exit with its status
  exec    run CMD in the container: beside its pid 1 when it runs, else in a fresh pid
          namespace of its filesystem
  status  "running PID" (exit 0), "stopped" or "down" (exit 3)
  logs    the process's output (-f: follow it)
  stop    TERM its pid 1, KILL after the timeout (10 s); the filesystem stays
  down    stop, then remove everything (namespaces, run and state dirs)
  check   only check that this host can run it (root, commands, kernel features)
EOT
    printf '\nContainer %s, spec %s\n' "$CFS_NAME" "$CFS_DIGEST"
}

# find_tool NAME: set TOOL to the absolute path of NAME. Absolute paths make busybox ash
# run the same util-linux programs as dash and bash instead of its own applets.
find_tool() {
    _saved_ifs=$IFS
    IFS=:
    for _dir in $PATH /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
        if [ -n "$_dir" ] && [ -f "$_dir/$1" ] && [ -x "$_dir/$1" ]; then
            IFS=$_saved_ifs
            TOOL=$_dir/$1
            return 0
        fi
    done
    IFS=$_saved_ifs
    return 1
}

missing_tool() {
    die "command not found: $1 (install util-linux and coreutils, or busybox)"
}

# known_filesystems: KNOWN_FS, the filesystem types this kernel has, read once.
known_filesystems() {
    KNOWN_FS=' '
    while read -r _first _second; do
        KNOWN_FS="$KNOWN_FS${_second:-$_first} "
    done < /proc/filesystems
}
