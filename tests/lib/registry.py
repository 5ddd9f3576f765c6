"""A real OCI registry on loopback for the tests: Debian's docker-registry.

    with Registry(tmp_dir) as reg:                       # plain HTTP
        reg.push(layout_dir, "team/app:1.0")             # skopeo copy oci:... docker://...
        reg.ref("team/app:1.0")                          # "docker://127.0.0.1:PORT/team/app:1.0"

    with Registry(tmp_dir, tls=True, users={"alice": "secret"}) as reg:   # TLS + htpasswd
        reg.ca_cert                                      # the self-signed CA (PEM path)

The registry runs with a config of the test's own (storage, port, auth) in `tmp_dir`, on a
free loopback port, and is stopped by its pid. skopeo is only a test tool (to push).
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import ssl

REGISTRY = "/usr/bin/docker-registry"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tools_missing():
    """The names of the missing tools (empty: the registry tests can run)."""
    need = {"docker-registry": REGISTRY, "skopeo": "/usr/bin/skopeo",
            "htpasswd": "/usr/bin/htpasswd", "openssl": "/usr/bin/openssl"}
    return [name for name, path in need.items() if not os.access(path, os.X_OK)]


class Registry:
    def __init__(self, workdir, tls=False, users=None, token_realm=None, token_cert=None):
        self.workdir = workdir
        self.tls = tls
        self.users = users or {}
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.storage = os.path.join(workdir, "storage")
        self.ca_cert = None
        self.proc = None
        self.token_realm = token_realm
        self.token_cert = token_cert

    # -- set-up
    def _config(self):
        cfg = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
               "storage": {"filesystem": {"rootdirectory": self.storage},
                           "delete": {"enabled": True}},
               "http": {"addr": self.host, "secret": "test-secret"}}
        if self.tls:
            self._make_certs()
            cfg["http"]["tls"] = {"certificate": self.cert, "key": self.key}
        if self.users:
            htpasswd = os.path.join(self.workdir, "htpasswd")
            for i, (user, password) in enumerate(sorted(self.users.items())):
                flags = "-Bbc" if i == 0 else "-Bb"
                subprocess.run(["htpasswd", flags, htpasswd, user, password], check=True,
                               capture_output=True)
            cfg["auth"] = {"htpasswd": {"realm": "test-realm", "path": htpasswd}}
        if self.token_realm:
            cfg["auth"] = {"token": {"realm": self.token_realm, "service": "test-registry",
                                     "issuer": "test-issuer", "rootcertbundle": self.token_cert}}
        path = os.path.join(self.workdir, "config.yml")
        with open(path, "w") as f:
            json.dump(cfg, f)   # JSON is YAML
        return path

    def _make_certs(self):
        d = self.workdir
        self.ca_key, self.ca_cert = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
        self.key, self.cert = os.path.join(d, "server.key"), os.path.join(d, "server.pem")
        csr, ext = os.path.join(d, "server.csr"), os.path.join(d, "ext.cnf")

        def run(*argv):
            subprocess.run(list(argv), check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=containerfs test CA", "-keyout", self.ca_key, "-out", self.ca_cert)
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", self.key, "-out", csr)
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", self.cert)

    def start(self):
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        config = self._config()
        self.log = open(os.path.join(self.workdir, "registry.log"), "wb")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.proc = subprocess.Popen([REGISTRY, "serve", config], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        self._wait_up()
        return self

    def _wait_up(self, timeout=20):
        url = "%s://%s/v2/" % ("https" if self.tls else "http", self.host)
        ctx = ssl.create_default_context(cafile=self.ca_cert) if self.tls else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited: %s" % self.read_log())
            try:
                urllib.request.urlopen(url, timeout=2, context=ctx).close()
                return
            except urllib.error.HTTPError:
                return          # 401: up, wants auth
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not answer on %s: %s" % (url, self.read_log()))

    def read_log(self):
        with open(os.path.join(self.workdir, "registry.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-2000:]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- content
    def ref(self, name):
        return "docker://%s/%s" % (self.host, name)

    def push(self, layout, name, layout_ref=None, all_platforms=False, creds=None):
        """skopeo copy oci:LAYOUT[:REF] docker://HOST/NAME; returns skopeo's output."""
        src = "oci:%s" % layout + (":%s" % layout_ref if layout_ref else "")
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false" if not self.tls else
               "--dest-cert-dir=%s" % self._cert_dir()]
        if all_platforms:
            cmd.append("--all")
        if creds:
            cmd.append("--dest-creds=%s:%s" % creds)
        cmd += ["--preserve-digests", src, self.ref(name)]
        env = dict(os.environ, HOME=self.workdir, REGISTRY_AUTH_FILE=os.path.join(self.workdir, "auth.json"))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError("skopeo push failed: %s %s" % (proc.stderr, self.read_log()))
        return proc.stdout

    def _cert_dir(self):
        d = os.path.join(self.workdir, "certs.d")
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, "ca.crt")
        if not os.path.exists(dst):
            with open(self.ca_cert, "rb") as src, open(dst, "wb") as out:
                out.write(src.read())
        return d

    def blob_path(self, digest):
        algo, hexpart = digest.split(":")
        return os.path.join(self.storage, "docker/registry/v2/blobs", algo, hexpart[:2], hexpart, "data")


class FakeRegistry:
    """A small distribution server in this process (http.server) serving an OCI layout,
    for what docker-registry cannot show on demand: bearer-token auth through a token
    endpoint, 429/503 answers, a connection cut in the middle of a blob, Range requests.

        fake = FakeRegistry(layout, users={"bob": "pw"}).start()
        fake.fail = {"manifests": [503, 429]}    # the next manifest GETs answer these first
        fake.cut = {digest: 100}                 # the first GET of that blob stops at byte 100
        fake.requests                            # [(method, path, range header), ...]
        fake.stop()
    """

    def __init__(self, layout, users=None, repo="team/app"):
        self.layout = layout
        self.users = users or {}
        self.repo = repo
        self.fail = {}
        self.cut = {}
        self.wait_for = {}
        self.timeouts = []
        self.requests = []
        self.scopes = []
        self.server = None

    def start(self):
        import http.server
        import threading
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.handle(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def ref(self, tag_or_digest="latest"):
        sep = "@" if ":" in tag_or_digest else ":"
        return "docker://%s/%s%s%s" % (self.host, self.repo, sep, tag_or_digest)

    # -- the protocol
    def handle(self, h):
        import urllib.parse
        url = urllib.parse.urlsplit(h.path)
        self.requests.append(("GET", url.path, h.headers.get("Range")))
        if url.path == "/token":
            return self._token(h, urllib.parse.parse_qs(url.query))
        if h.headers.get("Authorization") != "Bearer good-token":
            return self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                              {"WWW-Authenticate": 'Bearer realm="http://%s/token",service="fake"' % self.host})
        if url.path == "/v2/":
            return self._send(h, 200, b"{}")
        prefix = "/v2/%s/" % self.repo
        if not url.path.startswith(prefix):
            return self._send(h, 404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}')
        kind, _sep, name = url.path[len(prefix):].partition("/")
        queued = self.fail.get(kind) or []
        if queued:
            return self._send(h, queued.pop(0), b"busy", {"Retry-After": "0"})
        if kind == "manifests":
            return self._manifest(h, name)
        return self._blob(h, name)

    def _token(self, h, query):
        import base64
        self.scopes.append((query.get("service", [""])[0], query.get("scope", [""])[0]))
        if self.users:
            auth = h.headers.get("Authorization") or ""
            user, _sep, password = base64.b64decode(auth[6:] or b"").decode().partition(":")
            if not auth.startswith("Basic ") or self.users.get(user) != password:
                return self._send(h, 401, b'{"details":"incorrect username or password"}')
        return self._send(h, 200, json.dumps({"token": "good-token"}).encode())

    def _read_blob(self, digest):
        path = os.path.join(self.layout, "blobs", *digest.split(":"))
        with open(path, "rb") as f:
            return f.read()

    def _manifest(self, h, name):
        with open(os.path.join(self.layout, "index.json")) as f:
            index = json.load(f)
        for desc in index["manifests"]:
            tag = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            if name in (tag, desc["digest"]):
                return self._send(h, 200, self._read_blob(desc["digest"]),
                                  {"Content-Type": desc["mediaType"], "Docker-Content-Digest": desc["digest"]})
        return self._send(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')

    def _wait_for_others(self, digest):
        """fake.wait_for = {digest: [digests]}: hold that blob until the others were asked
        for (proves parallel downloads); a wait that times out is listed in fake.timeouts."""
        others = self.wait_for.get(digest) or []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            asked = set(p.rpartition("/")[2] for _m, p, _r in self.requests)
            if all(d in asked for d in others):
                return
            time.sleep(0.01)
        self.timeouts.append(digest)

    def _blob(self, h, digest):
        self._wait_for_others(digest)
        try:
            data = self._read_blob(digest)
        except OSError:
            return self._send(h, 404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
        start = 0
        rng = h.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
        cut = self.cut.pop(digest, None)
        status = 206 if rng else 200
        headers = {"Content-Range": "bytes %d-%d/%d" % (start, len(data) - 1, len(data))} if rng else {}
        if cut is None:
            return self._send(h, status, data[start:], headers)
        h.send_response(status)
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        h.wfile.write(data[start:cut])
        h.wfile.flush()
        h.close_connection = True
        import socket as _socket
        h.connection.shutdown(_socket.SHUT_RDWR)

    @staticmethod
    def _send(h, status, body, headers=None):
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def _b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """A token endpoint for docker-registry's `auth: token` (the flow Docker Hub uses):
    checks Basic credentials against `users`, grants the asked actions, signs an RS256
    JWT with `openssl dgst` (x5c: the signing certificate, which the registry trusts via
    rootcertbundle).

        tokens = TokenServer(workdir, users={"carol": "pw"}).start()
        Registry(dir, token_realm=tokens.realm, token_cert=tokens.cert)
    """

    def __init__(self, workdir, users):
        self.workdir = workdir
        self.users = users
        self.issued = []
        os.makedirs(workdir, mode=0o700, exist_ok=True)
        self.key = os.path.join(workdir, "token.key")
        self.cert = os.path.join(workdir, "token.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=token signer", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        import base64
        self.x5c = base64.b64encode(der).decode("ascii")

    def start(self):
        import http.server
        import threading
        tokens = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                tokens.handle(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.realm = "http://127.0.0.1:%d/token" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h):
        import base64
        import urllib.parse
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        auth = h.headers.get("Authorization") or ""
        user = None
        if auth.startswith("Basic "):
            user, _sep, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(user) != password:
                return FakeRegistry._send(h, 401, b'{"details":"incorrect username or password"}')
        if user is None:
            return FakeRegistry._send(h, 401, b'{"details":"credentials needed"}')
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        self.issued.append((user, query.get("scope", [])))
        token = self.sign({"iss": "test-issuer", "sub": user, "aud": query.get("service", [""])[0],
                           "exp": int(time.time()) + 300, "nbf": int(time.time()) - 10,
                           "iat": int(time.time()), "jti": os.urandom(8).hex(), "access": access})
        return FakeRegistry._send(h, 200, json.dumps({"token": token}).encode())

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = "%s.%s" % (_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()))
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return signing_input + "." + _b64url(signature)
