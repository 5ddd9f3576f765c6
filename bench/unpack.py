"""Benchmark: unpacking an image, ours vs GNU tar vs umoci; disk used by 10 containers.

    sudo .venv/bin/python bench/unpack.py [--runs 3] [--layers 3] [--inflaters isal,zlib] [--rebuild]

1. Builds a Debian root (`debootstrap --variant=minbase bookworm`), cached in
   bench/.cache/minbase.tar. Without a reachable mirror it falls back to a busybox-static
   tree plus copies of /usr/share and says so.
2. Packs it as an OCI layout itself (Python tarfile + gzip, split into N layers by top
   directory), cached in bench/.cache/layout-N.
3. Times (wall and CPU), best of --runs, each on a fresh destination:
     ours/pull      ImageStore.pull: verify + unpack every layer into the layer store
                    (up to two layers side by side), and the same one layer at a time
     ours/flatten   ImageStore.flatten: the stored layers -> one rootfs directory
     ours/unpack    unpack(): blobs -> one rootfs directory directly (CLI path)
                    (pull and unpack once per gzip inflater, --inflaters: python-isal's
                    and zlib's by default, or zlib's alone where isal is not installed)
     tar            GNU `tar -xzpf` of the same layer blobs, in order, into one directory
     umoci          `umoci unpack` of the same layout (yardstick only, if installed)
   and prints wall and CPU times and their ratios to tar.
4. Disk: 10 containers of the image (layers once + 10 overlay upper dirs, each with a
   small write, mounted in a private mount namespace) vs 10 flattened copies.

Run as root (owners, device nodes). Leaves nothing but bench/.cache behind.
"""
import argparse
import contextlib
import gzip
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CACHE = os.path.join(HERE, ".cache")
sys.path.insert(0, REPO)

from tests.lib import collection  # noqa: E402

collection.register()
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as _blob  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import parallel as _parallel  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as _image_store  # noqa: E402
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import unpack as _unpack  # noqa: E402


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def build_rootfs(rebuild=False):
    """bench/.cache/minbase.tar (a tar of the root); returns (path, description)."""
    out = os.path.join(CACHE, "minbase.tar")
    note = os.path.join(CACHE, "minbase.txt")
    if os.path.exists(out) and not rebuild:
        return out, open(note).read().strip()
    os.makedirs(CACHE, exist_ok=True)
    tmp = os.path.join(CACHE, "minbase.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    desc = "debootstrap --variant=minbase bookworm"
    log("building the root with %s (a minute or two, cached afterwards)" % desc)
    proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", tmp,
                           "http://deb.debian.org/debian"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if proc.returncode != 0:
        log("debootstrap failed (no mirror?); FALLBACK: busybox-static tree + /usr/share "
            "copies:\n" + proc.stdout[-500:])
        shutil.rmtree(tmp, ignore_errors=True)
        from tests.lib.oci_fixtures import busybox_tree
        busybox_tree(tmp)
        for d in ("doc", "locale", "zoneinfo", "perl", "i18n", "common-licenses"):
            src = os.path.join("/usr/share", d)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(tmp, "usr/share", d), symlinks=True)
        desc = "FALLBACK busybox-static + /usr/share copies (debootstrap failed)"
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", tmp,
                    "-cf", out + ".part", "."], check=True)
    os.rename(out + ".part", out)
    shutil.rmtree(tmp)
    with open(note, "w") as f:
        f.write(desc + "\n")
    return out, desc


def sha256(data):
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_layout(rootfs_tar, nlayers, rebuild=False):
    """An OCI layout of the root, split by top-level directory into nlayers gzip layers."""
    path = os.path.join(CACHE, "layout-%d" % nlayers)
    if os.path.exists(os.path.join(path, "index.json")) and not rebuild:
        return path
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.join(path, "blobs", "sha256"))
    log("packing the OCI layout (%d layers, python tarfile + gzip)" % nlayers)
    with tarfile.open(rootfs_tar) as src:
        members = src.getmembers()

        def top(m):
            return m.name.lstrip("./").split("/")[0]

        # bucket 0: usr (the bulk); the rest round-robin by top directory
        tops = sorted(set(top(m) for m in members if top(m)))
        bucket = {}
        others = [t for t in tops if t != "usr"]
        for i, t in enumerate(others):
            bucket[t] = 1 + i % max(1, nlayers - 1) if nlayers > 1 else 0
        bucket["usr"] = 0
        groups = [[] for _layer in range(nlayers)]
        for m in members:
            groups[bucket.get(top(m), 0)].append(m)
        descs, diff_ids = [], []
        for i, group in enumerate(groups):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for m in group:
                    if i and not top(m):
                        continue          # the root entry goes into the first layer only
                    tar.addfile(m, src.extractfile(m) if m.isreg() else None)
            raw = buf.getvalue()
            blob = gzip.compress(raw, compresslevel=6, mtime=0)
            diff_ids.append(sha256(raw))
            d = sha256(blob)
            with open(os.path.join(path, "blobs", "sha256", d[7:]), "wb") as f:
                f.write(blob)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "digest": d, "size": len(blob)})
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "config": {"Cmd": ["/bin/bash"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cd = sha256(cfg)
    with open(os.path.join(path, "blobs", "sha256", cd[7:]), "wb") as f:
        f.write(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": cd, "size": len(cfg)},
                      "layers": descs}).encode()
    md = sha256(man)
    with open(os.path.join(path, "blobs", "sha256", md[7:]), "wb") as f:
        f.write(man)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
            "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, f)
    return path


def layer_blobs(layout):
    with open(os.path.join(layout, "index.json")) as f:
        md = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(layout, "blobs", "sha256", md[7:])) as f:
        man = json.load(f)
    return [os.path.join(layout, "blobs", "sha256", d["digest"][7:]) for d in man["layers"]]


def du_k(*paths):
    out = subprocess.run(["du", "-sck"] + list(paths), stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def inflaters(names):
    """The blob.Inflater of each name ('isal', 'zlib'); isal only where it is installed."""
    known = {"zlib": _blob.ZLIB_INFLATER}
    if _blob.GZIP_INFLATER.name != "zlib":
        known[_blob.GZIP_INFLATER.name] = _blob.GZIP_INFLATER
    missing = [n for n in names if n not in known]
    if missing:
        log("inflater(s) %s not available (pip install isal), left out" % ", ".join(missing))
    return [known[n] for n in names if n in known]


@contextlib.contextmanager
def inflating_with(inflater):
    """The layers' gzip read by `inflater` meanwhile (the module's one chooser, overridden)."""
    chosen = _blob.GZIP_INFLATER
    _blob.GZIP_INFLATER = inflater
    try:
        yield
    finally:
        _blob.GZIP_INFLATER = chosen


def cpu_seconds():
    """User + system CPU of this process (all its threads) and of its waited-for children."""
    return sum(t for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for t in resource.getrusage(who)[:2])


def timed(plan, runs, work):
    """Best wall time, and best CPU time, of each (name, fn) over `runs` rounds; the rounds
    interleave the tools so that disk writeback noise hits them alike (CPU time also stays
    near what it is on a quiet machine when other work shares the cores). fn(dest) gets a
    fresh path. Returns {name: (wall, cpu)}."""
    best = {}
    for r in range(runs):
        for name, fn in plan:
            d = tempfile.mkdtemp(dir=work)
            shutil.rmtree(d)
            subprocess.run(["sync"], check=False)
            c0, t0 = cpu_seconds(), time.perf_counter()
            fn(d)
            dt, dc = time.perf_counter() - t0, cpu_seconds() - c0
            log("round %d: %-41s %.3f s (CPU %.3f s)" % (r + 1, name, dt, dc))
            wall, cpu = best.get(name, (dt, dc))
            best[name] = (min(wall, dt), min(cpu, dc))
            subprocess.run(["rm", "-rf", d], check=True)
    return dict((name, best[name]) for name, _fn in plan)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--inflaters", default="isal,zlib", help="gzip inflaters to time our "
                    "pull and unpack with, comma-separated (default: isal,zlib)")
    ap.add_argument("--workdir", default=CACHE, help="where the destinations are written "
                    "(default: bench/.cache; e.g. /dev/shm to leave the disk out)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (owners and device nodes are part of the work)")
    rootfs, desc = build_rootfs(args.rebuild)
    layout = build_layout(rootfs, args.layers, args.rebuild)
    blobs = layer_blobs(layout)
    work = tempfile.mkdtemp(prefix="cfs-bench-", dir=args.workdir)
    try:
        results = run(layout, blobs, work, args.runs, inflaters(args.inflaters.split(",")))
        disk = disk_usage(layout, work)
    finally:
        subprocess.run(["rm", "-rf", work], check=False)
    comp = sum(os.path.getsize(b) for b in blobs)
    print("image: %s; %d gzip layers, %.1f MiB compressed, %.1f MiB unpacked" % (
        desc, len(blobs), comp / 1048576.0, disk["image_k"] / 1024.0))
    print("destinations on %s; best of %d interleaved runs, wall and CPU seconds (ratios to GNU tar):"
          % (subprocess.run(["df", "--output=fstype", args.workdir], stdout=subprocess.PIPE,
                            universal_newlines=True, check=True).stdout.split()[-1], args.runs))
    tar_wall, tar_cpu = results["tar -xzpf (GNU tar)"]
    for name, (wall, cpu) in results.items():
        print("  %-41s %7.3f s %5.2fx   CPU %7.3f s %5.2fx" % (
            name, wall, wall / tar_wall, cpu, cpu / tar_cpu))
    print("disk, 10 containers of the image: %.1f MiB (layers once: %.1f MiB + 10 upper "
          "dirs: %.1f MiB) vs 10 flattened copies: %.1f MiB (one image: %.1f MiB)" % (
              (disk["store_k"] + disk["uppers_k"]) / 1024.0, disk["store_k"] / 1024.0,
              disk["uppers_k"] / 1024.0, 10 * disk["image_k"] / 1024.0, disk["image_k"] / 1024.0))


def run(layout, blobs, work, runs, gzip_inflaters):
    store_root = os.path.join(work, "store")

    def ours_pull(d):
        _image_store.ImageStore(d).pull("bench", layout, tag="bench")

    def ours_pull_one_at_a_time(d):
        workers = _parallel.MAX_LAYER_WORKERS
        _parallel.MAX_LAYER_WORKERS = 1
        try:
            ours_pull(d)
        finally:
            _parallel.MAX_LAYER_WORKERS = workers

    def ours_unpack(d):
        _unpack.unpack(layout, d, tag="bench")

    def gnu_tar(d):
        os.mkdir(d)
        for b in blobs:
            subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xzpf",
                            b, "-C", d], check=True)

    def umoci(d):
        subprocess.run(["umoci", "unpack", "--image", layout + ":bench", d], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    _image_store.ImageStore(store_root).pull("bench", layout, tag="bench")

    def ours_flatten(d):
        _image_store.ImageStore(store_root).flatten("bench", d)

    def with_inflater(fn, inflater):
        def timed_fn(d):
            with inflating_with(inflater):
                fn(d)
        return timed_fn

    plan = []
    for name, fn in (("ours: store pull (verify+unpack)", ours_pull),
                     ("ours: store pull, 1 layer at once", ours_pull_one_at_a_time),
                     ("ours: unpack blobs -> rootfs (CLI)", ours_unpack)):
        plan += [("%s [%s]" % (name, i.name), with_inflater(fn, i)) for i in gzip_inflaters]
    plan += [("ours: flatten from the store", ours_flatten),
             ("tar -xzpf (GNU tar)", gnu_tar)]
    if shutil.which("umoci"):
        plan.append(("umoci unpack (yardstick)", umoci))
    return timed(plan, runs, work)


def disk_usage(layout, work):
    store_root = os.path.join(work, "store")
    store = _image_store.ImageStore(store_root)
    flat = os.path.join(work, "flat")
    store.flatten("bench", flat)
    lowers = store.lowerdirs("bench")
    script = ["set -e"]
    for i in range(10):
        c = os.path.join(work, "c%d" % i)
        for d in ("upper", "work", "merged"):
            os.makedirs(os.path.join(c, d))
        script.append("mount -t overlay overlay -o lowerdir=%s,upperdir=%s/upper,workdir=%s/work "
                      "%s/merged" % (":".join(lowers), c, c, c))
        script.append("echo c%d > %s/merged/etc/hostname" % (i, c))
    subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    "\n".join(script)], check=True)
    uppers = [os.path.join(work, "c%d" % i) for i in range(10)]
    return {"store_k": du_k(os.path.join(store_root, "layers")), "uppers_k": du_k(*uppers),
            "image_k": du_k(flat)}


if __name__ == "__main__":
    main()
