# shellcheck shell=dash
# A static part of the generated script: the renderer copies it verbatim, without this
# header, into the script (scripts/templates/container.sh.j2), whose header sets the CFS_*
# values and whose find_tools sets T_<tool>. Checked on its own, those come from elsewhere:
# shellcheck disable=SC2034,SC2154

# ---------------------------------------------------------------------------
# Registry images: layer blobs fetched with curl (or wget) by the digests the plan pinned
# ---------------------------------------------------------------------------
# The plan names every blob by digest and size (resolved when the script was rendered),
# so no manifest is read here: the registry is pinged (GET /v2/), the login it asks for
# is done (anonymous or Basic credentials for a Bearer token from its token endpoint,
# scope repository:REPO:pull; or Basic auth itself), then each blob is downloaded into a
# temporary file of the store and checked (size, sha256) before anything reads it.
#
# Credentials come from the auth file (containers-auth.json / docker config.json) at run
# time and never reach a command line: curl reads its Authorization header from stdin
# (--config -), wget from a 0600 wgetrc (WGETRC) in a 0700 directory of the store. Both
# honour the proxy variables (curl: HTTPS_PROXY/https_proxy, NO_PROXY; wget: https_proxy,
# no_proxy).

# The registry the next blobs come from (registry_source), the tool fetching them and the
# Authorization header its login gave (empty: anonymous).
CFS_REG_REF=
CFS_REG_READY=
CFS_REG_TOOL=
CFS_REG_AUTH=
CFS_REG_TMP=

# The awk program reading the two JSON documents the script meets: the auth file (mode
# auth: the credentials of the first of KEYS, space-separated auth keys from the most
# specific, that the file's "auths" holds: "auth<TAB>BASE64" or "userpass<TAB>USER:PASSWORD")
# and a token endpoint's answer (mode token: its "token", else "access_token"). A small
# recursive-descent parser: only string values are kept, escapes other than \" \\ \/ are
# refused (a credential or token never needs them); malformed JSON prints "error".
# shellcheck disable=SC2016
CFS_JSON_AWK='
function fail() { if (!bad) print "error"; bad = 1; p = n + 1 }
function ws() { while (p <= n && index(" \t\r\n", substr(s, p, 1))) p++ }
function str(    out, c) {
    p++; out = ""
    while (p <= n) {
        c = substr(s, p, 1)
        if (c == "\"") { p++; return out }
        if (c == "\\") {
            p++; c = substr(s, p, 1)
            if (c != "\"" && c != "\\" && c != "/") { fail(); return "" }
        } else if (c == "\n") { fail(); return "" }
        out = out c; p++
    }
    fail(); return ""
}
function value(path, depth,    c, key, k) {
    ws(); c = substr(s, p, 1)
    if (depth > 32) { fail(); return }
    if (c == "{" || c == "[") {
        p++; ws()
        if (substr(s, p, 1) == (c == "{" ? "}" : "]")) { p++; return }
        while (!bad) {
            ws()
            if (c == "{") {
                if (substr(s, p, 1) != "\"") { fail(); return }
                key = str(); ws()
                if (substr(s, p, 1) != ":") { fail(); return }
                p++
                value(path SUBSEP key, depth + 1)
            } else {
                value(path SUBSEP "[]", depth + 1)
            }
            ws(); k = substr(s, p, 1); p++
            if (k == (c == "{" ? "}" : "]")) return
            if (k != ",") { fail(); return }
        }
        return
    }
    if (c == "\"") { strings[path] = str(); return }
    while (p <= n && !index(",}] \t\r\n", substr(s, p, 1))) p++
}
function normal(key) {
    sub(/^[a-z]+:\/\//, "", key); sub(/\/+$/, "", key); sub(/\/v[12]$/, "", key)
    if (index(key, "/")) return tolower(substr(key, 1, index(key, "/") - 1)) substr(key, index(key, "/"))
    return tolower(key)
}
{ s = s $0 "\n" }
END {
    n = length(s); p = 1; bad = 0
    value("", 0); ws()
    if (!bad && p <= n) fail()
    if (bad) exit
    if (mode == "token") {
        if ((SUBSEP "token") in strings) print strings[SUBSEP "token"]
        else if ((SUBSEP "access_token") in strings) print strings[SUBSEP "access_token"]
        exit
    }
    for (path in strings) {
        # SUBSEP "auths" SUBSEP KEY SUBSEP FIELD: four parts, the first empty
        if (split(path, part, SUBSEP) != 4 || part[2] != "auths") continue
        found[normal(part[3]) SUBSEP part[4]] = strings[path]
    }
    count = split(keys, wanted, " ")
    for (i = 1; i <= count; i++) {
        if ((wanted[i] SUBSEP "auth") in found && found[wanted[i] SUBSEP "auth"] != "") {
            print "auth\t" found[wanted[i] SUBSEP "auth"]; exit
        }
        if ((wanted[i] SUBSEP "username") in found && (wanted[i] SUBSEP "password") in found) {
            print "userpass\t" found[wanted[i] SUBSEP "username"] ":" found[wanted[i] SUBSEP "password"]; exit
        }
    }
}'

# registry_source REFERENCE API_HOST REPOSITORY AUTH_KEYS AUTH_FILE CA_CERT TLS_VERIFY:
# where the next blobs come from (the renderer split the reference; AUTH_KEYS: the auth
# file's keys that may hold its credentials, most specific first). A login is kept for
# the blobs of the same reference.
registry_source() {
    if [ "$CFS_REG_REF" != "$1" ]; then
        CFS_REG_READY=
        CFS_REG_AUTH=
    fi
    CFS_REG_REF=$1
    CFS_REG_HOST=$2
    CFS_REG_REPO=$3
    CFS_REG_KEYS=$4
    CFS_REG_AUTH_FILE=$5
    CFS_REG_CA=$6
    CFS_REG_TLS_VERIFY=$7
}

# registry_fail MESSAGE: remove this fetch's temporary files, then stop with MESSAGE.
registry_fail() {
    [ -z "$CFS_REG_TMP" ] || "$T_rm" -rf -- "$CFS_REG_TMP"
    CFS_REG_TMP=
    die "$1"
}

# registry_tool: curl, else wget (a host may have only one of them).
registry_tool() {
    if [ -n "$CFS_REG_TOOL" ]; then
        return 0
    elif find_tool curl; then
        T_curl=$TOOL
        CFS_REG_TOOL=curl
    elif find_tool wget; then
        T_wget=$TOOL
        CFS_REG_TOOL=wget
    else
        die "$CFS_REG_REF: fetching image layers from a registry needs curl or wget"
    fi
}

# registry_get URL OUT [AUTHORIZATION]: GET URL into the file OUT, following redirects
# (http and https only), with that Authorization header value (never on a command line).
# Sets REG_STATUS to the last HTTP status and leaves the response headers in
# $CFS_REG_TMP/headers; returns 1 when no HTTP answer came (REG_ERROR says why).
registry_get() {
    _url=$1
    _out=$2
    _auth=${3-}
    REG_STATUS=
    REG_ERROR=
    : > "$CFS_REG_TMP/headers"
    if [ "$CFS_REG_TOOL" = curl ]; then
        set -- --silent --show-error --globoff --location --proto =http,https --proto-redir =http,https \
            --retry 3 --connect-timeout 30 --dump-header "$CFS_REG_TMP/headers" --output "$_out" \
            --write-out '%{http_code}'
        [ -z "$CFS_REG_CA" ] || set -- "$@" --cacert "$CFS_REG_CA"
        [ "$CFS_REG_TLS_VERIFY" = true ] || set -- "$@" --insecure
        if [ -n "$_auth" ]; then
            # the header on stdin (a curl config line), not in curl's arguments
            REG_STATUS=$(printf 'header = "Authorization: %s"\n' "$_auth" |
                "$T_curl" --config - "$@" --url "$_url" 2>"$CFS_REG_TMP/error") || REG_STATUS=
        else
            REG_STATUS=$("$T_curl" "$@" --url "$_url" 2>"$CFS_REG_TMP/error") || REG_STATUS=
        fi
        case $REG_STATUS in
            [1-9][0-9][0-9]) return 0 ;;
        esac
        REG_ERROR=$("$T_tr" '\n' ' ' < "$CFS_REG_TMP/error")
        return 1
    fi
    set -- --server-response --no-verbose --content-on-error --tries=4 --timeout=60 \
        --retry-on-http-error=429,500,502,503,504 --output-document="$_out"
    [ -z "$CFS_REG_CA" ] || set -- "$@" --ca-certificate="$CFS_REG_CA"
    [ "$CFS_REG_TLS_VERIFY" = true ] || set -- "$@" --no-check-certificate
    # the header in a wgetrc of our own (0600, in a 0700 dir), not in wget's arguments
    (umask 077 && : > "$CFS_REG_TMP/wgetrc")
    [ -z "$_auth" ] || printf 'header = Authorization: %s\n' "$_auth" > "$CFS_REG_TMP/wgetrc"
    _rc=0
    WGETRC=$CFS_REG_TMP/wgetrc "$T_wget" "$@" -- "$_url" 2>"$CFS_REG_TMP/headers" || _rc=$?
    : > "$CFS_REG_TMP/wgetrc"
    REG_STATUS=$("$T_sed" -n 's/^ *HTTP\/[0-9.]* \([1-9][0-9][0-9]\).*/\1/p' "$CFS_REG_TMP/headers" |
        "$T_tail" -n 1)
    # 0: done; 6 (a 401) and 8 (another error status): the server answered, REG_STATUS
    # says what; 4 (network) and 5 (TLS): no answer
    case $_rc in
        0|6|8) [ -z "$REG_STATUS" ] || return 0 ;;
    esac
    REG_STATUS=
    REG_ERROR=$("$T_sed" -n '/^ *HTTP\//!p' "$CFS_REG_TMP/headers" | "$T_tr" '\n' ' ')
    return 1
}

# registry_challenge: the value of the last WWW-Authenticate header received.
registry_challenge() {
    "$T_sed" -n 's/\r$//; s/^ *[Ww][Ww][Ww]-[Aa][Uu][Tt][Hh][Ee][Nn][Tt][Ii][Cc][Aa][Tt][Ee]: *//p' \
        "$CFS_REG_TMP/headers" | "$T_tail" -n 1
}

# registry_credentials: REG_BASIC, the base64 of user:password that the auth file holds
# for this registry (the most specific of CFS_REG_KEYS), or empty (none, no auth file).
registry_credentials() {
    REG_BASIC=
    [ -n "$CFS_REG_AUTH_FILE" ] || return 0
    if [ ! -f "$CFS_REG_AUTH_FILE" ] || [ ! -r "$CFS_REG_AUTH_FILE" ]; then
        registry_fail "$CFS_REG_REF: cannot read the auth file $CFS_REG_AUTH_FILE"
    fi
    _found=$("$T_awk" -v mode=auth -v keys="$CFS_REG_KEYS" "$CFS_JSON_AWK" < "$CFS_REG_AUTH_FILE") ||
        registry_fail "$CFS_REG_REF: cannot read the auth file $CFS_REG_AUTH_FILE"
    case $_found in
        '') return 0 ;;
        error) registry_fail "$CFS_REG_REF: the auth file $CFS_REG_AUTH_FILE is not JSON this script reads" ;;
        auth"	"*) REG_BASIC=${_found#auth	} ;;
        userpass"	"*)
            find_tool base64 || registry_fail "$CFS_REG_REF: username/password in $CFS_REG_AUTH_FILE need base64 (or give auth)"
            # printf is built in: the password is on no command line
            REG_BASIC=$(printf '%s' "${_found#userpass	}" | "$TOOL" | "$T_tr" -d '\n')
            ;;
    esac
    case $REG_BASIC in
        *[!A-Za-z0-9+/=]*) registry_fail "$CFS_REG_REF: the auth of this registry in $CFS_REG_AUTH_FILE is not base64" ;;
    esac
}

# registry_login: ping the registry (https; plain http too when tls_verify is false) and
# do the login it asks for; CFS_REG_AUTH is then the Authorization header to send.
registry_login() {
    [ -z "$CFS_REG_READY" ] || return 0
    CFS_REG_SCHEME=https
    if ! registry_get "https://$CFS_REG_HOST/v2/" "$CFS_REG_TMP/body"; then
        if [ "$CFS_REG_TLS_VERIFY" = true ]; then
            registry_fail "$CFS_REG_REF: cannot reach https://$CFS_REG_HOST/v2/: $REG_ERROR (a registry with a self-signed certificate needs rootfs.image.ca_cert; plain HTTP: tls_verify false)"
        fi
        CFS_REG_SCHEME=http
        registry_get "http://$CFS_REG_HOST/v2/" "$CFS_REG_TMP/body" ||
            registry_fail "$CFS_REG_REF: cannot reach the registry $CFS_REG_HOST (https, http): $REG_ERROR"
    fi
    case $REG_STATUS in
        200) CFS_REG_AUTH= ;;
        401) registry_authenticate ;;
        *) registry_fail "$CFS_REG_REF: the registry's /v2/ answered HTTP $REG_STATUS" ;;
    esac
    CFS_REG_READY=yes
}

# registry_authenticate: the login the last 401's WWW-Authenticate asks for.
registry_authenticate() {
    _challenge=$(registry_challenge)
    registry_credentials
    case $_challenge in
        [Bb][Aa][Ss][Ii][Cc]|[Bb][Aa][Ss][Ii][Cc]" "*)
            [ -n "$REG_BASIC" ] ||
                registry_fail "$CFS_REG_REF: the registry needs credentials (rootfs.image.auth_file)"
            CFS_REG_AUTH="Basic $REG_BASIC"
            ;;
        [Bb][Ee][Aa][Rr][Ee][Rr]" "*) registry_token "${_challenge#* }" ;;
        *) registry_fail "$CFS_REG_REF: the registry asks for an unsupported authentication: ${_challenge%% *}" ;;
    esac
}

# registry_token PARAMS: a Bearer token from the realm of the challenge's PARAMS
# (realm="...",service="..."), for repository:REPO:pull, with the credentials if any.
registry_token() {
    _realm=$(printf '%s\n' "$1" | "$T_sed" -n 's/.*[Rr][Ee][Aa][Ll][Mm]="\([^"]*\)".*/\1/p')
    _service=$(printf '%s\n' "$1" | "$T_sed" -n 's/.*[Ss][Ee][Rr][Vv][Ii][Cc][Ee]="\([^"]*\)".*/\1/p')
    case $_realm in
        http://*|https://*) ;;
        *) registry_fail "$CFS_REG_REF: bearer challenge without a usable realm: $_realm" ;;
    esac
    # both go into a URL: only what a URL holds as it is
    case $_realm$_service in
        *[!A-Za-z0-9._~:/?\&=%@+-]*) registry_fail "$CFS_REG_REF: the registry's token realm or service has characters this script does not send: $_realm $_service" ;;
    esac
    case $_realm in *\?*) _sep='&' ;; *) _sep='?' ;; esac
    _url="$_realm${_sep}scope=repository:$CFS_REG_REPO:pull"
    [ -z "$_service" ] || _url="$_realm${_sep}service=$_service&scope=repository:$CFS_REG_REPO:pull"
    registry_get "$_url" "$CFS_REG_TMP/token" "${REG_BASIC:+Basic $REG_BASIC}" ||
        registry_fail "$CFS_REG_REF: cannot reach the token endpoint $_realm: $REG_ERROR"
    if [ "$REG_STATUS" != 200 ]; then
        _why="anonymous access refused"
        [ -z "$REG_BASIC" ] || _why="wrong credentials"
        registry_fail "$CFS_REG_REF: the token endpoint $_realm refused us (HTTP $REG_STATUS, $_why)"
    fi
    _token=$("$T_awk" -v mode=token "$CFS_JSON_AWK" < "$CFS_REG_TMP/token") || _token=
    case $_token in
        ''|error|*[!A-Za-z0-9._~+/=-]*) registry_fail "$CFS_REG_REF: the token endpoint $_realm gave no usable token" ;;
    esac
    CFS_REG_AUTH="Bearer $_token"
}

# registry_why STATUS: what an HTTP error status of a blob request means.
registry_why() {
    case $1 in
        401) printf 'unauthorized: wrong credentials, or no access to repository %s' "$CFS_REG_REPO" ;;
        403) printf 'forbidden' ;;
        404) printf 'not found: blob missing from the registry' ;;
        429) printf 'too many requests' ;;
        *) printf 'the registry failed' ;;
    esac
}

# registry_blob DIGEST SIZE FILE: blob DIGEST of the current registry source into FILE,
# verified: exactly SIZE bytes whose sha256 is DIGEST; else FILE is removed and the script
# stops naming the reference and the HTTP status.
registry_blob() {
    registry_tool
    CFS_REG_TMP=$CFS_LAYER_TEMP-registry-$$
    "$T_rm" -rf -- "$CFS_REG_TMP"
    "$T_mkdir" -m 0700 -- "$CFS_REG_TMP"
    registry_login
    _url="$CFS_REG_SCHEME://$CFS_REG_HOST/v2/$CFS_REG_REPO/blobs/$1"
    registry_get "$_url" "$3" "$CFS_REG_AUTH" ||
        { "$T_rm" -f -- "$3"; registry_fail "$CFS_REG_REF: blob $1: cannot reach $_url: $REG_ERROR"; }
    if [ "$REG_STATUS" = 401 ]; then
        # a token that expired, or a login asked for this repository only: once more
        registry_authenticate
        registry_get "$_url" "$3" "$CFS_REG_AUTH" ||
            { "$T_rm" -f -- "$3"; registry_fail "$CFS_REG_REF: blob $1: cannot reach $_url: $REG_ERROR"; }
    fi
    if [ "$REG_STATUS" != 200 ]; then
        "$T_rm" -f -- "$3"
        registry_fail "$CFS_REG_REF: blob $1: HTTP $REG_STATUS $(registry_why "$REG_STATUS")"
    fi
    _size=$("$T_wc" -c < "$3")
    if [ "$_size" -ne "$2" ]; then
        "$T_rm" -f -- "$3"
        registry_fail "$CFS_REG_REF: blob $1: $_size bytes, the manifest says $2"
    fi
    _sum=$("$T_sha256sum" < "$3")
    if [ "sha256:${_sum%% *}" != "$1" ]; then
        "$T_rm" -f -- "$3"
        registry_fail "$CFS_REG_REF: blob $1: the registry sent bytes whose digest is sha256:${_sum%% *}"
    fi
    "$T_rm" -rf -- "$CFS_REG_TMP"
    CFS_REG_TMP=
}
