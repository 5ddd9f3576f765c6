# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules of applying a layer onto a tree, one implementation each.

Two paths apply layers: `layers.LayerApplier` from a tar stream (the store's ``layer``
mode and the CLI's ``unpack``) and `flatten.apply_layer_dir()` from a layer the store
already holds. Both take their rules from here: how a whiteout and an opaque directory
are stored and read back, what a whiteout or an opaque directory removes from the lower
layers, how an entry replaces what is in its way, and which xattrs a layer may set.
Every function works on `lstat`, never follows a symlink and never leaves `root`.

Private to the collection; may change without notice.
"""

import os
import shutil
import stat

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# xattrs an image must never set itself: they would change how overlayfs reads the layer.
FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")


def path_in(root, rel):
    """The path of `rel` (a cleaned relative path, '' = the root itself) inside `root`."""
    return root + "/" + rel if rel else root


def layer_may_set_xattr(key):
    return not key.startswith(FORBIDDEN_XATTR_PREFIXES)


# --------------------------------------------------------------------------- stored form

def make_whiteout(path):
    """A whiteout as overlayfs reads it: a 0:0 character device."""
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def set_opaque(path):
    os.setxattr(path, OPAQUE_XATTR, b"y", follow_symlinks=False)


def is_opaque(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


# --------------------------------------------------------------------------- removing

def remove_entry(path, st):
    """Remove the tree or file at `path` (its lstat `st`)."""
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def remove_lower(root, rel, is_upper, on_remove=remove_entry):
    """A whiteout of `rel`: remove it from the lower layers. What the same layer wrote
    (`is_upper(rel)`) stays; below a directory it wrote, only the lower children go."""
    path = path_in(root, rel)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not is_upper(rel):
        on_remove(path, st)
    elif stat.S_ISDIR(st.st_mode):
        clear_lower_children(root, rel, is_upper, on_remove)


def clear_lower_children(root, rel, is_upper, on_remove=remove_entry):
    """An opaque directory `rel`: remove every child the same layer did not write."""
    base = path_in(root, rel)
    for name in os.listdir(base):
        remove_lower(root, rel + "/" + name if rel else name, is_upper, on_remove)


# --------------------------------------------------------------------------- replacing

def replace_entry(path, create, on_remove=remove_entry):
    """Run `create(path)` (an O_EXCL kind of call); what is in the way is removed first:
    a later entry wins over an earlier one and over the lower layers."""
    try:
        return create(path)
    except FileExistsError:
        on_remove(path, os.lstat(path))
        return create(path)


def create_file(path):
    """A new regular file, open for writing, private until its mode is set."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def replace_with_dir(path, mode):
    """A non-directory where a directory must be: replaced by a directory, which is what
    overlayfs shows (an upper directory over a lower non-directory)."""
    os.unlink(path)
    os.mkdir(path, mode)
