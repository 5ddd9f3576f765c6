# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# On the host: files and directories the script writes
# ---------------------------------------------------------------------------

# copy_text SOURCE DEST: copy a small text file with shell builtins only.
copy_text() {
    [ -r "$1" ] || die "cannot read $1"
    refuse_link "$2"
    while IFS= read -r _line || [ -n "$_line" ]; do
        printf '%s\n' "$_line"
    done < "$1" > "$2"
}

# write_text TEXT DEST: write a generated file (in place: a running bind of it sees it).
write_text() {
    refuse_link "$2"
    printf '%s' "$1" > "$2"
}

# refuse_link PATH: a file the script writes is never reached through a symlink.
refuse_link() {
    [ ! -L "$1" ] || die "$1 is a symlink; refusing to write through it"
}

# refuse_non_dir PATH: stop if PATH is a symlink or exists as something else than a dir.
refuse_non_dir() {
    if [ -L "$1" ]; then
        die "host directory $1 is a symlink; refusing it"
    elif [ -e "$1" ] && [ ! -d "$1" ]; then
        die "host directory $1 exists and is not a directory; refusing it"
    fi
}

# host_dir_ok PATH UID:MODE:TYPE: stop unless PATH is a directory of root's that only
# root may write to.
host_dir_ok() {
    _owner=${2%%:*}
    _mode=${2#*:}
    _type=${_mode#*:}
    _mode=${_mode%%:*}
    [ "$_type" = directory ] || die "host directory $1 is a $_type; refusing it"
    [ "$_owner" = 0 ] || die "host directory $1 belongs to uid $_owner, not root; refusing it"
    [ $((0$_mode & 022)) = 0 ] || die "host directory $1 is writable by group or others (mode $_mode); refusing it"
}
