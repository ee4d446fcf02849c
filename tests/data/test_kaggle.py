"""Kaggle's digit-recognizer CSVs (digitops.data.kaggle): read in chunks with their row numbers, and a
malformed row named by its row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digitops.data.kaggle import KaggleCsv, open_kaggle_csv, read_kaggle_csv
from digitops.errors import DataFileError
from tests.fakes import random_digits, write_kaggle_csv


def _replace_line(path: Path, line_number: int, new_line: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_number - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def digits() -> np.ndarray:
    return random_digits(7, seed=3)  # (7, 28, 28) uint8, never blank


def test_a_kaggle_csv_is_read_in_chunks_with_its_row_numbers_labels_and_pixels(tmp_path, digits):
    labels = np.array([3, 1, 4, 1, 5, 9, 2])
    path = write_kaggle_csv(tmp_path / "train.csv", digits, labels)
    chunks = list(read_kaggle_csv(path, has_labels=True, chunk_rows=3))
    assert [first_row for first_row, _, _ in chunks] == [1, 4, 7]
    np.testing.assert_array_equal(np.concatenate([chunk[1] for chunk in chunks]), labels)
    images = np.concatenate([chunk[2] for chunk in chunks])
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, digits)


def _last_pixel(value: str):
    return lambda line: line.rsplit(",", 1)[0] + "," + value


def _first_pixel(value: str):
    return lambda line: ",".join([line.split(",", 1)[0], value, line.split(",", 2)[2]])


# case: (line number to replace (2 = the first data row), how to make it from the good line, the message)
MALFORMED_ROWS = {
    "one value too many": (4, lambda line: line + ",0", r"line 4 has 786 values; the header has 785 columns"),
    "one value too few": (3, lambda line: line.rsplit(",", 1)[0], r"row 2: 1 of its 785 values are missing"),
    "a pixel over 255": (5, _last_pixel("256"), r"row 4: column pixel783 is 256, outside 0-255"),
    "a negative pixel": (2, _first_pixel("-1"), r"row 1: column pixel0 is -1, outside 0-255"),
    "not a number": (6, _last_pixel("x"), r"row 5: column pixel783 is 'x', not an integer"),
    "a fraction": (3, _last_pixel("1.5"), r"row 2: column pixel783 is 1\.5, not an integer"),
    "a label over 9": (7, lambda line: "10," + line.split(",", 1)[1], r"row 6: column label is 10, .*0-9"),
}


@pytest.mark.parametrize("case", list(MALFORMED_ROWS))
def test_a_malformed_row_is_an_error_naming_the_file_and_the_row(tmp_path, digits, case):
    line_number, corrupt, message = MALFORMED_ROWS[case]
    path = write_kaggle_csv(tmp_path / "train.csv", digits, np.arange(7))
    _replace_line(path, line_number, corrupt(path.read_text().splitlines()[line_number - 1]))
    with pytest.raises(DataFileError, match=r"train\.csv: " + message):
        list(read_kaggle_csv(path, has_labels=True, chunk_rows=2))


def test_a_kaggle_csv_with_only_its_header_has_no_digits(tmp_path, digits):
    path = write_kaggle_csv(tmp_path / "test.csv", digits[:0])
    assert open_kaggle_csv(path) == KaggleCsv(path, has_labels=False, rows=0)
    assert list(read_kaggle_csv(path, has_labels=False)) == []


def test_a_malformed_row_in_a_later_chunk_is_named_by_its_row_in_the_file(tmp_path):
    images = random_digits(30, seed=1)
    path = write_kaggle_csv(tmp_path / "test.csv", images)
    line = path.read_text().splitlines()[25]  # row 25
    _replace_line(path, 26, line.replace(",", ",300,", 1).rsplit(",", 1)[0])
    with pytest.raises(DataFileError, match=r"row 25: column pixel1 is 300, outside 0-255"):
        list(read_kaggle_csv(path, has_labels=False, chunk_rows=8))
