# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling from OCI registries: image references and a distribution client on urllib.

Standard library only, no ``ansible.*`` import: the module on the targets and the CLI both
import it. Errors are typed (`ImageError` and subclasses), never exits.

* `parse_reference("docker://alpine:3.20")` -> a `Reference` (Docker Hub short names get
  the ``docker.io/library/`` expansion, the tag defaults to ``latest``).
* `RegistryClient(ref, options)`: the ``/v2/`` ping, anonymous, basic and bearer-token auth
  (the WWW-Authenticate challenge, the token endpoint with a pull scope), manifests by tag
  or digest (OCI and Docker schema 2, indexes and manifest lists), blobs streamed with
  resume (``Range``) and bounded retries with back-off on 429, 5xx and connection resets.
  TLS uses the system CAs or ``ca_cert``; ``validate_certs: false`` also allows plain
  HTTP. urllib honours ``HTTPS_PROXY``/``NO_PROXY``.

Digests and sizes of blobs are verified by the readers (source.py, blob.py), as for
every other source.

Private to the collection; may change without notice.
"""

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageError, ImageInputError, ImageNotFoundError,
)

TRANSPORT = "docker://"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io")
DEFAULT_TAG = "latest"
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
MAX_MANIFEST = 16 << 20
RETRIES = 4                 # attempts after the first one
BACKOFF = 0.5               # seconds, doubled after each attempt
MAX_BACKOFF = 8.0
TIMEOUT = 60                # seconds without a byte before a request counts as failed
RETRY_STATUS = (429, 500, 502, 503, 504)
TLS_HINT = (" (a registry with a self-signed certificate needs ca_cert; plain HTTP or no "
            "verification at all: validate_certs false)")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(r"%s(?:/%s)*" % (_COMPONENT, _COMPONENT))
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                     r"[A-Za-z0-9])?)*(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")

# The registry options of the image module (and the container's rootfs.image), in one place.
REGISTRY_ARGUMENT_SPEC = {
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "auth_file": {"type": "path"},
    "ca_cert": {"type": "path"},
    "validate_certs": {"type": "bool", "default": True},
}


class RegistryError(ImageError):
    """The registry refused or failed a request (not an input problem)."""


class RegistryAuthError(RegistryError):
    """401/403: missing or wrong credentials."""


# --------------------------------------------------------------------------- references

class Reference:
    """docker://HOST[:PORT]/REPO[:TAG][@DIGEST], normalised."""

    def __init__(self, host, repository, tag=None, digest=None):
        self.host = host
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def api_host(self):
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def name(self):
        return "%s/%s" % (self.host, self.repository)

    @property
    def image_name(self):
        """The store's name for an image pulled by this reference unless told otherwise:
        the reference without its transport (containerfs pull, a spec's docker:// source)."""
        return str(self)[len(TRANSPORT):]

    def __str__(self):
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return TRANSPORT + text

    def __eq__(self, other):
        return isinstance(other, Reference) and str(self) == str(other)

    def __repr__(self):
        return "Reference(%r)" % str(self)


def is_reference(source):
    return isinstance(source, str) and source.startswith(TRANSPORT)


def parse_reference(text, tag=None, digest=None):
    """Parse `docker://...` (the transport prefix is optional here). `tag`/`digest`
    (the image module's options) fill in what the reference leaves out."""
    if not isinstance(text, str) or not text:
        raise ImageInputError("empty image reference")
    rest = text[len(TRANSPORT):] if text.startswith(TRANSPORT) else text
    if not rest:
        raise ImageInputError("empty image reference %r" % text)
    bad = "invalid image reference %r: %%s" % text
    rest, _sep, ref_digest = rest.partition("@")
    if ref_digest and not DIGEST_RE.fullmatch(ref_digest):
        raise ImageInputError(bad % ("malformed digest %r (sha256:<64 hex>)" % ref_digest))
    host, repo = _split_host(rest)
    ref_tag = None
    last = repo.rpartition("/")[2]
    if ":" in last:
        repo, _sep, ref_tag = repo.rpartition(":")
        if not TAG_RE.fullmatch(ref_tag):
            raise ImageInputError(bad % ("malformed tag %r" % ref_tag))
    if host == DOCKER_HUB and "/" not in repo:
        repo = "library/" + repo
    if not REPO_RE.fullmatch(repo) or len(repo) > 255:
        raise ImageInputError(bad % ("repository %r: lower-case letters, digits and . _ - "
                                     "separators, components split by /" % repo))
    ref_tag = _merge_option("tag", ref_tag, tag, TAG_RE, bad)
    ref_digest = _merge_option("digest", ref_digest or None, digest, DIGEST_RE, bad)
    if not ref_tag and not ref_digest:
        ref_tag = DEFAULT_TAG
    return Reference(host, repo, ref_tag, ref_digest)


def _split_host(rest):
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not HOST_RE.fullmatch(first):
            raise ImageInputError("invalid image reference %r: bad registry host %r" % (
                TRANSPORT + rest, first))
        host = first.lower()
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = DOCKER_HUB
        return host, remainder
    return DOCKER_HUB, rest


def _merge_option(what, in_ref, option, pattern, bad):
    if option is None or option == "":
        return in_ref
    if not pattern.fullmatch(option):
        raise ImageInputError(bad % ("malformed %s option %r" % (what, option)))
    if in_ref and in_ref != option:
        raise ImageInputError(bad % ("it names %s %s but the %s option says %s" % (
            what, in_ref, what, option)))
    return option


# --------------------------------------------------------------------------- options

class RegistryOptions:
    """How to reach a registry: credentials, auth file, CA, TLS verification."""

    def __init__(self, username=None, password=None, auth_file=None, ca_cert=None,
                 validate_certs=True):
        if bool(username) != bool(password):
            raise ImageInputError("registry credentials need both username and password")
        self.username = username
        self.password = password
        self.auth_file = auth_file
        self.ca_cert = ca_cert
        self.validate_certs = validate_certs

    def credentials(self, ref):
        """(username, password) for `ref`, or None (anonymous)."""
        if self.username:
            return self.username, self.password
        if self.auth_file:
            return auth_file_credentials(self.auth_file, ref)
        return None


def options_from_params(params):
    """The image module's parameters -> RegistryOptions (keys of REGISTRY_ARGUMENT_SPEC)."""
    params = params or {}
    return RegistryOptions(
        username=params.get("username"), password=params.get("password"),
        auth_file=params.get("auth_file"), ca_cert=params.get("ca_cert"),
        validate_certs=params.get("validate_certs", True) is not False)


def auth_file_credentials(path, ref):
    """Credentials for `ref` from a containers-auth.json / docker config.json file: the most
    specific key wins (host/repo/path, ..., host), Docker Hub's legacy keys included."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise ImageInputError("auth file %s: cannot read it: %s" % (path, exc.strerror or exc))
    except ValueError as exc:
        raise ImageInputError("auth file %s: not valid JSON: %s" % (path, exc))
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    keyed = dict((_auth_key(k), v) for k, v in auths.items())
    for key in auth_keys(ref):
        entry = keyed.get(key)
        if isinstance(entry, dict):
            creds = _entry_credentials(entry, path, key)
            if creds:
                return creds
    return None


def _auth_key(key):
    """'https://host/v1/' -> 'host' (docker's legacy keys); 'host/repo' stays."""
    key = re.sub(r"^[a-z]+://", "", key.strip()).rstrip("/")
    if key.endswith("/v1") or key.endswith("/v2"):
        key = key[:-3]
    return key.lower() if "/" not in key else key.split("/", 1)[0].lower() + "/" + key.split("/", 1)[1]


def auth_keys(ref):
    """The keys of an auth file that may hold `ref`'s credentials, most specific first
    (normalised as _auth_key does; the generated script looks them up the same way)."""
    parts = ref.repository.split("/")
    out = ["%s/%s" % (ref.host, "/".join(parts[:n])) for n in range(len(parts), 0, -1)]
    out.append(ref.host)
    if ref.host == DOCKER_HUB:
        out += [_auth_key(k) for k in DOCKER_HUB_AUTH_KEYS]
    return out


def _entry_credentials(entry, path, key):
    if entry.get("auth"):
        try:
            text = base64.b64decode(entry["auth"]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise ImageInputError("auth file %s: the auth of %s is not base64 of user:password"
                                  % (path, key))
        user, sep, password = text.partition(":")
        if not sep:
            raise ImageInputError("auth file %s: the auth of %s is not user:password" % (path, key))
        return user, password
    if entry.get("username") and entry.get("password"):
        return entry["username"], entry["password"]
    return None


# --------------------------------------------------------------------------- challenges

def parse_challenge(header):
    """'Bearer realm="x",service="y"' -> ('bearer', {'realm': 'x', 'service': 'y'})."""
    if not header:
        return None, {}
    scheme, _sep, rest = header.strip().partition(" ")
    params = {}
    for m in re.finditer(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))', rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


# --------------------------------------------------------------------------- the client

class RegistryClient:
    """A pull-only OCI distribution client for one repository."""

    def __init__(self, ref, options=None):
        self.ref = ref
        self.options = options or RegistryOptions()
        self.scheme = "https"
        self._auth_header = None
        self._challenge = None
        self._pinged = False
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self._ssl_context()))

    def _ssl_context(self):
        if not self.options.validate_certs:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            return ssl.create_default_context(cafile=self.options.ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise ImageInputError("ca_cert %s: cannot load it: %s" % (self.options.ca_cert, exc))

    def url(self, path):
        """/v2/ for the ping, /v2/REPO/PATH for the rest."""
        base = "%s://%s/v2/" % (self.scheme, self.ref.api_host)
        return base + ("%s/%s" % (self.ref.repository, path) if path else "")

    # -- the ping and authentication
    def ping(self):
        """GET /v2/: learns the scheme (https, or http when validate_certs is false) and
        the auth challenge."""
        if self._pinged:
            return
        try:
            resp = self._send("GET", "", auth=False)
        except RegistryError as exc:
            if self.options.validate_certs or not isinstance(getattr(exc, "reason", None), ssl.SSLError):
                raise
            self.scheme = "http"   # validate_certs false: a plain-HTTP registry is fine
            resp = self._send("GET", "", auth=False)
        self._pinged = True
        if resp.status == 401:
            self._challenge = parse_challenge(resp.headers.get("WWW-Authenticate"))
        resp.close()

    def _authenticate(self):
        scheme, params = self._challenge or (None, {})
        creds = self.options.credentials(self.ref)
        if scheme == "basic":
            if not creds:
                raise RegistryAuthError("%s: the registry needs credentials (username/password "
                                        "or auth_file)" % self.ref)
            self._auth_header = "Basic " + _basic(creds)
        elif scheme == "bearer":
            self._auth_header = "Bearer " + self._token(params, creds)
        else:
            raise RegistryAuthError("%s: the registry asks for an unsupported authentication %r"
                                    % (self.ref, scheme))

    def _token(self, params, creds):
        realm = params.get("realm")
        if not realm or not realm.startswith(("https://", "http://")):
            raise RegistryAuthError("%s: bearer challenge without a usable realm: %r" % (self.ref, realm))
        query = [("scope", "repository:%s:pull" % self.ref.repository)]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        if creds:
            req.add_unredirected_header("Authorization", "Basic " + _basic(creds))
        try:
            resp = self._open_retrying(req, "token")
        except urllib.error.HTTPError as exc:
            what = "wrong credentials" if creds else "anonymous access refused"
            raise RegistryAuthError("%s: the token endpoint %s refused us (HTTP %d, %s): %s" % (
                self.ref, realm, exc.code, what, _error_text(exc)))
        with resp:
            try:
                data = json.loads(resp.read(1 << 20).decode("utf-8"))
            except ValueError:
                raise RegistryAuthError("%s: the token endpoint %s did not answer JSON" % (self.ref, realm))
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryAuthError("%s: the token endpoint %s gave no token" % (self.ref, realm))
        return token

    # -- requests
    def _send(self, method, path, headers=None, auth=True, what=None):
        """One request with retries; an HTTP error status comes back as a response."""
        req = urllib.request.Request(self.url(path), method=method, headers=headers or {})
        if auth and self._auth_header:
            req.add_unredirected_header("Authorization", self._auth_header)
        try:
            return self._open_retrying(req, what or path or "ping")
        except urllib.error.HTTPError as exc:
            return exc

    def _open_retrying(self, req, what):
        delay = BACKOFF
        for attempt in range(RETRIES + 1):
            try:
                return self._opener.open(req, timeout=TIMEOUT)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS or attempt == RETRIES:
                    raise
                delay = _retry_after(exc, delay)
                exc.close()
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ssl.SSLError) or attempt == RETRIES or not _transient(reason):
                    hint = TLS_HINT if isinstance(reason, ssl.SSLError) else ""
                    err = RegistryError("%s: cannot reach %s (%s): %s%s" % (
                        self.ref, req.full_url, what, reason, hint))
                    err.reason = reason
                    raise err
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
        raise AssertionError("unreachable")

    def request(self, path, headers=None, what="request"):
        """GET `path` (under /v2/), authenticating on a 401 challenge; errors raised."""
        self.ping()
        if self._challenge and not self._auth_header:
            self._authenticate()
        resp = self._send("GET", path, headers=headers, what=what)
        challenge = parse_challenge(resp.headers.get("WWW-Authenticate")) if resp.status == 401 else None
        if challenge and challenge[0]:
            # a token expired, or auth is asked for this repository only: once more
            self._challenge = challenge
            resp.close()
            self._auth_header = None
            self._authenticate()
            resp = self._send("GET", path, headers=headers, what=what)
        if resp.status in (200, 206):
            return resp
        raise self._status_error(resp, what)

    def _status_error(self, resp, what):
        text = _error_text(resp)
        resp.close()
        code = resp.status
        if code == 401:
            creds = self.options.credentials(self.ref)
            why = "wrong credentials, or no access to" if creds else "credentials needed, or no"
            return RegistryAuthError("%s: %s: HTTP 401 unauthorized (%s repository %s): %s" % (
                self.ref, what, why, self.ref.repository, text))
        if code == 403:
            return RegistryAuthError("%s: %s: HTTP 403 forbidden: %s" % (self.ref, what, text))
        if code == 404:
            return ImageNotFoundError("%s: %s: HTTP 404 not found (%s): %s" % (
                self.ref, what, _not_found(what, self.ref), text))
        return RegistryError("%s: %s: HTTP %d: %s" % (self.ref, what, code, text))

    # -- manifests and blobs
    def manifest(self, reference):
        """(bytes, media type, digest) of the manifest or index `reference` (tag or digest).
        A digest reference is verified here; a tag's digest is the bytes' digest."""
        what = "manifest %s" % reference
        with self.request("manifests/" + reference, {"Accept": MANIFEST_ACCEPT}, what) as resp:
            data = resp.read(MAX_MANIFEST + 1)
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest")
        if len(data) > MAX_MANIFEST:
            raise ImageInputError("%s: %s is larger than %d bytes" % (self.ref, what, MAX_MANIFEST))
        algo = reference.partition(":")[0] if DIGEST_RE.fullmatch(reference) else "sha256"
        digest = "%s:%s" % (algo, hashlib.new(algo, data).hexdigest())
        if DIGEST_RE.fullmatch(reference) and digest != reference:
            raise ImageError("%s: %s: the registry sent a manifest whose digest is %s" % (
                self.ref, what, digest))
        if header_digest and header_digest.startswith(algo + ":") and header_digest != digest:
            raise ImageError("%s: %s: Docker-Content-Digest says %s, the manifest is %s" % (
                self.ref, what, header_digest, digest))
        return data, media_type, digest

    def open_blob(self, digest, size=None):
        """A read()-able stream of blob `digest`, resuming with Range after a dropped
        connection. The caller verifies digest and size while reading."""
        return BlobReader(self, digest, size)


class BlobReader:
    """Streams one blob; on a connection reset, re-asks from the byte reached (Range)."""

    def __init__(self, client, digest, size=None):
        self.client = client
        self.digest = digest
        self.size = size
        self.offset = 0
        self.resumes = 0
        self._resp = self._open(0)

    def _open(self, offset):
        headers = {"Range": "bytes=%d-" % offset} if offset else {}
        resp = self.client.request("blobs/" + self.digest, headers, "blob %s" % self.digest)
        if offset and resp.status != 206:
            _skip(resp, offset)          # no Range support: read past what we have
        if self.size is None and not offset:
            length = resp.headers.get("Content-Length")
            self.size = int(length) if length and length.isdigit() else None
        return resp

    def read(self, n=-1):
        for attempt in range(RETRIES + 1):
            try:
                data = self._resp.read(n if n is not None and n >= 0 else 1 << 20)
            except (OSError, http.client.HTTPException) as exc:
                if attempt == RETRIES or not _transient(exc):
                    raise RegistryError("%s: blob %s: the download failed at byte %d: %s" % (
                        self.client.ref, self.digest, self.offset, exc))
                self._reopen()
                continue
            if not data and self.size is not None and self.offset < self.size:
                if attempt == RETRIES:
                    raise RegistryError("%s: blob %s: the connection ended at byte %d of %d" % (
                        self.client.ref, self.digest, self.offset, self.size))
                self._reopen()
                continue
            self.offset += len(data)
            return data
        raise AssertionError("unreachable")

    def _reopen(self):
        self._resp.close()
        self.resumes += 1
        time.sleep(min(BACKOFF * self.resumes, MAX_BACKOFF))
        self._resp = self._open(self.offset)

    def readable(self):
        return True

    def close(self):
        self._resp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------- helpers

def _basic(creds):
    return base64.b64encode(("%s:%s" % creds).encode("utf-8")).decode("ascii")


def _transient(exc):
    return isinstance(exc, (ConnectionError, socket.timeout, TimeoutError,
                            http.client.IncompleteRead, http.client.RemoteDisconnected))


def _retry_after(exc, delay):
    value = exc.headers.get("Retry-After") if exc.headers else None
    if value and value.strip().isdigit():
        return min(float(value.strip()), MAX_BACKOFF)
    return delay


def _skip(resp, count):
    while count > 0:
        data = resp.read(min(count, 1 << 20))
        if not data:
            break
        count -= len(data)


def _error_text(resp):
    """The registry's error message: `errors[].code: message` from its JSON, or the body."""
    try:
        body = resp.read(65536)
    except (OSError, http.client.HTTPException):
        return "no body"
    try:
        doc = json.loads(body.decode("utf-8"))
        errors = doc.get("errors") or []
        text = "; ".join("%s: %s" % (e.get("code"), e.get("message")) for e in errors) or \
            doc.get("details") or doc.get("error_description") or doc.get("error") or ""
    except (ValueError, AttributeError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()[:300]
    return text or getattr(resp, "reason", "") or "no body"


def _not_found(what, ref):
    if what.startswith("manifest") and ref.tag and not ref.digest:
        return "unknown tag %s or repository %s" % (ref.tag, ref.repository)
    if what.startswith("manifest"):
        return "unknown manifest or repository %s" % ref.repository
    return "blob missing from the registry"
