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

# What this run has unpacked of the image so far, against its budget (only layers unpacked
# now count, as in the image store), and the layers it added to the store (their names).
CFS_IMAGE_BYTES_READ=0
CFS_IMAGE_ENTRIES_READ=0
CFS_ADDED_LAYERS=
CFS_UNPACK_DIR=

# layer_limits LAYER_BYTES FIELD LAYER_ENTRIES FIELD DEPTH FIELD BYTES FIELD ENTRIES FIELD:
# the budget of the layers that follow (_image.budget.script_limits: a layer limit left
# unset is the image's), each limit with the spec field that raises it.
layer_limits() {
    CFS_LAYER_MAX_BYTES=$1 CFS_LAYER_BYTES_FIELD=$2
    CFS_LAYER_MAX_ENTRIES=$3 CFS_LAYER_ENTRIES_FIELD=$4
    CFS_MAX_DEPTH=$5 CFS_DEPTH_FIELD=$6
    CFS_IMAGE_MAX_BYTES=$7 CFS_IMAGE_BYTES_FIELD=$8
    CFS_IMAGE_MAX_ENTRIES=$9 CFS_IMAGE_ENTRIES_FIELD=${10}
}

# unpack_layer SOURCE FORMAT BLOB DIGEST DIFF_ID COMPRESSION DEST METADATA [SIZE]: verify a
# layer (the blob's digest, the diff_id of its content, the budget of layer_limits) and
# unpack it into the shared store, once: a layer dir with its metadata was verified by an
# earlier run (or by the image module, which keeps the same store). The blob is read once
# (read_layer): what is checked is what is unpacked. Nothing half-written stays: a
# temporary dir is renamed into place once every check passed. Format docker: the blob
# (SIZE bytes) is first downloaded from the registry of the last registry_source into a
# temporary file, checked, and read from there.
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
        registry_blob "$4" "$9" "$CFS_BLOB_TEMP"
        set -- "$CFS_BLOB_TEMP" tarball '' "$4" "$5" "$6" "$7" "$8"
    fi
    # the image store removes such leftovers of an interrupted run (this container's
    # name for them and the pid: unique among the runs sharing the store)
    CFS_UNPACK_DIR=$CFS_LAYER_TEMP-${7##*/}-$$
    remove_layer_temp
    "$T_mkdir" -m 0755 -- "$CFS_UNPACK_DIR"
    layer_budget_now
    read_layer "$1" "$2" "$3" "$6" "$CFS_UNPACK_DIR"
    check_layer "layer $4${3:+ ($3)} of $1" "$4" "$5"
    if ! overlay_whiteouts "$CFS_UNPACK_DIR"; then
        layer_fail "cannot unpack layer $5"
    fi
    # The image store's metadata, as JSON the renderer wrote (_layout's schema), with the
    # time of this unpack in place of the mark in its "created" (the first one in it).
    _mark=$CFS_CREATED_MARK
    _created=$("$T_date" -u +%Y-%m-%dT%H:%M:%SZ) || die "cannot read the clock"
    printf '%s%s%s\n' "${8%%"$_mark"*}" "$_created" "${8#*"$_mark"}" > "$CFS_UNPACK_DIR.json"
    # a dir without metadata is an interrupted unpack: replace it (mv would move into it)
    if [ -e "$7" ] || [ -L "$7" ]; then
        "$T_rm" -rf -- "$7"
    fi
    "$T_mv" -- "$CFS_UNPACK_DIR" "$7"
    "$T_mv" -- "$CFS_UNPACK_DIR.json" "$7.json"
    CFS_LAYERS_DIR=${7%/*}
    CFS_ADDED_LAYERS="$CFS_ADDED_LAYERS ${7##*/}"
    CFS_IMAGE_BYTES_READ=$((CFS_IMAGE_BYTES_READ + CFS_LAYER_LENGTH))
    CFS_IMAGE_ENTRIES_READ=$((CFS_IMAGE_ENTRIES_READ + CFS_LAYER_ENTRIES))
    remove_layer_temp
    [ -z "$CFS_BLOB_TEMP" ] || "$T_rm" -f -- "$CFS_BLOB_TEMP"
    exec 6>&-
}

# layer_budget_now: what the next layer may unpack: its own limit, or what is left of the
# image's when that is less (CFS_MAX_BYTES, CFS_MAX_ENTRIES), and, for each, what to say
# when it is exceeded (CFS_BYTES_OVER, CFS_ENTRIES_OVER) and the field that raises it.
layer_budget_now() {
    CFS_MAX_BYTES=$CFS_LAYER_MAX_BYTES
    CFS_BYTES_OVER="the layer unpacks more than $CFS_LAYER_MAX_BYTES bytes"
    CFS_BYTES_FIELD=$CFS_LAYER_BYTES_FIELD
    if [ $((CFS_IMAGE_MAX_BYTES - CFS_IMAGE_BYTES_READ)) -lt "$CFS_MAX_BYTES" ]; then
        CFS_MAX_BYTES=$((CFS_IMAGE_MAX_BYTES - CFS_IMAGE_BYTES_READ))
        CFS_BYTES_OVER="the image unpacks more than $CFS_IMAGE_MAX_BYTES bytes"
        CFS_BYTES_FIELD=$CFS_IMAGE_BYTES_FIELD
    fi
    CFS_MAX_ENTRIES=$CFS_LAYER_MAX_ENTRIES
    CFS_ENTRIES_OVER="the layer has more than $CFS_LAYER_MAX_ENTRIES entries"
    CFS_ENTRIES_FIELD=$CFS_LAYER_ENTRIES_FIELD
    if [ $((CFS_IMAGE_MAX_ENTRIES - CFS_IMAGE_ENTRIES_READ)) -lt "$CFS_MAX_ENTRIES" ]; then
        CFS_MAX_ENTRIES=$((CFS_IMAGE_MAX_ENTRIES - CFS_IMAGE_ENTRIES_READ))
        CFS_ENTRIES_OVER="the image has more than $CFS_IMAGE_MAX_ENTRIES entries"
        CFS_ENTRIES_FIELD=$CFS_IMAGE_ENTRIES_FIELD
    fi
}

# read_layer SOURCE FORMAT BLOB COMPRESSION TMP: read the layer's blob once and, from that
# one stream, write: TMP.blob-sha, its sha256; TMP.content-sha, the sha256 of its content
# (read at most CFS_MAX_BYTES + 1 far, so a decompression bomb ends there); TMP.length, the
# length of that content; TMP (a dir), the content unpacked by tar; TMP.listed, what the
# count of tar's listing said (list_entries); TMP.tar-says, tar's messages and, if it
# failed, "status N". tee -p keeps feeding the hashes when tar stopped early.
read_layer() {
    {
        {
            {
                blob "$1" "$2" "$3" | "$T_tee" -p /dev/fd/4 | decompress "$4" |
                    "$T_head" -c "$((CFS_MAX_BYTES + 1))" | "$T_tee" -p /dev/fd/5 /dev/fd/7 |
                    "$T_sha256sum" > "$5.content-sha"
            } 4>&1 > /dev/null | "$T_sha256sum" > "$5.blob-sha"
        } 5>&1 > /dev/null | "$T_wc" -c > "$5.length"
    } 7>&1 > /dev/null | untar_listing "$5"
}

# untar_listing TMP: unpack the tar stream on stdin into TMP, its listing counted while tar
# runs (list_entries): when a limit is crossed the count stops, and tar with it (its next
# name written gets SIGPIPE), a few entries later.
untar_listing() {
    {
        LC_ALL=C "$T_tar" -x -v --totals -C "$1" --numeric-owner --same-owner --same-permissions \
            --xattrs --xattrs-include='*' --xattrs-exclude='trusted.overlay.*' \
            --xattrs-exclude='user.overlay.*' 2> "$1.tar-says" ||
            printf 'status %s\n' "$?" >> "$1.tar-says"
    } | list_entries > "$1.listed"
}

# list_entries: read tar's listing (a name per line: GNU tar writes a newline in a name as
# \n) and print "entries N", or "over entries" past CFS_MAX_ENTRIES names, or "over depth N
# NAME" for a name deeper than CFS_MAX_DEPTH components (_image.budget: "", "." not counted).
list_entries() {
    # shellcheck disable=SC2016 # (the $ are awk's)
    "$T_awk" -v max="$CFS_MAX_ENTRIES" -v depth="$CFS_MAX_DEPTH" '
        {
            if (++n > max) { over = "entries"; exit }
            k = split($0, part, "/")
            d = 0
            for (i = 1; i <= k; i++) if (part[i] != "" && part[i] != ".") d++
            if (d > depth) { over = "depth " d " " substr($0, 1, 200); exit }
        }
        END { if (over != "") print "over " over; else print "entries " n + 0 }'
}

# check_layer NAME DIGEST DIFF_ID: stop unless what read_layer found is the layer the image
# names, within its budget, and a tar. Sets CFS_LAYER_LENGTH, CFS_LAYER_ENTRIES.
check_layer() {
    _tmp=$CFS_UNPACK_DIR
    read -r _sum _rest < "$_tmp.blob-sha" || _sum=
    [ "sha256:$_sum" = "$2" ] ||
        layer_fail "$1: digest sha256:$_sum, expected $2 (the image changed since this script was rendered?)"
    read -r CFS_LAYER_LENGTH < "$_tmp.length" || CFS_LAYER_LENGTH=0
    [ "$CFS_LAYER_LENGTH" -le "$CFS_MAX_BYTES" ] || budget_fail "$1" "$CFS_BYTES_FIELD" "$CFS_BYTES_OVER"
    read -r _kind _what _count _name < "$_tmp.listed" || _kind=
    case $_kind/$_what in
        over/entries) budget_fail "$1" "$CFS_ENTRIES_FIELD" "$CFS_ENTRIES_OVER" ;;
        over/depth)
            budget_fail "$1" "$CFS_DEPTH_FIELD" "entry $_name is $_count levels deep, more than $CFS_MAX_DEPTH"
            ;;
        entries/*) CFS_LAYER_ENTRIES=$_what ;;
        *) layer_fail "$1: cannot list its entries" ;;
    esac
    tar_verdict "$1"
    read -r _sum _rest < "$_tmp.content-sha" || _sum=
    [ "sha256:$_sum" = "$3" ] ||
        layer_fail "$1: uncompressed content sha256:$_sum, expected diff_id $3"
}

# tar_verdict NAME: stop if tar failed (with its messages: not a tar, damaged, or an entry it
# refuses, such as a name with ..), or if it read much less than the content: after the
# end-of-archive marker only padding may follow (CFS_MAX_TRAILER bytes), else it is not a
# tar (a gzip of zeros is "end of archive" and padding forever).
tar_verdict() {
    _messages=
    _failed=
    _read=
    while IFS= read -r _line || [ -n "$_line" ]; do
        case $_line in
            'status '*) _failed=${_line#status } ;;
            'Total bytes read: '*) _read=${_line#Total bytes read: }; _read=${_read%% *} ;;
            *) _messages="$_messages
$_line" ;;
        esac
    done < "$CFS_UNPACK_DIR.tar-says"
    [ -z "$_failed" ] || layer_fail "$1: tar cannot unpack it (not a tar, damaged, or refused entries; exit $_failed):$_messages"
    case $_read in
        '' | *[!0-9]*) layer_fail "$1: tar did not say how much it read:$_messages" ;;
    esac
    [ $((CFS_LAYER_LENGTH - _read)) -le "$CFS_MAX_TRAILER" ] ||
        layer_fail "$1: more than $CFS_MAX_TRAILER bytes after the tar end-of-archive marker (at byte $_read): not a tar layer (a stream of zeros?); refusing it"
}

# budget_fail NAME FIELD WHAT: a layer its budget stopped (WHAT, raised by the spec's FIELD):
# like the image store, leave nothing of it nor of the layers this run added before that
# nothing else uses.
budget_fail() {
    undo_added_layers
    layer_fail "$1: $3 (limit ${2##*.}); refusing it as a possible decompression bomb. If the image is trusted, raise $2"
}

# undo_added_layers: remove the layers this run added (CFS_ADDED_LAYERS) unless an image
# record or a reference in the store other than this container's own names them (as
# _image.store's undo; the caller holds the store's lock). grep prints FILE:NAME for each
# name it finds; if it cannot read the store, every layer stays.
undo_added_layers() {
    [ -n "$CFS_ADDED_LAYERS" ] || return 0
    set -f
    set --
    for _layer in $CFS_ADDED_LAYERS; do
        set -- "$@" -e "$_layer"
    done
    _kept=' '
    for _dir in "$CFS_STORE_IMAGES" "$CFS_STORE_REFS" "$CFS_STORE_CONTAINERS"; do
        [ -d "$_dir" ] || continue
        _found=$("$T_grep" -r -H -o -F "$@" -- "$_dir") || [ "$?" = 1 ] || _kept=" $CFS_ADDED_LAYERS "
        _saved_ifs=$IFS
        IFS='
'
        for _line in $_found; do
            [ "${_line%:*}" = "$CFS_OWN_IMAGE_REF" ] || _kept="$_kept${_line##*:} "
        done
        IFS=$_saved_ifs
    done
    for _layer in $CFS_ADDED_LAYERS; do
        case $_kept in *" $_layer "*) continue ;; esac
        "$T_rm" -f -- "$CFS_LAYERS_DIR/$_layer.json"
        "$T_rm" -rf -- "$CFS_LAYERS_DIR/$_layer"
    done
    set +f
    CFS_ADDED_LAYERS=
}

# remove_layer_temp: the temporary dir of the layer being unpacked and its side files.
remove_layer_temp() {
    "$T_rm" -rf -- "$CFS_UNPACK_DIR" "$CFS_UNPACK_DIR.json" "$CFS_UNPACK_DIR.blob-sha" \
        "$CFS_UNPACK_DIR.content-sha" "$CFS_UNPACK_DIR.length" "$CFS_UNPACK_DIR.listed" "$CFS_UNPACK_DIR.tar-says"
}

# layer_fail MESSAGE: the layer's temporary files and a downloaded blob go, then stop with
# MESSAGE.
layer_fail() {
    [ -z "${CFS_UNPACK_DIR:-}" ] || remove_layer_temp
    [ -z "$CFS_BLOB_TEMP" ] || "$T_rm" -f -- "$CFS_BLOB_TEMP"
    die "$1"
}
