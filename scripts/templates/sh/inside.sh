# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# The container side's entry points: the host side starts this script again with one
# ---------------------------------------------------------------------------

# pid1_parent SIGNALS MODE SHELL APPLET SELF [ARG...]: (start, exec) fork the container
# side into the pid namespace unshare made, killed when we die; exit with its status as
# the shell gives it: 128+N for signal N (unshare's own fork exits 1 for a SIGKILL,
# util-linux 2.38). Our first child is that namespace's pid 1, and once it ended no
# other can start there: nothing before it may fork (no $(...), no program).
pid1_parent() {
    CFS_ENV_SIGNALS=$1 CFS_SHELL=$3 CFS_APPLET=$4 CFS_SELF=$5
    shift
    find_tools
    # (a background job ignores INT and QUIT: env gives them back, SIGNALS: its option)
    set -- "$T_env" ${CFS_ENV_SIGNALS:+"$CFS_ENV_SIGNALS"} \
        "$CFS_SHELL" ${CFS_APPLET:+"$CFS_APPLET"} "$CFS_SELF" __inside "$@"
    ! find_tool setpriv || set -- "$TOOL" --pdeathsig KILL -- "$@"
    # (a background job's stdin would be /dev/null: ours, through fd 4)
    exec 4<&0
    "$@" <&4 4<&- &
    exec 4<&-
    _status=0
    wait "$!" || _status=$?
    exit "$_status"
}

# inside_entry [ARG...]: the container side's commands (__inside, __pid1, __build) end
# the script here; any other returns, for main (last in the file).
inside_entry() {
    case ${1:-} in
        __inside)
            CFS_MODE=$2 CFS_SHELL=$3 CFS_APPLET=$4 CFS_SELF=$5
            shift 5
            inside_main "$CFS_MODE" "$@"
            ;;
        __pid1)
            shift
            pid1_parent "$@"
            ;;
        __build)
            inside_build
            ;;
        *)
            return 0
            ;;
    esac
    exit 0
}

# Here, before the host side's code: dash reads and runs a script one top-level command at
# a time, so a container side, which exits in inside_entry, never reads the rest of the file.
inside_entry "$@"
