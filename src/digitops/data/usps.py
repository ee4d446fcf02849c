"""The USPS files of 'The Elements of Statistical Learning' (zip.train.gz, zip.test.gz): gzipped text,
one digit per line: the label (written like 6.0000), then 256 grey values in [-1, 1], row-major 16x16,
-1 = background."""

from __future__ import annotations

import os

import numpy as np

from digitops.data.idx import read_gzip
from digitops.errors import DataFileError

USPS_SIZE = 16
_VALUES_PER_LINE = 1 + USPS_SIZE * USPS_SIZE


def read_usps(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an ESL USPS file.

    Returns:
        images (N, 16, 16) uint8 (0 = background, 255 = full ink) and labels (N,) int64.
    """
    try:
        text = read_gzip(path).decode("ascii")
    except UnicodeDecodeError as error:
        raise DataFileError(path, f"not a USPS text file ({error})") from error
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != _VALUES_PER_LINE:
            raise DataFileError(path, f"line {number} has {len(fields)} values, expected {_VALUES_PER_LINE}")
        try:
            rows.append(np.array(fields, dtype=np.float64))
        except ValueError as error:
            raise DataFileError(path, f"line {number}: {error}") from error
    if not rows:
        raise DataFileError(path, "holds no digits")
    table = np.stack(rows)  # (N, 257)
    labels, values = table[:, 0], table[:, 1:]
    bad_label = (labels != np.round(labels)) | (labels < 0) | (labels > 9)
    if bad_label.any():
        line = int(np.argmax(bad_label)) + 1
        raise DataFileError(path, f"digit {line} has label {labels[line - 1]:g}, expected 0-9")
    if values.min() < -1.0 or values.max() > 1.0:
        raise DataFileError(path, f"grey values span [{values.min()}, {values.max()}], expected [-1, 1]")
    images = np.round((values + 1.0) * 127.5).astype(np.uint8).reshape(-1, USPS_SIZE, USPS_SIZE)
    return images, labels.astype(np.int64)
