# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# Devices: copied from a template made once (build_dev_template)
# ---------------------------------------------------------------------------

# populate_dev FRESH: copy the nodes and links into the container's /dev (-f: a /dev that is
# the image's own directory may hold entries of the same names; ours replace them, as
# runc's). FRESH=yes: /dev is a tmpfs of this run, so its null is the one copied here.
populate_dev() {
    target_in_root /dev
    [ -d "$RESOLVED" ] || die "/dev is not a directory in the container"
    refuse_non_dir "$CFS_DEV_TEMPLATE"
    [ -d "$CFS_DEV_TEMPLATE" ] || build_dev_template
    "$T_cp" -a -f "$CFS_DEV_TEMPLATE/dev/"* "$RESOLVED/"
    [ "$1" != yes ] || CFS_DEV_FRESH=$RESOLVED/null
}
