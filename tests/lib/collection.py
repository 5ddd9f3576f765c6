"""Make the checkout importable as ansible_collections.fromscratch.containerfs.

The repository root is the collection root, so tests (like scripts/containerfs) register
the package names in sys.modules instead of requiring an installed collection.
"""
import os
import sys
import types

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def register(repo_root=REPO_ROOT):
    names = {
        "ansible_collections": None,
        "ansible_collections.fromscratch": None,
        "ansible_collections.fromscratch.containerfs": repo_root,
    }
    for name, path in names.items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name)
        module.__path__ = [path] if path else []
        sys.modules[name] = module


def collections_dir(tmp_dir):
    """Return a directory usable as ANSIBLE_COLLECTIONS_PATH that holds this checkout."""
    base = os.path.join(tmp_dir, "collections")
    link_parent = os.path.join(base, "ansible_collections", "fromscratch")
    os.makedirs(link_parent, exist_ok=True)
    link = os.path.join(link_parent, "containerfs")
    if not os.path.islink(link):
        os.symlink(REPO_ROOT, link)
    return base
