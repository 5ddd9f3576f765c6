"""A corrupt zstd layer is an error the caller knows (ImageInputError, "cannot
decompress"), whichever zstd reader the host has: zstandard's own ZstdError is no
ValueError, so blob converts it."""
import io
import os
import shutil
import subprocess

import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import blob


def corrupt_zstd(tmp_path):
    if not shutil.which("zstd"):
        pytest.skip("no zstd command to make the fixture")
    plain = tmp_path / "x"
    plain.write_bytes(os.urandom(200000))
    subprocess.run(["zstd", "-q", "-f", str(plain), "-o", str(plain) + ".zst"], check=True)
    data = bytearray((tmp_path / "x.zst").read_bytes())
    data[5000] ^= 0xFF  # inside the frame: the content checksum no longer matches
    return bytes(data)


def test_zstandards_error_reads_as_value_error(tmp_path):
    pytest.importorskip("zstandard")
    reader, cleanup = blob._zstd_reader(io.BytesIO(corrupt_zstd(tmp_path)))
    assert cleanup is None
    with pytest.raises(ValueError):
        while reader.read(65536):
            pass


def test_a_reader_error_of_its_own_type_becomes_value_error():
    class OwnError(Exception):
        pass

    class Failing:
        def read(self, n):
            raise OwnError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        blob._ErrorsAsValueError(Failing(), OwnError).read(10)
