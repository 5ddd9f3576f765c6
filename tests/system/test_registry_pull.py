"""Pulling from a real registry on loopback (Debian's docker-registry, pushed to by skopeo):
plain HTTP, TLS with a self-signed CA and htpasswd basic auth, into the image store and
through the CLI; errors name the reference and leave nothing behind."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as RG
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source as SRC
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as S
from tests.lib import oci_fixtures as fx
from tests.lib import registry as R
from tests.lib.oci_fixtures import dir_, file_, make_tar

pytestmark = pytest.mark.skipif(bool(R.tools_missing()), reason="missing: %s" % R.tools_missing())

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "scripts", "containerfs")
BASE = make_tar([dir_("etc"), file_("etc/os-release", b"ID=test\n"), dir_("bin"),
                 file_("bin/tool", b"#!/bin/sh\n", mode=0o755)])
APP = make_tar([dir_("app"), file_("app/run", b"run v1", mode=0o755)])
APP2 = make_tar([dir_("app"), file_("app/run", b"run v2", mode=0o755)])
PLAIN = RG.RegistryOptions(validate_certs=False)


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="cfs-registry-")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d)


def _layout(workdir, name, layers, **kw):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        fx.oci_layout(path, layers, tag="t", **kw)
    return path


@pytest.fixture(scope="module")
def reg(workdir):
    """A plain-HTTP registry holding team/app:1.0 (BASE+APP) and a two-platform index."""
    with R.Registry(os.path.join(workdir, "plain")) as r:
        r.push(_layout(workdir, "v1", [BASE, APP]), "team/app:1.0", layout_ref="t")
        multi = os.path.join(workdir, "multi")
        amd = fx.add_image(multi, [BASE, APP], arch="amd64")
        arm = fx.add_image(multi, [BASE, APP2], arch="arm64", variant="v8")
        fx.write_index(multi, [fx.nested_index(multi, [amd, arm], tag="t")])
        r.push(multi, "team/multi:1", layout_ref="t", all_platforms=True)
        r.digests = {"amd64": amd["digest"], "arm64": arm["digest"]}
        yield r


@pytest.fixture
def store(tmp_path):
    return S.ImageStore(str(tmp_path / "store"))


def _store_files(store):
    out = []
    for top, dirs, files in os.walk(store.root):
        out += [os.path.relpath(os.path.join(top, n), store.root) for n in dirs + files]
    return sorted(out)


def test_pull_then_again_changes_nothing(reg, store):
    ref = reg.ref("team/app:1.0")
    first = store.pull("app", ref, registry=PLAIN)
    assert first["changed"] is True
    assert first["image"]["layers"] == [fx.sha(BASE), fx.sha(APP)]
    assert first["layers_added"] == [fx.sha(BASE), fx.sha(APP)]
    assert first["image"]["format"] == "docker"
    assert first["image"]["source"]["path"] == ref
    record = store.image("app")
    assert record["manifest_digest"].startswith("sha256:")
    with open(os.path.join(store.layer_path(fx.sha(APP)), "app/run"), "rb") as f:
        assert f.read() == b"run v1"
    again = store.pull("app", ref, registry=PLAIN)
    assert (again["changed"], again["layers_added"]) == (False, [])
    assert store.image("app") == record


def test_digest_pin_resolves_the_same_image(reg, store):
    tagged = SRC.resolve(reg.ref("team/app:1.0"), registry=PLAIN)
    pinned = store.pull("pinned", reg.ref("team/app@" + tagged["manifest_digest"]), registry=PLAIN)
    assert pinned["image"]["manifest_digest"] == tagged["manifest_digest"]
    assert pinned["image"]["layers"] == [fx.sha(BASE), fx.sha(APP)]


def test_unknown_tag_names_the_reference(reg, store):
    ref = reg.ref("team/app:nope")
    with pytest.raises(S.ImageNotFoundError) as err:
        store.pull("app", ref, registry=PLAIN)
    assert ref in str(err.value) and "HTTP 404" in str(err.value)
    assert "unknown tag nope" in str(err.value) and "MANIFEST_UNKNOWN" in str(err.value)
    assert store.image("app") is None and store.layers() == []


def test_multi_platform_index(reg, store):
    arm = store.pull("arm", reg.ref("team/multi:1"), platform="linux/arm64/v8", registry=PLAIN)
    assert arm["image"]["manifest_digest"] == reg.digests["arm64"]
    assert arm["image"]["platform"] == "linux/arm64/v8"
    assert arm["image"]["layers"] == [fx.sha(BASE), fx.sha(APP2)]
    amd = store.pull("amd", reg.ref("team/multi:1"), platform="linux/amd64", registry=PLAIN)
    assert amd["image"]["manifest_digest"] == reg.digests["amd64"]
    assert amd["layers_added"] == [fx.sha(APP)]      # BASE is in the store already
    with pytest.raises(S.ImageNotFoundError) as err:
        store.pull("s390x", reg.ref("team/multi:1"), platform="linux/s390x", registry=PLAIN)
    assert "team/multi:1" in str(err.value) and "linux/arm64/v8" in str(err.value)


def test_tag_moved_to_a_new_digest(workdir, reg, store):
    ref = reg.ref("team/moving:1")
    reg.push(_layout(workdir, "v1", [BASE, APP]), "team/moving:1", layout_ref="t")
    before = store.pull("moving", ref, registry=PLAIN)["image"]
    reg.push(_layout(workdir, "v2", [BASE, APP2]), "team/moving:1", layout_ref="t")
    after = store.pull("moving", ref, registry=PLAIN)
    assert after["changed"] is True
    assert after["layers_added"] == [fx.sha(APP2)]
    assert after["image"]["manifest_digest"] != before["manifest_digest"]
    assert after["image"]["layers"] == [fx.sha(BASE), fx.sha(APP2)]


def test_a_stored_layer_is_never_downloaded_again(workdir, tmp_path):
    """The layer blobs vanish from the registry after the first pull: a second image
    naming the same layers still pulls (only its manifest and config are fetched)."""
    with R.Registry(str(tmp_path / "reg")) as r:
        r.push(_layout(workdir, "v1", [BASE, APP]), "a/one:1", layout_ref="t")
        r.push(_layout(workdir, "v1", [BASE, APP]), "a/two:1", layout_ref="t")
        store = S.ImageStore(str(tmp_path / "store"))
        store.pull("one", r.ref("a/one:1"), registry=PLAIN)
        image = SRC.resolve(r.ref("a/two:1"), registry=PLAIN)
        for layer in image["layers"]:
            os.unlink(r.blob_path(layer["digest"]))
        got = store.pull("two", r.ref("a/two:1"), registry=PLAIN)
        assert (got["changed"], got["layers_added"]) == (True, [])
        assert got["image"]["layers"] == [fx.sha(BASE), fx.sha(APP)]


def test_corrupted_blob_is_refused_and_nothing_stored(workdir, tmp_path):
    with R.Registry(str(tmp_path / "reg")) as r:
        r.push(_layout(workdir, "v1", [BASE, APP]), "a/bad:1", layout_ref="t")
        image = SRC.resolve(r.ref("a/bad:1"), registry=PLAIN)
        top = image["layers"][1]
        path = r.blob_path(top["digest"])
        with open(path, "wb") as f:   # another valid layer in its place
            f.write(fx.compress(APP2, "gzip"))
        store = S.ImageStore(str(tmp_path / "store"))
        with pytest.raises(S.LayerVerifyError) as err:
            store.pull("bad", r.ref("a/bad:1"), registry=PLAIN)
        assert r.ref("a/bad:1") in str(err.value) and top["digest"] in str(err.value)
        assert store.image("bad") is None
        assert store.layers() == [fx.sha(BASE)]     # the good layer below it stays
        assert [n for n in os.listdir(store.layers_dir) if n.startswith(".")] == []


def test_plain_http_needs_validate_certs_false(reg, store):
    with pytest.raises(RG.RegistryError) as err:
        store.pull("app", reg.ref("team/app:1.0"))
    assert reg.ref("team/app:1.0") in str(err.value) and "SSL" in str(err.value)
    assert store.image("app") is None


# --------------------------------------------------------------------------- TLS + basic

@pytest.fixture(scope="module")
def tls_reg(workdir):
    with R.Registry(os.path.join(workdir, "tls"), tls=True, users={"alice": "s3cret"}) as r:
        r.push(_layout(workdir, "v1", [BASE, APP]), "team/app:1.0", layout_ref="t",
               creds=("alice", "s3cret"))
        yield r


def test_tls_basic_auth_with_password(tls_reg, store):
    opts = RG.RegistryOptions(username="alice", password="s3cret", ca_cert=tls_reg.ca_cert)
    got = store.pull("app", tls_reg.ref("team/app:1.0"), registry=opts)
    assert got["image"]["layers"] == [fx.sha(BASE), fx.sha(APP)]


def test_tls_basic_auth_from_auth_file(tls_reg, store, tmp_path):
    auth = tmp_path / "auth.json"
    token = base64.b64encode(b"alice:s3cret").decode()
    auth.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"},
                                          tls_reg.host + "/team": {"auth": token}}}))
    opts = RG.options_from_params({"auth_file": str(auth), "ca_cert": tls_reg.ca_cert,
                                   "validate_certs": True})
    got = store.pull("app", tls_reg.ref("team/app:1.0"), registry=opts)
    assert got["changed"] is True


def test_tls_self_signed_without_ca_is_refused_unless_validate_certs_false(tls_reg, store):
    ref = tls_reg.ref("team/app:1.0")
    with pytest.raises(RG.RegistryError) as err:
        store.pull("app", ref, registry=RG.RegistryOptions(username="alice", password="s3cret"))
    assert ref in str(err.value) and "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    opts = RG.RegistryOptions(username="alice", password="s3cret", validate_certs=False)
    assert store.pull("app", ref, registry=opts)["changed"] is True


def test_wrong_password_and_no_credentials(tls_reg, store):
    ref = tls_reg.ref("team/app:1.0")
    wrong = RG.RegistryOptions(username="alice", password="nope", ca_cert=tls_reg.ca_cert)
    with pytest.raises(RG.RegistryAuthError) as err:
        store.pull("app", ref, registry=wrong)
    assert ref in str(err.value) and "HTTP 401" in str(err.value) and "wrong credentials" in str(err.value)
    assert "nope" not in str(err.value)
    with pytest.raises(RG.RegistryAuthError) as err:
        store.pull("app", ref, registry=RG.RegistryOptions(ca_cert=tls_reg.ca_cert))
    assert ref in str(err.value) and "needs credentials" in str(err.value)
    assert store.image("app") is None and store.layers() == []


# --------------------------------------------------------------------------- the CLI

def _cli(*args):
    return subprocess.run([sys.executable, CLI] + list(args), capture_output=True, text=True,
                          check=False)


def test_cli_pull_and_unpack(reg, tmp_path):
    ref = reg.ref("team/app:1.0")
    store = str(tmp_path / "store")
    proc = _cli("pull", ref, "--store", store, "--name", "app", "--tls-verify=false")
    assert proc.returncode == 0, proc.stderr
    assert S.ImageStore(store).image("app")["layers"] == [fx.sha(BASE), fx.sha(APP)]
    again = _cli("pull", ref, "--store", store, "--name", "app", "--tls-verify=false")
    assert again.returncode == 0 and "unchanged" in again.stdout
    dest = tmp_path / "rootfs"
    proc = _cli("unpack", ref, str(dest), "--tls-verify=false")
    assert proc.returncode == 0, proc.stderr
    assert (dest / "app/run").read_bytes() == b"run v1"
    assert (dest / "etc/os-release").read_bytes() == b"ID=test\n"
    missing = _cli("pull", reg.ref("team/app:nope"), "--store", store, "--tls-verify=false")
    assert missing.returncode == 2 and reg.ref("team/app:nope") in missing.stderr


# --------------------------------------------------------------------------- token auth, retries, resume
# (an in-process distribution server: docker-registry cannot fail or cut on demand)

@pytest.fixture
def fake(tmp_path):
    layout = str(tmp_path / "layout")
    big = make_tar([file_("big", os.urandom(300000))])
    fx.oci_layout(layout, [BASE, big], tag="1.0", compression="gzip")
    server = R.FakeRegistry(layout, users={"bob": "pw"}).start()
    server.layers = [fx.sha(BASE), fx.sha(big)]
    yield server
    server.stop()


BOB = RG.RegistryOptions(username="bob", password="pw", validate_certs=False)


def test_bearer_token_flow(fake, store):
    got = store.pull("app", fake.ref("1.0"), registry=BOB)
    assert got["image"]["layers"] == fake.layers
    assert fake.scopes == [("fake", "repository:team/app:pull")]   # one token, reused
    assert fake.requests[0][1] == "/v2/"


def test_bearer_token_wrong_password(fake, store):
    wrong = RG.RegistryOptions(username="bob", password="bad", validate_certs=False)
    with pytest.raises(RG.RegistryAuthError) as err:
        store.pull("app", fake.ref("1.0"), registry=wrong)
    assert fake.ref("1.0") in str(err.value) and "HTTP 401" in str(err.value)
    assert "wrong credentials" in str(err.value) and "incorrect username" in str(err.value)
    assert store.image("app") is None


def test_retries_on_429_and_503(fake, store):
    fake.fail = {"manifests": [503, 429], "blobs": [502]}
    got = store.pull("app", fake.ref("1.0"), registry=BOB)
    assert got["image"]["layers"] == fake.layers
    manifests = [p for m, p, r in fake.requests if "/manifests/" in p]
    assert manifests == ["/v2/team/app/manifests/1.0"] * 3      # 503, 429, 200
    blobs = [p for m, p, r in fake.requests if "/blobs/" in p]
    assert len(blobs) == 1 + 1 + 2          # 502, the config, the two layers
    assert fake.fail == {"manifests": [], "blobs": []}


def test_retries_are_bounded(fake, store):
    fake.fail = {"manifests": [503] * (RG.RETRIES + 1)}
    with pytest.raises(RG.RegistryError) as err:
        store.pull("app", fake.ref("1.0"), registry=BOB)
    assert "HTTP 503" in str(err.value) and fake.ref("1.0") in str(err.value)


def test_interrupted_blob_resumes_with_range(fake, store):
    image = SRC.resolve(fake.ref("1.0"), registry=BOB)
    big = image["layers"][1]
    fake.cut = {big["digest"]: 100000}
    got = store.pull("app", fake.ref("1.0"), registry=BOB)
    assert got["image"]["layers"] == fake.layers
    ranges = [r for m, p, r in fake.requests if p.endswith(big["digest"])]
    assert ranges == [None, "bytes=100000-"]
    assert fake.cut == {}


def test_layers_download_in_parallel(tmp_path, store):
    """The first layer's blob is held until the next layers were asked for: only parallel
    downloads get it served without the server's wait timing out."""
    layout = str(tmp_path / "layout")
    layers = [BASE, APP, make_tar([file_("c", b"c")]), make_tar([file_("d", b"d")])]
    fx.oci_layout(layout, layers, tag="1.0")
    server = R.FakeRegistry(layout, users={"bob": "pw"}).start()
    try:
        image = SRC.resolve(server.ref("1.0"), registry=BOB)
        digests = [layer["digest"] for layer in image["layers"]]
        server.wait_for = {digests[0]: digests[1:]}
        got = store.pull("app", server.ref("1.0"), registry=BOB)
    finally:
        server.stop()
    assert got["image"]["layers"] == [fx.sha(t) for t in layers]
    assert server.timeouts == []
    served = [p.rpartition("/")[2] for _m, p, _r in server.requests if "/blobs/" in p]
    assert sorted(served[-4:]) == sorted(digests)
    assert len(served) == 6     # the config twice (resolve, then pull), each layer once


def test_token_auth_against_docker_registry(workdir, tmp_path, store):
    """docker-registry with `auth: token` (Docker Hub's flow): a bearer token from our
    token endpoint, asked for with the pull scope and the user's credentials."""
    tokens = R.TokenServer(str(tmp_path / "tokens"), users={"carol": "pw"}).start()
    try:
        with R.Registry(str(tmp_path / "reg"), token_realm=tokens.realm, token_cert=tokens.cert) as r:
            r.push(_layout(workdir, "v1", [BASE, APP]), "team/app:1.0", layout_ref="t",
                   creds=("carol", "pw"))
            opts = RG.RegistryOptions(username="carol", password="pw", validate_certs=False)
            got = store.pull("app", r.ref("team/app:1.0"), registry=opts)
            assert got["image"]["layers"] == [fx.sha(BASE), fx.sha(APP)]
            assert tokens.issued[-1] == ("carol", ["repository:team/app:pull"])
            wrong = RG.RegistryOptions(username="carol", password="bad", validate_certs=False)
            with pytest.raises(RG.RegistryAuthError) as err:
                store.pull("other", r.ref("team/app:1.0"), registry=wrong)
            assert "HTTP 401" in str(err.value) and "incorrect username or password" in str(err.value)
    finally:
        tokens.stop()
