# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# Paths inside the container root
# ---------------------------------------------------------------------------

# canonical_paths: CFS_ROOT, CFS_STATE and CFS_RUN as mountinfo writes them (no symlinked
# directory on the way: /var/run -> /run), once, before anything is compared with it.
# A rootfs mount point in the run dir (CFS_ROOT_IN_RUN, its path there) is found again from
# the run dir's canonical path. Builtins only.
canonical_paths() {
    _caller_dir=$PWD
    cd -P -- "$CFS_STATE" || die "cannot enter the state dir $CFS_STATE"
    CFS_STATE=$PWD
    cd -P -- "$CFS_RUN" || die "cannot enter the run dir $CFS_RUN"
    CFS_RUN=$PWD
    CFS_NS=$CFS_RUN/ns
    if [ -n "$CFS_ROOT_IN_RUN" ]; then
        CFS_ROOT=$CFS_RUN/$CFS_ROOT_IN_RUN
    else
        cd -P -- "$CFS_ROOT" || die "cannot enter the rootfs $CFS_ROOT"
        CFS_ROOT=$PWD
    fi
    cd -- "$_caller_dir" || cd /
}

# Twin of the applier's InRoot.resolve (tests/system/test_twins.py).
# target_in_root PATH [nofollow]: set RESOLVED to PATH under the container root, following
# symlinks as if the root were / (an absolute link restarts at the root, '..' stops at it),
# so no target can land outside the root (runc's SecureJoin). With nofollow, any symlink
# on the way is refused instead (proc and sysfs: CVE-2019-19921, CVE-2023-27561).
target_in_root() {
    _rest=$1
    _done=
    _hops=0
    while [ -n "$_rest" ]; do
        _part=${_rest%%/*}
        if [ "$_part" = "$_rest" ]; then _rest=; else _rest=${_rest#*/}; fi
        case $_part in
            '' | .) continue ;;
            ..) _done=${_done%/*}; continue ;;
        esac
        if [ -L "$CFS_ROOT$_done/$_part" ]; then
            [ "${2:-}" != nofollow ] || die "$1: $_done/$_part is a symlink; refusing to mount through it"
            _hops=$((_hops + 1))
            [ "$_hops" -le 40 ] || die "$1: too many levels of symbolic links"
            _link=$("$T_readlink" -- "$CFS_ROOT$_done/$_part") || die "$1: cannot read link $_done/$_part"
            case $_link in /*) _done= ;; esac
            _rest=$_link${_rest:+/$_rest}
        else
            _done=$_done/$_part
        fi
    done
    RESOLVED=$CFS_ROOT$_done
    RESOLVED_FRESH=
}

# target_under BASE REST: a path on a filesystem mounted in this batch; fresh filesystems
# hold no symlinks, so the path needs no resolution.
target_under() {
    RESOLVED=$1$2
    RESOLVED_FRESH=yes
}
