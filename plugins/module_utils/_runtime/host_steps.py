# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host steps: the names and dirs a container's paths are built from, the directories and
files of its state, run and store dirs, its image layers, and the plan recorded there.

Private to the collection; may change without notice.
"""

import json
import os

from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime import hostfs as _hostfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils import _layout
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan import plan as _plan
from ansible_collections.fromscratch.containerfs.plugins.module_utils._plan.plan import describe_step
from ansible_collections.fromscratch.containerfs.plugins.module_utils._runtime.errors import ApplyError, os_error_text
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.text import NAME_RE, bad_char

# The kinds HostSteps does (namespaces: namespaces.Namespaces).
HOST_STEP_KINDS = ("unpack_layer", "write_file", "copy_file", "make_dir", "namespaces")
# The host paths of a container, as container_paths() computes them, that a recorded plan
# must hold before anything is read from or removed under them; the first plans recorded
# held only these, the others are filled in when missing.
FIRST_RECORDED_PATHS = ("state", "run", "root", "upper", "work", "etc", "image_ref")
RECORDED_PATHS = FIRST_RECORDED_PATHS + tuple(k for k in _layout.CONTAINER_PATH_KEYS if k not in FIRST_RECORDED_PATHS)


def check_name(name):
    """A container name as the spec allows it (the whole string: no '/', no newline)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ApplyError("invalid container name %r: it must match %s" % (name, NAME_RE.pattern))
    return name


def check_host_dir(path, what):
    """An absolute host directory path without control characters."""
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ApplyError("%s must be an absolute path, got %r" % (what, path))
    if bad_char(path) is not None:  # the spec's own rule for host paths
        raise ApplyError("%s must not hold control characters, got %r" % (what, path))
    return os.path.normpath(path)


def canonical(path, base):
    """`path` with the user-given `base` it lies under canonicalised (realpath: how
    mountinfo shows it); our own components below it stay as they are."""
    return os.path.normpath(os.path.join(os.path.realpath(base), os.path.relpath(path, base)))


def recorded_plan(state_dir, name, run_dir=None):
    """The plan a container was last set up from (its state dir keeps it), or None.

    `name`, `state_dir` and `run_dir` (None: the recorded one) are checked first; the plan
    read is refused unless its name and paths are those container_paths() gives for them,
    so nothing it names outside them is ever read or removed."""
    check_name(name)
    state_dir = check_host_dir(state_dir, "state_dir")
    if run_dir is not None:
        run_dir = check_host_dir(run_dir, "run_dir")
    state = _layout.container_state(state_dir, name)
    path = _layout.container_record(state_dir, name)
    try:
        if _hostfs.make_dirs(state, trusted=state_dir, create=False):
            return None
        plan = json.loads(_hostfs.read_file(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ApplyError("cannot read the recorded plan %s: %s" % (path, exc))
    _check_recorded(plan, name, state_dir, run_dir, path)
    _upgrade_recorded_steps(plan["steps"])
    return plan


def _check_recorded(plan, name, state_dir, run_dir, source):
    """Refuse a recorded plan whose name or paths are not where they must be."""
    def refuse(why):
        raise ApplyError("the recorded plan %s %s; refusing to use it (inspect that file, or "
                         "remove it by hand)" % (source, why))

    paths = plan.get("paths") if isinstance(plan, dict) else None
    if not isinstance(paths, dict) or not isinstance(plan.get("steps"), list):
        refuse("is not a plan")
    if plan.get("name") != name:
        refuse("is for container %r, not %r" % (plan.get("name"), name))
    for key in RECORDED_PATHS:
        if paths.get(key) is not None and not isinstance(paths[key], str):
            refuse("has a paths.%s that is not a string" % key)
    if run_dir is None:
        try:
            run_dir = check_host_dir(os.path.dirname(paths.get("run") or ""), "its run dir")
        except ApplyError as exc:
            refuse(str(exc))
    want = _expected_paths(name, state_dir, run_dir, paths)
    for key in set(RECORDED_PATHS) - set(FIRST_RECORDED_PATHS):
        paths.setdefault(key, want[key])  # plans recorded before the key existed
    for key in RECORDED_PATHS:
        got = paths.get(key)
        if (got and os.path.normpath(got)) != want[key]:
            refuse("has paths.%s = %r where %r was expected" % (key, got, want[key]))
    if not [s for s in plan["steps"] if isinstance(s, dict) and s.get("op") == "namespaces"]:
        refuse("has no namespaces step")


def _upgrade_recorded_steps(steps):
    """Plans recorded before a symlink step named its content `link_to` called it `target`."""
    for step in steps:
        if isinstance(step, dict) and step.get("op") == "symlink" and "link_to" not in step:
            step["link_to"] = step.pop("target", None)


def _expected_paths(name, state_dir, run_dir, recorded):
    """container_paths() for a name, state and run dir, with what a plan may choose
    itself: the rootfs of a container without overlay, and the store its reference is in."""
    ref = recorded.get("image_ref")
    store = ref and _layout.store_of_ref(ref, _layout.container_state(state_dir, name))
    overlay = recorded.get("upper") is not None
    root = recorded.get("root")
    if not overlay:
        try:
            root = check_host_dir(root, "its rootfs")
        except ApplyError:
            root = None  # so refused below
    spec = {"name": name, "state_dir": state_dir, "run_dir": run_dir,
            "rootfs": {"overlay": overlay, "path": root, "image": {"store": store} if store else None}}
    want = _plan.container_paths(spec)
    return dict((k, v and os.path.normpath(v)) for k, v in want.items())


class HostSteps:
    """Checks and applies host-phase steps: one check_ and one do_ per kind of directory
    or file in the state, run and store dirs; image layers are checked and added at once
    (under the store's lock)."""

    def __init__(self, plan, bases, check_mode, on_done=None):
        self.plan = plan
        self.bases = bases    # the user-given bases below which every component is ours
        self.check_mode = check_mode
        self.on_done = on_done or (lambda: None)  # called after each step done (not checked)
        self.layer_index = 0
        self.budget = None    # the image's _image.budget.Budget, shared by its layer steps
        self.layers_added = []  # diff_ids this set-up added to the store (undone by a budget error)

    def converge(self):
        """Do every host step that is missing; return the description of each."""
        done = []
        for step in [s for s in self.plan["steps"] if s["phase"] == "host" and s["op"] != "namespaces"]:
            try:
                if step["op"] == "unpack_layer":
                    changed = self.unpack_layer(step)
                else:
                    changed = not getattr(self, "check_" + step["op"])(step)
                    if changed and not self.check_mode:
                        getattr(self, "do_" + step["op"])(step)
            except OSError as exc:
                raise ApplyError(os_error_text(exc), step=describe_step(step))
            if changed:
                done.append(describe_step(step))
                if not self.check_mode:
                    self.on_done()
        return done

    def _base_of(self, path):
        """The user-given base `path` lies under (None: a path of the user's own, such as
        a volume source)."""
        for base in self.bases:
            if _hostfs.within(path, base):
                return base
        return None

    def check_make_dir(self, step):
        return not _hostfs.make_dirs(step["path"], int(step["mode"], 8), self._base_of(step["path"]), create=False)

    def do_make_dir(self, step):
        _hostfs.make_dirs(step["path"], int(step["mode"], 8), self._base_of(step["path"]))

    def check_write_file(self, step):
        return _has_content(step["path"], step["content"])

    def do_write_file(self, step):
        _hostfs.write_file(step["path"], step["content"], int(step["mode"], 8))

    def check_copy_file(self, step):
        with open(step["source"]) as f:
            return _has_content(step["path"], f.read())

    def do_copy_file(self, step):
        with open(step["source"]) as f:
            _hostfs.write_file(step["path"], f.read(), int(step["mode"], 8))

    def unpack_layer(self, step):
        """Verify and unpack one image layer into the shared store (the image module's
        code). Whether it is there is asked under the store's lock, which its garbage
        collection holds from reading the references to deleting: our reference is written
        first, so a layer seen here stays. Returns True when it was (or would be) added."""
        from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _image_store
        store = _image_store.ImageStore(self.plan["paths"]["store"])
        if self.check_mode:
            return not store.has_layer(step["diff_id"])
        index, self.layer_index = self.layer_index, self.layer_index + 1
        if self.budget is None:
            from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _spec_image
            self.budget = _spec_image.budget_of(step)
        registry = None
        if step.get("registry"):
            from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import registry as _spec_registry
            registry = _spec_registry.options_of(step["registry"])
        try:
            got = store.add_layer(
                step["source"], step["format"], step["blob"], digest=step["digest"],
                size=step["size"], diff_id=step["diff_id"], compression=step["compression"] or None,
                media_type=step.get("media_type"), index=index, registry=registry,
                budget=self.budget)
        except _image_store.BudgetExceededError as exc:
            self._undo_added_layers(store, exc, step)
            raise ApplyError(str(exc), step=describe_step(step))
        except _image_store.ImageError as exc:
            raise ApplyError(str(exc), step=describe_step(step))
        if got.get("added"):
            self.layers_added.append(step["diff_id"])
        return bool(got.get("added"))

    def _undo_added_layers(self, store, budget_error, step):
        """A set-up its budget stopped leaves no layer it added that nothing else uses
        (the store's rule for a pull). Other failures keep them: they are complete and
        verified, and a retry need not read them again."""
        from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _image_store
        try:
            store.undo_added_layers(self.layers_added, self.plan["paths"]["image_ref"])
        except (_image_store.ImageError, OSError) as exc:
            why = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
            raise ApplyError("%s; the layers this set-up added stay in the store %s: removing them "
                             "failed: %s" % (budget_error, store.root, why), step=describe_step(step))


def _has_content(path, content):
    try:
        return _hostfs.read_file(path) == content
    except OSError:
        return False
