# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# Image layers: verified and unpacked into the shared store, once
# ---------------------------------------------------------------------------

# blob SOURCE FORMAT BLOB: the bytes of a layer blob on stdout: from an image directory,
# from inside an archive, or the rootfs tarball itself.
blob() {
    if [ "$2" = tarball ]; then
        "$T_cat" -- "$1"
    elif [ -d "$1" ]; then
        "$T_cat" -- "$1/$3"
    else
        "$T_tar" -xOf "$1" -- "$3"
    fi
}

# overlay_whiteouts DIR: OCI whiteouts become what overlayfs reads: .wh.NAME a 0:0
# character device NAME, .wh..wh..opq the trusted.overlay.opaque xattr on its directory.
# A name holding a newline is refused: `find | read` would split it, and the part after
# the newline is a path of the caller's choosing (an absolute host path). A whiteout that
# names nothing, . or .. is refused too. On a bad layer: says why, returns 1.
overlay_whiteouts() {
    _nl='
'
    _bad=$("$T_find" "$1" -name "*$_nl*" -print) || return 1
    if [ -n "$_bad" ]; then
        say "error: a name in the layer holds a newline; refusing the layer"
        return 1
    fi
    "$T_find" "$1" -name '.wh.*' -print -prune | while IFS= read -r _wh; do
        _dir=${_wh%/*}
        _name=${_wh##*/}
        case $_name in
            .wh.|.wh..|.wh...)
                say "error: invalid whiteout ${_wh#"$1"/}: it names nothing, . or .."
                exit 1
                ;;
        esac
        if [ "$_name" = .wh..wh..opq ]; then
            "$T_rm" -f -- "$_wh" || exit 1
            "$T_setfattr" -n trusted.overlay.opaque -v y -- "$_dir" || exit 1
            continue
        fi
        # other .wh..wh.* entries are aufs bookkeeping, not content
        "$T_rm" -rf -- "$_wh" || exit 1
        case $_name in .wh..wh.*) continue ;; esac
        # A whiteout hides NAME in lower layers only: a NAME this layer wrote stays (a
        # directory becomes opaque), as the image store does.
        _victim=$_dir/${_name#.wh.}
        if [ -d "$_victim" ] && [ ! -L "$_victim" ]; then
            "$T_setfattr" -n trusted.overlay.opaque -v y -- "$_victim" || exit 1
        elif [ ! -e "$_victim" ] && [ ! -L "$_victim" ]; then
            "$T_mknod" -m 000 -- "$_victim" c 0 0 || exit 1
        fi
    done
}

# unpack_layer SOURCE FORMAT BLOB DIGEST DIFF_ID COMPRESSION DEST METADATA MAX_BYTES [SIZE]:
# verify a layer (the blob's digest, then the diff_id of its content) and unpack it into
# the shared store, once: a layer dir with its metadata was verified by an earlier run (or
# by the image module, which keeps the same store). Nothing half-written stays: a
# temporary dir is renamed into place. Format docker: the blob (SIZE bytes) is first
# downloaded from the registry of the last registry_source into a temporary file, checked,
# and read from there. Its content is read at most MAX_BYTES far (the spec's budget, see
# _image.budget.layer_byte_limit): a longer one cannot match its diff_id, so a
# decompression bomb is refused before anything is written.
unpack_layer() {
    if [ -d "$7" ] && [ -f "$7.json" ]; then
        return 0
    fi
    # The store's lock (the image module takes it too), held on fd 6 until the end.
    refuse_link "$CFS_STORE_LOCK"
    exec 6>>"$CFS_STORE_LOCK"
    "$T_flock" 6
    if [ -d "$7" ] && [ -f "$7.json" ]; then
        exec 6>&-
        return 0
    fi
    say "verifying and unpacking layer $5"
    CFS_BLOB_TEMP=
    if [ "$2" = docker ]; then
        CFS_BLOB_TEMP=$CFS_LAYER_TEMP-${7##*/}-$$.blob
        registry_blob "$4" "${10}" "$CFS_BLOB_TEMP"
        set -- "$CFS_BLOB_TEMP" tarball '' "$4" "$5" "$6" "$7" "$8" "$9"
    fi
    _sum=$(blob "$1" "$2" "$3" | "$T_sha256sum")
    [ "sha256:${_sum%% *}" = "$4" ] ||
        layer_fail "layer ${3:-$1} of $1: digest sha256:${_sum%% *}, expected $4 (the image changed since this script was rendered?)"
    _sum=$(blob "$1" "$2" "$3" | decompress "$6" | "$T_head" -c "$9" | "$T_sha256sum")
    if [ "sha256:${_sum%% *}" != "$5" ]; then
        _size=$(blob "$1" "$2" "$3" | decompress "$6" | "$T_head" -c "$(($9 + 1))" | "$T_wc" -c)
        [ "$_size" -le "$9" ] ||
            layer_fail "layer $4 of $1 unpacks to more than $9 bytes, the budget of a layer (raise $CFS_LAYER_BUDGET_FIELDS)"
        layer_fail "layer ${3:-$1} of $1: uncompressed content sha256:${_sum%% *}, expected diff_id $5"
    fi
    # the image store removes such leftovers of an interrupted run (this container's
    # name for them and the pid: unique among the runs sharing the store)
    _tmp=$CFS_LAYER_TEMP-${7##*/}-$$
    "$T_rm" -rf -- "$_tmp"
    "$T_mkdir" -m 0755 -- "$_tmp"
    if ! blob "$1" "$2" "$3" | decompress "$6" | "$T_head" -c "$9" | "$T_tar" -x -C "$_tmp" --numeric-owner \
        --same-owner --same-permissions --xattrs --xattrs-include='*' \
        --xattrs-exclude='trusted.overlay.*' --xattrs-exclude='user.overlay.*'; then
        "$T_rm" -rf -- "$_tmp"
        layer_fail "cannot unpack layer $5"
    fi
    if ! overlay_whiteouts "$_tmp"; then
        "$T_rm" -rf -- "$_tmp"
        layer_fail "cannot unpack layer $5"
    fi
    # The image store's metadata, as JSON the renderer wrote (_layout's schema), with the
    # time of this unpack in place of the mark in its "created" (the first one in it).
    _mark=$CFS_CREATED_MARK
    _created=$("$T_date" -u +%Y-%m-%dT%H:%M:%SZ) || die "cannot read the clock"
    printf '%s%s%s\n' "${8%%"$_mark"*}" "$_created" "${8#*"$_mark"}" > "$_tmp.json"
    # a dir without metadata is an interrupted unpack: replace it (mv would move into it)
    if [ -e "$7" ] || [ -L "$7" ]; then
        "$T_rm" -rf -- "$7"
    fi
    "$T_mv" -- "$_tmp" "$7"
    "$T_mv" -- "$_tmp.json" "$7.json"
    [ -z "$CFS_BLOB_TEMP" ] || "$T_rm" -f -- "$CFS_BLOB_TEMP"
    exec 6>&-
}

# layer_fail MESSAGE: a downloaded blob goes too, then stop with MESSAGE.
layer_fail() {
    [ -z "$CFS_BLOB_TEMP" ] || "$T_rm" -f -- "$CFS_BLOB_TEMP"
    die "$1"
}
