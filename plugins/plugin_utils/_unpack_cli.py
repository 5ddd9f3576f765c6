# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`containerfs unpack SOURCE DEST`: an image to a flattened root filesystem directory.

Standard library only. Wiring, in scripts/containerfs::

    from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _unpack_cli
    _unpack_cli.add_parser(commands)          # commands = parser.add_subparsers(...)
    ...
    rc = args.func(args)                      # main(args) returns the exit status

Exit status: 0 ok, 2 bad input (source, format, tag, verification, unsafe layer),
1 any other failure.

Private to the collection; may change without notice.
"""

import sys
import time

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source as _image_source
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import unpack as _unpack
from ansible_collections.fromscratch.containerfs.plugins.module_utils._errors import ContainerfsError
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageInputError

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2

HELP = "unpack an image (OCI layout, docker save archive, rootfs tarball or dir) into DEST"
DESCRIPTION = (
    "Unpack the image at SOURCE into DEST as one root filesystem, applying the layers in "
    "order (whiteouts delete, opaque directories clear). Every blob is checked against its "
    "digest, size and diff_id; no tar entry can write outside DEST. DEST must not exist or be "
    "empty; it appears complete or not at all. Exit status: 0 ok, 2 bad input, 1 other failure.")


def add_parser(subparsers):
    sub = subparsers.add_parser("unpack", help=HELP, description=DESCRIPTION)
    sub.add_argument("source", metavar="SOURCE", help="the image: an OCI layout (dir or tar), "
                     "a docker save archive, a rootfs tarball (plain/gz/xz/zst) or a directory")
    sub.add_argument("dest", metavar="DEST", help="the root filesystem directory to create")
    sub.add_argument("--format", default="auto", choices=_image_source.FORMATS,
                     help="the kind of SOURCE (default: auto-detect)")
    sub.add_argument("--tag", help="which image of a layout or archive, by tag")
    sub.add_argument("--digest", help="which image of a layout, by manifest or index digest")
    sub.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                     help="platform of a multi-platform image (default: this host's)")
    sub.add_argument("--store", metavar="DIR", help="also keep the layers in the image store "
                     "DIR (shared with the image module; e.g. /var/lib/containerfs)")
    sub.add_argument("--name", help="with --store: the image name (default: SOURCE's base name)")
    sub.add_argument("--no-progress", action="store_true",
                     help="no progress bar (it is shown only when stderr is a terminal)")
    sub.set_defaults(func=main)
    return sub


class ProgressBar:
    """`[#####.....]  45%  12.3/27.1 MiB` on a terminal, redrawn at most 10 times a second."""

    def __init__(self, stream, width=30):
        self.stream = stream
        self.width = width
        self._last = 0.0
        self._shown = False

    def __call__(self, done, total):
        now = time.time()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        frac = min(1.0, float(done) / total) if total else 1.0
        fill = int(frac * self.width)
        self.stream.write("\r[%s%s] %3d%%  %.1f/%.1f MiB" % (
            "#" * fill, "." * (self.width - fill), frac * 100, done / 1048576.0,
            total / 1048576.0))
        self.stream.flush()
        self._shown = True

    def close(self):
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def main(args, stderr=None, stdout=None):
    """Run `containerfs unpack` for parsed `args`; returns the exit status."""
    stderr = stderr or sys.stderr
    stdout = stdout or sys.stdout
    progress_bar = None
    if not args.no_progress and hasattr(stderr, "isatty") and stderr.isatty():
        progress_bar = ProgressBar(stderr)
    try:
        result = _unpack.unpack(args.source, args.dest, format=args.format, tag=args.tag,
                                digest=args.digest, platform=args.platform,
                                progress=progress_bar, store=args.store, name=args.name)
    except ImageInputError as exc:
        _end(progress_bar)
        stderr.write("containerfs unpack: %s\n" % exc)
        return EXIT_INVALID
    except (ContainerfsError, OSError) as exc:
        _end(progress_bar)
        stderr.write("containerfs unpack: error: %s\n" % exc)
        return EXIT_FAILURE
    _end(progress_bar)
    for warning in result["warnings"]:
        stderr.write("containerfs unpack: warning: %s\n" % warning)
    stdout.write("unpacked %s (%s, %d layer%s%s) into %s\n" % (
        args.source, result["format"], len(result["layers"] or []),
        "" if len(result["layers"] or []) == 1 else "s",
        ", " + result["platform"] if result.get("platform") else "", result["dest"]))
    return EXIT_OK


def _end(progress_bar):
    if progress_bar is not None:
        progress_bar.close()
