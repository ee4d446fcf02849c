from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from digitops.data.idx import read_idx, read_idx_digits
from digitops.errors import DataFileError
from digitops.preprocess import normalize_digit
from tests.fakes import SEVEN_STROKES, draw_strokes, write_idx


def test_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x.gz", images)), images)


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((50, 28, 28), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\.gz: not a complete gzip file"):
        read_idx(path)


def test_not_gzip_at_all(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataFileError, match=r"labels\.gz: not a complete gzip file"):
        read_idx(path)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc", "not an IDX file"),
        (b"\x00\x00\x42\x01" + struct.pack(">I", 3) + b"abc", "unknown IDX type code 0x42"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 3), "header of rank 3 needs 16 bytes"),
        (
            b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc",
            r"says shape \(5,\) \(5 bytes of values\) but 3",
        ),
    ],
)
def test_malformed_header(tmp_path, payload, message):
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(DataFileError, match=message):
        read_idx(path)


def test_digit_pair_checks_shapes_and_lengths(tmp_path):
    images = write_idx(tmp_path / "images.gz", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataFileError, match="2 labels for 3 images"):
        read_idx_digits(images, write_idx(tmp_path / "labels.gz", np.array([1, 2], np.uint8)))
    small = write_idx(tmp_path / "small.gz", np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(DataFileError, match=r"expected uint8 images \(N, 28, 28\)"):
        read_idx_digits(small, write_idx(tmp_path / "l3.gz", np.array([1, 2, 3], np.uint8)))


def test_emnist_orientation_is_fixed(tmp_path):
    """EMNIST stores each image transposed; read back, a 7 must look like an MNIST 7 again."""
    seven = normalize_digit(draw_strokes(SEVEN_STROKES))  # (28, 28), bar at the top
    stored = write_idx(tmp_path / "emnist-images.gz", seven.T[None])  # as EMNIST ships it
    labels = write_idx(tmp_path / "emnist-labels.gz", np.array([7], np.uint8))
    images, read_labels = read_idx_digits(stored, labels, transposed=True)
    np.testing.assert_array_equal(images[0], seven)
    assert read_labels.tolist() == [7] and read_labels.dtype == np.int64
    top_rows, left_cols = int(images[0][:10].sum()), int(images[0][:, :10].sum())
    assert top_rows > 2 * left_cols  # the bar of the 7 is at the top, not on the left
