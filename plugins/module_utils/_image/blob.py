# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a blob: digests, compression, and the one-pass hashing decompressor.

Standard library only (the CLI and the modules on the targets both import it); `zstandard` is used when it
is installed, otherwise the `zstd` command.

A layer blob (a tar, plain or gzip/xz/zstd compressed) is read once, in one pass:

    blob file -> sha256 + size (the descriptor's digest)        } helper thread:
              -> decompress -> sha256 (the config's diff_id)    } hashlib and the
              -> the tar stream, handed out in chunks           } codecs drop the GIL

Private to the collection; may change without notice.
"""

import hashlib
import shutil
import subprocess
import threading

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, keeps sanity happy
    import Queue as queue  # noqa: N813

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageError, ImageInputError, LayerVerifyError,
)

CHUNK = 1 << 20             # bytes read from a blob at a time
QUEUE_DEPTH = 8             # decompressed chunks in flight between the threads

MAGIC_GZIP = b"\x1f\x8b"
MAGIC_XZ = b"\xfd7zXZ\x00"
MAGIC_ZSTD = b"\x28\xb5\x2f\xfd"
MAGIC_BZIP2 = b"BZh"


def split_digest(digest):
    """'sha256:abc..' -> ('sha256', 'abc..'); raises ImageInputError on a malformed one."""
    if not isinstance(digest, str) or ":" not in digest:
        raise ImageInputError("malformed digest %r (expected 'sha256:<hex>')" % (digest,))
    algo, _sep, hexpart = digest.partition(":")
    sizes = {"sha256": 64, "sha512": 128}
    if algo not in sizes:
        raise ImageInputError("unsupported digest algorithm in %r (sha256 or sha512)" % digest)
    if len(hexpart) != sizes[algo] or hexpart.strip("0123456789abcdef"):
        raise ImageInputError("malformed digest %r" % digest)
    return algo, hexpart


def sniff_compression(head):
    """Name of the compression of a blob from its first bytes: gzip, xz, zstd or None."""
    if head.startswith(MAGIC_GZIP):
        return "gzip"
    if head.startswith(MAGIC_XZ):
        return "xz"
    if head.startswith(MAGIC_ZSTD):
        return "zstd"
    if head.startswith(MAGIC_BZIP2):
        return "bzip2"
    return None


class _HashingReader:
    """A read()-only file over `f` that hashes and counts every byte handed out."""

    def __init__(self, f, algo="sha256", limit=None, name="blob"):
        self._f = f
        self.hash = hashlib.new(algo)
        self.count = 0
        self._head = b""
        self._limit = limit
        self._name = name

    def peek(self, n):
        if not self._head:
            self._head = self._f.read(n)
        return self._head

    def read(self, n=-1):
        if self._head:
            if n is None or n < 0 or n >= len(self._head):
                data, self._head = self._head, b""
            else:
                data, self._head = self._head[:n], self._head[n:]
        else:
            data = self._f.read(CHUNK if n is None or n < 0 else n)
        if data:
            self.hash.update(data)
            self.count += len(data)
            if self._limit is not None and self.count > self._limit:
                raise LayerVerifyError("%s: size mismatch: the blob is larger than the %d "
                                       "bytes its descriptor declares" % (self._name, self._limit))
        return data

    def readable(self):
        return True


def _zstd_reader(raw):
    """A decompressing reader for zstd: zstandard, Python 3.14's compression.zstd, or
    the `zstd` command (fed by a pump thread). Returns (reader, cleanup)."""
    try:
        import zstandard
        dctx = zstandard.ZstdDecompressor()
        return dctx.stream_reader(raw, read_size=CHUNK, read_across_frames=True), None
    except ImportError:
        pass
    try:
        from compression import zstd as _std_zstd  # Python >= 3.14
        return _std_zstd.ZstdFile(raw), None
    except ImportError:
        pass
    return _zstd_command_reader(raw)


def _zstd_command_reader(raw, command="zstd"):
    cmd = shutil.which(command)
    if not cmd:
        raise ImageError("this blob is zstd-compressed, and neither the Python module "
                         "'zstandard' nor the 'zstd' command is installed; install one")
    proc = subprocess.Popen([cmd, "-d", "-c", "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure = []

    def pump():
        try:
            while True:
                data = raw.read(CHUNK)
                if not data:
                    break
                proc.stdin.write(data)
        except BrokenPipeError:
            pass
        except Exception as exc:  # handed to the reading side
            failure.append(exc)
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    thread = threading.Thread(target=pump, name="zstd-pump")
    thread.daemon = True
    thread.start()

    class _Reader:
        def read(self, n=-1):
            data = proc.stdout.read(CHUNK if n is None or n < 0 else n)
            if not data:
                thread.join()
                if failure:
                    raise failure[0]
                rc = proc.wait()
                if rc != 0:
                    raise ImageInputError("zstd -d failed (rc=%d): %s" % (
                        rc, proc.stderr.read().decode("utf-8", "replace").strip()))
            return data

    def cleanup():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        thread.join()
        for f in (proc.stdout, proc.stderr):
            f.close()
    return _Reader(), cleanup


def _decompressor(kind, raw, name):
    """(reader, cleanup) decompressing `raw` (which the caller hashes)."""
    if kind is None:
        return raw, None
    if kind == "gzip":
        import gzip
        return gzip.GzipFile(fileobj=raw, mode="rb"), None
    if kind == "xz":
        import lzma
        return lzma.LZMAFile(raw), None
    if kind == "bzip2":
        import bz2
        return bz2.BZ2File(raw), None
    if kind == "zstd":
        return _zstd_reader(raw)
    raise ImageInputError("%s: unsupported compression %r" % (name, kind))


class BlobStream:
    """Decompresses and hashes a blob in a helper thread; iterate to get the tar stream.

    After the iteration, `digest`, `size`, `diff_id` and `compression` are set. The
    producer thread reads the blob to its very end (trailing bytes included), so the
    digest covers every byte. Use as a context manager: leaving it early stops the thread.
    """

    def __init__(self, fileobj, name="blob", algo="sha256", expected_size=None,
                 progress=None, compression=None):
        self.name = name
        self._raw = _HashingReader(fileobj, algo, limit=expected_size, name=name)
        self._algo = algo
        self._progress = progress
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._stop = False
        self._forced = compression
        self.digest = self.size = self.diff_id = self.compression = None
        self._thread = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._produce, name="blob-reader")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self._stop = True
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
            self._thread = None

    def _put(self, item):
        while not self._stop:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _produce(self):
        cleanup = None
        try:
            raw = self._raw
            kind = self._forced if self._forced else sniff_compression(raw.peek(8))
            self.compression = kind
            reader, cleanup = _decompressor(kind, raw, self.name)
            diff = hashlib.new(self._algo) if kind else None
            last = 0
            while not self._stop:
                try:
                    data = reader.read(CHUNK)
                except ImageError:
                    raise
                except (OSError, EOFError, ValueError) as exc:
                    raise ImageInputError("%s: cannot decompress (%s): %s" % (
                        self.name, kind, exc))
                if not data:
                    break
                if diff is not None:
                    diff.update(data)
                self._put((data, raw.count - last))
                last = raw.count
            if self._stop:
                return
            while raw.read(CHUNK):  # trailing bytes after the compressed stream
                pass
            self.size = raw.count
            self.digest = "%s:%s" % (self._algo, raw.hash.hexdigest())
            self.diff_id = ("%s:%s" % (self._algo, diff.hexdigest())) if diff else self.digest
            self._put((None, raw.count - last))
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)
        finally:
            if cleanup is not None:
                cleanup()

    def __iter__(self):
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            data, nraw = item
            if self._progress is not None and nraw:
                self._progress(nraw)
            if data is None:
                return
            yield data


def progress_adapter(progress, total):
    """A BlobStream `progress` (bytes read now) calling progress(done_bytes, total_bytes)."""
    if progress is None:
        return None
    state = {"done": 0}

    def step(n):
        state["done"] += n
        progress(state["done"], total)
    return step
