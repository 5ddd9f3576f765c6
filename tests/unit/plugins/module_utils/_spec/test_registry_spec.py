"""rootfs.image with a registry source (docker://): the registry fields are checked for
their place, and the pull policy decides whether the registry is asked at all (no
network here: a record in a store of the test's own, and an address nothing listens on)."""
import json
import os

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.store import ImageStore
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as image_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.errors import SpecError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec

REF = "docker://127.0.0.1:1/team/app:1.0"     # nothing listens on port 1
DIFF_ID = "sha256:" + "d" * 64
BLOB = "sha256:" + "b" * 64
RESOLVED = {"format": "docker", "manifest_digest": "sha256:" + "a" * 64,
            "config_digest": "sha256:" + "c" * 64, "rootfs": None,
            "layers": [{"digest": BLOB, "size": 10, "diff_id": DIFF_ID, "compression": "gzip",
                        "path": "blobs/sha256/" + "b" * 64, "media_type": None}]}


def spec_with(**image):
    return {"name": "app", "state_dir": "/s", "rootfs": {"image": dict({"source": REF}, **image)}}


def errors_of(raw):
    with pytest.raises(SpecError) as err:
        load_spec(raw, resolved_image=RESOLVED)
    return dict(err.value.errors)


def test_registry_fields_are_normalised():
    spec = load_spec(spec_with(auth_file="/etc/containers//auth.json", ca_cert="/etc/ca.pem",
                               tls_verify=False, pull="always"), resolved_image=RESOLVED)
    image = spec["rootfs"]["image"]
    assert image["registry"] == {"auth_file": "/etc/containers/auth.json", "ca_cert": "/etc/ca.pem",
                                 "tls_verify": False}
    assert "pull" not in image          # it steers the loading only: no plan depends on it
    defaults = load_spec(spec_with(), resolved_image=RESOLVED)["rootfs"]["image"]["registry"]
    assert defaults == {"auth_file": None, "ca_cert": None, "tls_verify": True}


@pytest.mark.parametrize("field,value,message", [
    ("auth_file", "auth.json", "absolute path on the host"),
    ("ca_cert", "../ca.pem", "absolute path on the host"),
    ("auth_file", "/etc/auth\n.json", "must not contain"),
    ("tls_verify", "no", "boolean"),
    ("pull", "sometimes", "missing, always"),
])
def test_bad_registry_fields(field, value, message):
    errors = errors_of(spec_with(**{field: value}))
    assert message in errors["rootfs.image." + field], errors


def test_a_password_has_no_place_in_a_spec():
    errors = errors_of(spec_with(password="hunter2"))
    assert "unknown field" in errors["rootfs.image.password"]


@pytest.mark.parametrize("field,value", [("auth_file", "/a.json"), ("ca_cert", "/ca.pem"),
                                         ("tls_verify", False), ("pull", "always")])
def test_registry_fields_need_a_registry_source(field, value):
    raw = spec_with(**{field: value})
    raw["rootfs"]["image"]["source"] = "/srv/layout"
    errors = errors_of(raw)
    assert "goes with a registry source" in errors["rootfs.image." + field], errors


def stored_pull(store, ref=REF, platform="linux/amd64", blobs=True):
    """A record as ImageStore.pull writes it for a registry image, and its layer."""
    s = ImageStore(store)
    os.makedirs(s.layer_path(DIFF_ID))
    with open(s.layer_meta_path(DIFF_ID), "w") as f:
        f.write(_layout.layer_metadata_text(_layout.layer_metadata(DIFF_ID, BLOB, 10, None, "gzip", [])))
    record = {"schema": 1, "name": "x", "format": "docker", "manifest_digest": RESOLVED["manifest_digest"],
              "config_digest": RESOLVED["config_digest"], "platform": platform, "layers": [DIFF_ID],
              "rootfs": None, "config": {"Cmd": ["/bin/app"]},
              "source": {"path": ref, "stat": None, "digest": RESOLVED["manifest_digest"]}}
    if blobs:
        record["blobs"] = [{"digest": BLOB, "size": 10, "media_type": None, "compression": "gzip"}]
    os.makedirs(s.images_dir, exist_ok=True)
    with open(s.record_path("127.0.0.1:1/team/app:1.0"), "w") as f:
        json.dump(record, f)
    return s


def test_pull_missing_uses_the_store_s_record_without_the_network(tmp_path, monkeypatch):
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import platforms
    monkeypatch.setattr(image_spec, "host_platform", lambda: platforms.parse_platform("linux/amd64"))
    stored_pull(str(tmp_path))
    spec = image_spec.load(spec_with(store=str(tmp_path)))
    image = spec["rootfs"]["image"]
    assert image["source"] == REF and image["resolved"]["layers"] == RESOLVED["layers"]
    assert image["resolved"]["manifest_digest"] == RESOLVED["manifest_digest"]
    assert spec["process"]["args"] == ["/bin/app"]
    # another spelling of the same reference finds it too
    same = image_spec.load(spec_with(store=str(tmp_path), source="docker://127.0.0.1:1/team/app", tag="1.0"))
    assert same["rootfs"]["image"]["resolved"] == image["resolved"]


@pytest.mark.parametrize("change", [{"pull": "always"}, {"platform": "linux/arm64"},
                                    {"source": "docker://127.0.0.1:1/team/app:2.0"}])
def test_otherwise_the_registry_is_asked(tmp_path, monkeypatch, change):
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import platforms
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry
    monkeypatch.setattr(registry, "BACKOFF", 0)      # connection refused: retried, without waiting
    monkeypatch.setattr(image_spec, "host_platform", lambda: platforms.parse_platform("linux/amd64"))
    stored_pull(str(tmp_path))
    with pytest.raises(SpecError) as err:
        image_spec.load(spec_with(store=str(tmp_path), **change))
    (field, message), = err.value.errors
    assert field == "rootfs.image.source" and "127.0.0.1:1/team/app" in message and "cannot reach" in message


def test_a_record_without_its_blobs_or_layers_is_not_used(tmp_path, monkeypatch):
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry
    monkeypatch.setattr(registry, "BACKOFF", 0)
    store = stored_pull(str(tmp_path), platform=None, blobs=False)
    with pytest.raises(SpecError):
        image_spec.load(spec_with(store=str(tmp_path), platform="linux/amd64"))
    os.rmdir(store.layer_path(DIFF_ID))
    with pytest.raises(SpecError):
        image_spec.load(spec_with(store=str(tmp_path)))


def test_a_bad_reference_is_a_spec_error():
    with pytest.raises(SpecError) as err:
        image_spec.load(spec_with(source="docker://Bad_Host:x/App"))
    assert "invalid image reference" in err.value.errors[0][1]
