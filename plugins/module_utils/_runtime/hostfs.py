# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-side files, made so that nothing planted in a state, run or store dir is followed.

One place for the host paths the project writes: directory chains whose components are
checked (a symlink, a non-directory, a directory not owned by root or writable by group or
others is refused), files written atomically under a unique exclusive temp name, trees
removed only when they are real directories, and the per-container lock file.

Standard library only (the modules on the targets and the CLI both import it). Errors
are OSError (`UnsafePathError` for a path refused, `LockTimeout`; both also
ContainerfsError), so callers report them as they report any other host failure.
Private to the collection; may change without notice.
"""

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError

LOCK_POLL = 0.1


class UnsafePathError(OSError, ContainerfsError):
    """A host path we would write through is not ours (a symlink, another owner...)."""

    def __init__(self, path, reason):
        super().__init__(errno.EPERM, reason, path)
        self.message = "%s %s; refusing to use it" % (path, reason)

    def __str__(self):
        return self.message


class LockTimeout(OSError, ContainerfsError):
    """Another run held the lock for longer than we were to wait."""

    def __init__(self, path, what, timeout):
        super().__init__(errno.EWOULDBLOCK, "lock timeout", path)
        self.message = ("%s: another run holds the lock %s; gave up after %ss"
                        % (what, path, timeout))

    def __str__(self):
        return self.message


def within(path, base):
    return path == base or path.startswith(base.rstrip("/") + "/")


def check_base_ours(path):
    """The base the user gave (followed, as given: it may be a link such as /var/run) must
    be a directory owned by us and not writable by group or others, as the script checks."""
    _check_owner_and_mode(path, os.stat(path))


def _check_owner_and_mode(path, st):
    if st.st_uid != os.geteuid():
        raise UnsafePathError(path, "is owned by uid %d, not by root" % st.st_uid)
    if st.st_mode & 0o022:
        raise UnsafePathError(path, "is writable by group or others (mode %04o)"
                              % stat.S_IMODE(st.st_mode))


def check_dir_ours(path, strict=True):
    """Refuse `path` unless it is a real directory; with strict, also unless it is owned
    by root (our euid) and not writable by group or others (nobody else can swap what is
    in it)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(path, "is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(path, "is not a directory")
    if strict:
        _check_owner_and_mode(path, st)


def make_dirs(path, mode=0o755, trusted=None, create=True):
    """Make the directory `path` and its missing parents below `trusted` (the base the
    user gave: followed as it is, made when missing). Every existing component below it is
    checked (the last one only for being a real directory: a container may chown its own
    root). Returns the directories made (or, with create=False, that would be)."""
    path = os.path.normpath(path)
    trusted = os.path.normpath(trusted or path)
    if not within(path, trusted):
        raise ValueError("%s is not under %s" % (path, trusted))
    made = []
    if not os.path.isdir(trusted) and (not create or _make_base(trusted, mode)):
        made.append(trusted)  # made (with create=False: to make) by this call
    else:
        check_base_ours(trusted)  # there already, or made by a concurrent run just now
    parts = [p for p in path[len(trusted):].split("/") if p]
    current = trusted
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        last = i == len(parts) - 1
        if not made and os.path.lexists(current):
            check_dir_ours(current, strict=not last)
            continue
        if create:
            try:
                os.mkdir(current, mode)
            except FileExistsError:  # made by a concurrent run since
                check_dir_ours(current, strict=not last)
                continue
            os.chmod(current, mode)  # not subject to the umask
        made.append(current)
    return made


def _make_base(path, mode):
    """Make the directory `path` and its parents: True when this call made it, False when a
    concurrent run (containers set up at once under one new state dir) made it first."""
    try:
        os.makedirs(path, mode)
    except FileExistsError:
        if os.path.isdir(path):
            return False
        raise
    os.chmod(path, mode)  # not subject to the umask
    return True


def read_file(path):
    """The text of a file, never through a symlink at its last component (ELOOP)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8", "replace")


def write_file(path, content, mode=0o644):
    """Write `content` (str or bytes) to `path` atomically: a unique temp file beside it
    (O_EXCL|O_NOFOLLOW: a planted link is never written through), fsync, rename over (a
    planted link at `path` is replaced, not followed). Nothing is left behind on error."""
    if os.path.isdir(path) and not os.path.islink(path):
        raise UnsafePathError(path, "is a directory")
    parent, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % base, suffix=".tmp", dir=parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_tree(path):
    """Remove `path`: a real directory with all in it; a symlink or file is only unlinked
    (never followed). Missing is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


@contextlib.contextmanager
def locked(path, timeout, shared=False, what="lock"):
    """Hold flock(2) on `path` (made 0600, never through a symlink) for the block; wait
    up to `timeout` seconds, then raise LockTimeout naming `what` and the file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        kind = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, kind)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(path, what, timeout)
                time.sleep(LOCK_POLL)
        yield
    finally:
        os.close(fd)
