# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# A run, on the host side: the lock, the container side's reports, signals,
# the subcommands
# ---------------------------------------------------------------------------

# supervise: read what the container side reports on fd 8 and act on it.
supervise() {
    while read -r _kind _value; do
        case $_kind in
            pivoted | unpivoted)
                # (an exec in a stopped container is no container process: no pid file)
                [ "$CFS_MODE" = exec ] || write_pid_file "$CFS_PID_FILE" "$_value"
                if ! switch_root "$_value" "$_kind"; then
                    kill -KILL "$_value" 2>/dev/null || true
                    die "cannot switch to the container root"
                fi
                printf 'go\n' > "$CFS_GO"
                pending_signal "$_value"
                [ "$CFS_MODE" != start ] || process_running "$_value"
                ;;
            exit)
                [ "$CFS_MODE" != start ] || process_ended "$_value"
                return "$_value"
                ;;
        esac
    done
    die "the container side stopped without reporting"
}

# cleanup: leave nothing of this run in effect, with builtins only (no program start):
# the container's pid 1 if it still runs (a run ends once its container ended, or after
# a signal found supervise gone), then the run's files (CFS_RUN_FILES: fstab, mount
# messages, pid file, pending signal) emptied (an empty pid file names no process), the
# fifo kept for the next run (a pipe holds no data once nobody has it open). All ours, as
# this run holds the container's lock.
cleanup() {
    kill_left_pid1
    for _file in $CFS_RUN_FILES; do
        _file=$CFS_RUN/$_file
        [ -L "$_file" ] || [ ! -s "$_file" ] || : > "$_file"
    done
}

# kill_left_pid1: KILL the process the pid file names if it is still the one this run
# started (live_pid: same start time; for an ended run, one stat of its /proc dir).
kill_left_pid1() {
    [ ! -L "$CFS_PID_FILE" ] || return 0  # (refused elsewhere; cleanup must not die)
    live_pid "$CFS_PID_FILE"
    [ -z "$LIVE" ] || kill -KILL "$LIVE" 2>/dev/null || true
}

# take_lock: the container's lock (the modules flock the same file) on fd 3, for set-up
# and the whole run: a second run of this container stops at once, touching nothing.
# The container side closes fd 3; unshare keeps it while the container lives.
take_lock() {
    # in the run dir's checked base, where only root can plant a link; refused anyway
    refuse_link "$CFS_LOCK"
    [ ! -e "$CFS_LOCK" ] || [ -f "$CFS_LOCK" ] || die "the lock $CFS_LOCK is not a regular file"
    exec 3>>"$CFS_LOCK"
    LC_ALL=C "$T_flock" -n 3 ||
        die "container $CFS_NAME is already running or being set up (its lock $CFS_LOCK is held)"
}

# forward_signal NAME: as `runc run` does, pass the signal on to the container's pid 1
# and keep waiting for it. Before pid 1 is known, supervise passes it on (pending_signal).
# If supervise is gone (killed: nobody would answer the container side, which may wait
# for its go forever, as a pid 1 that ignores the signal), the container is killed instead.
forward_signal() {
    CFS_TRAPPED=$1
    if [ -n "${CFS_SUPERVISE:-}" ] && ! kill -0 "$CFS_SUPERVISE" 2>/dev/null; then
        kill_left_pid1
        return 0
    fi
    _pid=
    [ ! -f "$CFS_PID_FILE" ] || read -r _pid _rest < "$CFS_PID_FILE" || true
    if [ -n "$_pid" ]; then
        kill -s "$1" "$_pid" 2>/dev/null || true
    else
        printf '%s\n' "$1" > "$CFS_SIGNAL"
    fi
}

# pending_signal PID: pass on a signal that came before PID was known.
pending_signal() {
    [ -f "$CFS_SIGNAL" ] || return 0
    read -r _signal < "$CFS_SIGNAL" || return 0
    kill -s "$_signal" "$1" 2>/dev/null || true
}

# wait_for JOB: set _status to the exit status of JOB, passing signals on meanwhile
# (`wait` returns early when a trap ran).
wait_for() {
    while :; do
        CFS_TRAPPED=
        _status=0
        wait "$1" || _status=$?
        [ -n "$CFS_TRAPPED" ] || return 0
    done
}

# default_signals: CFS_ENV_SIGNALS, the env(1) option that gives the container INT and
# QUIT back: the shell ignores them in a background job, and a shell as pid 1 could not
# trap them (coreutils 8.31 and later; elsewhere they stay ignored). env's answer is kept
# in CFS_ENV_PROBE and asked again only when env changed since (newer than the answer):
# two program starts less per run.
default_signals() {
    # -nt is not POSIX but dash, bash and busybox have it
    # shellcheck disable=SC3013
    if [ -n "$CFS_ENV_PROBE" ] && [ -f "$CFS_ENV_PROBE" ] && [ ! -L "$CFS_ENV_PROBE" ] && [ ! "$T_env" -nt "$CFS_ENV_PROBE" ]; then
        read -r CFS_ENV_SIGNALS < "$CFS_ENV_PROBE" || CFS_ENV_SIGNALS=
        case $CFS_ENV_SIGNALS in '' | --default-signal=INT,QUIT) return 0 ;; esac
    fi
    CFS_ENV_SIGNALS=--default-signal=INT,QUIT
    "$T_env" "$CFS_ENV_SIGNALS" true 2>/dev/null || CFS_ENV_SIGNALS=
    [ -n "$CFS_ENV_PROBE" ] || return 0
    refuse_link "$CFS_ENV_PROBE"
    printf '%s\n' "$CFS_ENV_SIGNALS" > "$CFS_ENV_PROBE"
}

# refuse_planted_run_files: the run's own files (CFS_RUN_FILES and the fifo) are written
# with plain redirections: none may be a symlink left in their place.
refuse_planted_run_files() {
    refuse_link "$CFS_GO"
    for _file in $CFS_RUN_FILES; do
        refuse_link "$CFS_RUN/$_file"
    done
}

refuse_if_running() {
    live_pid "$CFS_PID_FILE"
    [ -z "$LIVE" ] || die "already running as pid $LIVE (remove $CFS_PID_FILE if that is wrong)"
}

# refuse_if_up: `run` builds throw-away namespaces: not for a container that is up.
refuse_if_up() {
    pinned_state
    [ "$PINNED" = none ] ||
        die "container $CFS_NAME is up (namespaces pinned in $CFS_NS): use start, exec and stop, or down first"
}

# find_shell: the shell running this script runs its container side too.
find_shell() {
    CFS_SHELL=
    for _candidate in /bin/sh /usr/bin/sh /bin/dash /usr/bin/dash /bin/bash /usr/bin/bash \
        /bin/busybox /usr/bin/busybox /bin/ash /usr/bin/ash; do
        # -ef is not POSIX but dash, bash and busybox have it; readlink is the fallback.
        # shellcheck disable=SC3013
        if [ "/proc/$$/exe" -ef "$_candidate" ]; then
            CFS_SHELL=$_candidate
            break
        fi
    done
    [ -n "$CFS_SHELL" ] || CFS_SHELL=$("$T_readlink" -f "/proc/$$/exe") ||
        die "cannot find the running shell"
    CFS_APPLET=
    case ${CFS_SHELL##*/} in busybox*) CFS_APPLET='sh' ;; esac
    case $0 in
        /*) CFS_SELF=$0 ;;
        *) CFS_SELF=$PWD/$0 ;;
    esac
    [ -f "$CFS_SELF" ] || die "run this script from a file, not from standard input"
}

cmd_run() {
    preflight
    host_dirs
    canonical_paths
    take_lock
    refuse_if_up
    refuse_planted_run_files
    refuse_if_running
    prepare_host
    find_shell
    foreground_run fresh_side "$@"
}

# foreground_run SIDE [ARG...]: the container side SIDE with our stdin and stdout, signals
# passed on to it; exit with its status (run; exec in a stopped container).
foreground_run() {
    default_signals
    [ -p "$CFS_GO" ] || "$T_mkfifo" -m 0600 -- "$CFS_GO"
    trap cleanup EXIT
    trap 'forward_signal TERM' TERM
    trap 'forward_signal INT' INT
    trap 'forward_signal HUP' HUP
    exec 5<&0 6>&1
    # in the background: a trap runs during `wait`, not while a foreground job runs
    container_side "$@" | { trap '' TERM INT HUP; supervise; } &
    CFS_SUPERVISE=$!
    wait_for "$!"
    exit "$_status"
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

main() {
    CFS_MODE=run
    CFS_LOCK_TIMEOUT=30
    CFS_STOP_TIMEOUT=10
    case ${1:-} in
        run)
            shift
            cmd_run "$@"
            ;;
        up | start | stop | down | status | logs | exec)
            _command=$1
            shift
            "cmd_$_command" "$@"
            ;;
        __monitor)
            shift
            cmd_monitor "$@"
            ;;
        check)
            preflight
            check_filesystems
            say "ok: this host can run the container"
            ;;
        -h | --help | help)
            usage
            ;;
        '')
            usage >&2
            exit 2
            ;;
        *)
            say "unknown command: $1"
            usage >&2
            exit 2
            ;;
    esac
}
