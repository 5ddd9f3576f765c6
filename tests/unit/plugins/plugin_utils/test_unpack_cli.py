"""plugin_utils._unpack_cli: the one place where `unpack` and `pull` turn an error into
an exit status and a line on stderr."""
import io

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError
from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _unpack_cli


class ProgressBar(object):
    """A progress bar that records when it was closed, relative to what stderr holds."""

    def __init__(self, stderr):
        self.stderr = stderr
        self.closed_at = None

    def close(self):
        self.closed_at = len(self.stderr.getvalue())


def attempt(action):
    stderr = io.StringIO()
    progress = ProgressBar(stderr)
    status, result = _unpack_cli._attempt("unpack", action, progress, stderr)
    return status, result, stderr.getvalue(), progress


def fail_with(exc):
    def action():
        raise exc
    return action


def test_success_returns_the_result_and_says_nothing():
    status, result, err, progress = attempt(lambda: {"dest": "/x"})
    assert (status, result, err) == (_unpack_cli.EXIT_OK, {"dest": "/x"}, "")
    assert progress.closed_at == 0


@pytest.mark.parametrize("exc, status, line", [
    (ImageInputError("no image tagged 'v2'"), 2, "containerfs unpack: no image tagged 'v2'\n"),
    (ContainerfsError("the store is locked"), 1, "containerfs unpack: error: the store is locked\n"),
    (OSError(28, "No space left on device"), 1,
     "containerfs unpack: error: [Errno 28] No space left on device\n"),
])
def test_an_error_is_one_line_after_the_bar_ends(exc, status, line):
    got_status, result, err, progress = attempt(fail_with(exc))
    assert (got_status, result, err) == (status, None, line)
    assert progress.closed_at == 0          # closed before the message: it starts its own line


def test_a_bug_is_not_turned_into_an_exit_status():
    with pytest.raises(KeyError):
        attempt(fail_with(KeyError("layers")))


def test_no_progress_bar():
    stderr = io.StringIO()
    status, result = _unpack_cli._attempt("pull", fail_with(ImageInputError("bad ref")), None, stderr)
    assert (status, result, stderr.getvalue()) == (2, None, "containerfs pull: bad ref\n")
