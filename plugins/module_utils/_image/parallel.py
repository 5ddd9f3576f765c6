# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifying and unpacking the layers of an image side by side, in a small thread pool.

Standard library only (the CLI and the modules on the targets both import it).

The layers of an image are independent until they are flattened: each one is read,
verified and unpacked into a directory of its own. Threads are enough to use a second
core: most of the work is in zlib, hashlib and system calls, which release the GIL, and
each layer already runs its decompression beside its tar writing (`blob.BlobStream`).

`run_layers()` runs one job per layer, at most `worker_count()` at a time. The first job
that fails cancels the others: the ones not started never start, the running ones stop
at their next read of the blob (`CancellableOpener`), and every job has finished - and
cleaned up after itself - before the first failure is raised, unchanged.

Private to the collection; may change without notice.
"""

import concurrent.futures
import os
import threading

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import ImageError

# Layers unpacked at the same time, at most. Each one keeps two threads busy (its
# decompression and its tar writing, which needs the GIL for its Python part): two
# layers fill two cores, and more would mostly share the one GIL and add queues of
# decompressed data (8 MiB each) to the memory held.
MAX_LAYER_WORKERS = 2


class LayerCancelled(ImageError):
    """Another layer of the same image failed; this one stopped (never shown: the
    failure that caused it is raised instead)."""


def worker_count(jobs):
    """Threads for `jobs` layers: at most MAX_LAYER_WORKERS, the CPUs, and the jobs."""
    return max(1, min(MAX_LAYER_WORKERS, os.cpu_count() or 1, jobs))


class CancellableOpener:
    """Wraps a layer opener (source.layer_opener) for the jobs of one pool: `for_job(k)`
    opens a blob for job k once jobs 0..k-1 opened theirs (or ended without): a registry
    prefetcher downloads the next layers in that order, streams the first, and must not
    be asked out of it. The files stop reading once `cancel` is set. (The members of
    one tar archive read side by side by positioned reads: source_fs.TarSource.)"""

    def __init__(self, opener, cancel):
        self._opener = opener
        self._cancel = cancel
        self._turn = 0         # the job whose open comes next
        self._turns = threading.Condition()

    def for_job(self, k):
        def open_layer(layer):
            self._wait_turn(k)
            try:
                f = self._opener(layer)
            finally:
                self.done(k)
            return _CancellableFile(f, self._cancel)
        return open_layer

    def _wait_turn(self, k):
        with self._turns:
            while self._turn < k:
                if self._cancel.is_set():
                    raise LayerCancelled("cancelled before its blob was opened")
                self._turns.wait(0.05)   # a cancel is seen within this, without a notify
        if self._cancel.is_set():
            raise LayerCancelled("cancelled before its blob was opened")

    def done(self, k):
        """Job k opened its blob, or will not: the next one's turn."""
        with self._turns:
            self._turn = max(self._turn, k + 1)
            self._turns.notify_all()


class _CancellableFile:
    """A read()-only file that raises LayerCancelled on the first read after `cancel`."""

    def __init__(self, f, cancel):
        self._f = f
        self._cancel = cancel

    def read(self, n=-1):
        if self._cancel.is_set():
            raise LayerCancelled("cancelled: another layer of the image failed")
        return self._f.read(n)

    def readable(self):
        return True

    def close(self):
        self._f.close()


def run_layers(jobs, work, opener, workers=None):
    """`work(job, opener)` for each job, in a pool of `workers` threads (default:
    worker_count); returns the results in the order of `jobs`.

    Each job gets `opener` wrapped (CancellableOpener.for_job): the jobs open their blobs
    in their order. On the first failure the other jobs are cancelled and waited for,
    then that failure is raised as it was.
    """
    jobs = list(jobs)
    workers = worker_count(len(jobs)) if workers is None else max(1, workers)
    if workers == 1 or len(jobs) <= 1:
        return [work(job, opener) for job in jobs]   # in order, as without a pool
    cancel = threading.Event()
    guarded = CancellableOpener(opener, cancel)

    def job_or_cancel(k, job):
        try:
            return work(job, guarded.for_job(k))
        except LayerCancelled:
            raise
        except BaseException:
            cancel.set()   # now: the next job this thread takes must not start either
            raise
        finally:
            guarded.done(k)   # failed before its open: the next may open
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="layer")
    futures = [pool.submit(job_or_cancel, k, job) for k, job in enumerate(jobs)]
    try:
        _wait_first_failure(futures, cancel)
    except BaseException:
        # ours (KeyboardInterrupt while waiting) or a job's: the others stop first
        cancel.set()
        for future in futures:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)   # every running job finished and cleaned up
    return [future.result() for future in futures]


def _wait_first_failure(futures, cancel):
    """Wait for every future; raise the first exception a job raised (the lowest job of
    those that failed by then), the cancellations it caused left out."""
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(
            pending, return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in (f for f in futures if f in done):
            exc = future.exception()
            if exc is not None and not isinstance(exc, LayerCancelled):
                cancel.set()
                raise exc
