"""find_digits and read_digits on generated photos: known digits on textured paper, unevenly lit, blurred,
JPEG-compressed (bench.photos), so that every box has a true box to compare with."""

from __future__ import annotations

import json
import math

import cc3d
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.photos import Conditions, blank_photo, make_photo
from digitops.infer import segment
from digitops.infer.reader import ReadChar, ReadLine
from digitops.infer.segment import DigitCrop, find_digits, read_digits
from digitops.strings import READER_HEIGHT
from tests.fakes import FOUR_STROKES, SEVEN_STROKES, draw_strokes

_CIRCLE = [(128 + 70 * math.cos(t), 128 + 95 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 25)]
STROKES = {  # on a 256x256 canvas, as tests.fakes draws them
    0: [[(round(x), round(y)) for x, y in _CIRCLE]],
    1: [[(128, 30), (128, 226)]],
    2: [[(60, 80), (100, 40), (170, 45), (190, 100), (70, 220), (200, 220)]],
    3: [[(60, 40), (190, 50), (120, 120), (195, 170), (150, 220), (60, 210)]],
    4: FOUR_STROKES,
    7: SEVEN_STROKES,
}
# A '7' whose diagonal starts below the bar: two separate pieces of ink.
BROKEN_SEVEN = [[(60, 50), (200, 50)], [(185, 95), (110, 220)]]


def digit(label: int) -> np.ndarray:
    return draw_strokes(STROKES[label])


def photo_of(lines: list[list[int]], seed: int, **options):
    rng = np.random.default_rng(seed)
    return make_photo([[digit(d) for d in line] for line in lines], lines, rng, **options)


def iou(first: tuple[int, int, int, int], second: tuple[int, int, int, int]) -> float:
    (ax, ay, aw, ah), (bx, by, bw, bh) = first, second
    inter_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    return inter / (aw * ah + bw * bh - inter)


def assert_found(crops: list[DigitCrop], photo) -> None:
    """One crop per true digit, in reading order, each box overlapping its true box."""
    assert len(crops) == len(photo.boxes), [crop.box for crop in crops]
    for crop, box in zip(crops, photo.boxes, strict=True):
        assert iou(crop.box, box) > 0.7, (crop.box, box)
    true_lines = [number for number, line in enumerate(photo.lines) for _ in line]
    assert [crop.line for crop in crops] == true_lines


def assert_around_each_digit(crops: list[DigitCrop], photo) -> None:
    """One crop per true digit, each around its digit's centre (a stub of a box's side may stay beside it)."""
    assert len(crops) == len(photo.boxes), [crop.box for crop in crops]
    for crop, (x, y, width, height) in zip(crops, photo.boxes, strict=True):
        cx, cy, cw, ch = crop.box
        assert cx <= x + width / 2 <= cx + cw and cy <= y + height / 2 <= cy + ch, (crop.box, (x, y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_one_line_of_digits_in_reading_order(seed):
    photo = photo_of([[3, 1, 4, 1, 0, 2, 7]], seed, digit_height=50)
    assert_found(find_digits(photo.image), photo)


@pytest.mark.parametrize("seed", [3, 4])
def test_finds_two_lines_of_digits_top_line_first(seed):
    photo = photo_of([[2, 0, 4], [7, 1, 3, 3]], seed, digit_height=45)
    crops = find_digits(photo.image)
    assert_found(crops, photo)
    assert max(crop.box[1] for crop in crops[:3]) < min(crop.box[1] for crop in crops[3:])


def test_a_blank_photo_has_no_digits():
    for seed in range(3):
        assert find_digits(blank_photo(300, 500, np.random.default_rng(seed))) == []
    assert find_digits(np.full((120, 200), 230, np.uint8)) == []


def test_a_broken_stroke_is_one_digit():
    broken = draw_strokes(BROKEN_SEVEN)
    assert cc3d.connected_components(broken > 0, connectivity=8).max() == 2  # really two pieces
    rng = np.random.default_rng(5)
    photo = make_photo([[digit(1), broken, digit(4)]], [[1, 7, 4]], rng, digit_height=60)
    assert_found(find_digits(photo.image), photo)


def test_specks_are_dropped():
    photo = photo_of([[4, 0, 7, 2]], seed=6, digit_height=60)
    image = photo.image.copy()
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(7)
    specks = 0
    while specks < 12:  # dark dots of 1-3 px radius on the paper, away from the digits
        x, y = int(rng.integers(5, image.width - 5)), int(rng.integers(5, image.height - 5))
        if any(bx - 10 < x < bx + bw + 10 and by - 10 < y < by + bh + 10 for bx, by, bw, bh in photo.boxes):
            continue
        radius = int(rng.integers(1, 4))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(30, 30, 40))
        specks += 1
    assert_found(find_digits(image), photo)


def test_a_huge_photo_is_analysed_downscaled_and_boxes_are_in_its_pixels():
    photo = photo_of([[7, 3, 1]], seed=8, digit_height=60)
    factor = 12
    huge = photo.image.resize((photo.image.width * factor, photo.image.height * factor))
    assert max(huge.size) > 1600
    crops = find_digits(huge)
    assert len(crops) == 3
    assert all(max(crop.pixels.shape) < max(crop.box[2:]) for crop in crops)  # from the downscaled copy
    for crop, (x, y, w, h) in zip(crops, photo.boxes, strict=True):
        assert iou(crop.box, (x * factor, y * factor, w * factor, h * factor)) > 0.7


def test_arrays_and_images_give_the_same_digits():
    photo = photo_of([[2, 4, 0]], seed=9, digit_height=50)
    from_image = find_digits(photo.image)
    rgb = np.asarray(photo.image)  # (H, W, 3) uint8
    gray = np.asarray(photo.image.convert("L"), np.float32) / 255.0  # (H, W) float
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    for array in (rgb, gray, rgba):
        assert [crop.box for crop in find_digits(array)] == [crop.box for crop in from_image]


def test_crops_are_dark_ink_on_paper_and_hold_only_their_digit():
    photo = photo_of([[1, 0]], seed=10, digit_height=50)
    crops = find_digits(photo.image)
    for crop in crops:
        assert crop.pixels.dtype == np.uint8 and crop.pixels.ndim == 2
        assert np.median(crop.pixels) == 255  # paper is white, the normaliser's background
        assert crop.pixels.min() < 128  # dark ink
    # The '1' is a single stroke: its crop has one piece of ink, none of its neighbour's.
    assert cc3d.connected_components(crops[0].pixels < 128, connectivity=8).max() == 1


class RecordingClassifier:
    """classify(batch) -> probabilities whose argmax is the row's position modulo 10."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch)
        probabilities = np.full((len(batch), 10), 0.01, np.float32)
        probabilities[np.arange(len(batch)), np.arange(len(batch)) % 10] = 0.91
        return probabilities


def test_read_digits_classifies_all_crops_in_one_batch_and_maps_them_back_in_order():
    photo = photo_of([[3, 1, 4], [1, 0]], seed=11, digit_height=45)
    classify = RecordingClassifier()
    result = read_digits(photo.image, classify)
    assert len(classify.batches) == 1
    batch = classify.batches[0]  # the five crops, then the candidate parts of any wide one (none kept here)
    assert len(batch) >= 5 and batch.shape[1:] == (28, 28) and batch.dtype == np.uint8
    assert (batch.reshape(len(batch), -1).max(axis=1) == 255).all()  # MNIST-style: white ink on black
    assert result.text == "012\n34"
    assert [d.digit for d in result.digits] == [0, 1, 2, 3, 4]
    assert [d.box for d in result.digits] == [crop.box for crop in find_digits(photo.image)]
    assert all(d.confidence == pytest.approx(0.91) for d in result.digits)
    assert json.loads(json.dumps(result.to_dict()))["text"] == "012\n34"


def test_read_digits_of_a_blank_photo_is_empty_and_does_not_classify():
    classify = RecordingClassifier()
    result = read_digits(blank_photo(200, 300, np.random.default_rng(12)), classify)
    assert result.text == "" and result.digits == []
    assert classify.batches == []


def nearest_drawn(crops: list[DigitCrop], labels: list[int]) -> list[int]:
    """Each crop, normalised, read as the drawn digit of `labels` it is closest to (a classifier that knows
    only these drawings)."""
    from digitops.preprocess import normalize_digit

    references = np.stack([normalize_digit(digit(label)) for label in labels]).astype(np.float32)
    read = []
    for crop in crops:
        normalised = normalize_digit(crop.pixels).astype(np.float32)
        read.append(labels[int(np.argmin(np.abs(references - normalised).mean(axis=(1, 2))))])
    return read


def test_a_crop_reads_as_the_digit_it_holds():
    """The crop, normalised, looks like the digit drawn: closest to the right one of the drawn set."""
    labels = [0, 1, 2, 3, 4, 7]
    photo = photo_of([labels], seed=13, digit_height=60)
    assert nearest_drawn(find_digits(photo.image), labels) == labels


def test_jpeg_and_photo_generation_is_reproducible():
    first = photo_of([[1, 2]], seed=14)
    second = photo_of([[1, 2]], seed=14)
    assert first.boxes == second.boxes
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert isinstance(first.image, Image.Image) and first.image.mode == "RGB"


def test_a_bold_digit_that_fills_its_box_is_not_inverted():
    """Ink covering most of its own box must still come out as ink (the normaliser takes the median
    pixel for the paper): the crop normalises like the digit drawn."""
    from digitops.preprocess import normalize_digit

    bold = draw_strokes(STROKES[0], width=80)
    rows, cols = np.nonzero(bold)
    assert (bold[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] > 0).mean() > 0.6
    photo = make_photo([[digit(1), bold]], [[1, 0]], np.random.default_rng(15), digit_height=60)
    crops = find_digits(photo.image)
    assert len(crops) == 2
    drawn = normalize_digit(np.pad(bold, 256)).astype(np.float32).ravel()  # mostly black: ink is white
    read = normalize_digit(crops[1].pixels).astype(np.float32).ravel()
    assert np.corrcoef(drawn, read)[0, 1] > 0.8


def test_dim_noisy_paper_gives_no_ink():
    """A photo taken in poor light: dark paper and strong, blotchy sensor noise, nothing written."""
    rng = np.random.default_rng(16)
    noise = Image.fromarray(rng.normal(0, 1, (300, 400)).astype(np.float32), mode="F")
    noise = np.asarray(noise.resize((800, 600), Image.Resampling.BICUBIC).resize((400, 300)))
    gray = np.clip(70 + 10 * noise / noise.std(), 0, 255).astype(np.uint8)
    assert find_digits(gray) == []


def condition_photo(lines: list[list[int]], seed: int, **conditions):
    """Drawn digits 50 px tall, barely rotated, JPEG quality 90, with `conditions` (bench.photos)."""
    rng = np.random.default_rng(seed)
    return make_photo(
        [[digit(d) for d in line] for line in lines],
        lines,
        rng,
        digit_height=50,
        max_rotation=1.0,
        jpeg_quality=90,
        conditions=Conditions(**conditions),
    )


@pytest.mark.parametrize(("digit_height", "seed"), [(12, 1), (12, 6), (14, 3), (14, 6)])
def test_digits_a_few_pixels_tall_are_found_in_a_photo_analysed_larger(digit_height, seed):
    """A coarse scan: digits 12-14 px tall, each found, its box around its digit in the photo's pixels."""
    photo = photo_of(
        [[3, 1, 4, 7], [2, 0]], seed=seed, digit_height=digit_height, jpeg_quality=90, max_rotation=1.0
    )
    crops = find_digits(photo.image)
    assert len(crops) == len(photo.boxes), [crop.box for crop in crops]
    for crop, (x, y, width, height) in zip(crops, photo.boxes, strict=True):
        bx, by, bw, bh = crop.box
        assert x <= bx + bw / 2 <= x + width and y <= by + bh / 2 <= y + height, (
            crop.box,
            (x, y, width, height),
        )
        assert bx + bw <= photo.image.width and by + bh <= photo.image.height
    assert [crop.line for crop in crops] == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_an_underline_touching_the_digits_is_removed_and_they_are_found(seed):
    photo = condition_photo([[3, 1, 4, 0, 2]], seed, underline=True)
    assert_found(find_digits(photo.image), photo)


@pytest.mark.parametrize("seed", [23, 24, 25])
def test_the_printed_boxes_of_a_comb_field_no_longer_join_the_digits(seed):
    """One crop per digit, each holding its digit (a stub of a box's side may stay beside it)."""
    photo = condition_photo([[7, 2, 0, 4]], seed, boxed=True)
    assert_around_each_digit(find_digits(photo.image), photo)


@pytest.mark.parametrize("seed", [30, 128, 200, 250])
def test_a_printed_security_pattern_no_longer_joins_the_digits(seed):
    """Dots, waves or hatching printed over the paper: one crop per digit, around it, however the pattern
    runs through the strokes."""
    photo = condition_photo([[3, 1, 4, 0, 2]], seed, pattern=True)
    assert_found(find_digits(photo.image), photo)


@pytest.mark.parametrize("seed", [23, 26, 30, 41])
def test_a_tall_one_in_a_comb_field_is_a_digit_not_a_box_side(seed):
    """Drawn this size, the 1s outgrow the other digits by more than a box's side outgrows them; free of
    the box's top and bottom, and drawn wider than its lines, each is still found (fine pens aside)."""
    photo = condition_photo([[1, 2, 1, 0, 1]], seed, boxed=True)
    assert_around_each_digit(find_digits(photo.image), photo)


def test_a_crop_keeps_the_faint_ink_joined_to_its_digit_and_nothing_else():
    """A stroke pressed lightly falls under the threshold that separates digits. Joined to the digit's own
    ink within its box, it is part of the crop; faint ink apart from it and a neighbour's ink are not."""
    flat = np.ones((40, 40), np.float32)  # the paper ~1, ink darker
    labels = np.zeros((40, 40), np.int32)
    labels[5:35, 10:13] = 1  # the digit's thresholded stroke: its component 0
    labels[30:35, 27:30] = 2  # a neighbour's, reaching into its box
    faint = np.zeros((40, 40), bool)
    faint[5:8, 13:30] = True  # a bar pressed lightly, joined to the stroke
    faint[20:23, 20:24] = True  # a faint speck apart from it
    flat[labels > 0], flat[faint] = 0.1, 0.6
    crop = segment._crop(flat, labels, faint | (labels > 0), np.array([0]), (10, 5, 30, 35))
    assert (crop == round(0.6 * 255)).sum() == 3 * 17  # the bar, not the speck
    assert (crop == round(0.1 * 255)).sum() == 30 * 3  # the stroke, not the neighbour


def test_pieces_of_a_faint_printed_grid_are_not_digits():
    """Squared paper printed faintly breaks, at the threshold, into pieces as tall as a digit and as thin as
    a '1'. Less than half as dark as the digits, they are not read as a line of 1s."""
    rng = np.random.default_rng(0)
    page = np.full((200, 360), 215.0)
    for position, label in enumerate([3, 1, 4, 7]):
        ink = np.asarray(Image.fromarray(digit(label)).resize((60, 60), Image.Resampling.BILINEAR)) / 255
        page[30:90, 40 + 70 * position : 100 + 70 * position] -= 170 * ink
    for x in (60, 130, 200, 270):
        page[120:170, x : x + 3] -= 170 * 0.4
    page += rng.normal(0, 2, page.shape)
    crops = find_digits(np.clip(page, 0, 255).astype(np.uint8))
    assert [crop.box[1] < 100 for crop in crops] == [True] * 4, [crop.box for crop in crops]


def test_a_photo_of_lines_alone_reads_as_empty_text():
    rng = np.random.default_rng(25)
    gray = np.asarray(blank_photo(240, 400, rng).convert("L")).copy()
    gray[60:63, 20:380] = 40  # a ruled line
    gray[150:153, 20:380] = 40
    gray[20:220, 200:202] = 60  # a margin line
    classify = RecordingClassifier()
    assert read_digits(gray, classify).text == ""
    assert classify.batches == []


@pytest.mark.parametrize("seed", [30, 31, 32])
def test_a_tight_crop_keeps_the_digits_touching_its_sides(seed):
    """A '1' as tall as the crop at each end, touching its sides: digits, not the paper's edge or the desk."""
    photo = condition_photo([[1, 3, 0, 2, 1]], seed, tight_crop=True)
    (first_x, first_y, _, first_h), (last_x, _, last_w, _) = photo.boxes[0], photo.boxes[-1]
    assert first_y <= 2 or first_y + first_h >= photo.image.height - 2 or first_x <= 2  # really tight
    assert first_x <= 0.15 * 50 and last_x + last_w >= photo.image.width - 0.15 * 50
    assert_found(find_digits(photo.image), photo)
    assert read_digits(photo.image, RecordingClassifier()).text == "01234"


@pytest.mark.parametrize("seed", [30, 31, 32])
def test_a_black_and_white_scan_has_its_digits_found_and_read(seed):
    """Hard-edged ink with no grey and no noise to measure: each digit found, each crop holding its digit."""
    labels = [7, 2, 0, 4, 1]
    photo = condition_photo([labels], seed, bilevel=True)
    crops = find_digits(photo.image)
    assert_found(crops, photo)
    assert nearest_drawn(crops, labels) == labels


@pytest.mark.parametrize("seed", [43, 51, 60, 77])
def test_dots_commas_dashes_and_equals_signs_are_left_out_of_the_text(seed):
    """Written '3-4-0-2-7=-' and the like: five digits, each crop holding its digit and no separator."""
    photo = condition_photo([[3, 4, 0, 2, 7]], seed, separators=1.0)
    assert "/" not in photo.written[0] and len(photo.written[0]) > 5  # separators, but no slash (a '1')
    crops = find_digits(photo.image)
    assert len(crops) == 5, [crop.box for crop in crops]
    for crop, (x, y, width, height) in zip(crops, photo.boxes, strict=True):
        cx, cy, cw, ch = crop.box
        assert cx <= x + width / 2 <= cx + cw and cy <= y + height / 2 <= cy + ch, (crop.box, (x, y))
        assert cw < 1.3 * width, (crop.box, (x, y, width, height))  # no dot or dash beside the digit
    assert read_digits(photo.image, RecordingClassifier()).text == "01234"


def test_a_photo_of_separators_alone_reads_as_empty_text():
    rng = np.random.default_rng(26)
    image = blank_photo(200, 400, rng)
    draw = ImageDraw.Draw(image)
    ink = (25, 25, 60)
    draw.ellipse((60, 114, 66, 120), fill=ink)  # '.' on the line of digits 50 px tall from y = 70
    draw.line([(90, 97), (112, 97)], fill=ink, width=5)  # '-'
    draw.line([(130, 90), (150, 90)], fill=ink, width=5)  # '='
    draw.line([(130, 104), (150, 104)], fill=ink, width=5)
    draw.ellipse((170, 114, 176, 120), fill=ink)  # '.-'
    draw.line([(185, 97), (207, 97)], fill=ink, width=5)
    classify = RecordingClassifier()
    assert read_digits(image, classify).text == ""
    assert classify.batches == []


@pytest.mark.parametrize("seed", [81, 82, 83])
def test_a_comma_hanging_below_the_digits_is_not_a_line_of_its_own(seed):
    """'34,027' with the comma written low, wholly below the digits' feet: five digits on one line."""
    photo = condition_photo([[3, 4, 0, 2, 7]], seed)
    image = photo.image.copy()
    x, _, width, _ = photo.boxes[1]
    feet = max(y + height for _, y, _, height in photo.boxes)
    comma = x + width + 6
    draw = ImageDraw.Draw(image)
    draw.ellipse((comma - 4, feet + 4, comma + 4, feet + 12), fill=(25, 25, 60))
    draw.line([(comma + 3, feet + 9), (comma - 4, feet + 26)], fill=(25, 25, 60), width=5)  # its tail
    crops = find_digits(image)
    assert_around_each_digit(crops, photo)
    assert [crop.line for crop in crops] == [0] * 5
    assert read_digits(image, RecordingClassifier()).text == "01234"


@pytest.mark.parametrize(
    ("boxes", "lines"),
    [
        # Rising to the right; the comma after the second digit is near enough to it to join its line, while
        # the third digit is farther from the comma than half a digit.
        (
            [
                (0, 100, 40, 160),
                (50, 94, 90, 154),
                (95, 140, 103, 160),
                (110, 88, 150, 148),
                (160, 82, 200, 142),
            ],
            [[0, 1, 2, 3, 4]],
        ),
        # Falling steeply to the right; the comma is too low for the second digit's line and starts its own,
        # which the third digit is nearer to than to the digits before it.
        (
            [
                (0, 100, 40, 160),
                (50, 90, 90, 150),
                (95, 150, 103, 170),
                (110, 115, 150, 175),
                (160, 140, 200, 200),
            ],
            [[0, 1, 3, 4]],
        ),
        # Rising at 0.15 with a wide gap before the last digit: it has risen more than half a digit since the
        # digit before it, and is on the line's slope.
        (
            [
                (0, 100, 40, 160),
                (50, 92, 90, 152),
                (100, 85, 140, 145),
                (150, 78, 190, 138),
                (400, 40, 440, 100),
            ],
            [[0, 1, 2, 3, 4]],
        ),
    ],
)
def test_a_turned_line_stays_one_line_past_a_comma_or_a_gap(boxes, lines):
    """A box joins a line near its last digit (not its comma, which hangs low) or on the course of its
    digits, and a line of digits before a line of punctuation alone (then left out as the first line's
    comma)."""
    assert segment._reading_order(boxes) == lines


LABELS = sorted(STROKES)


def wide(label: int, factor: float) -> np.ndarray:
    """The drawn digit stretched `factor` times wider (a wide '0' is as wide as two touching digits)."""
    drawn = digit(label)
    size = (round(drawn.shape[1] * factor), drawn.shape[0])
    return np.asarray(Image.fromarray(drawn).resize(size, Image.Resampling.BILINEAR))


class TemplateClassifier:
    """classify(batch) -> probabilities from the distance of each normalised digit to the drawn digits (and
    to `extra` templates, with their labels): a digit far from every template gets a low confidence, as a
    real classifier's does on two digits at once or a slice of one."""

    def __init__(self, extra: dict[int, np.ndarray] | None = None) -> None:
        from digitops.preprocess import normalize_digit

        pairs = [(label, digit(label)) for label in LABELS] + list((extra or {}).items())
        self.labels = np.array([label for label, _ in pairs])
        self.templates = np.stack([normalize_digit(image) for _, image in pairs]).astype(np.float32) / 255
        self.sizes: list[int] = []  # the size of each batch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        distances = np.abs(self.templates[None] - batch[:, None].astype(np.float32) / 255).mean(axis=(2, 3))
        scores = np.exp(-distances / 0.01)  # (B, t)
        probabilities = np.zeros((len(batch), 10), np.float32)
        for label in np.unique(self.labels):
            probabilities[:, label] = scores[:, self.labels == label].max(axis=1)
        return probabilities / (probabilities.sum(axis=1, keepdims=True) + np.exp(-0.12 / 0.01))  # reject


@pytest.mark.parametrize(
    ("lines", "seed"),
    [([[2, 3]], 40), ([[2, 3]], 46), ([[3, 0, 2]], 41), ([[3, 0, 2]], 45), ([[7, 2, 4]], 48)],
)
def test_touching_digits_are_split_and_read(lines, seed):
    photo = condition_photo(lines, seed, touching=1.0)
    assert len(find_digits(photo.image)) == 1  # really one component
    result = read_digits(photo.image, TemplateClassifier())
    assert result.text == "".join(map(str, lines[0]))
    for read, (x, y, width, height) in zip(result.digits, photo.boxes, strict=True):
        bx, by, bw, bh = read.box
        assert bx <= x + width / 2 <= bx + bw and by <= y + height / 2 <= by + bh, (read.box, (x, y))


@pytest.mark.parametrize(("label", "seed"), [(0, 50), (4, 51), (2, 52)])
def test_a_wide_single_digit_read_with_confidence_is_not_split(label, seed):
    """As wide as two digits (more than 1.1 digit heights): cut, its slices are read with less confidence
    than the whole, so it stays one digit."""
    stretched = wide(label, 1.8)
    rng = np.random.default_rng(seed)
    photo = make_photo(
        [[digit(1), stretched, digit(3)]],
        [[1, label, 3]],
        rng,
        digit_height=50,
        max_rotation=1.0,
        jpeg_quality=90,
    )
    crops = find_digits(photo.image)
    assert len(crops) == 3 and crops[1].box[2] > 1.1 * crops[1].box[3]
    classify = TemplateClassifier({label: stretched})  # reads the wide digit whole, as a real model would
    result = read_digits(photo.image, classify)
    assert result.text == f"1{label}3"
    assert classify.sizes[0] > 3  # its cuts were tried, and turned down
    assert result.digits[1].box == crops[1].box


def test_the_string_confidence_is_the_product_of_its_digits():
    photo = condition_photo([[2, 3]], 40, touching=1.0)
    result = read_digits(photo.image, TemplateClassifier())
    assert len(result.digits) == 2
    assert result.confidence == pytest.approx(np.prod([d.confidence for d in result.digits]))
    assert all(0.0 < result.confidence <= d.confidence for d in result.digits)
    assert json.loads(json.dumps(result.to_dict()))["confidence"] == pytest.approx(result.confidence)


def test_a_photo_of_separators_alone_has_no_confidence():
    """Nothing read, nothing to trust: the empty text's confidence is 0, so that a caller asks a person."""
    image = blank_photo(200, 400, np.random.default_rng(26))
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 114, 66, 120), fill=(25, 25, 60))  # '.'
    draw.line([(90, 97), (112, 97)], fill=(25, 25, 60), width=5)  # '-'
    result = read_digits(image, TemplateClassifier())
    assert (result.text, result.digits, result.confidence) == ("", [], 0.0)


def broken(label: int) -> np.ndarray:
    """The drawn digit with a gap across its middle, as a light pen leaves it: a top and a bottom piece."""
    drawn = digit(label).copy()
    drawn[120:140] = 0
    return drawn


@pytest.mark.parametrize("seed", [60, 61, 62])
def test_digits_drawn_in_broken_strokes_are_read_whole(seed):
    """Every digit in two pieces, each half a digit tall: the pieces' typical height is half a digit's,
    yet each digit is one crop, read as itself."""
    labels = [3, 0, 2, 3, 0, 7]
    pieces = [broken(label) for label in labels]
    assert all(cc3d.connected_components(p > 0, connectivity=8).max() >= 2 for p in pieces)  # really broken
    rng = np.random.default_rng(seed)
    photo = make_photo([pieces], [labels], rng, digit_height=50, max_rotation=1.0, jpeg_quality=90)
    assert_found(find_digits(photo.image), photo)
    assert read_digits(photo.image, TemplateClassifier()).text == "302307"


SLASH = [(225, 30), (160, 226)]  # leaning right by a third of its height
TWO_LEFT = [
    [(x - 50, y) for x, y in STROKES[2][0]]
]  # a '2' moved left: its base's end meets the slash's foot


class LookupClassifier:
    """classify(batch) -> sure (0.91) of the images it was taught, exactly, with their labels; unsure (at
    most 0.3) of anything else, as a model is of a slice of a digit."""

    def __init__(self, taught: list[tuple[np.ndarray, int]]) -> None:
        self.taught = taught

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        probabilities = np.full((len(batch), 10), 0.7 / 9, np.float32)
        probabilities[:, 0] = 0.3
        for row, image in enumerate(batch):
            for known, label in self.taught:
                if np.array_equal(image, known):
                    probabilities[row] = 0.01
                    probabilities[row, label] = 0.91
        return probabilities


@pytest.mark.parametrize("seed", [70, 72, 73, 74])
def test_a_slash_touching_a_digit_is_left_out_of_the_text(seed):
    """'3 2/ 0' with the slash's foot touching the '2': one component, cut into the '2' and the slash, of
    which a model is sure, reading the slash as a '1'; the slash is left out."""
    from digitops.infer.segment import _cut_sets
    from digitops.preprocess import normalize_digit

    two_slash = draw_strokes([*TWO_LEFT, SLASH])
    assert cc3d.connected_components(two_slash > 0, connectivity=8).max() == 1  # really touching
    rng = np.random.default_rng(seed)
    photo = make_photo(
        [[digit(3), two_slash, digit(0)]],
        [[3, 2, 0]],
        rng,
        digit_height=50,
        max_rotation=1.0,
        jpeg_quality=90,
    )
    crops = find_digits(photo.image)
    assert len(crops) == 3
    pair = crops[1]
    parts, _ = _cut_sets(pair, float(np.median([crop.box[3] for crop in crops])))
    right = pair.box[0] + pair.box[2]
    ends = [
        part for part in parts if part.box[0] + part.box[2] >= right - 1 and part.box[3] >= 0.9 * pair.box[3]
    ]
    slash = min(ends, key=lambda part: part.box[2])  # the narrowest part at the right as tall as the slash
    two = next(p for p in parts if p.box[0] == pair.box[0] and abs(p.box[0] + p.box[2] - slash.box[0]) <= 1)
    taught = [(crops[0], 3), (two, 2), (slash, 1), (crops[2], 0)]
    classify = LookupClassifier([(normalize_digit(crop.pixels), label) for crop, label in taught])
    result = read_digits(photo.image, classify)
    assert result.text == "320"
    assert [d.box for d in result.digits] == [crops[0].box, two.box, crops[2].box]


class InkRunReader:
    """A string reader that names each run of inked columns of a line's band, in order, after `texts`
    (one string per line; '?' skips a run, as a reader that misses a digit would), `sure` of each (or as
    `sure_of` says): the real reader's contract, `(READER_HEIGHT, w) uint8 lines -> ReadLine`s."""

    def __init__(
        self,
        *texts: str,
        digits: dict[str, tuple[float, ...]] | None = None,
        sure: float = 0.9,
        sure_of: dict[str, float] | None = None,
    ) -> None:
        self.texts = texts
        self.sure = sure
        self.sure_of = sure_of or {}  # a character's confidence, when not `sure`
        self.digits = digits or {}  # a character's ten digit probabilities, when not `sure` on itself
        self.lines: list[np.ndarray] = []

    def __call__(self, lines: list[np.ndarray]) -> list[ReadLine]:
        self.lines.extend(lines)
        readings = []
        for line, text in zip(lines, self.texts, strict=True):
            inked = np.flatnonzero(line.max(axis=0) > 64)
            runs = np.split(inked, np.flatnonzero(np.diff(inked) > 2) + 1)
            assert len(runs) == len(text), (len(runs), text)
            chars = [
                ReadChar(
                    char,
                    self.sure_of.get(char, self.sure),
                    (int(run[0]), int(run[-1]) + 1),
                    self._digits(char),
                )
                for char, run in zip(text, runs, strict=True)
                if char != "?"
            ]
            readings.append(ReadLine(chars=chars, confidence=float(np.prod([c.confidence for c in chars]))))
        return readings

    def _digits(self, char: str) -> tuple[float, ...]:
        if char in self.digits:
            return self.digits[char]
        if not char.isdigit():
            return (0.1,) * 10
        return tuple(self.sure if digit == int(char) else (1 - self.sure) / 9 for digit in range(10))


def unsure_classifier(batch: np.ndarray) -> np.ndarray:
    """A classifier with no opinion: every digit at 0.1."""
    return np.full((len(batch), 10), 0.1, np.float32)


def seven_classifier(batch: np.ndarray) -> np.ndarray:
    """A classifier that reads every crop as a 7, 0.9 sure."""
    probabilities = np.full((len(batch), 10), 0.1 / 9, np.float32)
    probabilities[:, 7] = 0.9
    return probabilities


@pytest.mark.parametrize("rotation", [0.0, 6.0])
def test_a_reader_reads_each_line_band_and_its_characters_map_back_onto_the_digits(rotation):
    photo = photo_of([[3, 1, 4, 7], [1, 0]], seed=21, digit_height=45, max_rotation=rotation)
    reader = InkRunReader("3147", "10")
    result = read_digits(photo.image, unsure_classifier, reader)
    assert result.text == "3147\n10"
    assert len(reader.lines) == 2
    assert all(line.shape[0] == READER_HEIGHT and line.dtype == np.uint8 for line in reader.lines)
    for read, box in zip(result.digits, photo.boxes, strict=True):
        assert iou(read.box, box) > 0.5, (read.box, box)
    assert result.confidence == pytest.approx(0.9**6)


def test_a_digit_alone_in_its_crop_is_the_one_reader_and_classifier_agree_on():
    photo = photo_of([[3, 1, 4]], seed=24, digit_height=45)
    unsure_one = tuple(0.6 if d == 1 else 0.35 if d == 7 else 0.05 / 8 for d in range(10))
    reader = InkRunReader("314", digits={"1": unsure_one}, sure=0.99)
    result = read_digits(photo.image, seven_classifier, reader)
    assert result.text == "374"  # the 1 the reader was unsure of is the classifier's 7
    assert result.digits[1].confidence > 0.9


def test_a_digit_the_reader_missed_is_read_by_the_classifier_when_it_is_sure():
    photo = photo_of([[3, 1, 4]], seed=25, digit_height=45)
    assert read_digits(photo.image, seven_classifier, InkRunReader("?14", sure=0.99)).text == "714"
    assert read_digits(photo.image, unsure_classifier, InkRunReader("?14", sure=0.99)).text == "14"


# A '4' the pen broke where the bar meets the upright: the upright is a piece of its own.
BROKEN_FOUR = [[(150, 30), (60, 150), (135, 150)], [(162, 80), (162, 230)]]
# A '0' broken at its top and bottom: two arcs 32 px apart on the 256 px canvas.
_ARC = [(70 * abs(math.cos(t)), 95 * math.sin(t)) for t in np.linspace(-math.pi / 2, math.pi / 2, 13)]
BROKEN_ZERO = [
    [(round(112 - x), round(128 + y)) for x, y in _ARC],
    [(round(144 + x), round(128 + y)) for x, y in _ARC],
]


@pytest.mark.parametrize(
    ("strokes", "label", "seed"),
    [
        (BROKEN_FOUR, 4, 28),
        (BROKEN_FOUR, 4, 30),
        (BROKEN_ZERO, 0, 27),
        (BROKEN_ZERO, 0, 29),
        (BROKEN_ZERO, 0, 30),
    ],
)
def test_a_piece_of_a_broken_digit_the_reader_read_whole_is_not_a_digit_it_missed(strokes, label, seed):
    """The reader reads the broken digit as one; its other piece, a crop of its own as tall as a digit
    beside the first, is a piece of it (the two are one digit wide), not a digit the reader missed."""
    rng = np.random.default_rng(seed)
    photo = make_photo(
        [[digit(3), draw_strokes(strokes), digit(7)]],
        [[3, label, 7]],
        rng,
        digit_height=60,
        max_rotation=1.0,
        jpeg_quality=90,
    )
    assert len(find_digits(photo.image)) == 4  # the broken digit in two crops
    text = f"3{label}7"
    assert read_digits(photo.image, seven_classifier, InkRunReader(text, sure=0.99)).text == text


def test_a_reading_the_reader_is_unsure_of_gives_way_to_surer_crops():
    photo = photo_of([[3, 1, 4]], seed=26, digit_height=45)
    assert read_digits(photo.image, seven_classifier, InkRunReader("314", sure=0.2)).text == "777"


def test_separators_read_by_the_reader_are_kept_apart_from_the_text():
    photo = photo_of([[3, 1, 4]], seed=22, digit_height=45)
    result = read_digits(photo.image, unsure_classifier, InkRunReader("3-4", sure=0.99))
    assert result.text == "34"
    assert [s.mark for s in result.separators] == ["-"]
    assert iou(result.separators[0].box, photo.boxes[1]) > 0.5


def test_a_separator_the_reader_is_unsure_of_is_read_as_a_digit_when_its_crop_is_digit_tall():
    photo = photo_of([[3, 1, 4]], seed=27, digit_height=45)
    unsure = read_digits(photo.image, seven_classifier, InkRunReader("3/4", sure=0.99, sure_of={"/": 0.6}))
    assert unsure.text == "374" and unsure.separators == []  # a slanted 1 the reader took for a slash
    sure = read_digits(photo.image, seven_classifier, InkRunReader("3/4", sure=0.99))
    assert sure.text == "34" and [s.mark for s in sure.separators] == ["/"]


def test_a_line_of_only_separators_reads_as_empty_text_not_an_error():
    photo = photo_of([[1, 1]], seed=23, digit_height=45)
    result = read_digits(photo.image, unsure_classifier, InkRunReader("//", sure=0.99))
    assert result.text == "" and result.digits == [] and result.confidence == 0.0
    assert [s.mark for s in result.separators] == ["/", "/"]


@pytest.mark.parametrize("gap", [0.0, segment.LINE_GAP])
def test_a_printed_line_the_threshold_broke_into_dashes_is_still_taken_out(monkeypatch, gap):
    monkeypatch.setattr(segment, "LINE_GAP", gap)
    mask = np.zeros((120, 400), bool)
    for x in range(0, 400, 10):
        mask[80:82, x : x + 8] = True  # a faint rule across the photo, in dashes with 2 px gaps
    mask[30:82, 100:106] = True  # a '1' standing on it
    for left in (150, 250):  # and two '0's: rings
        mask[30:80, left : left + 36] = True
        mask[36:74, left + 6 : left + 30] = False
    cleaned = mask & ~segment._line_pixels(mask)
    assert cleaned[30:82, 100:106].all()  # the stroke keeps its ink where it meets the rule
    rule_left = int(cleaned[80:82, 300:].sum())  # away from the digits
    assert (rule_left == 0) if gap else (rule_left == int(mask[80:82, 300:].sum()))


@pytest.mark.parametrize("measured_on_faint_ink", [False, True])
def test_box_sides_the_threshold_broke_beside_dark_digits_are_taken_out(measured_on_faint_ink):
    """Beside dark digits a faint printed line is not ink to the threshold but in pieces; at the noise floor
    it is whole, and long enough there to be a line."""
    faint = np.zeros((200, 400), bool)
    faint[40:43, 20:383] = faint[170:173, 20:383] = True  # a comb field's top and bottom
    for x in (20, 110, 200, 290, 380):
        faint[40:173, x : x + 3] = True  # its sides, whole
    mask = faint.copy()
    for x in (20, 110, 200, 290, 380):
        for y0, y1 in ((83, 103), (143, 163)):
            mask[y0:y1, x : x + 3] = False  # the sides, broken beside the digits
    for left in (35, 125, 215, 305):  # the digits: rings, drawn dark
        mask[55:155, left : left + 60] = faint[55:155, left : left + 60] = True
        mask[65:145, left + 10 : left + 50] = faint[65:145, left + 10 : left + 50] = False
    cleaned = mask & ~segment._line_pixels(mask, faint if measured_on_faint_ink else None)
    sides_left = sum(int(cleaned[:, x : x + 3].sum()) for x in (20, 110, 200, 290, 380))
    assert cleaned[55:155].sum() >= 0.95 * (mask[55:155].sum() - 5 * 3 * 60)  # the digits keep their ink
    assert (sides_left < 20) if measured_on_faint_ink else (sides_left > 200)


def fine_digit(label: int, height: int) -> np.ndarray:
    """A digit drawn with a fine pen, its ink `height` px tall: (height, w) bool."""
    ink = draw_strokes(STROKES[label], width=8) > 0
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    size = (max(3, round(ink.shape[1] * height / ink.shape[0])), height)
    return (
        np.asarray(Image.fromarray(ink.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) > 127
    )


COMB_SIDES = (20, 110, 200, 290, 380)  # x of the sides of comb_field's four boxes


def comb_field() -> np.ndarray:
    """A comb field of four boxes, printed 3 px wide, on a (200, 400) page: (200, 400) bool. Its top and
    bottom edges are 113 px apart (rows 40-152), its sides at `COMB_SIDES`."""
    field = np.zeros((200, 400), bool)
    field[40:43, 20:383] = field[150:153, 20:383] = True
    for x in COMB_SIDES:
        field[40:153, x : x + 3] = True
    return field


def test_box_sides_no_taller_and_no_thicker_than_the_digits_are_taken_out():
    """A comb field's boxes little taller than its digits, printed as thick as a fine pen writes: its sides
    are too short to be lines and too thin to tell from a '1' by their width, but each runs from the box's
    top edge to its bottom edge. They go; the digits keep their ink: a '1' free of the edges, and a '0'
    touching a side."""
    mask = comb_field()
    digits = np.zeros_like(mask)
    for side, label in zip(COMB_SIDES, [3, 1, 7, 0], strict=False):  # 100 px tall, in the middle of each box
        ink = fine_digit(label, 100)
        left = side + 3 + (87 - ink.shape[1]) // 2 if label else side + 90 - ink.shape[1]  # '0': at the side
        digits[46:146, left : left + ink.shape[1]] |= ink
    mask |= digits
    cleaned = mask & ~segment._line_pixels(mask)
    assert all(cleaned[43:150, x : x + 3].sum() <= 3 for x in COMB_SIDES[:-1]), "a side stays"
    assert (cleaned | ~digits)[:, 110:200].all()  # the '1' keeps all its ink
    assert (digits & ~cleaned).sum() <= 0.01 * digits.sum()  # the '0' may lose where it merges with a side


def test_box_sides_run_off_a_tight_crop_are_lines_and_a_taller_bold_digit_keeps_its_ink():
    """A tight crop cuts off a comb field's bottom edge: its sides run from the top edge off the photo,
    long enough to be lines. So do the walls of a bold '0' a third taller than its neighbours. The lines'
    width is measured on runs many times longer than thick, the sides': the walls, nearly five times
    wider, are strokes and keep their ink."""
    mask = np.zeros((160, 560), bool)
    mask[20:23, 10:553] = True  # the comb field's top edge, 3 px
    sides = np.zeros_like(mask)
    for x in range(10, 560, 110):
        sides[20:160, x : x + 3] = True
    digits = np.zeros_like(mask)
    for left, top, bottom in ((30, 40, 140), (140, 40, 140), (250, 40, 140), (360, 24, 159)):  # '0's
        digits[top:bottom, left : left + 70] = True
        digits[top + 14 : bottom - 14, left + 14 : left + 56] = False  # drawn 14 px wide
    mask |= sides | digits
    cleaned = mask & ~segment._line_pixels(mask)
    assert (cleaned & sides).sum() <= 0.02 * sides.sum()  # no digit touches a side
    assert (digits & ~cleaned).sum() <= 0.01 * digits.sum()  # fails with the width of all long runs


def test_a_stroke_between_two_lines_of_squared_paper_is_not_a_box_side():
    """On squared paper a '1' may run from one line of the grid to the next, as a box's side does; but the
    grid's lines run on past them, and the '1' stays."""
    mask = np.zeros((350, 500), bool)
    for position in range(30, 350, 80):
        mask[position : position + 2, :] = True  # the grid: 2 px lines every 80 px
    for position in range(30, 500, 80):
        mask[:, position : position + 2] = True
    digits = np.zeros_like(mask)
    digits[112:190, 130:133] = True  # a '1' from the line at row 110 to the one at row 190
    for left in (160, 280):  # two '0's, a little taller than it
        digits[113:188, left : left + 50] = True
        digits[117:184, left + 4 : left + 46] = False
    mask |= digits
    cleaned = mask & ~segment._line_pixels(mask)
    assert cleaned[112:190, 130:133].all()


def test_the_lines_of_a_page_photographed_turned_are_taken_out():
    """A page turned by 6 degrees has its ruled lines at a slope of 0.1, beyond the slopes along which
    runs are followed; the page's tilt is found first, and the lines go while the digits between them
    stay."""
    mask = np.zeros((400, 600), bool)
    columns = np.arange(600)
    for start in range(40, 400, 70):  # ruled lines 2 px thick, rising 0.1 px per column
        rows = start + np.round(0.1 * (columns - 300)).astype(int)
        for thickness in range(2):
            inside = (rows + thickness >= 0) & (rows + thickness < 400)
            mask[rows[inside] + thickness, columns[inside]] = True
    lines = mask.copy()
    digits = np.zeros_like(mask)
    for left in (200, 280, 360):  # three '0's just above the line that starts at row 250
        bottom = 240 + round(0.1 * (left + 20 - 300))
        digits[bottom - 60 : bottom, left : left + 40] = True
        digits[bottom - 52 : bottom - 8, left + 6 : left + 34] = False
    mask |= digits
    cleaned = mask & ~segment._line_pixels(mask)
    assert (cleaned & lines & ~digits).sum() <= 0.05 * (lines & ~digits).sum()  # fails before the tilt
    assert (cleaned & digits).sum() >= 0.95 * digits.sum()


def test_an_underline_drawn_with_the_pen_under_a_turned_line_is_taken_out():
    """An underline drawn with the pen is as thick as the digits' strokes, too thick to be taken for print
    when the page's tilt is looked for; on a photo turned by 5 degrees it is found at the pen's width."""
    mask = np.zeros((300, 800), bool)
    columns = np.arange(100, 700)
    rows = 220 + np.round(0.09 * (columns - 400)).astype(int)  # 9 px thick, rising 0.09 px per column
    for thickness in range(9):
        mask[rows + thickness, columns] = True
    line = mask.copy()
    digits = np.zeros_like(mask)
    for left in (180, 300, 420, 540):  # '0's 90 px tall, drawn 9 px wide, standing on the line
        bottom = 220 + round(0.09 * (left + 30 - 400))
        digits[bottom - 90 : bottom, left : left + 60] = True
        digits[bottom - 81 : bottom - 9, left + 9 : left + 51] = False
    mask |= digits
    cleaned = mask & ~segment._line_pixels(mask)
    assert (cleaned & line & ~digits).sum() <= 0.05 * (line & ~digits).sum()  # fails at print's width
    assert (cleaned & digits).sum() >= 0.95 * digits.sum()


def test_a_tall_thin_one_on_paper_without_printed_lines_is_a_digit():
    """A '1' a third taller than its neighbours and thinner than their strokes is long and thin enough to
    look like a printed line; with no printed line in the photo to compare it with, it is a stroke."""
    mask = np.zeros((200, 400), bool)
    for left in (40, 200, 280):  # three '0's 60 px tall, drawn with a broad pen
        mask[70:130, left : left + 44] = True
        mask[78:122, left + 8 : left + 36] = False
    mask[58:138, 140:143] = True  # a '1' 80 px tall
    cleaned = mask & ~segment._line_pixels(mask)
    assert cleaned[58:138, 140:143].all()


def test_a_box_printed_too_faint_to_be_ink_is_still_taken_out_of_the_digits_it_touches():
    """Printed unevenly, a comb field's lines are ink to the threshold only in pieces, too short to be
    lines, which join the digits they touch. Measured on the ink fainter than a digit's, they are whole
    lines; the digits come out without them."""
    rng = np.random.default_rng(0)
    darkness = 0.1 * comb_field()
    pieces = (np.arange(400) // 12) % 2 == 0  # every other 12 px printed darker: ink to the threshold
    darkness[:, pieces] *= 2
    true_boxes = []
    for side, label in zip(COMB_SIDES, [3, 1, 7, 0], strict=False):  # pencil-light, touching the box's left
        ink = fine_digit(label, 100)
        darkness[46:146, side + 3 : side + 3 + ink.shape[1]] = np.maximum(
            darkness[46:146, side + 3 : side + 3 + ink.shape[1]], 0.4 * ink
        )
        true_boxes.append((side + 3, 46, ink.shape[1], 100))
    page = 215 * (1 - darkness) + rng.normal(0, 1, darkness.shape)
    crops = find_digits(np.clip(page, 0, 255).astype(np.uint8))
    assert len(crops) == 4, [crop.box for crop in crops]
    for crop, (x, y, width, height) in zip(crops, true_boxes, strict=True):
        cx, cy, cw, ch = crop.box
        assert cx >= x - 2 and cy >= y - 2 and cx + cw <= x + width + 2 and cy + ch <= y + height + 2, (
            crop.box,
            (x, y, width, height),
        )
