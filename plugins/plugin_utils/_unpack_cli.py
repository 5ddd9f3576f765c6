# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`containerfs unpack SOURCE DEST`: an image to a flattened root filesystem directory;
`containerfs pull REF --store DIR`: an image from a registry into the image store.

Standard library only. Wiring, in scripts/containerfs::

    from ansible_collections.fromscratch.containerfs.plugins.plugin_utils import _unpack_cli
    _unpack_cli.add_parser(commands)          # commands = parser.add_subparsers(...)
    _unpack_cli.add_pull_parser(commands)
    ...
    rc = args.func(args)                      # main(args) returns the exit status

Exit status: 0 ok, 2 bad input (source, format, tag, verification, unsafe layer),
1 any other failure.

Private to the collection; may change without notice.
"""

import sys
import time

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source as _image_source
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _store
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
                     "a docker save archive, a rootfs tarball (plain/gz/xz/zst), a directory, "
                     "or docker://HOST[:PORT]/REPO[:TAG|@DIGEST] (a registry)")
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
    _add_common(sub)
    sub.set_defaults(func=main)
    return sub


PULL_HELP = "pull an image from a registry (docker://HOST/REPO[:TAG|@DIGEST]) into the image store"
PULL_DESCRIPTION = (
    "Pull REF into the image store DIR under NAME: the manifest (a tag resolves to a digest, "
    "recorded), the config, and the layers the store does not hold yet, each verified by "
    "digest, size and diff_id. Short Docker Hub names expand to docker.io/library/. "
    "Exit status: 0 ok, 2 bad input (reference, unknown tag, verification), 1 other failure "
    "(network, authentication).")


def add_pull_parser(subparsers):
    sub = subparsers.add_parser("pull", help=PULL_HELP, description=PULL_DESCRIPTION)
    sub.add_argument("source", metavar="REF", help="[docker://]HOST[:PORT]/REPO[:TAG|@DIGEST]")
    sub.add_argument("--store", metavar="DIR", required=True, help="the image store root")
    sub.add_argument("--name", help="the image name in the store (default: REF without "
                     "docker://)")
    sub.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                     help="platform of a multi-platform image (default: this host's)")
    _add_common(sub)
    sub.set_defaults(func=pull_main)
    return sub


def _add_common(sub):
    sub.add_argument("--auth-file", metavar="FILE", help="registry credentials: a "
                     "containers-auth.json or docker config.json (never on the command line)")
    sub.add_argument("--cert", metavar="FILE", dest="ca_cert",
                     help="CA certificate(s) (PEM) the registry's TLS certificate is checked with")
    sub.add_argument("--tls-verify", choices=("true", "false"), default="true",
                     help="false: accept any certificate and plain HTTP (self-signed or local "
                     "registries)")
    sub.add_argument("--no-progress", action="store_true",
                     help="no progress bar (it is shown only when stderr is a terminal)")
    limits = sub.add_argument_group(
        "budgets", "stop a hostile image (decompression bomb) early, leaving nothing; the "
        "defaults fit real images with a wide margin")
    for name in _budget.LIMIT_NAMES:
        default = _budget.DEFAULT_LIMITS[name]
        limits.add_argument("--max-" + name.replace("_", "-"), dest="max_" + name, metavar="N",
                            type=int, help="%s (default: %s)" % (
                                _budget.LIMIT_DESCRIPTIONS[name], default if default is not None
                                else "as --max-" + name[len("layer_"):]))


def budget_of(args):
    """The Budget the command line asks for (ImageInputError on a bad limit)."""
    limits = dict((name, getattr(args, "max_" + name)) for name in _budget.LIMIT_NAMES)
    return _budget.Budget(limits, hint="--max-%(flag)s")


def registry_options(args):
    return _registry.options_from_params({
        "auth_file": args.auth_file, "ca_cert": args.ca_cert,
        "validate_certs": args.tls_verify != "false"})


def pull_main(args, stderr=None, stdout=None):
    """Run `containerfs pull` for parsed `args`; returns the exit status."""
    stderr = stderr or sys.stderr
    stdout = stdout or sys.stdout
    progress_bar = _progress_bar(args, stderr)

    def pull():
        ref = _registry.parse_reference(args.source)
        name = args.name or ref.image_name
        return ref, name, _store.ImageStore(args.store).pull(
            name, str(ref), platform=args.platform, progress=progress_bar,
            registry=registry_options(args), budget=budget_of(args))

    status, outcome = _attempt("pull", pull, progress_bar, stderr)
    if status != EXIT_OK:
        return status
    ref, name, result = outcome
    image = result["image"]
    stdout.write("%s %s as %s (%s, %s, %d layer%s, %d new)\n" % (
        "pulled" if result["changed"] else "unchanged", ref, name, image["manifest_digest"],
        image["platform"], len(image["layers"]), "" if len(image["layers"]) == 1 else "s",
        len(result["layers_added"])))
    return EXIT_OK


def _progress_bar(args, stderr):
    if not args.no_progress and hasattr(stderr, "isatty") and stderr.isatty():
        return ProgressBar(stderr)
    return None


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
    progress_bar = _progress_bar(args, stderr)

    def unpack():
        kw = {"registry": registry_options(args)} if _registry.is_reference(args.source) else {}
        return _unpack.unpack(args.source, args.dest, format=args.format, tag=args.tag,
                              digest=args.digest, platform=args.platform,
                              progress=progress_bar, store=args.store, name=args.name,
                              budget=budget_of(args), **kw)

    status, result = _attempt("unpack", unpack, progress_bar, stderr)
    if status != EXIT_OK:
        return status
    for warning in result["warnings"]:
        stderr.write("containerfs unpack: warning: %s\n" % warning)
    stdout.write("unpacked %s (%s, %d layer%s%s) into %s\n" % (
        args.source, result["format"], len(result["layers"] or []),
        "" if len(result["layers"] or []) == 1 else "s",
        ", " + result["platform"] if result.get("platform") else "", result["dest"]))
    return EXIT_OK


def _attempt(command, action, progress_bar, stderr):
    """Run `action()` for `containerfs COMMAND`: (EXIT_OK, its result), or, when it fails,
    the exit status (EXIT_INVALID for bad input, EXIT_FAILURE for anything else) and None,
    its reason written on `stderr` in one line. The progress bar ends either way, so the
    message starts on a line of its own."""
    try:
        outcome = (EXIT_OK, action())
        message = None
    except ImageInputError as exc:
        outcome, message = (EXIT_INVALID, None), str(exc)
    except (ContainerfsError, OSError) as exc:
        outcome, message = (EXIT_FAILURE, None), "error: %s" % exc
    if progress_bar is not None:
        progress_bar.close()
    if message is not None:
        stderr.write("containerfs %s: %s\n" % (command, message))
    return outcome
