# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# Mounts: lines collected into one fstab, mounted by one `mount --all` per batch
# ---------------------------------------------------------------------------

# fstab_escape WORD: set ESCAPED to WORD as one fstab field: space, tab, newline, CR and
# backslash in the octal form mount(8) reads back (\040 \011 \012 \015 \134). Any other
# control character has no such form: the run stops (paths come from the image too).
fstab_escape() {
    case $1 in
        *[[:cntrl:][:space:]\\]*) ;;
        *) ESCAPED=$1; return 0 ;;
    esac
    ESCAPED=
    _word=$1
    _cr=$(printf '\r')  # (a subshell, only for a word that needs escaping)
    while [ -n "$_word" ]; do
        _tail=${_word#?}
        _char=${_word%"$_tail"}
        case $_char in
            ' ') ESCAPED="$ESCAPED\\040" ;;
            '	') ESCAPED="$ESCAPED\\011" ;;
            '
') ESCAPED="$ESCAPED\\012" ;;
            "$_cr") ESCAPED="$ESCAPED\\015" ;;
            \\) ESCAPED="$ESCAPED\\134" ;;
            [[:cntrl:]]) die "a mount path or option holds a control character; refusing it: $ESCAPED..." ;;
            *) ESCAPED=$ESCAPED$_char ;;
        esac
        _word=$_tail
    done
}

# fstab_line SOURCE TARGET FSTYPE OPTIONS: one line of the batch, every field escaped.
fstab_line() {
    fstab_escape "$1"; _source=$ESCAPED
    fstab_escape "$2"; _target=$ESCAPED
    fstab_escape "$3"; _fstype=$ESCAPED
    fstab_escape "$4"
    printf '%s %s %s %s 0 0\n' "$_source" "$_target" "$_fstype" "$ESCAPED" >> "$CFS_FSTAB"
}

# Twin of the applier's InRoot.make_mount_point (tests/system/test_twins.py).
# make_target CREATE SOURCE: make sure the mount point $RESOLVED exists: a directory, a
# file, or whichever matches the bind source. Sets MKDIR_OPTION for a missing directory.
# Under a filesystem mounted earlier in the same batch (RESOLVED_FRESH) what is there now
# is the directory it will cover: the mount point is always made (mount(8) makes it in
# the fresh filesystem); the renderer gives a file target there a batch of its own.
make_target() {
    MKDIR_OPTION=
    _kind=$1
    if [ "$_kind" = match_source ]; then
        [ -e "$2" ] || die "bind source $2 does not exist"
        if [ -d "$2" ]; then _kind='dir'; else _kind='file'; fi
    fi
    if [ -n "$RESOLVED_FRESH" ]; then
        [ "$_kind" = dir ] || die "mount point ${RESOLVED#"$CFS_ROOT"}: a file on a filesystem not mounted yet"
        MKDIR_OPTION=,X-mount.mkdir
    elif [ -L "$RESOLVED" ]; then
        die "mount point ${RESOLVED#"$CFS_ROOT"} is a symlink"
    elif [ "$_kind" = dir ]; then
        [ -e "$RESOLVED" ] || MKDIR_OPTION=,X-mount.mkdir
        [ ! -e "$RESOLVED" ] || [ -d "$RESOLVED" ] ||
            die "mount point ${RESOLVED#"$CFS_ROOT"} is not a directory, but the source is one"
    elif [ ! -e "$RESOLVED" ]; then
        [ -d "${RESOLVED%/*}" ] || "$T_mkdir" -p -- "${RESOLVED%/*}"
        : >> "$RESOLVED"
    elif [ -d "$RESOLVED" ]; then
        die "mount point ${RESOLVED#"$CFS_ROOT"} is a directory, but the source is a file"
    fi
}

# add_mount FSTYPE SOURCE OPTIONS CREATE: mount SOURCE on $RESOLVED.
add_mount() {
    make_target "$4" "$2"
    fstab_line "$2" "$RESOLVED" "$1" "$3$MKDIR_OPTION"
}

# Twin of the applier's _v1_bind_source (tests/system/test_twins.py).
# cgroup_bind_source DIR PATH: SOURCE, the host directory of this process's cgroup PATH (from
# /proc/self/cgroup) in the v1 hierarchy DIR: PATH relative to the root of the mount on
# /sys/fs/cgroup/DIR (mountinfo's field 4), as runc takes it. That root is / on a host; in a
# container without a cgroup namespace the mount holds a subtree, while /proc/self/cgroup
# still names paths from the top. mountinfo is read once for every hierarchy (dash reads a
# file one byte per system call): CFS_CGROUP_MOUNTS, "MOUNT_POINT ROOT" lines in mount
# order, kept until unset.
cgroup_bind_source() {
    if [ -z "${CFS_CGROUP_MOUNTS+read}" ]; then
        CFS_CGROUP_MOUNTS=
        while read -r _cg_id _cg_parent _cg_dev _cg_mount_root _cg_point _cg_rest; do
            case $_cg_point in
                /sys/fs/cgroup/*) CFS_CGROUP_MOUNTS="$CFS_CGROUP_MOUNTS$_cg_point $_cg_mount_root
" ;;
            esac
        done < /proc/self/mountinfo
    fi
    # the last mount on the hierarchy's directory is the one seen there
    _cg_root=
    set -f
    _saved_ifs=$IFS
    IFS='
'
    for _cg_line in $CFS_CGROUP_MOUNTS; do
        [ "${_cg_line%% *}" != "/sys/fs/cgroup/$1" ] || _cg_root=${_cg_line#* }
    done
    IFS=$_saved_ifs
    set +f
    _cg_root=${_cg_root%/}
    case $2 in
        "$_cg_root") SOURCE="/sys/fs/cgroup/$1" ;;
        "$_cg_root"/*) SOURCE="/sys/fs/cgroup/$1${2#"$_cg_root"}" ;;
        *) SOURCE="/sys/fs/cgroup/$1$2" ;;
    esac
}

# add_cgroup OPTIONS CGROUPNS V1_TMPFS_OPTIONS V1_REMOUNT V1_BIND_OPTIONS: /sys/fs/cgroup as the host has
# it: one cgroup2 mount on a unified host; else a tmpfs with one mount per v1 hierarchy
# (fresh with a cgroup namespace, else a bind of this process's cgroup), the tmpfs
# remounted with V1_REMOUNT afterwards (read-only), unless that is empty.
add_cgroup() {
    make_target dir cgroup
    if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
        fstab_line cgroup2 "$RESOLVED" cgroup2 "$1$MKDIR_OPTION"
        return 0
    fi
    _cgroot=$RESOLVED
    fstab_line tmpfs "$_cgroot" tmpfs "$3$MKDIR_OPTION"
    unset CFS_CGROUP_MOUNTS  # (cgroup_bind_source reads mountinfo again, once)
    while IFS=: read -r _id _controllers _path; do
        if [ "$_id" = 0 ] || [ -z "$_controllers" ]; then
            continue
        fi
        _dir=${_controllers#name=}
        if [ "$2" = 1 ]; then
            fstab_line cgroup "$_cgroot/$_dir" cgroup "$1,$_controllers,X-mount.mkdir"
        else
            cgroup_bind_source "$_dir" "$_path"
            fstab_line "$SOURCE" "$_cgroot/$_dir" none "$5,X-mount.mkdir"
        fi
    done < /proc/self/cgroup
    # read-only once the hierarchies are in (runc's finalizeRootfs), in the same batch;
    # source none, or mount --all skips the line as "already mounted"
    if [ -n "$4" ]; then
        fstab_line none "$_cgroot" tmpfs "$4"
    fi
}

# add_readonly OPTIONS KEEP_LIVE_FLAGS [MOUNT_POINT]: bind $RESOLVED onto itself and make
# the top read-only (runc readonlyPaths), keeping the nosuid, nodev and noexec of the mount
# it lies on, as runc does: a bind remount sets exactly the flags it is given, so
# /sys/kernel would otherwise lose them. OPTIONS hold them when the plan knows them (the
# path lies on a fresh filesystem of this spec); KEEP_LIVE_FLAGS=yes: read them from
# mountinfo. MOUNT_POINT (yes/no) when the plan knows whether the path is one.
add_readonly() {
    [ -e "$RESOLVED" ] || return 0
    INHERITED=
    [ "$2" != yes ] || inherited_flags "$RESOLVED"
    place_line "${3:-}" "$RESOLVED" "$RESOLVED" none "$1$INHERITED"
}

# Twin of the applier's lies_on_flags (tests/system/test_twins.py).
# inherited_flags PATH: set INHERITED to ",nosuid,nodev,noexec", those of them set on the
# mount PATH lies on: the last mount in /proc/self/mountinfo (mount order) whose mount point
# holds PATH (compared in mountinfo's escaped form).
inherited_flags() {
    INHERITED=
    _flags=
    current_mounts
    fstab_escape "$1"  # mountinfo writes paths escaped the way fstab does
    set -f
    _saved_ifs=$IFS
    IFS='
'
    for _line in $CFS_MOUNTS; do
        _point=${_line%% *}
        case $_point in
            /) _flags=${_line#* } ;;
            *) case $ESCAPED/ in "$_point"/*) _flags=${_line#* } ;; esac ;;
        esac
    done
    IFS=$_saved_ifs
    set +f
    for _flag in nosuid nodev noexec; do
        case ,$_flags, in
            *,$_flag,*) INHERITED=$INHERITED,$_flag ;;
        esac
    done
}

# add_mask DIR_OPTIONS FILE_OPTIONS [MOUNT_POINT]: hide $RESOLVED: the container's
# /dev/null over a file, an empty read-only tmpfs over a directory (runc maskPaths). A path
# that does not exist is skipped. MOUNT_POINT (yes/no) when the plan knows whether it is one.
add_mask() {
    if [ -d "$RESOLVED" ]; then
        place_line "${3:-}" tmpfs "$RESOLVED" tmpfs "$1"
    elif [ -e "$RESOLVED" ]; then
        [ -n "$CFS_NULL" ] || container_null
        place_line "${3:-}" "$CFS_NULL" "$RESOLVED" none "$2"
    fi
}

# place_line MOUNT_POINT SOURCE TARGET FSTYPE OPTIONS: mount now when TARGET is a mount
# point already (yes), else an fstab line (no); empty: look it up.
place_line() {
    case $1 in
        yes) mount_now "$2" "$3" "$4" "$5" ;;
        no) fstab_line "$2" "$3" "$4" "$5" ;;
        *) shift; fstab_line_or_mount "$@" ;;
    esac
}

# mount_now SOURCE TARGET FSTYPE OPTIONS: after the lines before it, mount at once.
mount_now() {
    mount_batch
    "$T_mount" --no-canonicalize -t "$3" -o "$4" -- "$1" "$2" || mount_failed "cannot mount $1 on $2"
}

# fstab_line_or_mount SOURCE TARGET FSTYPE OPTIONS: an fstab line, unless TARGET is a mount
# point already: `mount --all` takes such a line as "already mounted" and skips it (a
# read-only /dev/shm, a mask over a tmpfs), so mount it now, after the lines before it.
fstab_line_or_mount() {
    current_mounts
    fstab_escape "$2"  # mountinfo writes paths escaped the way fstab does
    case $CFS_MOUNTS in
        "$ESCAPED "* | *"
$ESCAPED "*)
            mount_now "$@"
            return 0
            ;;
    esac
    fstab_line "$@"
}

# current_mounts: CFS_MOUNTS, one "MOUNT_POINT OPTIONS" line per mount in mount order, read
# again only after mounts changed: dash reads a file one byte per system call.
current_mounts() {
    [ -z "$CFS_MOUNTS" ] || return 0
    while read -r _id _parent _dev _root _point _opts _rest; do
        CFS_MOUNTS="$CFS_MOUNTS$_point $_opts
"
    done < /proc/self/mountinfo
}

# container_null: set CFS_NULL to the container's own /dev/null, as runc binds it (not the
# host's), after checking it is the real char 1:3 and no symlink (CVE-2025-31133).
container_null() {
    _masked=$RESOLVED
    target_in_root /dev/null nofollow
    CFS_NULL=$RESOLVED
    RESOLVED=$_masked
    # A node this run copied into a fresh /dev is the null device by construction;
    # anything else is checked (CVE-2025-31133: a /dev/null swapped for another node).
    [ "$CFS_DEV_FRESH" = "$CFS_NULL" ] && return 0
    if [ ! -c "$CFS_NULL" ] || [ "$("$T_stat" -c '%t:%T' -- "$CFS_NULL")" != 1:3 ]; then
        die "/dev/null in the container is not the null device (char 1:3); refusing to mask with it"
    fi
}

# mount_batch: mount every line collected so far, in order, with one program start.
# mount(8) skips a line it cannot parse with "parse error at line N -- ignored" and exits
# 0: its messages go to a file, are shown, and such a line stops the run.
mount_batch() {
    CFS_MOUNTS=
    if [ -s "$CFS_FSTAB" ]; then
        _mounted=yes
        LC_ALL=C "$T_mount" --all --fstab "$CFS_FSTAB" 2> "$CFS_MOUNT_ERRORS" || _mounted=no
        mount_messages || _mounted=no
        [ "$_mounted" = yes ] || mount_failed "a mount failed (see above)"
    fi
    : > "$CFS_FSTAB"
}

# mount_failed MESSAGE: stop after a failed mount, with the filesystem this kernel lacks
# when that is the cause (mount(8) said "unknown filesystem type" above), else MESSAGE.
mount_failed() {
    check_filesystems
    die "$1"
}

# mount_messages: print what mount(8) said; false if it ignored a line.
mount_messages() {
    _parsed=yes
    while IFS= read -r _line || [ -n "$_line" ]; do
        printf '%s\n' "$_line" >&2
        case $_line in *"parse error"*) _parsed=no ;; esac
    done < "$CFS_MOUNT_ERRORS"
    [ "$_parsed" = yes ]
}
