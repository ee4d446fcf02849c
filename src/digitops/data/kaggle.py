"""Kaggle's digit-recognizer CSVs (train.csv, test.csv): a header `[label,]pixel0,...,pixel783`, then one
digit per row, 0-255 white ink on black, row-major 28x28, after its label (0-9) in a labelled file.

Read a chunk at a time and checked as it goes: a malformed value is a DataFileError naming its row and
column, so a 42,000-row file never sits in memory as images and a bad one says where it is bad.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitops.digits import NUM_CLASSES
from digitops.errors import DataFileError
from digitops.preprocess import MNIST_SIZE

CSV_CHUNK_ROWS = 1024  # rows parsed at a time
PIXEL_COLUMNS = [f"pixel{index}" for index in range(MNIST_SIZE * MNIST_SIZE)]
LABEL_COLUMN = "label"
_HIGHEST_LABEL = NUM_CLASSES - 1
_HIGHEST_PIXEL = 255


@dataclass(frozen=True)
class KaggleCsv:
    """A Kaggle digit CSV whose header has been checked."""

    path: Path
    has_labels: bool
    rows: int  # data rows, counted by lines (for a progress bar)


def open_kaggle_csv(path: Path) -> KaggleCsv:
    """Check a Kaggle digit CSV's header and count its rows.

    Raises:
        DataFileError: the header is not `[label,]pixel0,...,pixel783`.
    """
    try:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        with path.open("rb") as handle:
            lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(path, f"cannot read it as a CSV ({error})") from None
    header = [name.strip() for name in header]
    has_labels = header[:1] == [LABEL_COLUMN]
    pixels = header[1:] if has_labels else header
    if pixels != PIXEL_COLUMNS:
        raise DataFileError(
            path,
            f"not a Kaggle digit CSV: the header has {len(header)} columns "
            f"({', '.join(header[:3])}{', ...' if len(header) > 3 else ''}); expected pixel0..pixel783 "
            f"({len(PIXEL_COLUMNS)} columns), optionally after a '{LABEL_COLUMN}' column",
        )
    return KaggleCsv(path, has_labels, rows=max(lines - 1, 0))


def read_kaggle_csv(
    path: Path, has_labels: bool, chunk_rows: int = CSV_CHUNK_ROWS
) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
    """A Kaggle digit CSV, `chunk_rows` rows at a time, checked.

    Yields:
        The chunk's first row number (1-based, blank lines not counted: Kaggle's ImageId), its labels
        ((n,) int64, or None) and its images ((n, 28, 28) uint8, white ink on black, as in the file).

    Raises:
        DataFileError: naming the row (or line) and column: a wrong number of values, a value that is not
            an integer in 0-255, a label outside 0-9.
    """
    import pandas as pd

    expected = len(PIXEL_COLUMNS) + has_labels
    try:
        with pd.read_csv(path, chunksize=chunk_rows) as chunks:
            for chunk in chunks:
                if chunk.empty:  # a file with only the header: no digits
                    continue
                first_row = int(chunk.index[0]) + 1
                values = _chunk_integers(path, chunk, first_row)  # (n, columns) int64
                _check_range(path, chunk, values, first_row, has_labels)
                labels = values[:, 0] if has_labels else None
                images = values[:, int(has_labels) :].astype(np.uint8).reshape(-1, MNIST_SIZE, MNIST_SIZE)
                yield first_row, labels, images
    except pd.errors.ParserError as error:
        raise DataFileError(path, _parser_problem(str(error), expected)) from None


def _chunk_integers(path: Path, chunk, first_row: int) -> np.ndarray:
    """The chunk as (n, columns) int64, or a DataFileError naming the first cell that is not an integer."""
    import pandas as pd

    if all(pd.api.types.is_integer_dtype(dtype) for dtype in chunk.dtypes):
        return chunk.to_numpy(dtype=np.int64)  # the usual case: pandas parsed every column as integers
    numbers = chunk.apply(lambda column: pd.to_numeric(column, errors="coerce")).to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        row, column = (int(index) for index in np.argwhere(bad)[0])
        missing = int(chunk.iloc[row].isna().sum())
        if missing:
            problem = (
                f"{missing} of its {chunk.shape[1]} values are missing (a short row, or empty values; "
                f"the first is column {chunk.columns[column]})"
            )
        else:
            value = chunk.iat[row, column]  # a str in a column of text, a float in a column of numbers
            shown = repr(value) if isinstance(value, str) else str(value)
            problem = f"column {chunk.columns[column]} is {shown}, not an integer"
        raise DataFileError(path, f"row {first_row + row}: {problem}")
    return numbers.astype(np.int64)


def _check_range(path: Path, chunk, values: np.ndarray, first_row: int, has_labels: bool) -> None:
    """Pixels must be 0-255, labels 0-9; a DataFileError names the first value that is not."""
    highest = np.full(values.shape[1], _HIGHEST_PIXEL)
    if has_labels:
        highest[0] = _HIGHEST_LABEL
    bad = (values < 0) | (values > highest)
    if bad.any():
        row, column = (int(index) for index in np.argwhere(bad)[0])
        name = chunk.columns[column]
        raise DataFileError(
            path,
            f"row {first_row + row}: column {name} is {values[row, column]}, outside 0-{highest[column]}",
        )


def _parser_problem(message: str, expected: int) -> str:
    """pandas' 'Expected 785 fields in line 7, saw 786' in this file's terms."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if not found:
        return f"not a readable CSV ({message.strip()})"
    line, saw = int(found.group(2)), int(found.group(3))
    return f"line {line} has {saw} values; the header has {expected} columns"
