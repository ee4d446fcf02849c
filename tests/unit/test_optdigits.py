"""optdigits-orig: the parser on small files written here, its polarity through the normaliser, and the
malformed records it must refuse by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digitops.data.optdigits import read_optdigits
from digitops.errors import DataFileError
from digitops.preprocess import MNIST_CENTRE, centre_of_mass, normalize_digits

_FIELDS = ("entwidth", "entheight", "depth", "density", "whitepix", "ntot", "ndigit", "nlower", "nupper")
_MORE = ("nparag", "firstdigit", "lastdigit", "firstlower", "lastlower", "firstupper", "lastupper")


def _header(count: int) -> list[str]:
    """The 21 header lines of the UCI files, with `count` digits."""
    values = {"entwidth": 32, "entheight": 32, "depth": 1, "density": 300, "ntot": count, "ndigit": count}
    fields = [f"{name} = {values.get(name, 0)}" for name in (*_FIELDS, *_MORE, "firstparag", "lastparag")]
    return ["BU handwritten digit database: E Alpaydin C Kaynak 1995", "Training file", "", *fields]


def _bitmaps() -> tuple[np.ndarray, list[int]]:
    """Two 32x32 bitmaps (True = ink): a bar (a 1) and a box outline (a 0), both off-centre."""
    one = np.zeros((32, 32), dtype=bool)
    one[2:30, 4:8] = True
    zero = np.zeros((32, 32), dtype=bool)
    zero[1:20, 10:31] = True
    zero[5:16, 15:26] = False
    return np.stack([one, zero]), [1, 0]


def _write(path: Path, bitmaps: np.ndarray, labels: list[int], trailer: str = "") -> Path:
    lines = _header(len(labels))
    for bitmap, label in zip(bitmaps, labels, strict=True):
        lines += ["".join("1" if ink else "0" for ink in row) for row in bitmap] + [f" {label}"]
    # The UCI files end with a newline; the registered .windep copy adds "EOF" without one.
    path.write_text("\n".join(lines) + "\n" + trailer)
    return path


@pytest.mark.parametrize("trailer", ["", "EOF"])
def test_reads_bitmaps_and_labels_with_or_without_the_trailing_line(tmp_path, trailer):
    bitmaps, labels = _bitmaps()
    images, read_labels = read_optdigits(_write(tmp_path / "optdigits-orig.windep", bitmaps, labels, trailer))
    assert images.shape == (2, 32, 32) and images.dtype == np.uint8
    assert read_labels.tolist() == [1, 0] and read_labels.dtype == np.int64
    np.testing.assert_array_equal(images, np.where(bitmaps, 255, 0))  # 1 = ink = bright


def test_ink_comes_out_white_on_black_and_centred(tmp_path):
    bitmaps, labels = _bitmaps()
    images, _ = read_optdigits(_write(tmp_path / "optdigits-orig.tra", bitmaps, labels))
    digits = normalize_digits(images)  # (2, 28, 28)
    assert digits[:, :4].max() == 0 and digits[:, :, :4].max() == 0  # the border is black paper
    assert digits.max(axis=(1, 2)).tolist() == [255, 255]
    np.testing.assert_allclose(centre_of_mass(digits), MNIST_CENTRE, atol=0.5)
    assert digits[1, 14, 14] == 0  # the 0's hole stays paper: the polarity was not flipped


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines.__setitem__(30, "0" * 31 + "2"), r"line 31: expected a bitmap row of 32 0/1"),
        (lambda lines: lines.__setitem__(30, "0" * 31), r"line 31: expected a bitmap row"),
        (
            lambda lines: lines.__setitem__(53, " 12"),
            r"line 54: expected the label 0-9 after a bitmap, got ' 12'",
        ),
        (lambda lines: lines.__setitem__(53, " x"), r"line 54: expected the label 0-9"),
        (lambda lines: lines.insert(60, "EOF"), r"line 61: expected a bitmap row of 32 0/1, got 'EOF'"),
        (
            lambda lines: lines.__delitem__(slice(70, None)),
            r"line 70: the file ends inside the digit that starts",
        ),
        (lambda lines: lines.__setitem__(9, "ndigit = 3"), "holds 2 digits, its header says ndigit = 3"),
        (lambda lines: lines.__setitem__(3, "entwidth = 16"), "header: entwidth is 16, expected 32"),
        (lambda lines: lines.__setitem__(5, "depth: 1"), "line 6: expected a header field 'name = number'"),
        (lambda lines: lines.__delitem__(slice(10, None)), "has 10 lines, fewer than the 21-line header"),
    ],
)
def test_malformed_files_are_refused_naming_the_line(tmp_path, edit, message):
    bitmaps, labels = _bitmaps()
    path = _write(tmp_path / "optdigits-orig.tra", bitmaps, labels)
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=message) as error:
        read_optdigits(path)
    assert error.value.path == str(path)


def test_not_text(tmp_path):
    path = tmp_path / "optdigits-orig.tra"
    path.write_bytes(b"\x1f\x9d\x90compressed")  # a compressed copy, not unpacked
    with pytest.raises(DataFileError, match="not an optdigits text file"):
        read_optdigits(path)
