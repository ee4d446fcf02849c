"""UCI's optdigits-orig files (E. Alpaydin, C. Kaynak, 1998): 32x32 binary bitmaps of handwritten digits.

ASCII: a 21-line header (`entwidth = 32`, `ndigit = 1934`, ...), then per digit 32 lines of 32 `0`/`1`
characters (1 = ink) and one line with the label and a leading space (` 8`). The bitmaps were size-normalised
by NIST's software to fill the box without keeping the aspect ratio. The copy of `optdigits-orig.windep`
in the registry ends with an extra line `EOF` that its uploader's reader needed; it is skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from digitops.errors import DataFileError

OPTDIGITS_SIZE = 32
HEADER_LINES = 21
_TRAILER = "EOF"  # the last line of the registered .windep copy, not a digit
_BITMAP_ROW = re.compile(r"[01]{32}")
_LABEL = re.compile(r" ?([0-9])")
_HEADER_FIELD = re.compile(r"(\w+) = (-?\d+)")


def read_optdigits(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an optdigits-orig file (`.tra`, `.windep`, ...).

    Returns:
        images (N, 32, 32) uint8 (0 = paper, 255 = ink) and labels (N,) int64.

    Raises:
        DataFileError: the header or a record is malformed (names the line), the file ends inside a digit,
            or it holds another number of digits than its header's `ndigit`.
    """
    try:
        lines = Path(path).read_bytes().decode("ascii").splitlines()
    except UnicodeDecodeError as error:
        raise DataFileError(path, f"not an optdigits text file ({error})") from error
    declared = _header_count(path, lines)
    if lines and lines[-1] == _TRAILER:
        lines = lines[:-1]
    record = OPTDIGITS_SIZE + 1  # 32 bitmap rows and the label
    images, labels = [], []
    for start in range(HEADER_LINES, len(lines), record):
        rows = lines[start : start + record]
        if len(rows) < record:
            ends = f"line {len(lines)}: the file ends inside the digit that starts on line {start + 1}"
            raise DataFileError(path, ends)
        for offset, row in enumerate(rows[:OPTDIGITS_SIZE]):
            if not _BITMAP_ROW.fullmatch(row):
                raise DataFileError(
                    path, f"line {start + offset + 1}: expected a bitmap row of 32 0/1, got {row[:40]!r}"
                )
        label = _LABEL.fullmatch(rows[-1])
        if label is None:
            raise DataFileError(
                path, f"line {start + record}: expected the label 0-9 after a bitmap, got {rows[-1]!r}"
            )
        images.append(np.array([[char == "1" for char in row] for row in rows[:OPTDIGITS_SIZE]]))
        labels.append(int(label.group(1)))
    if len(labels) != declared:
        raise DataFileError(path, f"holds {len(labels)} digits, its header says ndigit = {declared}")
    if not labels:
        raise DataFileError(path, "holds no digits")
    bitmaps = np.stack(images)  # (N, 32, 32) bool, True = ink
    return bitmaps.astype(np.uint8) * np.uint8(255), np.array(labels, dtype=np.int64)


def _header_count(path: str | os.PathLike, lines: list[str]) -> int:
    """Check the header's bitmap size and return its `ndigit`, the number of digits the file holds."""
    if len(lines) < HEADER_LINES:
        raise DataFileError(path, f"has {len(lines)} lines, fewer than the {HEADER_LINES}-line header")
    fields = {}
    for number, line in enumerate(lines[3:HEADER_LINES], start=4):  # after the title, a subtitle, a blank
        field = _HEADER_FIELD.fullmatch(line)
        if field is None:
            raise DataFileError(path, f"line {number}: expected a header field 'name = number', got {line!r}")
        fields[field.group(1)] = int(field.group(2))
    for name in ("entwidth", "entheight"):
        if fields.get(name) != OPTDIGITS_SIZE:
            raise DataFileError(path, f"header: {name} is {fields.get(name)}, expected {OPTDIGITS_SIZE}")
    if "ndigit" not in fields:
        raise DataFileError(path, "header: no ndigit field (the number of digits)")
    return fields["ndigit"]
