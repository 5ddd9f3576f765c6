# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# A kept container: its pinned namespaces, its record, the installed script (up, down)
# ---------------------------------------------------------------------------

# canonical_kept: CFS_RUN and CFS_NS as mountinfo writes them, for the commands that may
# find nothing set up (status, stop, down): a missing run dir stays as it is.
canonical_kept() {
    if [ -d "$CFS_RUN" ]; then
        _caller_dir=$PWD
        cd -P -- "$CFS_RUN" || die "cannot enter the run dir $CFS_RUN"
        CFS_RUN=$PWD
        cd -- "$_caller_dir" || cd /
    fi
    CFS_NS=$CFS_RUN/ns
}

# pinned_state: PINNED=all when every namespace file is an nsfs mount (the container is
# up), some when only a part is (a set-up cut short), none otherwise. Without the
# namespace dir nothing can be mounted in it (a mount point cannot be removed in its own
# namespace): none, without reading mountinfo (one system call a byte in dash).
pinned_state() {
    PINNED=none
    [ -d "$CFS_NS" ] || return 0
    fstab_escape "$CFS_NS"  # mountinfo writes paths escaped the way fstab does
    _nsfs=' '
    while read -r _id _parent _dev _root _point _rest; do
        case $_rest in
            *" - nsfs "*) _nsfs="$_nsfs$_point " ;;
        esac
    done < /proc/self/mountinfo
    _found=0
    _wanted=0
    for _file in $CFS_PINNED_FILES; do
        _wanted=$((_wanted + 1))
        case $_nsfs in *" $ESCAPED/$_file "*) _found=$((_found + 1)) ;; esac
    done
    if [ "$_found" = 0 ]; then
        PINNED=none
    elif [ "$_found" = "$_wanted" ]; then
        PINNED=all
    else
        PINNED=some
    fi
}

# pin_namespaces: fresh namespaces, bound to their files in the namespace dir, a private
# bind mount of itself (an nsfs mount must not be on a shared mount). Twin of the
# applier's Namespaces.create.
pin_namespaces() {
    refuse_non_dir "$CFS_NS"
    [ -d "$CFS_NS" ] || "$T_mkdir" -m 0700 -- "$CFS_NS"
    "$T_umount" "$CFS_NS" 2>/dev/null || true  # (left by a set-up cut short: made again)
    "$T_mount" --bind "$CFS_NS" "$CFS_NS" || die "cannot bind $CFS_NS onto itself"
    "$T_mount" --make-private "$CFS_NS" || die "cannot make $CFS_NS private"
    # The kernel refuses (EINVAL) to bind a mount namespace that does not look newer than
    # ours; on recent kernels the ids are not ordered across CPUs, so a fresh namespace
    # made on another CPU can be refused: try again, on each CPU we may run on in turn
    # (taskset, when there is one).
    allowed_cpus
    # shellcheck disable=SC2086
    set -- $CFS_CPUS $CFS_CPUS
    _tries=$#
    while :; do
        for _file in $CFS_PINNED_FILES; do
            refuse_link "$CFS_NS/$_file"
            : >> "$CFS_NS/$_file"
        done
        if [ "$1" = any ]; then
            pin_fresh 2> "$CFS_MOUNT_ERRORS" && break
        else
            pin_fresh "$T_taskset" -c "$1" 2> "$CFS_MOUNT_ERRORS" && break
        fi
        unpin_files
        [ "$#" -gt 1 ] || { mount_messages || true; die "cannot pin the namespaces in $CFS_NS (tried $_tries times)"; }
        shift
    done
    "$T_rm" -f -- "$CFS_MOUNT_ERRORS"
}

# allowed_cpus: CFS_CPUS, the CPUs this process may run on (Cpus_allowed_list), at most
# 16 of them; "any any any any" without taskset.
allowed_cpus() {
    CFS_CPUS='any any any any'
    find_tool taskset || return 0
    T_taskset=$TOOL
    _list=
    while read -r _key _value; do
        [ "$_key" != Cpus_allowed_list: ] || _list=$_value
    done < /proc/self/status
    _cpus=
    _taken=0
    _saved_ifs=$IFS
    IFS=,
    for _range in $_list; do
        _cpu=${_range%-*}
        while [ "$_cpu" -le "${_range#*-}" ] && [ "$_taken" -lt 16 ]; do
            _cpus="$_cpus $_cpu"
            _cpu=$((_cpu + 1))
            _taken=$((_taken + 1))
        done
    done
    IFS=$_saved_ifs
    [ -z "$_cpus" ] || CFS_CPUS=$_cpus
}

# unpin_files: unbind every namespace file (what is mounted in a namespace goes with
# its last reference).
unpin_files() {
    for _file in $CFS_PINNED_FILES; do
        # (until nothing is left mounted there: umount fails on a path that is no mount point)
        while "$T_umount" --lazy "$CFS_NS/$_file" 2>/dev/null; do :; done
    done
}

# unpin_namespaces: unbind the namespace files and the namespace dir.
unpin_namespaces() {
    [ -d "$CFS_NS" ] || return 0
    unpin_files
    while "$T_umount" --lazy "$CFS_NS" 2>/dev/null; do :; done
}

# recorded_digest: RECORDED, the digest in the record (empty when there is none). The
# record's first line is CFS_RECORD_DIGEST_PREFIX, the digest and a quote; a record from
# an earlier version was indented JSON with a line " "digest": "...",".
recorded_digest() {
    RECORDED=
    [ -f "$CFS_RECORD" ] || return 0
    while IFS= read -r _line || [ -n "$_line" ]; do
        case $_line in
            "$CFS_RECORD_DIGEST_PREFIX"*) _line=${_line#"$CFS_RECORD_DIGEST_PREFIX"} ;;
            ' "digest": "'*) _line=${_line#' "digest": "'} ;;
            *) continue ;;
        esac
        RECORDED=${_line%%'"'*}
        return 0
    done < "$CFS_RECORD"
}

# write_record complete|incomplete: the plan this container was set up from (the applier
# writes the same text), 0600, replaced whole. Before a set-up from scratch its digest is
# marked incomplete: a run cut short leaves a record that names every path (down and the
# modules find them) but matches no spec, so the next up rebuilds.
write_record() {
    refuse_link "$CFS_RECORD.tmp"
    if [ "$1" = complete ]; then
        (umask 077 && printf '%s' "$CFS_RECORD_TEXT" > "$CFS_RECORD.tmp")
    else
        (umask 077 && printf '%s%s%s' "$CFS_RECORD_DIGEST_PREFIX" "$CFS_RECORD_INCOMPLETE" \
            "${CFS_RECORD_TEXT#"$CFS_RECORD_DIGEST_PREFIX"}" > "$CFS_RECORD.tmp")
    fi
    "$T_mv" -f -- "$CFS_RECORD.tmp" "$CFS_RECORD"
}

# install_script: this script as the container's runtime (the modules run it), 0700,
# replaced whole; not touched when it is the same text already.
install_script() {
    if [ -f "$CFS_INSTALLED" ] && [ ! -L "$CFS_INSTALLED" ] &&
        [ "$("$T_cat" -- "$CFS_SELF")" = "$("$T_cat" -- "$CFS_INSTALLED")" ]; then
        return 0
    fi
    refuse_link "$CFS_INSTALLED.tmp"
    "$T_cp" -- "$CFS_SELF" "$CFS_INSTALLED.tmp"
    "$T_chmod" 0700 -- "$CFS_INSTALLED.tmp"
    "$T_mv" -f -- "$CFS_INSTALLED.tmp" "$CFS_INSTALLED"
}

# bring_up: (the lock held) the container filesystem in pinned namespaces, unless it is
# up from this spec already. Another spec: rebuilt from scratch, unless its process runs.
bring_up() {
    pinned_state
    if [ "$PINNED" = all ]; then
        recorded_digest
        if [ "$RECORDED" = "$CFS_DIGEST" ]; then
            install_script
            UP_ALREADY=yes
            return 0
        fi
        live_pid "$CFS_PID_FILE"
        [ -z "$LIVE" ] || die "container $CFS_NAME runs (pid $LIVE) set up from another spec: stop it first"
        say "set up from another spec ($RECORDED): building it again"
    fi
    UP_ALREADY=
    unpin_namespaces
    refuse_planted_run_files
    prepare_host
    _recorded_before=
    [ ! -f "$CFS_RECORD" ] || _recorded_before=yes
    write_record incomplete
    pin_namespaces
    if ! in_pinned "$CFS_SHELL" ${CFS_APPLET:+"$CFS_APPLET"} "$CFS_SELF" __build; then
        unpin_namespaces
        # a first set-up leaves no record; a rebuild leaves the incomplete one (up rebuilds)
        [ -n "$_recorded_before" ] || "$T_rm" -f -- "$CFS_RECORD"
        "$T_rm" -f -- "$CFS_FSTAB" "$CFS_MOUNT_ERRORS"
        die "cannot set up the container filesystem (see above); its namespaces are unpinned"
    fi
    "$T_rm" -f -- "$CFS_FSTAB" "$CFS_MOUNT_ERRORS"
    write_record complete
    install_script
}

# wait_lock: the container's lock on fd 3, waiting up to CFS_LOCK_TIMEOUT seconds.
wait_lock() {
    refuse_link "$CFS_LOCK"
    [ ! -e "$CFS_LOCK" ] || [ -f "$CFS_LOCK" ] || die "the lock $CFS_LOCK is not a regular file"
    exec 3>>"$CFS_LOCK"
    "$T_flock" -w "$CFS_LOCK_TIMEOUT" 3 ||
        die "container $CFS_NAME is busy: its lock $CFS_LOCK is held (waited ${CFS_LOCK_TIMEOUT}s)"
}

# check_root: stop unless this runs as root.
check_root() {
    _uid=
    while read -r _key _value _rest; do
        if [ "$_key" = "Uid:" ]; then
            _uid=$_value
            break
        fi
    done < /proc/self/status
    [ "$_uid" = 0 ] || die "must run as root (uid 0, not $_uid): it creates namespaces and mounts filesystems"
}

# set_up_host: what every command that sets up needs: root, the tools, the host dirs, the
# canonical paths, the lock.
set_up_host() {
    preflight
    host_dirs
    canonical_paths
    find_shell
    wait_lock
}

cmd_up() {
    set_up_host
    bring_up
    if [ -n "$UP_ALREADY" ]; then
        say "up already"
    else
        say "up: namespaces pinned in $CFS_NS"
    fi
}

cmd_down() {
    stop_options down "$@"
    check_root
    find_tools
    canonical_kept
    stop_container
    if [ ! -d "$CFS_RUN" ] && [ ! -d "$CFS_STATE" ]; then
        say "down already"
        return 0
    fi
    # (the lock lies beside the run dir: its base may be gone after a reboot)
    [ ! -d "${CFS_LOCK%/*}" ] || wait_lock
    unpin_namespaces
    nothing_mounted_under "$CFS_RUN"
    "$T_rm" -rf -- "$CFS_RUN" "$CFS_STATE"
    [ -z "$CFS_IMAGE_REF" ] || "$T_rm" -f -- "$CFS_IMAGE_REF"
    say "down"
}

# nothing_mounted_under DIR: stop unless no mount of this namespace lies under DIR (what
# `rm -rf` would go through).
nothing_mounted_under() {
    fstab_escape "$1"
    while read -r _id _parent _dev _root _point _rest; do
        case $_point in
            "$ESCAPED" | "$ESCAPED"/*) die "$_point is still mounted; not removing $1" ;;
        esac
    done < /proc/self/mountinfo
}
