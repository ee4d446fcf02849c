from __future__ import annotations

import gzip

import numpy as np
import pytest

from digitops.data.usps import read_usps
from digitops.errors import DataFileError
from tests.fakes import write_usps


def test_reads_values_and_labels(tmp_path):
    images = np.full((2, 16, 16), -1.0)
    images[0, 4:12, 7:9] = 1.0  # a 1
    images[1, 8, 8] = 0.0  # mid grey
    images_u8, labels = read_usps(write_usps(tmp_path / "zip.train.gz", images, np.array([1, 6])))
    assert images_u8.shape == (2, 16, 16) and images_u8.dtype == np.uint8
    assert labels.tolist() == [1, 6] and labels.dtype == np.int64
    assert images_u8[0, 0, 0] == 0 and images_u8[0, 5, 7] == 255  # -1 -> background, 1 -> full ink
    assert images_u8[1, 8, 8] in (127, 128)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("3.0000 " + " ".join(["-1"] * 200), "line 2 has 201 values, expected 257"),
        ("11.0000 " + " ".join(["-1"] * 256), "label 11, expected 0-9"),
        ("2.5000 " + " ".join(["-1"] * 256), "label 2.5, expected 0-9"),
        ("3.0000 " + " ".join(["-1"] * 255 + ["7"]), r"grey values span \[-1.0, 7.0\]"),
        ("3.0000 " + " ".join(["-1"] * 255 + ["x"]), "line 2: could not convert"),
    ],
)
def test_malformed_lines_are_named(tmp_path, line, message):
    good = "0.0000 " + " ".join(["-1"] * 256)
    path = tmp_path / "zip.test.gz"
    path.write_bytes(gzip.compress(f"{good}\n{line}\n".encode()))
    with pytest.raises(DataFileError, match=message):
        read_usps(path)


def test_empty_file(tmp_path):
    path = tmp_path / "zip.test.gz"
    path.write_bytes(gzip.compress(b"\n"))
    with pytest.raises(DataFileError, match="holds no digits"):
        read_usps(path)
