# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of every error the collection raises on purpose.

Each layer has its own kind (SpecError: the spec; ApplyError: a host step; ImageError:
an image or the store; RenderError: the script; UnsafePathError: a host path), and they
all derive from ContainerfsError, so an entry point (a module's main, the CLI) can tell
"a problem we explain" from a bug with one except clause and show its message as it is.

Private to the collection; may change without notice. Standard library only.
"""


class ContainerfsError(Exception):
    """An error whose message is meant for the person who ran us."""
