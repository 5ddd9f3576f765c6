"""The layers of a pull are verified and unpacked side by side (_image.parallel): really
concurrently, in a bounded pool; a failing layer cancels the others and leaves nothing;
progress stays one growing count. No timing is asserted: the blobs' reads meet at
barriers and gates, whose timeouts only turn a hang into a failure. (The gzip reader of a
layer's decompression thread: test_blob_gzip.py.)"""
import contextlib
import os
import tarfile
import threading
import time

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob as B
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import parallel as P
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import store as S
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import unpack as U
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source as SRC
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import source_fs as FS
from tests.lib import oci_fixtures as fx
from tests.lib.oci_fixtures import dir_, file_, make_tar

LAYERS = [make_tar([dir_("l%d" % i), file_("l%d/data" % i, b"layer %d\n" % i * 1000)])
          for i in range(4)]
WAIT = 30   # seconds before a gate or barrier gives up: a hang becomes a failure


@pytest.fixture
def store(tmp_path):
    return S.ImageStore(str(tmp_path / "store"))


def layout(tmp_path, layers=LAYERS, **kw):
    path = str(tmp_path / "layout")
    fx.oci_layout(path, list(layers), **kw)
    return path


def store_leftovers(store):
    """Everything under layers/: dirs, metadata, temp dirs."""
    try:
        return sorted(os.listdir(store.layers_dir))
    except FileNotFoundError:
        return []


class Watched:
    """A blob file that reports its reads to `on_read(index, count)` (count: reads so far,
    this one included) before it reads."""

    def __init__(self, f, index, on_read):
        self._f = f
        self._index = index
        self._on_read = on_read
        self._reads = 0

    def read(self, n=-1):
        self._reads += 1
        self._on_read(self._index, self._reads)
        return self._f.read(n)

    def close(self):
        self._f.close()


def read_watcher(monkeypatch, module):
    """install(on_read): the blob files `module` opens call on_read(layer index, reads)."""
    def install(on_read):
        real = SRC.layer_opener

        @contextlib.contextmanager
        def watched_opener(image, layers=None):
            paths = [layer["path"] for layer in image["layers"]]
            with real(image, layers=layers) as opener:
                yield lambda layer: Watched(opener(layer), paths.index(layer["path"]), on_read)
        monkeypatch.setattr(module, "layer_opener", watched_opener)
    return install


@pytest.fixture
def watch_reads(monkeypatch):
    """watch_reads(on_read): the store's blob files call on_read(layer index, reads)."""
    return read_watcher(monkeypatch, S)


def pool_failure_seen(monkeypatch):
    """An Event set once the pool has seen a layer fail (its wait for the first failure
    returned or raised)."""
    failed = threading.Event()
    real_wait = P._wait_first_failure

    def wait_and_tell(futures, cancel):
        try:
            real_wait(futures, cancel)
        finally:
            failed.set()
    monkeypatch.setattr(P, "_wait_first_failure", wait_and_tell)
    return failed


def pool_of(monkeypatch, workers):
    """The pool size, whatever the CPUs of the machine running the test."""
    monkeypatch.setattr(P, "worker_count", lambda jobs: min(workers, jobs))


def test_layers_are_unpacked_concurrently_in_a_bounded_pool(tmp_path, store, monkeypatch, watch_reads):
    pool_of(monkeypatch, 2)
    both_reading = threading.Barrier(2, timeout=WAIT)   # a sequential pull breaks it
    lock = threading.Lock()
    in_flight = set()
    seen = {"max": 0}

    def on_read(index, count):
        with lock:
            in_flight.add(index)
            seen["max"] = max(seen["max"], len(in_flight))
        if index < 2 and count == 1:
            both_reading.wait()

    def closed(index):
        with lock:
            in_flight.discard(index)

    watch_reads(on_read)
    original_close = Watched.close
    monkeypatch.setattr(Watched, "close", lambda self: (closed(self._index), original_close(self)))
    r = store.pull("four", layout(tmp_path))
    assert r["layers_added"] == [fx.sha(t) for t in LAYERS]
    assert seen["max"] == 2
    assert all(store.has_layer(fx.sha(t)) for t in LAYERS)
    assert not [n for n in store_leftovers(store) if n.startswith(".")]


@pytest.mark.parametrize("tamper", ["digest", "diff_id"])
def test_a_failing_layer_cancels_the_one_in_flight_and_leaves_nothing(tmp_path, store, monkeypatch, watch_reads, tamper):
    """Layer 0 stops after its first read until the pull has seen layer 1 fail; its next
    read must then stop it (cancelled), so neither layer nor any temp dir is left."""
    pool_of(monkeypatch, 2)
    failed = pool_failure_seen(monkeypatch)

    def on_read(index, count):
        if index == 0 and count == 2:
            assert failed.wait(WAIT), "layer 1 never failed while layer 0 was in flight"

    watch_reads(on_read)
    src = layout(tmp_path, LAYERS[:2], tamper={tamper: 1})
    with pytest.raises(S.LayerVerifyError) as err:
        store.pull("bad", src)
    assert not isinstance(err.value, P.LayerCancelled)
    assert "layer 1" in str(err.value) and tamper.replace("_", "") in str(err.value).replace("_", "")
    assert store.image("bad") is None
    assert store_leftovers(store) == []


def test_layers_not_started_never_start_after_a_failure(tmp_path, store, monkeypatch, watch_reads):
    """Two workers: layer 0 fails while layer 1 waits at its second read; layers 2 and 3,
    queued behind them, are never opened."""
    pool_of(monkeypatch, 2)
    failed = pool_failure_seen(monkeypatch)
    read = set()
    both_reading = threading.Barrier(2, timeout=WAIT)

    def on_read(index, count):
        read.add(index)
        if index < 2 and count == 1:
            both_reading.wait()
        if index == 1 and count == 2:
            assert failed.wait(WAIT), "layer 0 never failed while layer 1 was in flight"

    watch_reads(on_read)
    with pytest.raises(S.LayerVerifyError, match="layer 0"):
        store.pull("bad", layout(tmp_path, tamper={"digest": 0}))
    assert read == {0, 1}
    assert store_leftovers(store) == []


class SlowSeek:
    """The archive's file, yielding the CPU after every seek: the window in which another
    thread's seek would move it before this thread reads."""

    def __init__(self, f):
        self._f = f

    def seek(self, *args):
        where = self._f.seek(*args)
        time.sleep(0.001)
        return where

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_layers_of_one_tar_archive_read_side_by_side(tmp_path, store, monkeypatch):
    """The blobs of an oci-archive are members of one open tarfile: read side by side
    through its file's offset (seek, then read), one would read the other's bytes (a
    digest mismatch); positioned reads never move it."""
    pool_of(monkeypatch, 2)
    real_init = FS.TarSource.__init__

    def slow_seeks(self, path):
        real_init(self, path)
        self.tar.fileobj = SlowSeek(self.tar.fileobj)
    monkeypatch.setattr(FS.TarSource, "__init__", slow_seeks)
    archive = str(tmp_path / "img.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(layout(tmp_path), arcname=".")
    assert store.pull("a", archive)["layers_added"] == [fx.sha(t) for t in LAYERS]


def test_a_layer_listed_twice_is_unpacked_once_by_the_first(tmp_path, store, monkeypatch, watch_reads):
    """Side by side, both copies would race to be the one "added" (the order of
    layers_added would depend on it); the second is not even opened."""
    pool_of(monkeypatch, 2)
    opened = []
    watch_reads(lambda index, count: opened.append(index) if count == 1 else None)
    r = store.pull("twice", layout(tmp_path, [LAYERS[0], LAYERS[1], LAYERS[0]]))
    assert r["layers_added"] == [fx.sha(LAYERS[0]), fx.sha(LAYERS[1])]
    assert r["image"]["layers"] == [fx.sha(LAYERS[0]), fx.sha(LAYERS[1]), fx.sha(LAYERS[0])]
    assert sorted(opened) == [0, 1]


def test_progress_is_one_growing_count_across_layers(tmp_path, store, monkeypatch):
    pool_of(monkeypatch, 2)
    calls = []
    src = layout(tmp_path)
    store.pull("four", src, progress=lambda done, total: calls.append((done, total)))
    dones = [done for done, _total in calls]
    total = calls[-1][1]
    assert dones == sorted(dones) and dones[-1] == total
    assert total == sum(os.path.getsize(os.path.join(src, "blobs/sha256", fx.sha(fx.compress(t, "gzip"))[7:]))
                        for t in LAYERS)


def test_worker_count_is_bounded_by_the_cpus_and_the_jobs(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert P.worker_count(1) == 1
    assert P.worker_count(10) == P.MAX_LAYER_WORKERS
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert P.worker_count(10) == 1


def test_run_layers_keeps_the_order_of_the_jobs():
    release = threading.Event()

    def work(job, opener):
        if job == 0:
            assert release.wait(WAIT)   # the first job finishes last
        else:
            release.set()
        return job * 10
    assert P.run_layers([0, 1], work, opener=None, workers=2) == [0, 10]


def test_run_layers_opens_the_blobs_in_the_order_of_the_jobs():
    """A registry prefetcher streams the first layer and downloads the next ones in order:
    job 1, ready first, still opens after job 0."""
    job1_started = threading.Event()
    opened = []

    def work(job, opener):
        if job == 0:
            assert job1_started.wait(WAIT)
        else:
            job1_started.set()
        opener({"path": job})
        return job

    assert P.run_layers([0, 1], work, opener=opened.append, workers=2) == [0, 1]
    assert opened == [{"path": 0}, {"path": 1}]


# --------------------------------------------------------------- the CLI's unpack without a store

@pytest.fixture
def watch_cli_reads(monkeypatch):
    """Like watch_reads, for unpack() without a store."""
    return read_watcher(monkeypatch, U)


def test_cli_unpack_reads_the_next_layer_ahead(tmp_path, watch_cli_reads):
    """Layer 0's end waits until layer 1 has been read: layers read one after the other
    would never get there."""
    layer1_read = threading.Event()

    def on_read(index, count):
        if index == 1:
            layer1_read.set()
        elif index == 0 and count == 3:   # peek, the whole small blob, then its end
            assert layer1_read.wait(WAIT), "layer 1 was not read ahead"

    watch_cli_reads(on_read)
    dest = str(tmp_path / "rootfs")
    got = U.unpack(layout(tmp_path), dest)
    assert got["layers"] == [fx.sha(t) for t in LAYERS]
    assert sorted(os.listdir(dest)) == ["l0", "l1", "l2", "l3"]


def test_cli_unpack_failure_closes_the_layer_read_ahead_and_leaves_nothing(tmp_path, monkeypatch):
    closed = []
    real_close = B.BlobStream.close
    monkeypatch.setattr(B.BlobStream, "close", lambda self: (closed.append(self.name), real_close(self)))
    dest = str(tmp_path / "rootfs")
    with pytest.raises(S.LayerVerifyError, match="layer 1"):
        U.unpack(layout(tmp_path, tamper={"digest": 1}), dest)
    assert not os.path.exists(dest)
    assert os.listdir(str(tmp_path)) == ["layout"]
    assert any("layer 2" in name for name in closed)   # read ahead, then stopped
    assert not [t for t in threading.enumerate() if t.name in ("blob-reader",) or t.name.startswith("layer-ahead")]
