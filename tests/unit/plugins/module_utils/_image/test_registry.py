"""The pure parts of the registry client: references, auth challenges, auth files."""
import base64
import json

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as RG
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, host, repo, tag, digest", [
    ("docker://alpine", "docker.io", "library/alpine", "latest", None),
    ("docker://alpine:3.20", "docker.io", "library/alpine", "3.20", None),
    ("docker://docker.io/alpine:3.20", "docker.io", "library/alpine", "3.20", None),
    ("docker://index.docker.io/team/app", "docker.io", "team/app", "latest", None),
    ("docker://team/app:1", "docker.io", "team/app", "1", None),
    ("docker://localhost/app", "localhost", "app", "latest", None),
    ("docker://127.0.0.1:5000/a/b/c:v1.2-x", "127.0.0.1:5000", "a/b/c", "v1.2-x", None),
    ("docker://registry.example.com/team/app@" + DIGEST, "registry.example.com", "team/app", None, DIGEST),
    ("docker://r.example:443/app:1@" + DIGEST, "r.example:443", "app", "1", DIGEST),
    ("quay.io/org/img:tag", "quay.io", "org/img", "tag", None),
])
def test_parse_reference(text, host, repo, tag, digest):
    ref = RG.parse_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repo, tag, digest)


def test_reference_text_and_api_host():
    ref = RG.parse_reference("docker://alpine:3.20")
    assert str(ref) == "docker://docker.io/library/alpine:3.20"
    assert ref.api_host == "registry-1.docker.io"
    assert RG.parse_reference("docker://h.example:5000/a").api_host == "h.example:5000"


def test_tag_and_digest_options_fill_in():
    assert RG.parse_reference("docker://h.example/a", tag="2").tag == "2"
    ref = RG.parse_reference("docker://h.example/a", digest=DIGEST)
    assert (ref.tag, ref.digest) == (None, DIGEST)
    with pytest.raises(ImageInputError, match="names tag 1 but the tag option says 2"):
        RG.parse_reference("docker://h.example/a:1", tag="2")


@pytest.mark.parametrize("text, why", [
    ("docker://", "empty"),
    ("docker://Team/App", "repository"),
    ("docker://h.example/a@sha256:abc", "malformed digest"),
    ("docker://h.example/a:bad/tag", "repository"),
    ("docker://h.example/a:-x", "malformed tag"),
    ("docker://h.example/a//b", "repository"),
])
def test_bad_references(text, why):
    with pytest.raises(ImageInputError, match=why):
        RG.parse_reference(text)


def test_is_reference():
    assert RG.is_reference("docker://a")
    assert not RG.is_reference("/tmp/docker://a") and not RG.is_reference(None)


@pytest.mark.parametrize("header, scheme, params", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
     "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                "scope": "repository:library/alpine:pull"}),
    ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
    ('BEARER realm=https://a/t, service=s', "bearer", {"realm": "https://a/t", "service": "s"}),
    ('Bearer realm="a\\"b",error="invalid_token"', "bearer", {"realm": 'a"b', "error": "invalid_token"}),
    ("", None, {}),
])
def test_parse_challenge(header, scheme, params):
    assert RG.parse_challenge(header) == (scheme, params)


def _auth(tmp_path, auths):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": auths}))
    return str(path)


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def test_auth_file_most_specific_key_wins(tmp_path):
    path = _auth(tmp_path, {"r.example": {"auth": _b64("host:1")},
                            "r.example/team": {"auth": _b64("team:2")},
                            "r.example/team/app": {"auth": _b64("app:3:with:colons")}})

    def cred(ref):
        return RG.auth_file_credentials(path, RG.parse_reference(ref))
    assert cred("docker://r.example/team/app:1") == ("app", "3:with:colons")
    assert cred("docker://r.example/team/other") == ("team", "2")
    assert cred("docker://r.example/solo") == ("host", "1")
    assert cred("docker://other.example/team/app") is None


def test_auth_file_docker_hub_legacy_key_and_scheme(tmp_path):
    path = _auth(tmp_path, {"https://index.docker.io/v1/": {"auth": _b64("hub:pw")},
                            "https://r.example:5000": {"username": "u", "password": "p"}})
    assert RG.auth_file_credentials(path, RG.parse_reference("alpine")) == ("hub", "pw")
    assert RG.auth_file_credentials(path, RG.parse_reference("r.example:5000/a")) == ("u", "p")


def test_auth_file_errors(tmp_path):
    ref = RG.parse_reference("r.example/a")
    with pytest.raises(ImageInputError, match="cannot read"):
        RG.auth_file_credentials(str(tmp_path / "missing.json"), ref)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ImageInputError, match="not valid JSON"):
        RG.auth_file_credentials(str(bad), ref)
    path = _auth(tmp_path, {"r.example": {"auth": _b64("nocolon")}})
    with pytest.raises(ImageInputError, match="not user:password"):
        RG.auth_file_credentials(path, ref)


def test_options_from_params():
    opts = RG.options_from_params({"username": "u", "password": "p", "auth_file": None,
                                   "ca_cert": "/ca.pem", "validate_certs": False})
    assert (opts.username, opts.password, opts.ca_cert, opts.validate_certs) == ("u", "p", "/ca.pem", False)
    assert RG.options_from_params({}).validate_certs is True
    assert RG.options_from_params(None).credentials(RG.parse_reference("a")) is None
    with pytest.raises(ImageInputError, match="both username and password"):
        RG.options_from_params({"username": "u"})
    assert set(RG.REGISTRY_ARGUMENT_SPEC) == {"username", "password", "auth_file", "ca_cert", "validate_certs"}
    assert RG.REGISTRY_ARGUMENT_SPEC["password"]["no_log"] is True
