"""The IDX format of MNIST and EMNIST: a big-endian header (two zero bytes, a type code, the rank, then
one uint32 per dimension) followed by the values, all gzip-compressed."""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from digitops.errors import DataFileError

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_gzip(path: str | os.PathLike) -> bytes:
    """The decompressed bytes of a gzip file; a truncated or corrupt file raises DataFileError."""
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataFileError(path, f"not a complete gzip file ({error})") from error


def parse_idx(raw: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file; `path` only names the file in errors."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFileError(path, f"not an IDX file: header starts {raw[:4].hex() or 'empty'}, expected 0000")
    type_code, rank = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise DataFileError(path, f"unknown IDX type code 0x{type_code:02x}")
    header_size = 4 + 4 * rank
    if len(raw) < header_size:
        raise DataFileError(path, f"IDX header of rank {rank} needs {header_size} bytes, file has {len(raw)}")
    shape = struct.unpack(f">{rank}I", raw[4:header_size])
    dtype = _IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_size
    if actual != expected:
        raise DataFileError(
            path, f"IDX header says shape {shape} ({expected} bytes of values) but {actual} bytes follow"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a gzip-compressed IDX file into an array of its shape and type."""
    return parse_idx(read_gzip(path), path)


def read_idx_digits(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, transposed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair of IDX files holding 28x28 digit images and their labels.

    Args:
        images_path: rank-3 uint8 IDX file (N, 28, 28).
        labels_path: rank-1 uint8 IDX file (N,), values 0-9.
        transposed: the images are stored column-major, as in EMNIST; transpose them back so that a 7
            looks like an MNIST 7.

    Returns:
        images (N, 28, 28) uint8 and labels (N,) int64.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataFileError(
            images_path, f"expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataFileError(labels_path, f"expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataFileError(labels_path, f"{len(labels)} labels for {len(images)} images in {images_path}")
    if transposed:
        images = np.ascontiguousarray(images.transpose(0, 2, 1))
    return images, labels.astype(np.int64)
