# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a blob: digests, compression, and the one-pass hashing decompressor.

Standard library only (the CLI and the modules on the targets both import it); `zstandard` is used when it
is installed, otherwise the `zstd` command; python-isal's inflate, when it is installed, is used for gzip
(about half of zlib's CPU on a layer), otherwise zlib.

A layer blob (a tar, plain or gzip/xz/zstd compressed) is read once, in one pass:

    blob file -> sha256 + size (the descriptor's digest)        } helper thread (hashlib
              -> decompress                                     } and the codecs drop
              -> the tar stream, handed out in chunks           } the GIL)
                 -> sha256 (the config's diff_id)               } the reading thread,
                 -> the tar reader                              } beside its writing

(the diff_id is hashed as the chunks are handed out: with zlib, decompression is the longer
half, and this way both threads have about as much to do. With isal the writing thread is
the longer one, yet hashing the diff_id in the helper thread measured slower, not faster.)

Private to the collection; may change without notice.
"""

import collections
import hashlib
import shutil
import subprocess
import threading
import zlib

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, keeps sanity happy
    import Queue as queue  # noqa: N813

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image.errors import (
    ImageError, ImageInputError, LayerVerifyError,
)

CHUNK = 1 << 20             # bytes read from a blob at a time
QUEUE_DEPTH = 8             # decompressed chunks in flight between the threads
READ_AHEAD_DEPTH = 64       # ... for a layer read ahead while the one below is written

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
        reader = dctx.stream_reader(raw, read_size=CHUNK, read_across_frames=True)
        return _ErrorsAsValueError(reader, zstandard.ZstdError), None
    except ImportError:
        pass
    try:
        from compression import zstd as _std_zstd  # Python >= 3.14
        return _ErrorsAsValueError(_std_zstd.ZstdFile(raw), _std_zstd.ZstdError), None
    except ImportError:
        pass
    return _zstd_command_reader(raw)


class _ErrorsAsValueError:
    """A reader whose decompressor's own error type (no ValueError: zstandard's ZstdError)
    reads as ValueError, which BlobStream reports as a layer it cannot decompress."""

    def __init__(self, reader, error):
        self._reader = reader
        self._error = error

    def read(self, n=-1):
        try:
            return self._reader.read(n)
        except self._error as exc:
            raise ValueError(str(exc)) from exc


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


Inflater = collections.namedtuple("Inflater", "name decompressobj error")
ZLIB_INFLATER = Inflater("zlib", zlib.decompressobj, zlib.error)


def _fastest_inflater():
    """python-isal's inflate when it is installed, else zlib's: the one place that chooses.
    Both read the same gzip members and check the same CRC-32 and length; isal's decompress
    takes about half the CPU and, like zlib's, releases the GIL."""
    try:
        from isal import isal_zlib
    except ImportError:
        return ZLIB_INFLATER
    return Inflater("isal", isal_zlib.decompressobj, isal_zlib.error)


GZIP_INFLATER = _fastest_inflater()
GZIP_WBITS = 16 + zlib.MAX_WBITS       # a gzip header and trailer, a 32 KiB window
GZIP_HEADER_LIMIT = CHUNK              # a longer member header (name, comment) is refused
FHCRC, FEXTRA, FNAME, FCOMMENT = 2, 4, 8, 16
GZIP_RESERVED_FLAGS = 0xE0             # FLG bits 5-7 (RFC 1952: a decoder must refuse them)


def _gzip_header_size(data):
    """Bytes of the gzip member header `data` starts with (RFC 1952 2.3.1); None if `data`
    ends inside it or it does not end within GZIP_HEADER_LIMIT bytes; 0 if `data` starts with
    no gzip header (the inflater says what is wrong)."""
    length = min(len(data), GZIP_HEADER_LIMIT)
    if length < 2:
        return None
    if not data.startswith(MAGIC_GZIP):
        return 0
    if length < 10:
        return None
    flags = data[3]
    if flags & GZIP_RESERVED_FLAGS:    # zlib refuses them, isal would skip them
        raise ValueError("reserved gzip header flags set (0x%02x)" % flags)
    size = 10
    if flags & FEXTRA:
        if length < 12:
            return None
        size += 2 + data[10] + 256 * data[11]
    for field in (FNAME, FCOMMENT):
        if flags & field:
            nul = data.find(b"\0", size, length)
            if nul < 0:
                return None
            size = nul + 1
    if flags & FHCRC:
        size += 2
    return size if size <= length else None


class _GzipMembers:
    """A read()-only file of the data of the gzip members of `raw`, one after the other
    (what gzip.GzipFile reads: zero padding between and after them is skipped, anything
    else there is an error). The inflater itself checks each member's CRC-32 and length: no
    Python pass over the data, about 10% less CPU than GzipFile on a layer with zlib."""

    def __init__(self, raw, inflater=None):
        self._raw = raw
        self._inflater = inflater or GZIP_INFLATER
        self._member = None    # the decompressor of the member being read; None between members
        self._input = b""      # compressed bytes not given to it yet
        self._members = 0      # members read to their end

    def read(self, n=-1):
        n = CHUNK if n is None or n < 0 else n
        while True:
            if self._member is None and not self._start_member():
                return b""
            if not self._input:
                self._input = self._raw.read(CHUNK)
                if not self._input:
                    raise EOFError("compressed file ended before the end-of-stream "
                                   "marker was reached")
            try:
                data = self._member.decompress(self._input, n)   # at most n bytes out: bombs wait
            except self._inflater.error as exc:   # isal's is no zlib.error: one type for the caller
                raise ValueError(str(exc)) from exc
            if self._member.eof:
                self._input = self._member.unused_data
                self._member = None
                self._members += 1
            else:
                self._input = self._member.unconsumed_tail
            if data:
                return data

    def _start_member(self):
        """A decompressor for the next member, after the zero padding; False at the end.
        The member's whole header goes to the inflater in one piece: isal 1.9.1 misreads a
        header split between two calls once it has a header CRC or two optional fields."""
        while True:
            if self._members:
                self._input = self._input.lstrip(b"\0")   # padding after a member
            if _gzip_header_size(self._input) is not None:
                break
            if len(self._input) >= GZIP_HEADER_LIMIT:
                raise ValueError("gzip member header longer than %d bytes" % GZIP_HEADER_LIMIT)
            more = self._raw.read(CHUNK)
            if not more:
                break
            self._input += more
        if not self._input:
            return False
        self._member = self._inflater.decompressobj(GZIP_WBITS)
        return True


def _decompressor(kind, raw, name):
    """(reader, cleanup) decompressing `raw` (which the caller hashes)."""
    if kind is None:
        return raw, None
    if kind == "gzip":
        return _GzipMembers(raw), None
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
                 progress=None, compression=None, depth=QUEUE_DEPTH):
        self.name = name
        self._raw = _HashingReader(fileobj, algo, limit=expected_size, name=name)
        self._algo = algo
        self._progress = progress
        self._queue = queue.Queue(depth)
        self._stop = False
        self._forced = compression
        self.digest = self.size = self.diff_id = self.compression = None
        self._diff = None      # the diff_id's hash, fed by the reading thread
        self._thread = None

    def start(self):
        """Start reading (and decompressing) now, before the first chunk is asked for:
        up to `depth` chunks are read ahead. Entering the context starts it too."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="blob-reader")
            self._thread.daemon = True
            self._thread.start()
        return self

    def __enter__(self):
        return self.start()

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
            self._diff = hashlib.new(self._algo) if kind else None
            last = 0
            while not self._stop:
                try:
                    data = reader.read(CHUNK)
                except ImageError:
                    raise
                except (OSError, EOFError, ValueError, zlib.error) as exc:
                    raise ImageInputError("%s: cannot decompress (%s): %s" % (
                        self.name, kind, exc))
                if not data:
                    break
                self._put((data, raw.count - last))
                last = raw.count
            if self._stop:
                return
            while raw.read(CHUNK):  # trailing bytes after the compressed stream
                pass
            self.size = raw.count
            self.digest = "%s:%s" % (self._algo, raw.hash.hexdigest())
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
                self.diff_id = self.digest if self._diff is None else "%s:%s" % (
                    self._algo, self._diff.hexdigest())
                return
            if self._diff is not None:
                self._diff.update(data)
            yield data


def layer_stream(fileobj, name="layer", digest=None, size=None, diff_id=None, progress=None,
                 compression=None, depth=QUEUE_DEPTH):
    """The BlobStream of a layer blob (the arguments of layers.apply_layer): hashed with the
    algorithm of its digest (else of its diff_id, else sha256), `size` the bytes its
    descriptor declares. Not started yet."""
    algo = split_digest(digest)[0] if digest else (split_digest(diff_id)[0] if diff_id else "sha256")
    return BlobStream(fileobj, name=name, algo=algo, expected_size=size, progress=progress,
                      compression=compression, depth=depth)


def progress_adapter(progress, total):
    """A BlobStream `progress` (bytes read now) calling progress(done_bytes, total_bytes).
    Thread-safe: the layers of a pull share one (_parallel), and `progress` is called by
    one of them at a time, with totals that only grow."""
    if progress is None:
        return None
    state = {"done": 0}
    lock = threading.Lock()

    def step(n):
        with lock:
            state["done"] += n
            progress(state["done"], total)
    return step
