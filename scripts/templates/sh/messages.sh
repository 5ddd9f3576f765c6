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
