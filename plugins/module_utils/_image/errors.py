# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The errors of the image code: blobs, tar streams, layers, sources and the store.

Standard library only. The image code raises these typed errors and never exits; only
the modules and the CLI turn them into a failure.

Private to the collection; may change without notice.
"""

from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError


class ImageError(ContainerfsError):
    """Base of every error raised by the image code. `str()` is a complete message."""

    def __init__(self, msg, path=None):
        super().__init__(msg)
        self.msg = msg
        self.path = path


class ImageInputError(ImageError):
    """The input is bad (source, format, blob, layer content): nothing was changed."""


class LayerVerifyError(ImageInputError):
    """A blob does not match its descriptor (digest, size) or the config's diff_id."""


class UnsafeLayerError(ImageInputError):
    """A layer tries to write outside its root or holds an invalid entry."""


class ImageNotFoundError(ImageInputError):
    """The tag, digest or platform asked for is not in the source."""


class BudgetExceededError(ImageInputError):
    """A layer or image unpacks more bytes, entries or path depth than its budget allows
    (_image.budget); `limit` names the limit that stopped it."""

    def __init__(self, msg, path=None, limit=None):
        super().__init__(msg, path)
        self.limit = limit
