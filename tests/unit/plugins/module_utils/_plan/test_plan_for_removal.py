"""plan_for_removal: the plan `state: absent` by name removes from when no plan was
recorded. It must be the plan's own shape (the namespaces step build_plan makes), or the
back-ends that read it would meet a step no spec produces."""
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import build_plan, plan_for_removal
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.namespaces import NS_FILES, Namespaces
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.defaults import NAMESPACE_TYPES
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import load_spec


def full_plan(name, state_dir, run_dir):
    """The plan of a spec of that name and dirs with a fresh namespace of every kind."""
    return build_plan(load_spec({"name": name, "rootfs": {"path": "/srv/rootfs"},
                                 "state_dir": state_dir, "run_dir": run_dir,
                                 "namespaces": list(NAMESPACE_TYPES)}))


def test_its_namespaces_step_is_the_one_of_a_spec_with_every_namespace():
    removal = plan_for_removal("demo", "/s", "/r")
    spec_steps = [s for s in full_plan("demo", "/s", "/r")["steps"] if s["op"] == "namespaces"]
    assert removal["steps"] == spec_steps


def test_it_has_the_version_and_name_of_a_plan_and_no_digest():
    removal = plan_for_removal("demo", "/s", "/r")
    full = full_plan("demo", "/s", "/r")
    assert set(removal) == set(full)
    assert (removal["version"], removal["name"], removal["digest"]) == (full["version"], "demo", None)


def test_its_paths_are_the_layout_s_with_the_default_dirs_when_none_are_given():
    assert plan_for_removal("demo")["paths"] == _layout.container_paths(
        "demo", _layout.DEFAULT_STATE_DIR, _layout.DEFAULT_RUN_DIR, overlay=True)
    assert plan_for_removal("demo", "/s", "/r")["paths"] == _layout.container_paths("demo", "/s", "/r", overlay=True)


def test_the_runtime_finds_every_namespace_it_pins_under_the_container_s_ns_dir():
    removal = plan_for_removal("demo", "/s", "/r")
    files = Namespaces(removal).files()
    assert sorted(files) == sorted(NS_FILES.values())
    assert all(path == _layout.ns_file(removal["paths"]["ns"], kind) for kind, path in files.items())
