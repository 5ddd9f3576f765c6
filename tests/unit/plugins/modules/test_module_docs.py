"""ansible-doc renders every module, with the shared fragments merged in: requirements,
platform linux, the action group (with state_dir and run_dir, which module_defaults for the
group sets for all of them), and the container module's `spec` with the spec's fields."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.lib.collection import REPO_ROOT, collections_dir

MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO_ROOT, "plugins", "modules"))
                 if f.endswith(".py") and not f.startswith("_"))


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("ansible-doc"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_dir(tmp), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "tmp"))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "--json"]
                          + ["fromscratch.containerfs." + m for m in MODULES],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    return dict((name.split(".")[-1], data["doc"]) for name, data in json.loads(proc.stdout).items())


def group():
    with open(os.path.join(REPO_ROOT, "meta", "runtime.yml")) as f:
        return yaml.safe_load(f)["action_groups"]["containerfs"]


@pytest.mark.parametrize("module", MODULES)
def test_every_module_renders_with_requirements_and_linux(docs, module):
    doc = docs[module]
    assert doc["short_description"] and doc["requirements"], module
    assert doc["attributes"]["platform"]["platforms"] == "linux"
    assert all("support" in attr for attr in doc["attributes"].values()), doc["attributes"]


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_in_the_group_with_its_dirs(docs, module):
    doc = docs[module]
    assert module in group(), "meta/runtime.yml action_groups.containerfs lacks %s" % module
    assert doc["attributes"]["action_group"]["membership"] == ["fromscratch.containerfs.containerfs"]
    assert {"state_dir", "run_dir"} <= set(doc["options"]), module


def test_the_container_spec_documents_the_spec_fields(docs):
    from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields
    spec = docs["container"]["options"]["spec"]
    assert spec["type"] == "dict" and sorted(spec["suboptions"]) == sorted(fields.names())
    image = spec["suboptions"]["rootfs"]["suboptions"]["image"]["suboptions"]
    assert sorted(image) == sorted(fields.names("rootfs.image"))


@pytest.mark.parametrize("module", ["image", "image_info"])
def test_the_image_store_is_state_dir(docs, module):
    assert docs[module]["options"]["state_dir"]["aliases"] == ["store"]
    assert "store" not in docs[module]["options"]
