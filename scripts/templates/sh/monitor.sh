# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# The process of a kept container: start, its monitor, stop, status, logs
# ---------------------------------------------------------------------------

# proc_ticks PID: TICKS, the start time of PID in clock ticks since boot (field 22 of
# /proc/PID/stat), empty when it is gone or a zombie. Builtins only.
proc_ticks() {
    TICKS=
    _stat=
    [ -r "/proc/$1/stat" ] || return 0
    read -r _stat 2>/dev/null < "/proc/$1/stat" || return 0
    # fields after the command name (which may hold spaces and parentheses): state is 3
    set -f
    # shellcheck disable=SC2086
    set -- ${_stat##*) }
    set +f
    [ "$#" -ge 20 ] || return 0
    case $1 in Z | X | x) return 0 ;; esac
    shift 19
    TICKS=$1
}

# live_pid FILE: LIVE, the pid FILE names ("PID TICKS ...") when that process still runs
# with the same start time (not a reused pid), else empty.
live_pid() {
    LIVE=
    # a link planted in its place is refused, as the modules refuse it (ELOOP)
    [ ! -h "$1" ] || die "$1 is a symbolic link: refusing to read it (planted?)"
    [ -f "$1" ] || return 0
    _pid=
    _ticks=
    read -r _pid _ticks _rest < "$1" || [ -n "$_pid" ] || return 0
    case $_pid in '' | *[!0-9]*) return 0 ;; esac
    proc_ticks "$_pid"
    if [ -n "$TICKS" ] && [ "$TICKS" = "$_ticks" ]; then
        LIVE=$_pid
    fi
}

# write_pid_file FILE PID: "PID TICKS" into FILE. The start time in epoch seconds is the
# readers' to work out from TICKS (btime in /proc/stat comes after a line of some KiB:
# one read system call a byte in dash).
write_pid_file() {
    proc_ticks "$2"
    refuse_link "$1"
    printf '%s %s\n' "$2" "$TICKS" > "$1"
}

# process_running PID: (supervise, start) the process runs: report it to `start` (fd 4)
# and release the container's lock (shared with `start`: flock -u frees it for both).
process_running() {
    printf 'running %s\n' "$1" >&4
    exec 4>/dev/null
    "$T_flock" -u 3
}

# process_ended STATUS: (supervise, start) the last exit status with its time; the
# result of this run for the monitor (fd 9).
process_ended() {
    if [ -s "$CFS_PID_FILE" ]; then
        refuse_link "$CFS_EXIT"
        printf '%s %s\n' "$1" "$("$T_date" +%s)" > "$CFS_EXIT"
        "$T_rm" -f -- "$CFS_PID_FILE"
        printf 'exit %s\n' "$1" >&9
    else
        printf 'failed %s\n' "$1" >&9
    fi
}

# run_once LOG_SIZE: one run of the process, its output into the log; prints "exit
# STATUS" (it ran), or "failed STATUS" or nothing (it could not start).
run_once() {
    exec 9>&1
    {
        exec 5</dev/null 6>&1
        container_side pinned_side start '' -- 3>&- 4>&- 9>&- | supervise
    } 2>&1 | log_writer "$1" 3>&- 4>&- 9>&- >/dev/null
}

# log_writer MAX: stdin to the log, at most MAX bytes a file: a full log becomes log.1
# (one rotation).
log_writer() {
    T_stdbuf=
    ! find_tool stdbuf || T_stdbuf=$TOOL
    while :; do
        [ -f "$CFS_LOG" ] || : >> "$CFS_LOG"
        _size=$("$T_stat" -c %s -- "$CFS_LOG")
        if [ "$_size" -ge "$1" ]; then
            "$T_mv" -f -- "$CFS_LOG" "$CFS_LOG.1"
            : >> "$CFS_LOG"
            _size=0
        fi
        log_chunk "$(($1 - _size))" >> "$CFS_LOG"
        # short of the cap: the end of the output
        [ "$("$T_stat" -c %s -- "$CFS_LOG")" -ge "$1" ] || return 0
    done
}

# log_chunk BYTES: copy up to BYTES of stdin to stdout as they come, reading no further
# (the rest goes to the next file). GNU head does, once its output is unbuffered
# (stdbuf, of coreutils too); busybox's head reads ahead and buffers, but its dd counts
# bytes (GNU dd counts a short read from a pipe as a whole block).
log_chunk() {
    if [ -n "$T_stdbuf" ]; then
        "$T_stdbuf" -o0 "$T_head" -c "$1"
    else
        "$T_dd" iflag=count_bytes count="$1" bs=65536 2>/dev/null
    fi
}

# restart_wanted POLICY STATUS: whether the policy restarts after STATUS.
restart_wanted() {
    case $1 in
        always) return 0 ;;
        on-failure) [ "$2" != 0 ] ;;
        *) return 1 ;;
    esac
}

# back_off SECONDS: wait, cut short by a TERM (stop asks the monitor to end).
back_off() {
    "$T_sleep" "$1" &
    _sleeper=$!
    wait "$_sleeper" || true
    kill "$_sleeper" 2>/dev/null || true
}

# monitor_loop POLICY LOG_SIZE: run the process, again per POLICY (after 1 s, doubling up
# to 30 s; back to 1 s after a run of 10 s or more, as docker) until a stop is asked;
# return the last exit status (1: it could not start).
monitor_loop() {
    _delay=1
    while :; do
        _began=$("$T_date" +%s)
        _result=$(run_once "$2")
        exec 4>/dev/null  # only the first run reports to `start`
        case $_result in
            "exit "*) _status=${_result#exit } ;;
            *)
                say "the process could not start${_result:+ ($_result)}"
                return 1
                ;;
        esac
        if [ -e "$CFS_STOPPING" ] || ! restart_wanted "$1" "$_status"; then
            return "$_status"
        fi
        [ "$(($("$T_date" +%s) - _began))" -lt 10 ] || _delay=1
        say "the process exited with status $_status: restarting it in ${_delay}s"
        back_off "$_delay"
        _delay=$((_delay * 2))
        [ "$_delay" -le 30 ] || _delay=30
        # a restart is a set-up: under the lock, as `start` (supervise frees it)
        [ -e "$CFS_STOPPING" ] || "$T_flock" 3
        [ ! -e "$CFS_STOPPING" ] || return "$_status"
    done
}

# monitor_cleanup: the run's files (CFS_RUN_FILES), its fifo and the monitor's own file,
# removed (a kept container's run dir says what runs: no empty pid file once stopped).
monitor_cleanup() {
    set -- "$CFS_GO" "$CFS_MONITOR"
    for _file in $CFS_RUN_FILES; do
        set -- "$@" "$CFS_RUN/$_file"
    done
    "$T_rm" -f -- "$@"
}

# cmd_monitor POLICY LOG_SIZE: the detached monitor (`start` runs it in a session of its
# own); its stdout reports to `start`, its stderr is the log.
cmd_monitor() {
    exec 4>&1 1>/dev/null
    find_tools
    canonical_paths
    find_shell
    default_signals
    CFS_MODE='start'
    write_pid_file "$CFS_MONITOR" "$$"
    trap monitor_cleanup EXIT
    trap : TERM
    _code=0
    monitor_loop "$1" "$2" || _code=$?
    exit "$_code"
}

# start_options [OPTION...]: CFS_POLICY, CFS_FOREGROUND, CFS_LOG_SIZE, CFS_LOCK_TIMEOUT.
start_options() {
    while [ "$#" -gt 0 ]; do
        case $1 in
            --restart) CFS_POLICY=${2:-}; shift ;;
            --restart=*) CFS_POLICY=${1#*=} ;;
            --foreground) CFS_FOREGROUND=yes ;;
            --log-size) CFS_LOG_SIZE=${2:-}; shift ;;
            --log-size=*) CFS_LOG_SIZE=${1#*=} ;;
            --lock-timeout) CFS_LOCK_TIMEOUT=${2:-}; shift ;;
            --lock-timeout=*) CFS_LOCK_TIMEOUT=${1#*=} ;;
            *) usage_error "start: unknown option $1" ;;
        esac
        shift
    done
    case $CFS_POLICY in
        no | on-failure | always) ;;
        *) usage_error "start: --restart takes no, on-failure or always, not '$CFS_POLICY'" ;;
    esac
    number_option --log-size "$CFS_LOG_SIZE"
    number_option --lock-timeout "$CFS_LOCK_TIMEOUT"
}

# number_option NAME VALUE: stop unless VALUE is a whole number.
number_option() {
    case $2 in
        '' | *[!0-9]*) usage_error "$1 takes a whole number, not '$2'" ;;
    esac
}

usage_error() {
    say "$*"
    usage >&2
    exit 2
}

cmd_start() {
    CFS_POLICY=no
    CFS_FOREGROUND=
    CFS_LOG_SIZE=1048576
    start_options "$@"
    set_up_host
    live_pid "$CFS_PID_FILE"
    [ -z "$LIVE" ] || { say "running already (pid $LIVE)"; return 0; }
    live_pid "$CFS_MONITOR"
    [ -z "$LIVE" ] || { say "running already: its monitor (pid $LIVE) restarts it"; return 0; }
    bring_up
    refuse_planted_run_files
    for _file in "$CFS_MONITOR" "$CFS_STOPPING" "$CFS_LOG" "$CFS_LOG.1" "$CFS_EXIT"; do
        refuse_link "$_file"
    done
    "$T_rm" -f -- "$CFS_STOPPING"
    [ -p "$CFS_GO" ] || "$T_mkfifo" -m 0600 -- "$CFS_GO"
    if [ -n "$CFS_FOREGROUND" ]; then
        start_foreground
    fi
    # The monitor in a session of its own, holding none of our descriptors but the lock:
    # the first line it writes says the process runs; nothing (it ended): it did not.
    _report=$({
        "$T_setsid" "$CFS_SHELL" ${CFS_APPLET:+"$CFS_APPLET"} "$CFS_SELF" __monitor \
            "$CFS_POLICY" "$CFS_LOG_SIZE" < /dev/null 2>> "$CFS_LOG" &
    } | {
        read -r _line || true
        printf '%s' "$_line"
    })
    case $_report in
        "running "*)
            say "started: pid ${_report#running }"
            return 0
            ;;
    esac
    say "error: the process could not start; the end of its log $CFS_LOG:"
    "$T_tail" -n 20 -- "$CFS_LOG" >&2 || true
    exit 1
}

# start_foreground: `start --foreground` (systemd's ExecStart): this script is the
# monitor, without restarts (systemd restarts); it exits with the process's status.
start_foreground() {
    default_signals
    CFS_MODE='start'
    write_pid_file "$CFS_MONITOR" "$$"
    trap monitor_cleanup EXIT
    trap : TERM
    exec 4>/dev/null
    _code=0
    monitor_loop no "$CFS_LOG_SIZE" 2>> "$CFS_LOG" || _code=$?
    exit "$_code"
}

# stop_container: ask the monitor not to restart, TERM the process, KILL it after
# CFS_STOP_TIMEOUT seconds, wait for the monitor to end. A restart that came in between
# is stopped the same way.
stop_container() {
    live_pid "$CFS_PID_FILE"
    _process=$LIVE
    live_pid "$CFS_MONITOR"
    _monitor=$LIVE
    if [ -z "$_process" ] && [ -z "$_monitor" ]; then
        STOPPED_ALREADY=yes
        return 0
    fi
    STOPPED_ALREADY=
    refuse_link "$CFS_STOPPING"
    : > "$CFS_STOPPING"
    [ -z "$_monitor" ] || kill -TERM "$_monitor" 2>/dev/null || true
    # (time in hundredths of a second: polled every 0.01 s for the first half second, as
    # most processes end at once, then every 0.1 s)
    _waited=0
    _termed=
    _limit=$((CFS_STOP_TIMEOUT * 100))
    while :; do
        live_pid "$CFS_PID_FILE"
        if [ -n "$LIVE" ]; then
            if [ "$_waited" -ge "$_limit" ]; then
                kill -KILL "$LIVE" 2>/dev/null || true
            elif [ "$LIVE" != "$_termed" ]; then
                kill -TERM "$LIVE" 2>/dev/null || true
                _termed=$LIVE
            fi
        else
            live_pid "$CFS_MONITOR"
            [ -n "$LIVE" ] || break
            [ "$_waited" -lt $((_limit + 3000)) ] || die "its monitor (pid $LIVE) does not end"
        fi
        if [ "$_waited" -lt 50 ]; then
            "$T_sleep" 0.01
            _waited=$((_waited + 1))
        else
            "$T_sleep" 0.1
            _waited=$((_waited + 10))
        fi
    done
    "$T_rm" -f -- "$CFS_STOPPING"
}

# stop_options COMMAND [--timeout SECONDS]: CFS_STOP_TIMEOUT (stop, down).
stop_options() {
    case ${2:-} in
        --timeout) CFS_STOP_TIMEOUT=${3:-} ;;
        --timeout=*) CFS_STOP_TIMEOUT=${2#*=} ;;
        '') ;;
        *) usage_error "$1: unknown option $2" ;;
    esac
    number_option --timeout "$CFS_STOP_TIMEOUT"
}

cmd_stop() {
    stop_options stop "$@"
    check_root
    find_tools
    canonical_kept
    stop_container
    if [ -n "$STOPPED_ALREADY" ]; then
        say "stopped already"
    else
        say "stopped"
    fi
}

# cmd_status: one line: "running PID", "stopped" (up) or "down", and the last exit
# status when there is one. Exit status as LSB's: 0 running, 3 not running.
cmd_status() {
    canonical_kept
    _last=
    if [ -f "$CFS_EXIT" ]; then
        _code=
        read -r _code _ended < "$CFS_EXIT" || true
        [ -z "$_code" ] || _last=" (last exit $_code)"
    fi
    live_pid "$CFS_PID_FILE"
    if [ -n "$LIVE" ]; then
        printf 'running %s%s\n' "$LIVE" "$_last"
        return 0
    fi
    pinned_state
    if [ "$PINNED" = all ]; then
        printf 'stopped%s\n' "$_last"
    else
        printf 'down%s\n' "$_last"
    fi
    exit 3
}

# cmd_logs [-f]: the log (the rotated part first); -f: follow it.
cmd_logs() {
    find_tools
    [ ! -f "$CFS_LOG.1" ] || "$T_cat" -- "$CFS_LOG.1"
    case ${1:-} in
        -f | --follow) exec "$T_tail" -n +1 -F -- "$CFS_LOG" ;;
        '') [ ! -f "$CFS_LOG" ] || "$T_cat" -- "$CFS_LOG" ;;
        *) usage_error "logs: unknown option $1" ;;
    esac
}

# cmd_exec [--user UID[:GID]] [--cwd DIR] [--env NAME=VALUE]... [--] CMD [ARG...]: CMD
# in the container: running, beside its pid 1 (all its namespaces); stopped, in a fresh
# pid namespace of its filesystem, as `start` makes it. The caller's stdin, stdout and
# stderr; CMD's exit status.
cmd_exec() {
    CFS_EXEC_USER=
    CFS_EXEC_CWD=
    # the options out, the NAME=VALUE words after CMD: "$@" is then CMD (_count words), env
    _count=$#
    while [ "$_count" -gt 0 ]; do
        case $1 in
            --user | --cwd | --env)
                [ "$_count" -ge 2 ] || usage_error "exec: $1 takes a value"
                case $1 in
                    --user) CFS_EXEC_USER=$2 ;;
                    --cwd) CFS_EXEC_CWD=$2 ;;
                    --env) env_word "$2" && set -- "$@" "$2" ;;
                esac
                shift 2
                _count=$((_count - 2))
                ;;
            --)
                shift
                _count=$((_count - 1))
                break
                ;;
            -*) usage_error "exec: unknown option $1" ;;
            *) break ;;
        esac
    done
    [ "$_count" -gt 0 ] || usage_error "exec: no command given"
    _envs=$(($# - _count))
    check_root
    find_tools
    canonical_kept
    pinned_state
    [ "$PINNED" = all ] || die "container $CFS_NAME is not set up (run: sh $0 up)"
    preflight
    canonical_paths
    live_pid "$CFS_PID_FILE"
    if [ -n "$LIVE" ]; then
        # NAME=VALUE..., then nsenter and its options, then CMD
        exec_user "${CFS_EXEC_USER:-$CFS_SPEC_USER}"
        exec_dir "$LIVE" "${CFS_EXEC_CWD:-$CFS_SPEC_CWD}"
        set -- "$@" "$T_nsenter" --target "$LIVE" --mount --uts --ipc --net --pid --cgroup --root "$EXEC_DIR_OPTION"
        [ "$EXEC_UID:$EXEC_GID" = 0:0 ] || set -- "$@" --setuid "$EXEC_UID" --setgid "$EXEC_GID"
        set -- "$@" --
        while [ "$_count" -gt 0 ]; do
            set -- "$@" "$1"
            shift
            _count=$((_count - 1))
        done
        with_spec_env "$@"
        return
    fi
    [ -z "$CFS_EXEC_USER" ] || die "exec --user: the container is not running (only its spec's user can run in a stopped one)"
    # stopped: CWD, -e NAME=VALUE..., --, CMD (the container side's words)
    _words=$_count
    while [ "$_words" -gt 0 ]; do
        set -- "$@" "$1"
        shift
        _words=$((_words - 1))
    done
    while [ "$_envs" -gt 0 ]; do
        set -- "$@" -e "$1"
        shift
        _envs=$((_envs - 1))
    done
    set -- "$@" --
    while [ "$_count" -gt 0 ]; do
        set -- "$@" "$1"
        shift
        _count=$((_count - 1))
    done
    set -- "${CFS_EXEC_CWD:-}" "$@"
    find_shell
    wait_lock
    refuse_if_running
    refuse_planted_run_files
    CFS_MODE='exec'
    foreground_run pinned_side exec "$@"
}

# env_word NAME=VALUE: stop unless the word sets a variable.
env_word() {
    case $1 in
        [!=]*=*) ;;
        *) usage_error "exec: --env takes NAME=VALUE, not '$1'" ;;
    esac
}

# exec_user UID[:GID]: EXEC_UID and EXEC_GID (0 without a GID), whole numbers.
exec_user() {
    EXEC_UID=${1%%:*}
    EXEC_GID=0
    case $1 in *:*) EXEC_GID=${1#*:} ;; esac
    number_option --user "$EXEC_UID"
    number_option --user "$EXEC_GID"
}

# exec_dir PID DIR: EXEC_DIR_OPTION, nsenter's option for the working directory DIR in the
# root of the running container PID. --wdns (util-linux 2.38) opens DIR after the chroot,
# so the kernel resolves it in the container's root: a process there that swaps a component
# for a symlink meanwhile cannot give the command a working directory on the host
# (CVE-2024-21626's `exec --cwd`). An older nsenter opens --wd before it, in the host's
# view of /proc/PID/root: DIR is resolved in that root first (target_in_root), which
# leaves that swap open (docs/lifecycle.md).
exec_dir() {
    _nsenter_help=$("$T_nsenter" --help 2>&1) || true
    case $_nsenter_help in
        *--wdns*) EXEC_DIR_OPTION=--wdns=$2 ;;
        *)
            _saved_root=$CFS_ROOT
            CFS_ROOT=/proc/$1/root
            target_in_root "$2"
            CFS_ROOT=$_saved_root
            EXEC_DIR_OPTION=--wd=$RESOLVED
            ;;
    esac
}
