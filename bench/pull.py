"""Benchmark: pulling a ~100 MiB multi-layer image from a local registry.

    sudo .venv/bin/python bench/pull.py [--runs 3]

1. Packs an image of this host's files (/etc, /usr/lib/python3.11, /usr/lib/python3: one
   gzip layer each, about 100 MiB unpacked) as an OCI layout, starts Debian's
   docker-registry on a loopback port (plain HTTP, the tests' tests/lib/registry.py) and
   pushes the image with skopeo.
2. Times, best of --runs, interleaved, each into a fresh directory:
     ours/pull         ImageStore.pull(docker://...): download, verify, unpack every layer
                       into the layer store (what the image module does)
     ours/unpack       unpack(docker://...): download, verify, one flattened rootfs (CLI)
     skopeo+unpack     `skopeo copy docker://... oci:DIR` then our unpack of that layout
     skopeo            `skopeo copy docker://... oci:DIR` alone (download + verify only)
     tar -x            GNU tar unpacking the same gzip blobs from that layout, one after
                       the other, no download, no verification: the floor any unpack sets
   and prints wall times and ratios to skopeo alone. Target: ours/pull under skopeo alone
   (where tar -x alone takes longer than skopeo, no pull that unpacks can reach it).

Needs docker-registry and skopeo (tests/setup-env installs them). Leaves nothing behind.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import io
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from tests.lib import collection  # noqa: E402

collection.register()
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _image_store  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import unpack as _unpack  # noqa: E402
from tests.lib import oci_fixtures as _fx  # noqa: E402
from tests.lib import registry as _test_registry  # noqa: E402

LAYER_DIRS = ("/etc", "/usr/lib/python3.11", "/usr/lib/python3")
PLAIN = _registry.RegistryOptions(validate_certs=False)


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def tar_dir(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(path, arcname=path.lstrip("/"))
    return buf.getvalue()


def build_layout(layout):
    layers = [tar_dir(d) for d in LAYER_DIRS if os.path.isdir(d)]
    _fx.oci_layout(layout, layers, tag="bench", compression="gzip")
    return sum(len(t) for t in layers), len(layers)


def skopeo_copy(ref, dest):
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", ref, "oci:%s:bench" % dest],
                   check=True, capture_output=True)


def layer_blobs(layout):
    """The layer blobs of the image skopeo copied into `layout`, in order."""
    with open(os.path.join(layout, "index.json")) as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(layout, "blobs", *manifest_digest.split(":"))) as f:
        layers = json.load(f)["layers"]
    return [os.path.join(layout, "blobs", *layer["digest"].split(":")) for layer in layers]


def run_case(case, ref, work):
    dest = os.path.join(work, "dest")
    store = os.path.join(work, "store")
    layout = os.path.join(work, "layout")
    start = time.perf_counter()
    if case == "ours/pull":
        _image_store.ImageStore(store).pull("bench", ref, registry=PLAIN)
    elif case == "ours/unpack":
        _unpack.unpack(ref, dest, registry=PLAIN)
    elif case == "skopeo+unpack":
        skopeo_copy(ref, layout)
        _unpack.unpack(layout, dest, tag="bench")
    elif case == "skopeo":
        skopeo_copy(ref, layout)
    elif case == "tar -x":
        skopeo_copy(ref, layout)
        blobs = layer_blobs(layout)
        os.makedirs(dest)
        start = time.perf_counter()
        for blob in blobs:
            subprocess.run(["tar", "-xzpf", blob, "-C", dest], check=True)
    elapsed = time.perf_counter() - start
    for path in (dest, store, layout):
        shutil.rmtree(path, ignore_errors=True)
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    missing = _test_registry.tools_missing()
    if missing:
        sys.exit("bench/pull.py: missing tools: %s (tests/setup-env installs them)" % ", ".join(missing))
    work = tempfile.mkdtemp(prefix="cfs-bench-pull-")
    try:
        size, count = build_layout(os.path.join(work, "src"))
        log("image: %d layers, %.1f MiB unpacked" % (count, size / 1048576.0))
        with _test_registry.Registry(os.path.join(work, "registry")) as reg:
            reg.push(os.path.join(work, "src"), "bench/image:1", layout_ref="bench")
            ref = reg.ref("bench/image:1")
            cases = ("ours/pull", "ours/unpack", "skopeo+unpack", "skopeo", "tar -x")
            times = dict((c, []) for c in cases)
            for run in range(args.runs):
                for case in cases:
                    times[case].append(run_case(case, ref, work))
                log("run %d/%d done" % (run + 1, args.runs))
        base = min(times["skopeo"])
        print("%-15s %10s %8s" % ("case", "best s", "/skopeo"))
        for case in cases:
            best = min(times[case])
            print("%-15s %10.3f %8.2f" % (case, best, best / base))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
