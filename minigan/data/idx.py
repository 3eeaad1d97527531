"""Read and write IDX files, the format MNIST and Fashion-MNIST are published in.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the values in
C order, big-endian::

    magic = 0x00 0x00 <type byte> <ndim>
    type byte: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64

so MNIST images (uint8, 3-D) have magic 0x00000803 = 2051 and labels (uint8, 1-D) 0x00000801 = 2049.
Files may be gzip-compressed; a file is treated as gzip when its name ends in ``.gz`` or its first
two bytes are the gzip signature. Every malformed file raises :class:`IdxError` naming the file.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

from ..io import atomic_write

# type byte -> big-endian dtype stored in the file
_TYPE_TO_DTYPE = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# dtype kind+size -> type byte, for writing
_DTYPE_TO_TYPE = {(dt.kind, dt.itemsize): code for code, dt in _TYPE_TO_DTYPE.items()}

_GZIP_SIGNATURE = b"\x1f\x8b"

MAGIC_IMAGES = 0x00000803  # uint8, 3-D: (count, rows, cols)
MAGIC_LABELS = 0x00000801  # uint8, 1-D: (count,)


class IdxError(ValueError):
    """A file that is not a well-formed IDX (or gzip-compressed IDX) file."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_idx_bytes(path):
    """The uncompressed IDX bytes of ``path`` (gunzipped when it is a gzip file)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    is_gzip = data[:2] == _GZIP_SIGNATURE
    if path.endswith(".gz") and not is_gzip:
        raise IdxError(path, "not a gzip file (name ends in .gz but the gzip signature 1f 8b is missing)")
    if not is_gzip:
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise IdxError(path, "corrupt gzip data: the compressed stream ends early (truncated download?)") from None
    except (OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; CRC and length mismatches land here
        raise IdxError(path, f"corrupt gzip data: {e}") from None


def parse_idx(data, path="<bytes>"):
    """Decode uncompressed IDX bytes into an array of native byte order (a fresh, writable copy).

    ``path`` only names the source in error messages.
    """
    if len(data) < 4:
        raise IdxError(path, f"too short for an IDX header ({len(data)} bytes)")
    zero0, zero1, type_byte, ndim = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero0 != 0 or zero1 != 0 or type_byte not in _TYPE_TO_DTYPE or ndim == 0:
        raise IdxError(path, f"wrong magic number 0x{magic:08x} ({magic}): an IDX file starts with "
                             f"00 00 <type 08/09/0B/0C/0D/0E> <ndim >= 1>, e.g. 2051 for images, 2049 for labels")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxError(path, f"truncated header: magic 0x{magic:08x} announces {ndim} dimensions "
                             f"({header_len} header bytes) but the file has {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _TYPE_TO_DTYPE[type_byte]
    # Python integers: np.prod in int64 wraps around for a header like (2^32-1, 2^32-1, 2), and
    # a wrapped size would be reported as "trailing bytes" (or let a huge shape through)
    expected = header_len + math.prod(shape) * dtype.itemsize
    if len(data) < expected:
        raise IdxError(path, f"truncated: the header promises shape {shape} of {dtype.str[1:]} "
                             f"({expected} bytes in all) but the file has only {len(data)} bytes")
    if len(data) > expected:
        raise IdxError(path, f"{len(data) - expected} unexpected trailing bytes after the {shape} array")
    n_items = (expected - header_len) // dtype.itemsize
    values = np.frombuffer(data, dtype=dtype, count=n_items, offset=header_len)
    return values.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def idx_magic(type_byte_or_dtype, ndim):
    """The 32-bit magic number for an IDX array of this dtype and number of dimensions."""
    dt = np.dtype(type_byte_or_dtype)
    code = _DTYPE_TO_TYPE.get((dt.kind, dt.itemsize))
    if code is None:
        raise TypeError(f"IDX cannot store dtype {dt.name}: use uint8, int8, int16, int32, float32 or float64")
    return (code << 8) | ndim


def read_idx(path):
    """Read an IDX file (plain or gzip) into a NumPy array of its stored dtype and shape.

    MNIST: ``read_idx("train-images-idx3-ubyte.gz")`` -> uint8 (60000, 28, 28).
    Raises :class:`IdxError` (a ``ValueError``) naming the file for a wrong magic number, a
    truncated file, trailing bytes, or a file that claims gzip but is not or is corrupt.
    """
    return parse_idx(read_idx_bytes(path), os.fspath(path))


def encode_idx(array):
    """The IDX bytes (uncompressed) of a NumPy array."""
    a = np.asarray(array)
    if a.ndim == 0 or a.ndim > 255:
        raise ValueError(f"IDX stores arrays with 1 to 255 dimensions, got shape {a.shape}")
    if any(n > 0xFFFFFFFF for n in a.shape):
        raise ValueError(f"IDX dimension sizes are uint32, got shape {a.shape}")
    magic = idx_magic(a.dtype, a.ndim)
    dtype = _TYPE_TO_DTYPE[magic >> 8]
    header = struct.pack(f">I{a.ndim}I", magic, *a.shape)
    return header + np.ascontiguousarray(a, dtype=dtype).tobytes()


def write_idx(path, array):
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    The file appears atomically (written to a temporary name in the same folder, then renamed),
    so a reader never sees half a file. gzip output has mtime 0, so equal arrays give equal bytes.
    Returns the path.
    """
    path = os.fspath(path)
    data = encode_idx(array)
    if path.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write(path, lambda f: f.write(data))
