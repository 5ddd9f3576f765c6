"""The generated script pulls a spec's `docker://` image with stock tools, from a real
registry on loopback (Debian's docker-registry, pushed to by skopeo): plain HTTP, TLS with a
self-signed CA and htpasswd basic auth, and token auth (docker-registry's `auth: token` with
the token endpoint of tests/lib/registry.py).

The script is rendered by `scripts/containerfs render` (which reads only the manifest and
config: the digests are pinned in the script); at run time it fetches the layer blobs with
curl (or wget), verifies size and sha256, and unpacks them into the same store layout as
the image store, so that each finds the other's layers without downloading them again.
Credentials come from the auth file at run time: never in the script, never in a
command line (a curl/wget wrapper records every argv).

Every script run is wrapped in `unshare --mount --propagation private` (conftest).
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.lib import oci_fixtures as fx
from tests.lib import registry as R
from tests.lib.oci_fixtures import dir_, file_, make_tar

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as RG
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source as SRC
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import ImageStore, LayerVerifyError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as image_spec

pytestmark = pytest.mark.skipif(bool(R.tools_missing()), reason="missing: %s" % R.tools_missing())

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "scripts", "containerfs")
APP = make_tar([dir_("app"), file_("app/run", b"hello from the registry\n", mode=0o755)])
PLAIN = RG.RegistryOptions(validate_certs=False)
PASSWORD = "s3cret-Pw"
TOKEN_PASSWORD = "t0ken-Pw"


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="cfs-registry-script-")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d)


@pytest.fixture(scope="module")
def layout(workdir):
    """An OCI layout of a busybox image with an app layer on top (tag t)."""
    tree = fx.busybox_tree(os.path.join(workdir, "tree"), applets=("sh", "cat", "true", "ls"))
    os.chmod(tree, 0o755)
    open(os.path.join(tree, "etc", "resolv.conf"), "a").close()
    path = os.path.join(workdir, "layout")
    fx.oci_layout(path, [fx.tar_of_dir(tree), APP], tag="t",
                  config={"Cmd": ["/bin/cat", "/app/run"], "Env": ["PATH=/bin"]})
    return path


@pytest.fixture(scope="module")
def plain(workdir, layout):
    with R.Registry(os.path.join(workdir, "plain")) as reg:
        reg.push(layout, "team/box:1", layout_ref="t")
        yield reg


@pytest.fixture(scope="module")
def tls(workdir, layout):
    with R.Registry(os.path.join(workdir, "tls"), tls=True, users={"alice": PASSWORD}) as reg:
        reg.push(layout, "team/box:1", layout_ref="t", creds=("alice", PASSWORD))
        yield reg


@pytest.fixture(scope="module")
def token(workdir, layout):
    tokens = R.TokenServer(os.path.join(workdir, "tokens"), users={"carol": TOKEN_PASSWORD}).start()
    try:
        with R.Registry(os.path.join(workdir, "token"), token_realm=tokens.realm,
                        token_cert=tokens.cert) as reg:
            reg.push(layout, "team/box:1", layout_ref="t", creds=("carol", TOKEN_PASSWORD))
            reg.tokens = tokens
            yield reg
    finally:
        tokens.stop()


def auth_file(tmp_path, key, user, password, form="auth"):
    path = str(tmp_path / "auth.json")
    if form == "auth":
        entry = {"auth": base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}
    else:
        entry = {"username": user, "password": password}
    with open(path, "w") as f:
        json.dump({"auths": {"other.example": {"auth": "eDp5"}, key: entry}}, f)
    os.chmod(path, 0o600)
    return path


def registry_container(make_container, tmp_path, ref, name="pulled", **image):
    spec_image = dict({"source": ref, "store": str(tmp_path / "store")}, **image)
    return make_container(name=name, hostname=name, rootfs={"image": spec_image})


def layer_dirs(store):
    d = os.path.join(store, "layers", "sha256")
    return sorted(n for n in os.listdir(d) if len(n) == 64) if os.path.isdir(d) else []


def store_leftovers(store):
    out = []
    for base, dirs, files in os.walk(store):
        out += [os.path.join(base, n) for n in dirs + files if ".tmp" in n]
        dirs[:] = [d for d in dirs if ".tmp" not in d]
    return out


def image_layers(reg, name="team/box:1", options=PLAIN):
    return SRC.resolve(reg.ref(name), registry=options)["layers"]


def recording_wrapper(tmp_path, tool):
    """Shell code for a wrapper's setup: /usr/bin/TOOL replaced (in the wrapper's mount
    namespace only) by a script that appends its argv to a log, then runs the real one."""
    real = str(tmp_path / ("real-" + tool))
    shutil.copy2("/usr/bin/" + tool, real)
    log = str(tmp_path / (tool + ".argv"))
    wrapper = str(tmp_path / (tool + "-wrapper"))
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nprintf "%%s\\n" "$*" >> %s\nexec %s "$@"\n' % (log, real))
    os.chmod(wrapper, 0o755)
    return "mount --bind %s /usr/bin/%s" % (wrapper, tool), log


WITHOUT_CURL = "mount --bind /dev/null /usr/bin/curl"


def read(path):
    with open(path) as f:
        return f.read()


# --------------------------------------------------------------------------- plain HTTP

def test_script_pulls_and_runs_from_a_plain_http_registry(make_container, tmp_path, plain):
    container = registry_container(make_container, tmp_path, plain.ref("team/box:1"), tls_verify=False)
    assert "registry_source" in container.text
    result = container.run()
    assert result.rc == 0, result
    assert result.stdout == "hello from the registry\n", result
    store = str(tmp_path / "store")
    layers = image_layers(plain)
    assert layer_dirs(store) == sorted(l["diff_id"][7:] for l in layers)
    assert store_leftovers(store) == []
    # the image store takes them as its own: present and verified
    assert all(ImageStore(store).has_layer(l["diff_id"]) for l in layers)
    assert ImageStore(store).layer(layers[1]["diff_id"])["digest"] == layers[1]["digest"]
    again = container.run("true")
    assert again.rc == 0 and "unpacking layer" not in again.stderr, again


def test_script_uses_wget_where_curl_is_missing(make_container, tmp_path, plain):
    container = registry_container(make_container, tmp_path, plain.ref("team/box:1"), tls_verify=False)
    record, log = recording_wrapper(tmp_path, "wget")
    result = container.run(setup=WITHOUT_CURL + "\n" + record, shell="busybox-ash")
    assert result.rc == 0 and result.stdout == "hello from the registry\n", result
    assert "/v2/team/box/blobs/sha256:" in read(log)
    assert len(layer_dirs(str(tmp_path / "store"))) == 2


def test_tls_verified_plain_http_registry_is_refused(make_container, tmp_path, plain):
    container = registry_container(make_container, tmp_path, plain.ref("team/box:1"), tls_verify=False)
    text = container.text.replace("'false'\n", "'true'\n")  # as if tls_verify were left out
    assert text != container.text
    with open(container.script, "w") as f:
        f.write(text)
    result = container.run("true")
    assert result.rc != 0 and plain.ref("team/box:1") in result.stderr, result
    assert "cannot reach https://" in result.stderr and "tls_verify false" in result.stderr, result
    assert layer_dirs(str(tmp_path / "store")) == [] and store_leftovers(str(tmp_path / "store")) == []


# --------------------------------------------------------------------------- TLS + basic

@pytest.mark.parametrize("tool,form", [("curl", "auth"), ("wget", "userpass")])
def test_tls_basic_auth_from_the_auth_file_never_in_argv(make_container, tmp_path, tls, tool, form):
    auth = auth_file(tmp_path, tls.host, "alice", PASSWORD, form=form)
    container = registry_container(make_container, tmp_path, tls.ref("team/box:1"), auth_file=auth,
                                   ca_cert=tls.ca_cert)
    setup, log = recording_wrapper(tmp_path, tool)
    if tool == "wget":
        setup = WITHOUT_CURL + "\n" + setup
    result = container.run(setup=setup)
    assert result.rc == 0 and result.stdout == "hello from the registry\n", result
    basic = base64.b64encode(("alice:%s" % PASSWORD).encode()).decode()
    argv = read(log)
    assert "/v2/team/box/blobs/" in argv
    assert "Authorization" not in argv
    for secret in (PASSWORD, basic):
        assert secret not in argv and secret not in container.text
    assert store_leftovers(str(tmp_path / "store")) == []


def test_wrong_password_is_a_clear_error_and_stores_nothing(make_container, tmp_path, tls):
    """Rendering reads the manifest with the auth file too; the file on the host then holds
    a wrong password (the script reads it when it runs)."""
    auth = auth_file(tmp_path, tls.host, "alice", PASSWORD)
    container = registry_container(make_container, tmp_path, tls.ref("team/box:1"), auth_file=auth,
                                   ca_cert=tls.ca_cert)
    auth_file(tmp_path, tls.host, "alice", "wrong")
    result = container.run("true")
    assert result.rc != 0, result
    assert tls.ref("team/box:1") in result.stderr and "HTTP 401" in result.stderr, result
    assert "wrong credentials" in result.stderr, result
    store = str(tmp_path / "store")
    assert layer_dirs(store) == [] and store_leftovers(store) == []


def test_no_credentials_for_a_basic_auth_registry(make_container, tmp_path, tls):
    auth = auth_file(tmp_path, tls.host, "alice", PASSWORD)
    container = registry_container(make_container, tmp_path, tls.ref("team/box:1"), auth_file=auth,
                                   ca_cert=tls.ca_cert)
    auth_file(tmp_path, "elsewhere.example", "alice", PASSWORD)
    result = container.run("true")
    assert result.rc != 0 and "needs credentials (rootfs.image.auth_file)" in result.stderr, result


def test_self_signed_without_ca_cert_is_refused(make_container, tmp_path, tls):
    auth = auth_file(tmp_path, tls.host, "alice", PASSWORD)
    container = registry_container(make_container, tmp_path, tls.ref("team/box:1"), auth_file=auth,
                                   ca_cert=tls.ca_cert)
    text = container.text.replace("'%s'" % tls.ca_cert, "''")
    assert text != container.text
    with open(container.script, "w") as f:
        f.write(text)
    result = container.run("true")
    assert result.rc != 0 and "cannot reach https://%s/v2/" % tls.host in result.stderr, result
    assert "ca_cert" in result.stderr, result


# --------------------------------------------------------------------------- token auth

def test_token_auth_with_credentials_from_the_auth_file(make_container, tmp_path, token):
    auth = auth_file(tmp_path, token.host + "/team", "carol", TOKEN_PASSWORD)
    container = registry_container(make_container, tmp_path, token.ref("team/box:1"), auth_file=auth,
                                   tls_verify=False)
    setup, log = recording_wrapper(tmp_path, "curl")
    result = container.run(setup=setup)
    assert result.rc == 0 and result.stdout == "hello from the registry\n", result
    assert token.tokens.issued[-1] == ("carol", ["repository:team/box:pull"])
    argv = read(log)
    assert "/token?service=test-registry&scope=repository:team/box:pull" in argv
    assert TOKEN_PASSWORD not in argv and "Bearer" not in argv and "Authorization" not in argv


def test_token_auth_wrong_password(make_container, tmp_path, token):
    auth = auth_file(tmp_path, token.host, "carol", TOKEN_PASSWORD)
    container = registry_container(make_container, tmp_path, token.ref("team/box:1"), auth_file=auth,
                                   tls_verify=False)
    auth_file(tmp_path, token.host, "carol", "nope")
    result = container.run("true")
    assert result.rc != 0, result
    assert token.ref("team/box:1") in result.stderr and "HTTP 401, wrong credentials" in result.stderr, result
    assert layer_dirs(str(tmp_path / "store")) == []


# --------------------------------------------------------------------------- errors

def test_unknown_tag_is_refused_when_rendering(tmp_path, plain):
    spec = {"name": "x", "rootfs": {"image": {"source": plain.ref("team/box:nope"), "tls_verify": False,
                                              "store": str(tmp_path / "store")}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = subprocess.run([sys.executable, CLI, "render", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0
    assert plain.ref("team/box:nope") in result.stderr and "HTTP 404" in result.stderr, result.stderr
    assert not os.path.exists(str(tmp_path / "store"))


def test_corrupted_or_missing_blob_is_refused_and_nothing_stored(make_container, tmp_path, workdir, layout):
    with R.Registry(str(tmp_path / "reg")) as reg:
        reg.push(layout, "team/bad:1", layout_ref="t")
        container = registry_container(make_container, tmp_path, reg.ref("team/bad:1"), tls_verify=False)
        base, top = image_layers(reg, "team/bad:1")
        with open(reg.blob_path(top["digest"]), "wb") as f:   # another valid blob in its place
            f.write(fx.compress(make_tar([file_("x", b"x")]), "gzip"))
        result = container.run("true")
        assert result.rc != 0, result
        assert reg.ref("team/bad:1") in result.stderr and top["digest"] in result.stderr, result
        store = str(tmp_path / "store")
        assert layer_dirs(store) == [base["diff_id"][7:]]     # the good layer below stays
        assert store_leftovers(store) == []
        os.unlink(reg.blob_path(top["digest"]))
        result = container.run("true")
        assert result.rc != 0 and "HTTP 404 not found: blob missing from the registry" in result.stderr, result
        assert layer_dirs(store) == [base["diff_id"][7:]] and store_leftovers(store) == []


# --------------------------------------------------------------------------- one store

def test_layers_the_script_pulled_are_the_module_s_and_the_reverse(make_container, tmp_path, layout):
    """No blob is downloaded twice: each back-end finds the other's layers (the blobs are
    deleted from the registry in between)."""
    with R.Registry(str(tmp_path / "reg")) as reg:
        reg.push(layout, "team/one:1", layout_ref="t")
        reg.push(layout, "team/two:1", layout_ref="t")
        store = str(tmp_path / "store")
        # the script first, then the module's loader (which pulls into the store)
        one = registry_container(make_container, tmp_path, reg.ref("team/one:1"), name="one", tls_verify=False)
        assert one.run("true").rc == 0
        layers = image_layers(reg, "team/one:1")
        for layer in layers:
            os.unlink(reg.blob_path(layer["digest"]))
        raw = {"name": "two", "rootfs": {"image": {"source": reg.ref("team/two:1"), "tls_verify": False,
                                                   "store": store}},
               "state_dir": str(tmp_path / "state2")}
        spec = image_spec.load(raw, fetch_layers=True)
        assert [l["diff_id"] for l in spec["rootfs"]["image"]["resolved"]["layers"]] == \
            [l["diff_id"] for l in layers]
        assert ImageStore(store).image("%s/team/two:1" % reg.host)["layers"] == [l["diff_id"] for l in layers]
    # the registry is gone: the record serves the loader, the layers serve the script
    again = image_spec.load(raw)
    assert again == spec
    two = registry_container(make_container, tmp_path, reg.ref("team/two:1"), name="two", tls_verify=False)
    result = two.run()
    assert result.rc == 0 and result.stdout == "hello from the registry\n", result


def test_rendered_script_is_shellcheck_clean(make_container, tmp_path, tls):
    auth = auth_file(tmp_path, tls.host, "alice", PASSWORD)
    container = registry_container(make_container, tmp_path, tls.ref("team/box:1"), auth_file=auth,
                                   ca_cert=tls.ca_cert)
    for argv in (["shellcheck", "-s", "sh", container.script], ["dash", "-n", container.script]):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_applier_s_way_in_fetches_a_layer_by_the_plan_s_digest(tmp_path, plain):
    """ImageStore.add_layer (what the container applier calls for a plan's unpack_layer
    step) with a registry source: the blob is fetched with the step's registry options and
    verified; a second call finds the layer."""
    store = ImageStore(str(tmp_path / "store"))
    layer = image_layers(plain)[1]
    args = (plain.ref("team/box:1"), "docker", layer["path"])
    kw = dict(digest=layer["digest"], size=layer["size"], diff_id=layer["diff_id"],
              compression=layer["compression"], media_type=layer["media_type"])
    with pytest.raises(RG.RegistryError):       # https first: plain HTTP needs tls_verify false
        store.add_layer(*args, **kw)
    assert store.add_layer(*args, registry=PLAIN, **kw)["added"] is True
    assert store.layers() == [layer["diff_id"]]
    assert store.add_layer(*args, registry=PLAIN, **kw) == {"added": False}
    wrong = dict(kw)
    wrong["diff_id"] = image_layers(plain)[0]["diff_id"]
    with pytest.raises(LayerVerifyError) as err:
        ImageStore(str(tmp_path / "other")).add_layer(*args, registry=PLAIN, **wrong)
    assert wrong["diff_id"] in str(err.value)
