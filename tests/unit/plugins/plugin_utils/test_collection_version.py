"""plugin_utils._version: an installed collection has MANIFEST.json and no galaxy.yml."""
import json

from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _version


def test_the_checkout_says_galaxy_yml_version():
    import yaml
    with open(_version.COLLECTION_ROOT + "/galaxy.yml") as f:
        assert _version.collection_version() == str(yaml.safe_load(f)["version"])


def test_an_installed_copy_says_its_manifest_version(tmp_path):
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"collection_info": {"version": "3.1.4"}}))
    (tmp_path / "galaxy.yml").write_text("version: 9.9.9\n")
    assert _version.collection_version(str(tmp_path)) == "3.1.4"


def test_neither_file_gives_the_fallback(tmp_path):
    assert _version.collection_version(str(tmp_path)) == _version.VERSION_FALLBACK
    (tmp_path / "MANIFEST.json").write_text("{not json")
    _version.collection_version.cache_clear()  # (read once per process)
    assert _version.collection_version(str(tmp_path)) == _version.VERSION_FALLBACK
