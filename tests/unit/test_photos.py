"""The photo generator's conditions (bench.photos.Conditions): each one makes what it claims, the truth
stays the digits alone, and with none of them the photo is the one generated before they existed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bench.photos import Conditions, _pattern, _perspective_coefficients, _pressure, _warp, make_photo
from bench.read_photos import _downscaled
from tests.unit.test_segment import digit

LABELS = [3, 0, 1, 4, 2]


def photo_with(seed: int, labels: list[int] = LABELS, **conditions):
    """One line of drawn digits, 50 px tall, not rotated, JPEG quality 95, with `conditions`."""
    rng = np.random.default_rng(seed)
    return make_photo(
        [[digit(label) for label in labels]],
        [labels],
        rng,
        digit_height=50,
        max_rotation=0.0,
        jpeg_quality=95,
        conditions=Conditions(**conditions),
    )


def gray(photo) -> np.ndarray:
    return np.asarray(photo.image.convert("L"), np.float32) / 255.0  # (H, W)


def test_no_condition_gives_the_photo_of_before():
    first = make_photo([[digit(d) for d in LABELS]], [LABELS], np.random.default_rng(1), conditions=None)
    second = make_photo(
        [[digit(d) for d in LABELS]], [LABELS], np.random.default_rng(1), conditions=Conditions()
    )
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert first.boxes == second.boxes and first.written == ["30142"]


def test_all_conditions_are_reproducible_from_the_seed():
    options = dict(tight_crop=True, separators=0.5, underline=True, pattern=True, touching=0.5, pressure=True)
    first, second = photo_with(2, **options, perspective=True), photo_with(2, **options, perspective=True)
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert first.written == second.written


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_tight_crop_has_the_digits_touching_the_border(seed):
    photo = photo_with(seed, tight_crop=True)
    height, width = gray(photo).shape
    lefts, tops = [x for x, _, _, _ in photo.boxes], [y for _, y, _, _ in photo.boxes]
    rights, bottoms = [x + w for x, _, w, _ in photo.boxes], [y + h for _, y, _, h in photo.boxes]
    touching = [min(lefts) == 0, min(tops) == 0, max(rights) == width, max(bottoms) == height]
    assert any(touching), (photo.boxes, photo.image.size)
    assert max(width - max(rights), min(lefts)) <= 0.13 * 50  # at most a strip of paper at the sides
    plain = photo_with(seed)
    assert plain.boxes[0][0] > 0.3 * 50  # the plain photo keeps a margin of paper


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_separators_are_written_but_not_in_the_true_digits(seed):
    photo = photo_with(seed, separators=1.0)
    written = photo.written[0]
    assert re.sub(r"[^0-9]", "", written) == "".join(map(str, LABELS))
    assert photo.lines == [LABELS]
    # With a separator in every gap and after the last digit: one mark (1 or 2 characters) after each.
    assert re.fullmatch(r"(\d[.,\-=/]{1,2}){5}", written), written
    assert len(photo.boxes) == len(LABELS)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_an_underline_spans_the_number_below_it(seed):
    def darkest_below(photo) -> np.ndarray:
        """Per column under the digits, the darkest pixel over the column's paper there (1: paper only)."""
        pixels = gray(photo)
        below = pixels[max(y + h for _, y, _, h in photo.boxes) + 1 :]  # (b, W) under every digit
        left = min(x for x, _, _, _ in photo.boxes)
        right = max(x + w for x, _, w, _ in photo.boxes)
        return (below.min(axis=0) / np.median(below, axis=0))[left:right]

    assert (darkest_below(photo_with(seed, underline=True)) < 0.7).all()
    # The same paper and light (pressure changes only the digits' strokes): no line under them.
    assert (darkest_below(photo_with(seed, pressure=True)) < 0.7).mean() < 0.5


def dark_columns_between_digits(photo) -> int:
    """How many gaps between neighbouring digits hold a column that is dark along the digits' height."""
    pixels = gray(photo)
    paper = np.median(pixels)
    top = min(y for _, y, _, _ in photo.boxes)
    bottom = max(y + h for _, y, _, h in photo.boxes)
    count = 0
    for (x, _, w, _), (next_x, _, _, _) in zip(photo.boxes, photo.boxes[1:], strict=False):
        band = pixels[top:bottom, x + w : next_x]  # (b, gap)
        count += band.size > 0 and bool(((band < 0.85 * paper).mean(axis=0) > 0.8).any())
    return count


@pytest.mark.parametrize("seed", [0, 1])
def test_boxed_paper_puts_a_printed_line_between_neighbouring_digits(seed):
    assert dark_columns_between_digits(photo_with(seed, boxed=True)) >= len(LABELS) - 2
    assert dark_columns_between_digits(photo_with(seed, pressure=True)) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_ruled_paper_has_lines_across_the_whole_photo(seed):
    def ruled_rows(photo) -> int:
        """Rows darker than both rows 4 px above and below them, along most of the width (their median)."""
        rows = np.median(gray(photo), axis=1)  # (H,)
        around = np.maximum(rows[:-8], rows[8:])
        return int((rows[4:-4] < 0.95 * around).sum())

    assert ruled_rows(photo_with(seed, ruled=True)) >= 4
    assert ruled_rows(photo_with(seed, pressure=True)) == 0


@pytest.mark.parametrize("seed", range(6))  # hatching, guilloche and dots all come up
def test_a_printed_pattern_is_light_fine_and_covers_the_paper(seed):
    pattern = _pattern((120, 200), 50.0, np.random.default_rng(seed))  # (H, W)
    assert 0.05 < pattern.max() <= 0.4  # light ink
    blocks = pattern.reshape(10, 12, 10, 20).max(axis=(1, 3))  # (10, 10) blocks of 12x20 px
    assert (blocks > 0.5 * pattern.max()).all()  # everywhere, not in patches
    rows_changing = np.abs(np.diff(pattern > 0.5 * pattern.max(), axis=1)).sum(axis=1)  # (H,)
    columns_changing = np.abs(np.diff(pattern > 0.5 * pattern.max(), axis=0)).sum(axis=0)  # (W,)
    assert max(rows_changing.mean(), columns_changing.mean()) > 8  # fine: many strokes per line


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_touching_neighbours_meet_or_overlap(seed):
    photo = photo_with(seed, touching=1.0)
    for (x, _, w, _), (next_x, _, _, _) in zip(photo.boxes, photo.boxes[1:], strict=False):
        assert next_x <= x + w + 1, photo.boxes
    plain = photo_with(seed)
    assert all(
        nx > x + w + 3 for (x, _, w, _), (nx, _, _, _) in zip(plain.boxes, plain.boxes[1:], strict=False)
    )


def test_pen_pressure_varies_the_stroke_width_along_the_digit():
    bar = np.zeros((100, 40), np.float32)
    bar[:, 15:25] = 1.0  # a vertical stroke 10 px wide
    widths = (_pressure(bar, 100.0, np.random.default_rng(3)) > 0.5).sum(axis=1)  # (100,) per row
    assert widths.max() - widths.min() >= 4, widths
    assert widths.min() >= 4  # thinner, not broken


def test_perspective_moves_the_corners_inwards_unevenly():
    page = np.ones((200, 300), np.float32)
    warped = _warp(page, _perspective_coefficients(page.shape, np.random.default_rng(4)))
    assert warped[100, 150] == pytest.approx(1.0)
    assert warped[0, 0] == 0 and warped[-1, -1] == 0  # the page's corners moved inwards
    rows = np.flatnonzero(warped[:, 150] > 0.5)
    top_row, bottom_row = warped[rows[2]] > 0.5, warped[rows[-3]] > 0.5
    assert abs(int(top_row.sum()) - int(bottom_row.sum())) > 3  # not a rectangle: a slanted view


def test_a_photo_downscaled_to_small_digits_keeps_its_boxes_on_them():
    photo = make_photo(
        [[digit(3), digit(1), digit(4)]], [[3, 1, 4]], np.random.default_rng(3), digit_height=60
    )
    small = _downscaled(photo, 15.0)
    factor = 15.0 / float(np.median([box[3] for box in photo.boxes]))
    assert small.image.width == round(photo.image.width * factor)
    assert float(np.median([box[3] for box in small.boxes])) == pytest.approx(15.0, abs=1)
    assert small.lines == photo.lines and small.written == photo.written
    assert _downscaled(photo, None) is photo and _downscaled(photo, 500.0) is photo  # never enlarged


def test_a_bilevel_scan_is_black_ink_on_white_paper_where_the_digits_are():
    photo = photo_with(4, bilevel=True)
    pixels = np.asarray(photo.image.convert("L"))
    assert set(np.unique(pixels)) == {0, 255}  # lossless: no JPEG's grey between them
    ink = pixels == 0
    for x, y, width, height in photo.boxes:
        assert ink[y : y + height, x : x + width].mean() > 0.1  # each digit is black...
    outside = np.ones_like(ink)
    for x, y, width, height in photo.boxes:
        outside[max(0, y - 5) : y + height + 5, max(0, x - 5) : x + width + 5] = False
    assert ink[outside].mean() < 0.01  # ... on white paper, through the photo's light and shadow
