"""Read several handwritten digits from a photo: find each digit's ink, then classify them all at once.

`find_digits` works on the photo alone (numpy, Pillow and cc3d; no OpenCV or scipy, so that the serving image
stays small):
1. grayscale, downscaled to at most `MAX_ANALYSIS_SIDE` pixels on the long side (boxes are mapped back);
   a photo whose digits turn out shorter than `SMALL_DIGIT` pixels is analysed again, scaled up; a
   printed security pattern's regular screen is taken out of its spectrum (`_without_screen`);
2. the paper's brightness is estimated on a coarse grid (the median per cell, then rank filters wider than
   a pen stroke) and divided out: shadows and uneven light disappear, the paper is ~1;
3. a pixel is ink when it is darker than the paper by at least `INK_FRACTION` of the nearby ink's strength,
   by `MIN_INK`, and by `NOISE_SIGMAS` times the paper's local noise (so that blank paper, its texture and
   JPEG noise give no ink);
4. long thin lines (underlines, ruled lines, the sides of printed boxes; a faint one the threshold broke
   into dashes or pieces too, measured on ink as light as print, `LINE_INK`) are taken out of the ink, so
   that digits touching them come apart (`_line_pixels`); a '1' taller than its neighbours, free of any
   horizontal line and wider than the printed ones, stays; the sides of boxes no taller than the digits
   go too, each running from its box's top edge to its bottom edge (`_box_sides`);
5. connected components (cc3d); the pieces of a broken stroke are merged (stacked like the bar and body of
   a '5', overlapping like the arm and upright of a '4', or a small bit close to a digit, but not a dot,
   comma or dash beside it); specks, faint stains, paper-edge artefacts and flat marks (dashes, equals
   signs) are dropped;
6. the digits are grouped into lines (each digit joins the line whose last digit sits at its height, which
   tolerates a slightly rotated photo, or which it continues the course of past a gap; a comma does not
   count as a line's last digit) and ordered top to bottom, left to right; a "line" of nothing but
   small marks just under or over a line of digits is its punctuation (a comma hanging low) and is
   dropped (`_without_marks`); each digit's crop also holds the faint ink joined to it in its box (a
   stroke pressed lightly, under the threshold of step 3);
7. a photo cropped as tight as its writing (`_tight_margin`) is surrounded by paper and analysed again,
   so that the digits touching its sides are not taken for the paper's edge or the desk.

`read_digits` normalises every crop with `digitops.preprocess.normalize_digit` and classifies them in one
batched call; a crop wider than one digit of its line is classified cut into parts too, in the same call,
and read as touching digits when the classifier is sure of each part and surer than of the crop whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cc3d
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from digitops.infer.reader import ReadChar, ReadLine
from digitops.preprocess import EmptyImageError, normalize_digit
from digitops.strings import READER_HEIGHT, line_pixels, to_line_height

MAX_ANALYSIS_SIDE = 1600  # px: larger photos are analysed downscaled
SMALL_DIGIT = 24  # px: a photo whose digits are shorter at analysis scale is analysed again, scaled up ...
ANALYSIS_DIGIT = 32  # ... until they are this tall (within MAX_ANALYSIS_SIDE)
BACKGROUND_GRID = 64  # cells along the long side for the paper's brightness
BACKGROUND_WINDOW = 15  # cells (odd): wider than a pen stroke, about a quarter of the photo
MIN_INK = 0.12  # darker than the paper by at least this fraction to be ink
LINE_INK = 0.09  # lines are measured on ink this dark: light print is ink only in pieces at MIN_INK
NOISE_SIGMAS = 5.0  # ink is also darker than the paper by this many standard deviations of its noise
INK_FRACTION = 0.45  # ink is also darker than the paper by this fraction of the strongest ink nearby
SCREEN_PEAK = 7.0  # a peak of the photo's spectrum this many times its neighbourhood is a printed screen's
SCREEN_PERIOD = 30  # px: ... with a period shorter than this (a stroke's scale, not the digits' spacing)
SCREEN_ANGLE = 0.2  # ... and off both axes by this tangent at least (where ruled lines and grids lie)
SCREEN_SKIRT = 2  # frequencies on each side of a peak taken out with it (its spread on a photo)
FRAME_SIZE = 2.0  # a group at the photo's side, longer than this many digit heights, is the paper's edge
FRAME_ASPECT = 3.0  # a group at the photo's side, this many times longer than wide, is the paper's edge
EDGE_DARK = 0.45  # a cell darker than this fraction of the paper's brightness is dark (desk or ink)
EDGE_CONTACT = 0.3  # a dark region along more than this fraction of a side is the desk, not paper
MIN_DIGIT_SIDE = 0.04  # a digit's box is at least this fraction of the photo's short side tall
MIN_DIGIT_PIXELS = 12  # px at analysis scale
MAX_COMPONENTS = 500  # the largest components considered (1 to 20 digits, a few pieces each)
SPECK_HEIGHT = 0.4  # a group less tall than this fraction of the typical digit is a speck
SPECK_AREA = 0.12  # a group that is not tall, with less ink than this fraction of a digit's, is a speck
FAINT_INK = 0.5  # a group fainter than this fraction of the digits' ink: a stain, a shadow, faint print
STACK_GAP = 0.3  # pieces this close vertically (fraction of the typical digit height) may be one digit
STACK_OVERLAP = 0.2  # close pieces one above the other, sharing this much of the narrower's width: one digit
NEST_OVERLAP = 0.5  # close pieces side by side, sharing this much of the narrower's width: one digit
MAX_MERGED_HEIGHT = 1.6  # merged pieces span at most this many digit heights (two lines stay apart)
HEIGHT_GROWTH = 1.15  # pieces merged this many times taller than the digit height: estimate it again
FRAGMENT_AREA = 0.35  # a group with less ink than this fraction of a digit's is small (maybe a fragment)
FRAGMENT_HEIGHT = 0.6  # a small group less tall than this fraction of a digit is a short fragment
FRAGMENT_GAP = 0.2  # a short fragment joins the nearest digit within this fraction of the digit height
SEPARATOR_HEIGHT = 0.6  # a group flatter than wide and less tall than this fraction of a digit: '-', '='
DASH_ASPECT = 2.0  # a fragment beside a digit this many times wider than tall is a dash, not a piece of it
TOUCH_GAP = 0.05  # a small group that is not short (a thin '1') joins a digit this close (digit heights)
LINE_SPAN = 0.3  # a horizontal run this fraction of the photo's width is a line (for a first digit height)
LINE_LENGTH = 2.0  # a horizontal run this many digit heights long is a line (underline, rule, box edge)
LINE_HEIGHT = 1.15  # a vertical run this many digit heights long is a line (a box's side, squared paper)
SIDE_LENGTH = 0.6  # a vertical run between two horizontal lines, this many digit heights long, is a side
LINE_FREE = 2.0  # a vertical line shorter than this many digit heights must meet a horizontal one
LINE_SPREAD = 1.5  # ... unless it stands free, this many times wider than the lines (a tall '1')
LINE_SLOPES = (
    -0.03,
    0.0,
    0.03,
)  # the slopes along which runs are followed (a line drawn or photographed askew), around the page's tilt
PAGE_TILTS = (0.0, -0.06, 0.06, -0.09, 0.09, -0.12, 0.12)  # the tilts a page's lines are looked for at
TILT_THIN = 5  # px: ink no thicker than this across may be a printed line, whose tilt is looked for
TILT_GAIN = 1.5  # a tilt is the page's if its rows of thin ink are this much more peaked than level rows
LINE_GAP = 0.01  # gaps along a line up to this fraction of the photo's long side are bridged (faint lines)
LINE_HALO = 2  # px: faint ink this close to the ink is a stroke's soft edge, left out when lines are measured
LINE_ELONGATION = 12.0  # a line is at least this many times longer than thick
LINE_STROKE = 0.6  # lines found in the whole photo are thinner than this fraction of the digits' strokes
LINE_THICKNESS = 2.0  # a line's pixel thicker than this many times the line's width is a stroke crossing it
TIGHT_STRIP = 0.25  # writing within this fraction of its height of every side (one touching): a tight crop
TIGHT_MARGIN = 0.5  # a tight crop is surrounded by paper this fraction of the writing's height wide
CROP_PAPER = 1.5  # a crop is a square of paper this many times the digit's longer side
SPLIT_ASPECT = 1.3  # a crop this many times as wide as the line's typical digit may be several digits
TYPICAL_ASPECT = (0.55, 0.75)  # the line's typical width/height ratio, kept within these (merged pairs)
PART_WIDTH = 0.15  # a part cut from a wide crop is at least this many digit heights wide (a thin '1')
PART_HEIGHT = 0.6  # and at least this many digit heights tall (not a sliver of a stroke)
MAX_CUTS = 6  # candidate cut columns per wide crop: at most 28 distinct parts and 41 cut sets to classify
MAX_PARTS = 4  # a wide crop is cut into at most this many digits
SPLIT_SURE = 0.9  # a cut is kept only when the classifier is at least this sure of each of its parts
SLASH_HEIGHT = 0.8  # a part cut off a wide crop, at least this many digit heights tall, ...
SLASH_LEAN = (0.2, 0.6)  # ... leaning right by this fraction of its height, ...
SLASH_WIDTH = 0.2  # ... a stroke no wider across than this fraction of its height ...
SLASH_BEND = 0.03  # ... straight to this fraction of its height, is a slash touching a digit
BAND_SIDE = 1.0  # a line's band for the string reader reaches this many digit heights past its digits
BAND_MARGIN = 0.2  # ... and this many above and below them
TYPICAL_HEIGHT = 1.3  # a crop taller than this many times the line's median does not set its band
MAX_LINE_SLOPE = 0.25  # a line is straightened for the reader up to this rise per column (14 degrees)
BOX_INK = 64  # a pixel of a character's columns brighter than this (0-255) is ink of its box
CHAR_HALF_WIDTH = 0.25  # half a digit's width, in band heights: a line's first and last character's reach
READER_TRUSTED = 0.3  # a reading the reader is this sure of stands; below, the surer of it and the crops'
OWNER_REACH = 0.25  # a character marked this many digit heights beside a crop may still be in it
MISSED_HEIGHT = 0.75  # a crop the reader read nothing in, this tall against the line's digits, ...
MISSED_SURE = 0.5  # ... is a digit it missed when the classifier is this sure of it
PIECE_WIDTH = 0.9  # ... unless it and a digit the reader read beside it are no wider than this together,
PIECE_GAP = 0.1  # ... and no farther apart than this (digit heights): pieces of one digit the pen broke
SEPARATOR_SURE = 0.9  # a separator the reader is less sure of, alone in a digit-tall crop, is read as a digit
MARK_HEIGHT = 0.6  # a line of crops all less tall than this fraction of the digits is punctuation ...
MARK_REACH = 0.5  # ... of a line this many digit heights above or below it (a comma hanging low)
LINE_COURSE = 3  # a line's digits from this many on set its course (slope), which a digit past a gap is near


@dataclass(frozen=True, eq=False)  # eq=False: `pixels` is an array, which has no single truth value
class DigitCrop:
    """One digit found in a photo.

    Attributes:
        box: (x, y, width, height) in the original photo's pixels.
        pixels: (s, s) uint8, dark ink on white paper: the illumination-corrected digit at analysis scale,
            centred on a square of paper (every pixel that is not this digit's ink is paper). Ready for
            `normalize_digit`.
        line: 0 for the top line, 1 for the next, ...
    """

    box: tuple[int, int, int, int]
    pixels: np.ndarray
    line: int


@dataclass(frozen=True)
class ReadDigit:
    digit: int
    confidence: float  # the classifier's probability for `digit`
    box: tuple[int, int, int, int]  # (x, y, width, height) in the original photo's pixels


@dataclass(frozen=True)
class ReadSeparator:
    mark: str  # one of digitops.strings.SEPARATORS: '.', ',', '-', '=', '/'
    confidence: float
    box: tuple[int, int, int, int]  # (x, y, width, height) in the original photo's pixels


@dataclass(frozen=True)
class ReadResult:
    """What a photo says: `text` has one line of digits per written line, separated by '\\n'.

    `confidence` is the product of the digits' confidences: the chance that every digit is right, were the
    classifier's probabilities calibrated and its mistakes independent. Unlike the least confident digit,
    it falls as the string grows, as the chance of a mistake somewhere in it does; a caller asks a person
    when it is low. 0.0 when no digit was read (`text` is ""): there is nothing to trust, and a caller
    that asks below a threshold asks about an empty reading too.
    """

    text: str
    digits: list[ReadDigit]
    confidence: float = 0.0
    separators: list[ReadSeparator] = field(
        default_factory=list
    )  # read between and after digits, not in text

    def to_dict(self) -> dict:
        """Plain types only, for JSON."""
        return asdict(self)


def find_digits(image: Image.Image | np.ndarray) -> list[DigitCrop]:
    """Find the handwritten digits in a photo, in reading order.

    Args:
        image: a PIL image (EXIF orientation applied) or an array: (H, W) grayscale, (H, W, 3) RGB or
            (H, W, 4) RGBA; uint8, or float in [0, 1]. Dark ink on light paper.

    Returns:
        One `DigitCrop` per digit, top line first, left to right; empty when the photo holds no ink.
    """
    analysis, to_photo = _locate(image)
    return [DigitCrop(box=to_photo(box), pixels=pixels, line=line) for box, pixels, line in analysis.found]


@dataclass(frozen=True, eq=False)
class _Analysis:
    """What `_analyse` finds in the analysis image: the digits ((x0, y0, x1, y1), pixels, line) in reading
    order, the paper to add around a tight crop (0: not one), the ink's darkness relative to the paper
    (h, w) and the darkness under which it is the paper's noise (h, w)."""

    found: list[tuple[tuple[int, int, int, int], np.ndarray, int]]
    margin: int
    darkness: np.ndarray
    floor: np.ndarray


def _locate(
    image: Image.Image | np.ndarray,
) -> tuple[_Analysis, Callable[[tuple], tuple[int, int, int, int]]]:
    """Analyse a photo (steps 1-7 of the module). Also returns the function that maps a box (x0, y0, x1, y1)
    of the analysis to (x, y, width, height) in the original photo."""
    gray = _grayscale(image)  # (H, W) float32 in [0, 1]
    original_size = gray.shape[::-1]
    scale = min(1.0, MAX_ANALYSIS_SIDE / max(gray.shape))
    if scale < 1.0:
        size = (max(1, round(original_size[0] * scale)), max(1, round(original_size[1] * scale)))
        gray = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BOX))
    gray = _without_screen(gray)  # here, so that an analysis scaled up (below) starts from it too
    analysis, to_photo = _analyse_photo(gray, scale, original_size)
    # Digits a few pixels tall (a coarse scan): the ink's smoothing and the limits in pixels are made for
    # larger ones, and the reader's band would be scaled up from a blur. Analysed again, scaled up.
    heights = [box[3] - box[1] for box, _, _ in analysis.found]
    digit_height = float(np.median(heights)) if heights else 0.0
    factor = min(ANALYSIS_DIGIT / max(digit_height, 1.0), MAX_ANALYSIS_SIDE / max(gray.shape))
    if not 0 < digit_height < SMALL_DIGIT or factor <= 1.0:
        return analysis, to_photo
    size = (round(gray.shape[1] * factor), round(gray.shape[0] * factor))
    larger = Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BICUBIC)
    return _analyse_photo(np.clip(np.asarray(larger), 0.0, 1.0), size[0] / original_size[0], original_size)


def _analyse_photo(
    gray: np.ndarray, scale: float, original_size: tuple[int, int]
) -> tuple[_Analysis, Callable[[tuple], tuple[int, int, int, int]]]:
    """`_locate` on the photo at analysis scale (`gray`, `scale` times the original's `original_size`)."""
    analysis = _analyse(gray)
    margin = analysis.margin
    if not margin:
        return analysis, lambda box: _to_original(box, scale, original_size)
    # A crop as tight as the writing: the digits at its sides would look like the paper's edge or the
    # desk. Surrounded by paper (its own brightness, continued past the sides), they are digits again.
    padded = np.pad(_upsample(_paper_cells(gray), gray.shape), margin, mode="edge")  # (h + 2m, w + 2m)
    padded[margin:-margin, margin:-margin] = gray
    analysed_size = gray.shape[::-1]
    return _analyse(padded), lambda box: _to_original(
        _unpad(box, margin, analysed_size), scale, original_size
    )


def _analyse(gray: np.ndarray) -> _Analysis:
    """Steps 2-6 of the module on the analysis image (h, w) float32 (`_tight_margin` for the margin)."""
    brightness_cells = _paper_cells(gray)  # (gh, gw)
    relative = gray / _upsample(brightness_cells, gray.shape)  # (h, w): paper ~1, ink darker
    ink = _mean3(1.0 - relative)  # (h, w), paper ~0; averaged over 3x3 to quieten grain and sensor noise
    flat = np.clip(relative, 0.0, 1.0)
    noise = NOISE_SIGMAS * _noise_sigma(ink)  # (h, w): more where the light is dim
    floor = np.maximum(MIN_INK, noise)
    above_noise = ink > floor  # (h, w) bool
    mask = above_noise & (ink > INK_FRACTION * _local_max(ink))  # (h, w) bool
    lines = _line_pixels(mask, ink > np.maximum(LINE_INK, noise))
    mask &= ~lines
    weak = above_noise & ~lines  # (h, w): ink above the noise, however faint beside the strongest
    labels, boxes, areas = _components(mask)
    ink_sums = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=len(areas) + 1)[1:]  # (n,)
    desk = _upsample(_desk_cells(gray, brightness_cells), gray.shape) > 0.5  # (h, w) bool
    on_desk = np.bincount(labels[desk], minlength=len(areas) + 1)[1:] > 0.5 * areas  # (n,)
    groups = _digit_groups(boxes, areas, ink_sums, mask.shape, on_desk)  # component indices per digit
    found = []
    for line_number, line in enumerate(_reading_order([_union(boxes[g]) for g in groups])):
        for index in line:
            box = _union(boxes[groups[index]])
            found.append((box, _crop(flat, labels, weak, groups[index], box), line_number))
    kept = np.array([box for box, _, _ in found], np.int64).reshape(-1, 4)  # (d, 4)
    darkness = np.clip(1.0 - relative, 0.0, 1.0)
    return _Analysis(found, _tight_margin(boxes, areas, kept, mask.shape), darkness, floor)


def _tight_margin(boxes: np.ndarray, areas: np.ndarray, kept: np.ndarray, shape: tuple[int, int]) -> int:
    """The paper to add on each side (px) if the photo is cropped as tight as its writing, else 0.

    Tight: the ink that may be writing (not specks; `boxes` (n, 4), `areas` (n,)) touches a side of the
    photo and comes within `TIGHT_STRIP` of its height of every side, and the digits found so far (`kept`
    (d, 4)), if any, reach as near the top and the bottom. A photo of a page leaves paper around the
    writing. Ink taken for the desk counts as writing (a thick digit along a side of a tight crop looks
    like the desk); the desk's texture beyond the paper's edge may reach the sides, but the digits then
    stop well short of them.
    """
    height, width = shape
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    writing = (areas >= MIN_DIGIT_PIXELS) & (sides >= max(MIN_DIGIT_SIDE * min(shape), 4))
    if not writing.any():
        return 0
    x0, y0, x1, y1 = _union(boxes[writing])
    margins = np.array([x0, y0, width - x1, height - y1])
    if margins.min() > 0 or margins.max() > TIGHT_STRIP * (y1 - y0):
        return 0
    if len(kept):
        _, top, _, bottom = _union(kept)
        if max(top, height - bottom) > TIGHT_STRIP * (bottom - top):
            return 0
    return max(4, round(TIGHT_MARGIN * (y1 - y0)))


def read_digits(
    image: Image.Image | np.ndarray,
    classify: Callable[[np.ndarray], np.ndarray],
    reader: Callable[[list[np.ndarray]], list[ReadLine]] | None = None,
) -> ReadResult:
    """Read the digits of a photo.

    With a `reader` (digitops.infer.reader.Reader), each line found is cut out of the photo as a band and
    read whole (`_read_lines`): separators come back apart from the digits, and touching digits need no
    cut. That reading stands when the reader is at least `READER_TRUSTED` sure of it; below, the photo
    is also read crop by crop as without a reader, and the surer of the two readings is returned (the
    reader misses some odd-shaped digits that a crop shows plainly). Without a reader, each digit found
    is classified:

    A crop wider than `SPLIT_ASPECT` digits of its line may be touching digits that make one component:
    it is also cut at the columns of least ink into 2 to `MAX_PARTS` parts (`_cut_sets`), and read as the
    cut set whose parts the classifier is surest of (by its least confident part), when it is sure of every
    part (`SPLIT_SURE`) and surer than of the crop read whole. A wide '0' or '4' read whole is surer than
    of its slices; a slice of a stroke can look like a '1', but rarely one of which it is that sure.
    A part cut off that is a slash touching a digit (`_is_slash`) is left out of the text.

    Args:
        image: anything `find_digits` accepts.
        classify: (B, 28, 28) uint8 MNIST-style digits -> (B, 10) float32 probabilities, e.g. a
            `digitops.infer.classifier.Classifier`. Without a reader, called once with every crop and every
            candidate part (not at all when there are none); with one, for the crops holding one of its
            digits, and again crop by crop when the reader is unsure.
        reader: lines (READER_HEIGHT, w) uint8 -> a `ReadLine` each, called once with every line.

    Returns:
        The digits in reading order with their boxes and confidences, and the text they spell.
    """
    analysis, to_photo = _locate(image)
    if reader is None:
        return _classify_crops(analysis, to_photo, classify)
    by_reader, sure = _read_lines(analysis, to_photo, classify, reader)
    if sure >= READER_TRUSTED:  # the crop-by-crop reading is only needed to second an unsure reader
        return by_reader
    by_crops = _classify_crops(analysis, to_photo, classify)
    return by_reader if sure >= by_crops.confidence else by_crops


def _classify_crops(
    analysis: _Analysis,
    to_photo: Callable[[tuple], tuple[int, int, int, int]],
    classify: Callable[[np.ndarray], np.ndarray],
) -> ReadResult:
    """Classify each crop segmentation found (and the parts of the wide ones): `read_digits` without a
    reader."""
    crops = []
    digits = []  # (N, 28, 28) uint8: the crops, then the candidate parts of the wide ones
    for box, pixels, line in analysis.found:
        crop = DigitCrop(box=to_photo(box), pixels=pixels, line=line)
        try:
            digits.append(normalize_digit(pixels))
        except EmptyImageError:  # cannot happen for a crop of ink; a guard, not a path
            continue
        crops.append(crop)
    if not crops:
        return ReadResult(text="", digits=[])
    heights = {line: float(np.median([c.box[3] for c in crops if c.line == line])) for line in _lines(crops)}
    aspects = {  # the line's typical width/height ratio
        line: float(np.median([c.box[2] / c.box[3] for c in crops if c.line == line])) for line in heights
    }
    candidates = []  # per crop: (its parts, the cut sets as indices into them, their first row) or None
    for crop in crops:
        height = heights[crop.line]
        widths = crop.box[2] / (float(np.clip(aspects[crop.line], *TYPICAL_ASPECT)) * height)  # in digits
        if widths <= SPLIT_ASPECT:
            candidates.append(None)
            continue
        parts, cut_sets = _cut_sets(crop, height)
        candidates.append((parts, cut_sets, len(digits)) if cut_sets else None)
        digits.extend(normalize_digit(part.pixels) for part in parts)
    probabilities = np.asarray(classify(np.stack(digits)))  # (N, 10)
    confidences = probabilities.max(axis=1)  # (N,)
    chosen = []  # (crop, its row in `probabilities`) in reading order
    for row, (crop, candidate) in enumerate(zip(crops, candidates, strict=True)):
        if candidate is None:
            chosen.append((crop, row))
            continue
        parts, cut_sets, first = candidate
        scores = [min(confidences[first + index] for index in cut_set) for cut_set in cut_sets]
        best = int(np.argmax(scores))
        if scores[best] >= SPLIT_SURE and scores[best] > confidences[row]:
            # A slash touching a digit is cut off as a part the classifier reads as a '1': left out.
            chosen.extend(
                (parts[index], first + index)
                for index in cut_sets[best]
                if not _is_slash(parts[index], heights[crop.line])
            )
        else:
            chosen.append((crop, row))
    read = [
        ReadDigit(digit=int(probabilities[row].argmax()), confidence=float(confidences[row]), box=crop.box)
        for crop, row in chosen
    ]
    lines: dict[int, str] = {}
    for (crop, _), digit in zip(chosen, read, strict=True):
        lines[crop.line] = lines.get(crop.line, "") + str(digit.digit)
    return ReadResult(
        text="\n".join(lines[number] for number in sorted(lines)),
        digits=read,
        confidence=float(np.prod([digit.confidence for digit in read])),
    )


def _read_lines(
    analysis: _Analysis,
    to_photo: Callable[[tuple], tuple[int, int, int, int]],
    classify: Callable[[np.ndarray], np.ndarray],
    reader: Callable[[list[np.ndarray]], list[ReadLine]],
) -> tuple[ReadResult, float]:
    """Read each line's band with the string reader, and check its digits with the classifier; also
    returns how sure the reader is of the whole reading, separators included (a reading of separators
    alone has a confidence of 0.0 as a result, having no digits, yet may be sure).

    The reader says what the line holds: how many digits, where, and which marks are separators. Where a
    crop segmentation found holds exactly one of its characters, a digit, the crop is also classified and
    the digit is the one both agree on best (the product of their probabilities); the crop is a cleaner
    view of one digit than the reader's few columns, and the classifier has seen far more digits. So is a
    separator the reader is unsure of, alone in a crop as tall as the line's digits (`_may_be_digit`): a
    slanted '1' looks like a '/'. Digits the crops do not separate (touching, overlapping, broken into
    pieces) are the reader's alone.
    """
    lines: dict[int, list[tuple[tuple[int, int, int, int], np.ndarray]]] = {}
    for box, pixels, line in analysis.found:
        lines.setdefault(line, []).append((box, pixels))
    crops_by_line = [lines[number] for number in sorted(lines)]
    bands = [_LineBand.cut(analysis, [box for box, _ in crops]) for crops in crops_by_line]
    readings = reader([band.pixels for band in bands])
    plans = []  # per line: (char, its box at analysis scale, its row in the classifier's batch or None)
    batch = []  # (N, 28, 28) uint8: the crops that hold one digit of the reader's
    for band, reading, crops in zip(bands, readings, crops_by_line, strict=True):
        centres = [band.x_of((c.columns[0] + c.columns[1]) / 2) for c in reading.chars]
        owners = [_owner(centre, [box for box, _ in crops]) for centre in centres]
        height = float(np.median([box[3] - box[1] for box, _ in crops]))
        line_plan = []
        for index, (char, owner) in enumerate(zip(reading.chars, owners, strict=True)):
            if (
                owner is not None
                and owners.count(owner) == 1
                and _may_be_digit(char, crops[owner][0], height)
            ):
                line_plan.append((char, crops[owner][0], len(batch)))
                batch.append(normalize_digit(crops[owner][1]))
            else:
                line_plan.append((char, band.box_of(_extent(reading.chars, index)), None))
        # A crop the size of the line's digits in which the reader saw nothing may be a digit it missed
        # (an odd shape at the line's end): the classifier reads it, and it counts if the classifier is sure.
        # Not so a piece of a digit the reader read whole beside it (`_piece_of_read`).
        read = [
            crops[o][0]
            for o, c in zip(owners, reading.chars, strict=True)
            if o is not None and c.char.isdigit()
        ]
        if read:
            read_height = float(np.median([box[3] - box[1] for box in read]))
            for index, (box, pixels) in enumerate(crops):
                if (
                    index not in owners
                    and box[3] - box[1] >= MISSED_HEIGHT * read_height
                    and not _piece_of_read(box, read, read_height)
                ):
                    line_plan.append((None, box, len(batch)))
                    batch.append(normalize_digit(pixels))
        line_plan.sort(key=lambda item: item[1][0] + item[1][2])
        plans.append(line_plan)
    probabilities = np.asarray(classify(np.stack(batch))) if batch else np.zeros((0, 10), np.float32)
    digits, separators, texts = [], [], []
    confidence = float(np.prod([reading.confidence for reading in readings]))
    for line_plan in plans:
        text = ""
        for char, box, row in line_plan:
            if char is None:  # a crop the reader missed
                if probabilities[row].max() >= MISSED_SURE:
                    digit, sure = int(probabilities[row].argmax()), float(probabilities[row].max())
                    digits.append(ReadDigit(digit=digit, confidence=sure, box=to_photo(box)))
                    text += str(digit)
                    confidence *= sure
                continue
            if row is None and not char.char.isdigit():
                separators.append(
                    ReadSeparator(mark=char.char, confidence=char.confidence, box=to_photo(box))
                )
                continue
            if row is None:  # a digit the crops do not separate: the reader's alone
                digit, sure = int(char.char), char.confidence
            else:
                agreed = probabilities[row] * np.asarray(char.digits)
                agreed = agreed / max(float(agreed.sum()), 1e-12)
                digit, sure = int(agreed.argmax()), float(agreed.max())
                confidence *= sure / char.confidence  # the digit's confidence is now the agreed one
            digits.append(ReadDigit(digit=digit, confidence=sure, box=to_photo(box)))
            text += str(digit)
        if text:
            texts.append(text)
    result = ReadResult(
        text="\n".join(texts), digits=digits, confidence=confidence if digits else 0.0, separators=separators
    )
    return result, confidence


def _may_be_digit(char: ReadChar, box: tuple[int, int, int, int], height: float) -> bool:
    """Whether a character that owns a crop alone may be read as a digit: a digit, or a separator the reader
    is less than `SEPARATOR_SURE` of in a crop as tall as the line's digits (a slanted '1' read as '/')."""
    if char.char.isdigit():
        return True
    return char.confidence < SEPARATOR_SURE and box[3] - box[1] >= MISSED_HEIGHT * height


def _piece_of_read(
    box: tuple[int, int, int, int], read: list[tuple[int, int, int, int]], height: float
) -> bool:
    """Whether the crop `box` may be a piece of a digit the reader read in one of the crops `read` (a '4'
    the pen broke where its bar meets the upright): a crop beside it, within `PIECE_GAP` of the digit
    height `height`, with which it is no wider than `PIECE_WIDTH` digit heights, as one digit is."""
    return any(
        max(box[0], other[0]) - min(box[2], other[2]) <= PIECE_GAP * height
        and max(box[2], other[2]) - min(box[0], other[0]) <= PIECE_WIDTH * height
        for other in read
    )


def _owner(x: float, boxes: list[tuple[int, int, int, int]]) -> int | None:
    """The crop a character marked at `x` belongs to: the one whose centre is nearest, if `x` lies within it
    or `OWNER_REACH` digit heights of its sides (CTC tends to mark a character near its left edge)."""
    found = np.asarray(boxes, np.float64)  # (n, 4)
    reach = OWNER_REACH * float(np.median(found[:, 3] - found[:, 1]))
    nearest = int(np.argmin(np.abs((found[:, 0] + found[:, 2]) / 2 - x)))
    return nearest if found[nearest, 0] - reach <= x < found[nearest, 2] + reach else None


def _extent(chars: list[ReadChar], index: int) -> tuple[int, int]:
    """The columns of the line a character may own: from halfway to its left neighbour to halfway to its
    right one (CTC marks a character by a step or two, narrower than its ink), or a digit's half width
    past the line's first and last characters."""
    centres = [(c.columns[0] + c.columns[1]) / 2 for c in chars]
    half = READER_HEIGHT * CHAR_HALF_WIDTH
    left = (centres[index - 1] + centres[index]) / 2 if index > 0 else centres[index] - half
    right = (centres[index] + centres[index + 1]) / 2 if index + 1 < len(chars) else centres[index] + half
    return max(0, int(np.floor(left))), int(np.ceil(right))


@dataclass(frozen=True, eq=False)
class _LineBand:
    """A line of writing cut out of the analysis image and straightened, as the string reader takes it.

    The band spans the line's digits plus `BAND_SIDE` digit heights on either side (separators after a
    number, a digit segmentation missed) and `BAND_MARGIN` above and below; a sloping line (a photo turned
    a little) is sheared level first, so that its digits keep their height in the band.
    """

    pixels: np.ndarray  # (READER_HEIGHT, w) uint8, ink bright on black
    origin: tuple[float, float]  # the band's top-left corner in the analysis image
    centre: float  # x of the shear's fixed column
    slope: float  # the line's rise per column (down positive)
    factor: float  # analysis pixels per band pixel
    size: tuple[int, int]  # the analysis image's (width, height)

    @classmethod
    def cut(cls, analysis: _Analysis, boxes: list[tuple[int, int, int, int]]) -> _LineBand:
        found = np.asarray(boxes, np.float64)  # (n, 4) x0, y0, x1, y1
        heights = found[:, 3] - found[:, 1]
        height = float(np.median(heights))
        # The band follows the crops of a digit's height; a taller one (pieces of squared paper joined
        # with a digit) would make the band, and so its digits in the reader's 32 px, too small.
        typical = heights <= TYPICAL_HEIGHT * height
        found = found[typical] if typical.any() else found
        centres_x, centres_y = (found[:, 0] + found[:, 2]) / 2, (found[:, 1] + found[:, 3]) / 2
        slope = 0.0
        if len(found) >= 2 and np.ptp(centres_x) > height:
            slope = float(np.clip(np.polyfit(centres_x, centres_y, 1)[0], -MAX_LINE_SLOPE, MAX_LINE_SLOPE))
        image_height, image_width = analysis.darkness.shape
        x0 = max(0.0, found[:, 0].min() - BAND_SIDE * height)
        x1 = min(float(image_width), found[:, 2].max() + BAND_SIDE * height)
        centre = (x0 + x1) / 2
        level = centres_y - slope * (centres_x - centre)  # each digit's centre on the level line
        y0 = float((level - (found[:, 3] - found[:, 1]) / 2).min() - BAND_MARGIN * height)
        y1 = float((level + (found[:, 3] - found[:, 1]) / 2).max() + BAND_MARGIN * height)
        width, band_height = max(1, round(x1 - x0)), max(1, round(y1 - y0))
        # The band's (x, y) samples the analysis image at (x0 + x, y0 + y + slope * (x0 + x - centre)).
        coefficients = (1, 0, x0, slope, 1, y0 + slope * (x0 - centre))
        darkness, floor = (
            np.asarray(
                Image.fromarray(values.astype(np.float32), mode="F").transform(
                    (width, band_height),
                    Image.Transform.AFFINE,
                    coefficients,
                    Image.Resampling.BILINEAR,
                    fillcolor=fill,
                )
            )
            for values, fill in ((analysis.darkness, 0.0), (analysis.floor, 1.0))
        )
        pixels = to_line_height(line_pixels(darkness, floor))
        return cls(pixels, (x0, y0), centre, slope, band_height / READER_HEIGHT, (image_width, image_height))

    def x_of(self, column: float) -> float:
        """A column of the band's pixels -> x in the analysis image (straightening moves rows only)."""
        return self.origin[0] + column * self.factor

    def box_of(self, columns: tuple[int, int]) -> tuple[int, int, int, int]:
        """Columns [start, end) of the band's pixels -> the box (x0, y0, x1, y1) of their ink in the analysis
        image, trimmed to the columns and rows that hold ink (all of them where none does)."""
        start, end = columns
        ink = self.pixels[:, start:end] > BOX_INK  # (READER_HEIGHT, end - start)
        inked_columns = np.flatnonzero(ink.any(axis=0))
        if inked_columns.size:
            start, end = start + int(inked_columns[0]), start + int(inked_columns[-1]) + 1
        inked = np.flatnonzero(ink.any(axis=1))
        top, bottom = (inked[0], inked[-1] + 1) if inked.size else (0, READER_HEIGHT)
        x0, y0 = self.origin
        left, right = x0 + start * self.factor, x0 + end * self.factor
        shift = self.slope * ((left + right) / 2 - self.centre)
        width, height = self.size
        return (
            int(np.clip(np.floor(left), 0, width)),
            int(np.clip(np.floor(y0 + top * self.factor + shift), 0, height)),
            int(np.clip(np.ceil(right), 0, width)),
            int(np.clip(np.ceil(y0 + bottom * self.factor + shift), 0, height)),
        )


def _lines(crops: list[DigitCrop]) -> list[int]:
    return sorted({crop.line for crop in crops})


def _cut_sets(crop: DigitCrop, height: float) -> tuple[list[DigitCrop], list[list[int]]]:
    """The ways to cut a wide crop into touching digits, by straight cuts at the columns of least ink.

    Candidate cuts are the local minima of the ink's vertical projection, the `MAX_CUTS` lowest, each part at
    least `PART_WIDTH` digit heights wide; a cut set is 1 to `MAX_PARTS` - 1 of them. A part is the ink
    between two cuts, on a square of paper like any crop (the same part serves every set that has it); a
    set with a part shorter than `PART_HEIGHT` digit heights (a sliver of a stroke) is left out.

    Args:
        crop: a crop of one line; height: the line's digit height in the photo's pixels.

    Returns:
        The distinct parts (crops with their boxes in the photo's pixels) and the cut sets, each a list of
        indices into the parts, left to right.
    """
    darkness = 1.0 - crop.pixels.astype(np.float32) / 255.0  # (s, s): 0 on paper
    columns, rows = np.flatnonzero(darkness.any(axis=0)), np.flatnonzero(darkness.any(axis=1))
    left, right, top, bottom = columns[0], columns[-1] + 1, rows[0], rows[-1] + 1
    x, y, box_width, box_height = crop.box
    per_pixel = box_width / (right - left)  # the photo's pixels per crop pixel
    digit = height / per_pixel  # the line's digit height in crop pixels
    profile = darkness[:, left:right].sum(axis=0)  # (w,)
    profile = np.convolve(profile, np.ones(3) / 3, mode="same")  # a stroke's ragged edge is not a minimum
    least = max(1, round(PART_WIDTH * digit))
    inner = np.arange(least, right - left - least)
    minima = inner[(profile[inner] <= profile[inner - 1]) & (profile[inner] <= profile[inner + 1])]
    cuts: list[int] = []
    for column in minima[np.argsort(profile[minima], kind="stable")]:
        if all(abs(column - cut) >= least for cut in cuts):
            cuts.append(int(column))
        if len(cuts) == MAX_CUTS:
            break
    bounds = [0, *sorted(cuts), right - left]  # column offsets from `left`
    parts: list[DigitCrop] = []
    index_of: dict[tuple[int, int], int | None] = {}
    for start in range(len(bounds)):
        for end in range(start + 1, len(bounds)):
            part = darkness[:, left + bounds[start] : left + bounds[end]]
            part_rows = np.flatnonzero(part.any(axis=1))
            if part_rows.size == 0 or part_rows[-1] + 1 - part_rows[0] < PART_HEIGHT * digit:
                index_of[start, end] = None
                continue
            index_of[start, end] = len(parts)
            part_box = (
                x + round(bounds[start] * per_pixel),
                y + round((part_rows[0] - top) * box_height / (bottom - top)),
                max(1, round((bounds[end] - bounds[start]) * per_pixel)),
                max(1, round((part_rows[-1] + 1 - part_rows[0]) * box_height / (bottom - top))),
            )
            parts.append(DigitCrop(box=part_box, pixels=_on_paper(part), line=crop.line))
    cut_sets = []
    inner_bounds = range(1, len(bounds) - 1)
    for count in range(1, MAX_PARTS):
        for chosen in itertools.combinations(inner_bounds, count):
            edges = [0, *chosen, len(bounds) - 1]
            indices = [index_of[start, end] for start, end in itertools.pairwise(edges)]
            if None not in indices:
                cut_sets.append(indices)
    return parts, cut_sets


def _is_slash(part: DigitCrop, height: float) -> bool:
    """Whether a part cut from a wide crop is a slash: one thin straight stroke about as tall as the line's
    digits (`height`, the photo's pixels), leaning right by `SLASH_LEAN` of its height.

    Its box alone is a slanted '1''s, and many written '1's lean as much; what tells them apart is that a
    slash is ruled straight, where a '1' written with a lean mostly bends a little (`SLASH_BEND` is tight
    for that reason). Only a part is asked: a slash standing apart is still read as a '1'.
    """
    darkness = 255 - part.pixels.astype(np.int32)  # (s, s): 0 on paper
    ink = darkness > darkness.max() / 2  # (s, s) bool: a pale pen's ink too
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size < 4 or part.box[3] < SLASH_HEIGHT * height:
        return False
    ink = ink[rows[0] : rows[-1] + 1]
    tall = len(ink)
    columns = np.arange(ink.shape[1])
    counts = ink.sum(axis=1)  # (t,)
    centres = np.where(counts > 0, (ink * columns).sum(axis=1) / np.maximum(counts, 1), np.nan)  # (t,)
    known = ~np.isnan(centres)
    y = np.arange(tall)[known]
    slope, offset = np.polyfit(y, centres[known], 1)  # x = slope * y + offset: negative leans right
    straight = np.abs(centres[known] - (slope * y + offset)).max() <= SLASH_BEND * tall
    thin = np.median(counts[known]) <= SLASH_WIDTH * tall
    return bool(straight and thin and SLASH_LEAN[0] <= -slope <= SLASH_LEAN[1])


def _on_paper(darkness: np.ndarray) -> np.ndarray:
    """Ink darkness (h, w), 0 on paper, -> its ink centred on a square of paper `CROP_PAPER` times its longer
    side, dark on white like `_crop`'s: (s, s) uint8."""
    rows, columns = np.flatnonzero(darkness.any(axis=1)), np.flatnonzero(darkness.any(axis=0))
    ink = darkness[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    side = round(CROP_PAPER * max(ink.shape))
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square = np.zeros((side, side), np.float32)
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return np.round((1.0 - square) * 255).astype(np.uint8)


def _grayscale(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any photo -> (H, W) float32 in [0, 1]; transparency is composited onto white."""
    if isinstance(image, np.ndarray):
        pixels = image
        if pixels.dtype != np.uint8:
            if not np.issubdtype(pixels.dtype, np.floating):
                raise ValueError(f"expected uint8 or float pixels in [0, 1], got {pixels.dtype}")
            pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[..., 0]
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
            raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {pixels.shape}")
        image = Image.fromarray(pixels)
    else:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _paper_cells(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness under the local light, without the ink, on the coarse grid: (gh, gw) > 0.

    The median of each cell of a coarse grid ignores thin strokes. Over `BACKGROUND_WINDOW` cells, a high
    rank (the brightest fifth) then a low rank (the darkest fifth) remove whole strokes, even bold ones,
    while the edges of shadows stay where they are; unlike a max then a min filter (a closing), ranks do
    not favour the brightest noise, so plain paper comes out at its own level.
    """
    cells = _grid_reduce(gray, lambda blocks: np.median(blocks, axis=-1))  # (gh, gw)
    # Continue the light's slope past the edges (odd reflection): with the edge value repeated, as the rank
    # filters do, a photo darkening towards its edge would get the brighter inner paper there.
    pad = BACKGROUND_WINDOW // 2
    padded = np.clip(np.pad(cells, pad, mode="reflect", reflect_type="odd"), cells.min(), cells.max())
    last = BACKGROUND_WINDOW**2 - 1
    small = Image.fromarray(padded.astype(np.float32), mode="F")
    small = small.filter(ImageFilter.RankFilter(BACKGROUND_WINDOW, round(0.8 * last))).filter(
        ImageFilter.RankFilter(BACKGROUND_WINDOW, round(0.2 * last))
    )
    small = small.crop((pad, pad, pad + cells.shape[1], pad + cells.shape[0]))
    return np.maximum(np.asarray(small), 1e-3)


def _upsample(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Grid values (gh, gw) -> (h, w) float32, bilinear."""
    return np.asarray(
        Image.fromarray(cells.astype(np.float32), mode="F").resize(shape[::-1], Image.Resampling.BILINEAR)
    )


def _desk_cells(gray: np.ndarray, brightness: np.ndarray) -> np.ndarray:
    """Where the photo shows the desk beyond the paper's edge, on the coarse grid: (gh, gw) float32, 1 or 0.

    Dark cells (their median below `EDGE_DARK` of the paper's brightness there, or a brightness below
    `EDGE_DARK` of the paper's nearby) that join into a region running along more than `EDGE_CONTACT` of a
    side of the photo. A digit's strokes make small dark regions that touch a side, if at all, briefly.
    """
    cells = _grid_reduce(gray, lambda blocks: np.median(blocks, axis=-1))  # (gh, gw)
    nearby = np.asarray(
        Image.fromarray(brightness.astype(np.float32), mode="F").filter(
            ImageFilter.MaxFilter(BACKGROUND_WINDOW)
        )
    )
    dark = (cells < EDGE_DARK * brightness) | (brightness < EDGE_DARK * nearby)
    regions = cc3d.connected_components(dark.astype(np.uint8), connectivity=8)
    desk = set()
    for side in (regions[0], regions[-1], regions[:, 0], regions[:, -1]):
        contact = np.bincount(side, minlength=int(regions.max()) + 1)
        desk |= {int(label) for label in np.flatnonzero(contact > EDGE_CONTACT * side.size) if label}
    return np.isin(regions, list(desk)).astype(np.float32)


def _without_screen(gray: np.ndarray) -> np.ndarray:
    """The photo (h, w) float32 without the regular pattern of a printed screen: (h, w) float32.

    A security background printed at a short period (dots, hatching, guilloche) is a few sharp peaks in
    the photo's spectrum, while handwriting spreads its power over many frequencies: the peaks are taken
    out (a notch filter), and the digits keep their ink. Where the pattern ran through a digit it no longer
    joins the digit to its neighbours, nor becomes ink of its own. Only peaks off both axes go: ruled lines,
    grids and the sides of boxes repeat along the axes (or near them, on a photo turned a little), and are
    found as lines later, where their place tells them from strokes.
    """
    height, width = gray.shape
    mean = float(gray.mean())
    # Padded (with the mean) to lengths the FFT is quick at.
    size = (_fast_length(height), _fast_length(width))
    spectrum = np.fft.rfft2(gray - mean, size)  # (H, W // 2 + 1): the other half mirrors it
    power = np.abs(spectrum)
    down = np.abs(np.fft.fftfreq(size[0]))[:, None]  # cycles per pixel
    across = np.fft.rfftfreq(size[1])[None, :]
    peaks = (
        (power > SCREEN_PEAK * _wrapped_mean(power, 4))  # above the 9x9 frequencies around it
        & (np.hypot(down, across) > 1.0 / SCREEN_PERIOD)
        & (down > SCREEN_ANGLE * across)
        & (across > SCREEN_ANGLE * down)
    )
    if not peaks.any():
        return gray
    spectrum[_wrapped_mean(peaks.astype(np.float32), SCREEN_SKIRT) > 0] = 0.0  # each peak and its skirt
    return (np.fft.irfft2(spectrum, size)[:height, :width] + mean).astype(np.float32)


def _fast_length(length: int) -> int:
    """The smallest length >= `length` with no prime factor above 5."""
    while True:
        rest = length
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return length
        length += 1


def _wrapped_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """The mean over each element's (2 radius + 1)^2 neighbourhood, wrapping around the edges (a spectrum's
    frequencies do): (h, w) float64."""
    shifts = range(-radius, radius + 1)
    down = sum(np.roll(values.astype(np.float64), shift, 0) for shift in shifts)
    return sum(np.roll(down, shift, 1) for shift in shifts) / len(shifts) ** 2


def _mean3(values: np.ndarray) -> np.ndarray:
    """The mean over each pixel's 3x3 neighbourhood (edges repeated): (h, w) float32."""
    padded = np.pad(values, 1, mode="edge")
    height, width = values.shape
    total = sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    return (total / 9.0).astype(np.float32)


def _noise_sigma(ink: np.ndarray) -> np.ndarray:
    """The paper's local noise level: (h, w) float32.

    A robust standard deviation (1.4826 x the median absolute deviation) per grid cell; the smallest over
    3x3 cells, so that a cell crossed by a stroke takes its neighbours' level. Dim light makes noisy paper.
    """
    cells = _grid_reduce(
        ink, lambda blocks: 1.4826 * np.median(np.abs(blocks - np.median(blocks, -1, keepdims=True)), -1)
    )
    small = Image.fromarray(cells, mode="F").filter(ImageFilter.MinFilter(3))
    return np.asarray(small.resize(ink.shape[::-1], Image.Resampling.BILINEAR))


def _local_max(ink: np.ndarray) -> np.ndarray:
    """The strongest ink within a few grid cells of each pixel: (h, w) float32."""
    cells = _grid_reduce(ink, lambda blocks: blocks.max(axis=-1))
    small = Image.fromarray(cells, mode="F").filter(ImageFilter.MaxFilter(3))
    return np.asarray(small.resize(ink.shape[::-1], Image.Resampling.BILINEAR))


def _grid_reduce(values: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Reduce (h, w) values over square cells, about `BACKGROUND_GRID` along the long side: (gh, gw)."""
    cell = max(1, max(values.shape) // BACKGROUND_GRID)
    height, width = values.shape
    grid_height, grid_width = -(-height // cell), -(-width // cell)
    padded = np.pad(values, ((0, grid_height * cell - height), (0, grid_width * cell - width)), mode="edge")
    blocks = padded.reshape(grid_height, cell, grid_width, cell).transpose(0, 2, 1, 3)
    return reduce(blocks.reshape(grid_height, grid_width, cell * cell)).astype(np.float32)


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected ink components.

    Returns:
        labels (h, w) (0: paper, i + 1: component i), boxes (n, 4) int as x0, y0, x1, y1 (exclusive) and
        areas (n,) int pixel counts.
    """
    labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=8)
    stats = cc3d.statistics(labels)
    rows_cols = stats["bounding_boxes"][1:]  # entry 0 is the paper
    boxes = np.array([(c.start, r.start, c.stop, r.stop) for r, c in rows_cols], dtype=np.int64).reshape(
        -1, 4
    )
    areas = np.asarray(stats["voxel_counts"][1:], dtype=np.int64)
    return labels, boxes, areas


def _line_pixels(mask: np.ndarray, faint: np.ndarray | None = None) -> np.ndarray:
    """The long thin lines (underlines, ruled lines, the edges of printed boxes) of the ink: (h, w) bool.

    A line is a run of ink along a row (column), allowing a slight slope, much longer than a digit is wide
    (tall); its pixels are removed where the ink across the run is about as thin as the line itself, so
    that a stroke crossing or touching the line keeps its ink there while the rest of the line goes. The
    digit height is not known while lines still join the digits: a first pass takes only runs across a
    good part of the photo (a rule, an underline, a comb field), and the digits found then give the height
    for the second.

    With `faint` (h, w) bool, ink as light as print (above the noise and `LINE_INK`), runs are measured on
    it: beside dark digits, or printed unevenly, a light line (a box's side, squared paper) is ink to the
    threshold only in pieces, too short to be lines, while on `faint` it is whole. The caller takes the
    lines out of the ink.
    """
    if not mask.any():
        return np.zeros_like(mask)
    gap = round(LINE_GAP * max(mask.shape))
    if faint is None:
        faint = mask
    else:  # without the strokes' soft edges, which would join a digit to its neighbour or to a line
        near_ink = Image.fromarray(mask.astype(np.uint8) * 255).filter(
            ImageFilter.MaxFilter(2 * LINE_HALO + 1)
        )
        faint = mask | (faint & (np.asarray(near_ink) == 0))
        gap = max(gap, LINE_HALO)  # bridges the halo left out where a faint line meets the ink
    thickness_rows = _run_lengths(faint.T).T  # (h, w): the vertical extent of the ink through each pixel
    thickness_cols = _run_lengths(faint)  # (h, w): its horizontal extent
    along_rows = _sloped_run_lengths(faint, gap, _tilt(faint, thickness_rows, underlines=True))  # (h, w)
    along_cols = _sloped_run_lengths(faint.T, gap, _tilt(faint.T, thickness_cols.T)).T
    height, width = mask.shape
    # Long for the photo and long for its own thickness: a digit's bar may cross a good part of a tight
    # crop, but it is not many strokes long.
    long_rows = (along_rows >= LINE_SPAN * width) & (along_rows >= LINE_ELONGATION * thickness_rows)
    long_cols = (along_cols >= LINE_SPAN * height) & (along_cols >= LINE_ELONGATION * thickness_cols)
    horizontal = _thin_part(faint & long_rows, thickness_rows, along_rows)
    vertical = _thin_part(faint & long_cols, thickness_cols, along_cols, faint & ~horizontal)
    _, boxes, areas = _components(mask & ~horizontal & ~vertical)
    digit_height = _typical_height(boxes, areas, mask.shape)
    if digit_height is None:
        return horizontal | vertical
    long_rows = along_rows >= LINE_LENGTH * digit_height
    long_cols = along_cols >= LINE_HEIGHT * digit_height
    horizontal = _thin_part(faint & long_rows, thickness_rows, along_rows)
    vertical = _thin_part(faint & long_cols, thickness_cols, along_cols, faint & ~horizontal)
    # Where a rule crosses a box's side, each line is thick across the other: measured again without the
    # other lines, the crossing goes too (it would stay as a blob beside a digit).
    horizontal = _thin_part(faint & long_rows, _run_lengths((faint & ~vertical).T).T, along_rows)
    thickness_cols = _run_lengths(faint & ~horizontal)
    vertical = _thin_part(faint & long_cols, thickness_cols, along_cols, faint & ~horizontal)
    vertical = _without_free_strokes(vertical, along_cols, thickness_cols, horizontal, digit_height)
    if (along_cols[vertical] >= LINE_FREE * digit_height).any():
        # Lines of squared paper (or a margin) run on past the horizontal ones: the runs between two of
        # those are strokes written over the grid, not the sides of boxes.
        return horizontal | vertical
    return horizontal | vertical | _box_sides(faint & ~vertical, horizontal, digit_height)


def _box_sides(ink: np.ndarray, horizontal: np.ndarray, digit_height: float) -> np.ndarray:
    """The sides of printed boxes too short to be found as lines: (h, w) bool.

    A comb field's boxes are little taller than the digits written in them, so their sides are no longer
    than a tall digit, and a fine pen draws its strokes as thin as the print: neither length nor width
    tells a side from a '1'. Its place does: a side runs from the box's top edge down to its bottom edge.
    A vertical run of `ink` (h, w) bool that starts on a horizontal line (`horizontal` (h, w) bool) and
    ends on another, at least `SIDE_LENGTH` digit heights below, is a side, however short; its pixels go
    where the ink across is no thicker than the box's edges (a digit touching a side keeps its stroke). A
    '1' that fills its box from edge to edge goes with the sides; one that does not stays.
    """
    if not horizontal.any():
        return np.zeros_like(ink)
    height, width = ink.shape
    # A side a pixel wide steps sideways on a photo turned a little: widened by a pixel, its run goes on.
    widened = _any_within(ink, 1) | horizontal
    rows = np.arange(height)[:, None]
    top = np.maximum.accumulate(np.where(widened, -1, rows), axis=0) + 1  # (h, w): first row of each run
    bottom = np.minimum.accumulate(np.where(widened, height, rows)[::-1], axis=0)[::-1] - 1  # its last
    # Where a side meets an edge the edge is thick across (its side goes on below it), so it was not
    # taken for a line there: the edge is looked for beside the run, as far as a side is wide.
    line_width = float(np.median(_run_lengths(horizontal.T).T[horizontal]))
    edge = _any_within(_any_within(horizontal, round(2 * line_width) + 1).T, 1).T  # and a row either way
    columns = np.arange(width)[None, :]
    between = ink & ~horizontal
    runs = (
        between
        & (bottom - top + 1 >= SIDE_LENGTH * digit_height)
        & edge[top.clip(0, height - 1), columns]
        & edge[bottom.clip(0, height - 1), columns]
    )
    return runs & (_run_lengths(between) <= LINE_THICKNESS * line_width + 1)


def _without_free_strokes(
    vertical: np.ndarray,
    along_cols: np.ndarray,
    thickness: np.ndarray,
    horizontal: np.ndarray,
    digit_height: float,
) -> np.ndarray:
    """The vertical lines `vertical` (h, w) bool without the runs that stand free: (h, w) bool.

    A box's side meets the box's top and bottom, and squared paper's lines cross each other, while a '1'
    taller than its neighbours (in a box, or under a rule) is long enough to look like a side but touches
    no horizontal line (`horizontal` (h, w) bool), is not much taller than a digit (`along_cols`, the
    vertical runs' lengths; `LINE_FREE`) and, where printed lines are about, is drawn with a pen, wider
    than they are (`thickness`, the ink's width across each run; `LINE_SPREAD`). A margin line is longer;
    a piece of a faint line the threshold broke is as thin as the rest of it. On paper without horizontal
    lines, a short run free of everything is a stroke, however thin.
    """
    labels, _, areas = _components(vertical)
    if not areas.size:
        return vertical
    near_horizontal = (
        np.asarray(Image.fromarray(horizontal.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(3))) > 0
    )  # (h, w): on a horizontal line or beside it
    touching = np.bincount(labels[near_horizontal & vertical], minlength=areas.size + 1)[1:] > 0  # (n,)
    lengths = np.zeros(areas.size + 1, np.int64)
    np.maximum.at(lengths, labels[vertical], along_cols[vertical])  # (n + 1,) each run's length
    widths = np.bincount(labels[vertical], weights=thickness[vertical], minlength=areas.size + 1)[1:] / areas
    free = ~touching & (lengths[1:] < LINE_FREE * digit_height)
    if horizontal.any():  # among printed lines, a run drawn no wider than they are may be a piece of one
        free &= widths >= LINE_SPREAD * float(np.median(thickness[vertical]))
    return vertical & ~np.concatenate([[False], free])[labels]


def _thin_part(
    line: np.ndarray, thickness: np.ndarray, along: np.ndarray, strokes: np.ndarray | None = None
) -> np.ndarray:
    """The pixels of long runs `line` (h, w) bool where the ink across is no thicker than the lines' usual
    width (`thickness` (h, w), the ink's extent across the run through each pixel): (h, w) bool.

    The usual width is measured where a run (`along` (h, w), its length through each pixel) is
    `LINE_ELONGATION` times longer than the ink is thick, as a line is: a run only as long as a digit
    is tall also passes through the bold strokes of a digit taller than its neighbours, whose width
    would otherwise be taken for the lines' (and the strokes cut out with them).

    With `strokes` (h, w) bool, the ink that may hold digits, the runs count as lines only if they are
    thinner than `LINE_STROKE` of its strokes: a printed line is thinner than a pen's stroke, while a
    '1' as tall as a tight crop is as thick as its neighbours' strokes.
    """
    if not line.any():
        return line
    elongated = line & (along >= LINE_ELONGATION * thickness)
    line_width = float(np.median(thickness[elongated if elongated.any() else line]))
    if strokes is not None:
        others = strokes & ~line
        if others.any() and line_width > LINE_STROKE * float(np.median(thickness[others])):
            return np.zeros_like(line)
    return line & (thickness <= LINE_THICKNESS * line_width + 1)


def _tilt(mask: np.ndarray, thickness: np.ndarray, underlines: bool = False) -> float:
    """The tilt (rise per column) of the printed lines along the rows of `mask` (h, w) bool, whose ink is
    `thickness` (h, w) thick across (up and down the columns): one of `PAGE_TILTS`, 0 unless another is
    clearly the lines'.

    A page photographed turned by a few degrees has its lines at a slope beyond `LINE_SLOPES`, where they
    are not found. Followed at every slope they could have, they are found, but so are strokes that lie
    along one of the slopes, at twice the cost; a page's lines share one tilt, so the runs are followed
    around it. It is found by a projection profile of the ink thin across (no thicker than a printed line),
    sheared by each tilt: at the lines' tilt their rows sum to sharp peaks, while a row of digits is a
    broad hump at any tilt. A tilt stands if its profile's sum of squares is `TILT_GAIN` times the level
    one's.

    With `underlines` (along the rows), a page without printed lines is looked at again at the pen's
    width, the commonest thickness of its ink: an underline drawn with the pen is as thick as the digits'
    strokes, too thick for print.
    """
    tilt = _profile_tilt(mask & (thickness <= TILT_THIN))
    if underlines and tilt == 0.0 and mask.any():
        pen = int(np.argmax(np.bincount(thickness[mask])))
        tilt = _profile_tilt(mask & (thickness <= pen + 1))
    return tilt


def _profile_tilt(ink: np.ndarray) -> float:
    """`_tilt` of the ink `ink` (h, w) bool, all of it taken as thin."""
    ys, xs = np.nonzero(ink)
    if not ys.size:
        return 0.0
    width = ink.shape[1]
    scores = []
    for tilt in PAGE_TILTS:
        rows = ys - np.round(tilt * (xs - width / 2)).astype(np.int64)  # each pixel's row, sheared level
        scores.append(float((np.bincount(rows - rows.min()).astype(np.float64) ** 2).sum()))
    best = int(np.argmax(scores))
    return PAGE_TILTS[best] if scores[best] > TILT_GAIN * scores[0] else 0.0


def _sloped_run_lengths(mask: np.ndarray, gap: int = 0, tilt: float = 0.0) -> np.ndarray:
    """The longest run along a row, or along a slightly sloping line (`LINE_SLOPES`), through each pixel of
    `mask` (h, w): (h, w) int, 0 off the ink. The ink is dilated by a pixel across the run, so that a line
    between two slopes, drawn as steps, is one run; and gaps of up to `gap` pixels along it are bridged, so
    that a faint printed line the threshold broke into dashes is one run too. The slopes are taken around
    the page's `tilt` (`_tilt`)."""
    height, width = mask.shape
    dilated = mask.copy()
    dilated[1:] |= mask[:-1]
    dilated[:-1] |= mask[1:]
    slopes = tuple(tilt + slope for slope in LINE_SLOPES)
    pad = int(np.ceil(max(abs(slope) for slope in slopes) * width)) + 1
    padded = np.pad(dilated, ((pad, pad), (0, 0)))
    columns = np.arange(width)
    longest = np.zeros((height, width), np.int64)
    for slope in slopes:
        shift = np.round(slope * (columns - width / 2)).astype(np.int64)  # (w,): the line's rise per column
        # sheared[i, x] = padded[i + shift[x], x]: a line of this slope runs along a row of `sheared`.
        sheared = padded[
            (np.arange(padded.shape[0])[:, None] + shift[None, :]).clip(0, len(padded) - 1), columns
        ]
        runs = _run_lengths(_bridged(sheared, gap))
        longest = np.maximum(longest, runs[np.arange(pad, pad + height)[:, None] - shift[None, :], columns])
    return np.where(mask, longest, 0)


def _bridged(mask: np.ndarray, gap: int) -> np.ndarray:
    """`mask` (h, w) bool with the gaps of up to `gap` pixels between its runs along each row filled: a
    closing along the rows."""
    if gap <= 0:
        return mask
    reach = (gap + 1) // 2
    # Dilate, then erode (a pixel stays if no gap pixel of the dilated mask is within reach; beyond the
    # sides counts as ink, so that a line's ends stay).
    return ~_any_within(~_any_within(mask, reach), reach)


def _any_within(mask: np.ndarray, reach: int) -> np.ndarray:
    """Whether some pixel of `mask` (h, w) bool lies within `reach` pixels along the row: (h, w) bool, a
    dilation along the rows."""
    window = 2 * reach + 1
    sums = np.cumsum(np.pad(mask, ((0, 0), (reach + 1, reach))).astype(np.int32), axis=1)
    return sums[:, window:] - sums[:, :-window] > 0


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """The length of the run of True along its row through each pixel of `mask` (h, w): (h, w) int, 0 off."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1).ravel()  # (h * (w + 1),): +1 where a run starts, -1 just after it ends
    starts, ends = np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)  # pairs, in reading order
    marks = np.zeros(steps.size, np.int64)
    marks[starts] = ends - starts
    marks[ends] -= ends - starts
    return np.cumsum(marks.reshape(height, width + 1), axis=1)[:, :width]


def _typical_height(boxes: np.ndarray, areas: np.ndarray, shape: tuple[int, int]) -> float | None:
    """A digit's height: the median over components that may be digits (not specks, not long and thin, not
    across the photo), weighted by ink; None when there are none."""
    heights = boxes[:, 3] - boxes[:, 1]
    widths = boxes[:, 2] - boxes[:, 0]
    elongated = np.maximum(heights, widths) > 5 * np.maximum(np.minimum(heights, widths), 1)
    huge = (widths > 0.9 * shape[1]) | (heights > 0.9 * shape[0])
    tiny = (areas < MIN_DIGIT_PIXELS) | (np.maximum(heights, widths) < 3)
    candidates = ~elongated & ~huge & ~tiny
    if not candidates.any():
        return None
    candidates = np.flatnonzero(candidates)
    candidates = candidates[np.argsort(-areas[candidates])[:MAX_COMPONENTS]]  # on a photo full of texture
    return _whole_height(
        boxes[candidates], areas[candidates], _weighted_median(heights[candidates], areas[candidates])
    )


def _whole_height(boxes: np.ndarray, areas: np.ndarray, digit_height: float) -> float:
    """The typical height of the digits made of the pieces `boxes` (n, 4), `areas` (n,), whose typical height
    is `digit_height`: weighted by ink, the median height of the pieces merged without `MAX_MERGED_HEIGHT`.

    With a light pen most digits are broken into pieces, and their typical height is a piece's: too small
    for the pieces of one digit to merge, or for a digit's bar to be told from a line. Merged without the
    limit on their height, they make whole digits again; two lines of digits are still further apart than
    `STACK_GAP`. Digits in one piece each keep their height.
    """
    members, whole = _merge_pieces([[index] for index in range(len(boxes))], boxes, digit_height, np.inf)
    whole_height = _weighted_median(_heights(whole), np.array([areas[group].sum() for group in members]))
    return max(digit_height, whole_height)


def _digit_groups(
    boxes: np.ndarray, areas: np.ndarray, ink_sums: np.ndarray, shape: tuple[int, int], on_desk: np.ndarray
) -> list[np.ndarray]:
    """Decide which components make up each digit; drop specks, faint stains and paper-edge artefacts.

    Args:
        boxes: (n, 4) x0, y0, x1, y1; areas: (n,) pixels; ink_sums: (n,) the ink map summed over each;
        shape: the analysis image's (h, w); on_desk: (n,) bool, mostly on the desk beyond the paper.

    Returns:
        One array of component indices per digit.
    """
    height, width = shape
    heights = boxes[:, 3] - boxes[:, 1]
    widths = boxes[:, 2] - boxes[:, 0]
    touches_edge = (boxes[:, 0] == 0) | (boxes[:, 1] == 0) | (boxes[:, 2] == width) | (boxes[:, 3] == height)
    elongated = np.maximum(heights, widths) > 5 * np.maximum(np.minimum(heights, widths), 1)
    huge = (widths > 0.9 * width) | (heights > 0.9 * height)
    tiny = (areas < MIN_DIGIT_PIXELS) | (np.maximum(heights, widths) < 3)
    keep = np.flatnonzero(~tiny & ~(touches_edge & (elongated | huge)) & ~on_desk)
    if keep.size == 0:
        return []
    # Typical digit height and ink: medians weighted by ink, so that many specks do not drag them down,
    # over the components clear of the photo's sides (where the desk beyond the paper's edge may show).
    typical = keep[~touches_edge[keep]] if (~touches_edge[keep]).any() else keep
    digit_height = _weighted_median(heights[typical], areas[typical])
    digit_area = _weighted_median(areas[typical], areas[typical])
    keep = keep[np.argsort(-areas[keep])[:MAX_COMPONENTS]]  # the largest, on a photo full of texture
    members, group_boxes = _merge_pieces([[index] for index in keep], boxes[keep], digit_height)
    whole_height = _whole_height(
        group_boxes, np.array([areas[group].sum() for group in members]), digit_height
    )
    if whole_height > HEIGHT_GROWTH * digit_height:
        digit_height = whole_height
        members, group_boxes = _merge_pieces(members, group_boxes, digit_height)
    members, group_boxes = _attach_fragments(members, group_boxes, areas, digit_height, digit_area)
    group_areas = np.array([areas[group].sum() for group in members])
    group_ink = np.array([ink_sums[group].sum() for group in members]) / group_areas  # mean ink strength
    group_heights = group_boxes[:, 3] - group_boxes[:, 1]
    speck = (group_heights < SPECK_HEIGHT * digit_height) | (
        (group_areas < SPECK_AREA * digit_area) & (group_heights < 0.6 * digit_height)
    )
    faint = group_ink < FAINT_INK * _weighted_median(group_ink, group_areas)
    too_small = group_heights < max(MIN_DIGIT_SIDE * min(height, width), 4)
    group_widths = group_boxes[:, 2] - group_boxes[:, 0]
    at_side = _at_side(group_boxes, shape)
    frame = at_side & (
        (np.maximum(group_widths, group_heights) > FRAME_SIZE * digit_height)
        | (np.maximum(group_widths, group_heights) > FRAME_ASPECT * np.minimum(group_widths, group_heights))
    )
    # A dash or an equals sign: flat, and much shorter than a digit (the lowest digits are most of one).
    flat = (group_heights < SEPARATOR_HEIGHT * digit_height) & (group_widths > group_heights)
    drop = speck | faint | too_small | frame | flat
    return [np.array(group) for group, dropped in zip(members, drop, strict=True) if not dropped]


def _at_side(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which boxes (g, 4) touch a side of the image of `shape` (h, w): (g,) bool."""
    height, width = shape
    return (boxes[:, :2] == 0).any(axis=1) | (boxes[:, 2] == width) | (boxes[:, 3] == height)


def _heights(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, 3] - boxes[:, 1]


def _merge_pieces(
    members: list[list[int]],
    group_boxes: np.ndarray,
    digit_height: float,
    max_height: float = MAX_MERGED_HEIGHT,
) -> tuple[list[list[int]], np.ndarray]:
    """Merge groups whose boxes (g, 4) hold pieces of one digit (`_pieces_of_one`) until none are left.

    A group that grows is checked again against all others, so one pass over the groups is enough.
    """
    group_boxes = group_boxes.copy()
    current = 0
    while current < len(members):
        joins = _pieces_of_one(group_boxes[current], group_boxes, digit_height, max_height)  # (g,) bool
        joins[current] = False
        if not joins.any():
            current += 1
            continue
        members[current] = members[current] + [
            index for group, join in zip(members, joins, strict=True) if join for index in group
        ]
        group_boxes[current] = _union(group_boxes[joins | (np.arange(len(members)) == current)])
        members = [group for group, join in zip(members, joins, strict=True) if not join]
        group_boxes = group_boxes[~joins]
        current -= int(joins[:current].sum())
    return members, group_boxes


def _attach_fragments(
    members: list[list[int]],
    group_boxes: np.ndarray,
    areas: np.ndarray,
    digit_height: float,
    digit_area: float,
) -> tuple[list[list[int]], np.ndarray]:
    """A bit broken off a stroke joins the nearest group: a small group (less ink than `FRAGMENT_AREA` of a
    digit's) that is short (not a thin '1' or '7') and near it, or any small group almost touching it."""
    group_boxes = group_boxes.copy()
    group_areas = np.array([areas[group].sum() for group in members])
    alive = np.ones(len(members), bool)  # a fragment that joins a digit is emptied, not removed
    for fragment in np.argsort(group_areas):
        if group_areas[fragment] >= FRAGMENT_AREA * digit_area or alive.sum() < 2:
            continue
        gaps = np.where(alive, _gap(group_boxes[fragment], group_boxes), np.iinfo(np.int64).max)  # (g,)
        gaps[fragment] = np.iinfo(np.int64).max
        nearest = int(np.argmin(gaps))
        merged = _union(group_boxes[[fragment, nearest]])
        short = _height(group_boxes[fragment]) < FRAGMENT_HEIGHT * digit_height
        if short and _low_beside(group_boxes[fragment], group_boxes[nearest]):
            continue  # a dot, a comma or a dash after the digit, not a piece of it
        near = gaps[nearest] <= (FRAGMENT_GAP if short else TOUCH_GAP) * digit_height
        if near and _height(merged) <= MAX_MERGED_HEIGHT * digit_height:
            members[nearest] = members[nearest] + members[fragment]
            group_boxes[nearest] = merged
            group_areas[nearest] += group_areas[fragment]
            alive[fragment] = False
    return [group for group, live in zip(members, alive, strict=True) if live], group_boxes[alive]


def _low_beside(fragment: np.ndarray, box: np.ndarray) -> bool:
    """Whether `fragment` (4,) lies wholly to the left or the right of `box` (4,), in its lower half (a dot
    or a comma) or flat (a dash): a broken-off piece of a digit shares some of its width, or sits higher
    and is not much wider than tall."""
    beside = fragment[0] >= box[2] or fragment[2] <= box[0]
    low = fragment[1] >= (box[1] + box[3]) / 2
    flat = fragment[2] - fragment[0] > DASH_ASPECT * (fragment[3] - fragment[1])
    return bool(beside and (low or flat))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _pieces_of_one(
    box: np.ndarray, others: np.ndarray, digit_height: float, max_height: float = MAX_MERGED_HEIGHT
) -> np.ndarray:
    """Which of the boxes `others` (g, 4) hold pieces of the same digit as `box` (4,), all x0, y0, x1, y1.

    Stacked: one above the other, close, sharing some width (the bar and the body of a '5'). Or
    overlapping: sharing most of the narrower one's width (the arm and the upright of a '4'). Either way
    the merged box must not be much taller than a digit (two lines of digits stay apart).

    Returns:
        (g,) bool.
    """
    overlap_x = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    overlap_y = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])  # negative: a gap
    narrower = np.minimum(box[2] - box[0], others[:, 2] - others[:, 0])
    shorter = np.minimum(box[3] - box[1], others[:, 3] - others[:, 1])
    merged_height = np.maximum(box[3], others[:, 3]) - np.minimum(box[1], others[:, 1])
    close = (overlap_y >= -STACK_GAP * digit_height) & (merged_height <= max_height * digit_height)
    stacked = (overlap_y <= 0.5 * shorter) & (overlap_x >= STACK_OVERLAP * narrower)
    return close & (stacked | (overlap_x >= NEST_OVERLAP * narrower))


def _height(box: np.ndarray) -> int:
    return int(box[3] - box[1])


def _gap(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The distance from `box` (4,) to each of `others` (g, 4): the larger of the x and y gaps, (g,)."""
    gap_x = np.maximum(box[0], others[:, 0]) - np.minimum(box[2], others[:, 2])
    gap_y = np.maximum(box[1], others[:, 1]) - np.minimum(box[3], others[:, 3])
    return np.maximum(gap_x, gap_y)


def _reading_order(boxes: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Group boxes (x0, y0, x1, y1) into lines, top to bottom, each left to right.

    Boxes are visited left to right; each joins the line whose last box's vertical centre is nearest its
    own, within half the taller box's height, or starts a new line. A slightly rotated line stays one line.
    Punctuation is less tall than `MARK_HEIGHT` of the median box, and a comma hangs below the digits'
    feet, a dash above them: a line's last box is its last as tall as a digit, where it has one, and a line
    with such a box is taken before one of punctuation alone. On a turned photo a digit after a gap has
    risen or fallen farther than that from the last: once a line has `LINE_COURSE` digits, a box on their
    course (the line fitted to their centres) is near it too. A line of punctuation that belongs to another
    (`_without_marks`) is left out.
    """
    heights = [box[3] - box[1] for box in boxes]
    digit_height = float(np.median(heights)) if boxes else 0.0
    mark_height = MARK_HEIGHT * digit_height
    lines: list[list[int]] = []
    digits: list[_LineDigits] = []  # per line: its boxes as tall as a digit
    for index in sorted(range(len(boxes)), key=lambda i: boxes[i][0]):
        x0, y0, x1, y1 = boxes[index]
        centre = (y0 + y1) / 2
        best, best_rank = None, None
        for number, (line, tall) in enumerate(zip(lines, digits, strict=True)):
            last = tall.last or boxes[line[-1]]
            distance = abs((last[1] + last[3]) / 2 - centre)
            if tall.count >= LINE_COURSE:
                distance = min(distance, abs(tall.course_at((x0 + x1) / 2) - centre))
            rank = (tall.count == 0, distance)  # a line of digits first, then the nearest
            if distance <= 0.5 * max(y1 - y0, last[3] - last[1]) and (best_rank is None or rank < best_rank):
                best, best_rank = number, rank
        if best is None:
            best = len(lines)
            lines.append([])
            digits.append(_LineDigits())
        lines[best].append(index)
        if heights[index] >= mark_height:
            digits[best].add(boxes[index])
    lines = _without_marks(lines, boxes, [tall.count == 0 for tall in digits], digit_height)
    return sorted(lines, key=lambda line: np.mean([(boxes[i][1] + boxes[i][3]) / 2 for i in line]))


class _LineDigits:
    """The boxes of a line as tall as a digit, as `_reading_order` needs them: the last one, and their course,
    the straight line through their centres fitted by least squares (kept as running sums, so that a box
    added and a centre asked for cost the same however many there are)."""

    def __init__(self) -> None:
        self.last: tuple[int, int, int, int] | None = None
        self.count = 0
        self.sum_x = self.sum_y = self.sum_xx = self.sum_xy = 0.0

    def add(self, box: tuple[int, int, int, int]) -> None:
        x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        self.last = box
        self.count += 1
        self.sum_x += x
        self.sum_y += y
        self.sum_xx += x * x
        self.sum_xy += x * y

    def course_at(self, x: float) -> float:
        """The course's y at `x`, its slope no steeper than `MAX_LINE_SLOPE` (level through the centres' mean
        when they spread over less than a pixel across)."""
        spread = self.count * self.sum_xx - self.sum_x**2  # count² times the variance of the centres' x
        slope = (
            (self.count * self.sum_xy - self.sum_x * self.sum_y) / spread if spread > self.count**2 else 0.0
        )
        slope = min(max(slope, -MAX_LINE_SLOPE), MAX_LINE_SLOPE)
        return (self.sum_y + slope * (self.count * x - self.sum_x)) / self.count


def _without_marks(
    lines: list[list[int]], boxes: list[tuple[int, int, int, int]], marks: list[bool], digit_height: float
) -> list[list[int]]:
    """`lines` (lists of indices into `boxes`) without the lines of punctuation that belong to another.

    A comma or a full stop written low, below the digits' feet, is too far from their centres to join
    their line, and would stand as a line of its own, read as a digit under the number. A line whose crops
    are all less tall than `MARK_HEIGHT` of the photo's median crop (`marks`, per line; `digit_height`, that
    median), within `MARK_REACH` of it above or below a line of taller ones and within that line's width,
    is such punctuation, left out like the dots and dashes that are too small or too flat to be digits.
    """
    spans = [_union(np.array([boxes[i] for i in line])) for line in lines]

    def belongs_to_a_line(x0: int, y0: int, x1: int, y1: int) -> bool:
        return any(
            max(ly0 - y1, y0 - ly1) <= MARK_REACH * digit_height  # the gap between them (negative: overlap)
            and lx0 - digit_height <= (x0 + x1) / 2 <= lx1 + digit_height
            for (lx0, ly0, lx1, ly1), mark in zip(spans, marks, strict=True)
            if not mark
        )

    return [
        line
        for line, span, mark in zip(lines, spans, marks, strict=True)
        if not (mark and belongs_to_a_line(*span))
    ]


def _union(boxes: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) around boxes (n, 4) or one box (4,)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return (
        int(boxes[:, 0].min()),
        int(boxes[:, 1].min()),
        int(boxes[:, 2].max()),
        int(boxes[:, 3].max()),
    )


def _unpad(box: tuple[int, int, int, int], margin: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in the photo padded by `margin` on each side -> in the photo of `size` (w, h)."""
    width, height = size
    return (
        min(max(box[0] - margin, 0), width),
        min(max(box[1] - margin, 0), height),
        min(max(box[2] - margin, 0), width),
        min(max(box[3] - margin, 0), height),
    )


def _to_original(
    box: tuple[int, int, int, int], scale: float, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) at analysis scale -> (x, y, width, height) in the original photo, inside it."""
    width, height = size
    x0 = max(0, int(np.floor(box[0] / scale)))
    y0 = max(0, int(np.floor(box[1] / scale)))
    x1 = min(width, int(np.ceil(box[2] / scale)))
    y1 = min(height, int(np.ceil(box[3] / scale)))
    return (x0, y0, x1 - x0, y1 - y0)


def _crop(
    flat: np.ndarray,
    labels: np.ndarray,
    weak: np.ndarray,
    group: np.ndarray,
    box: tuple[int, int, int, int],
) -> np.ndarray:
    """The digit's pixels, dark ink on white, everything else (neighbours, specks) blanked out to paper.

    Its ink is its components' and the faint ink joined to them within the box (`weak` (h, w) bool, the
    ink above the paper's noise): a stroke pressed lightly is fainter than the threshold that separates
    digits, and without it a '0' pressed unevenly is an arc.

    The ink sits in the middle of a square of paper `CROP_PAPER` times its longer side: the normaliser
    takes the median pixel for the paper, so ink must cover less than half of the crop (a thick '1' fills
    its own box).

    Returns:
        (s, s) uint8.
    """
    x0, y0, x1, y1 = box
    in_box = labels[y0:y1, x0:x1]
    strong = np.isin(in_box, group + 1)  # this digit's thresholded ink
    joined = cc3d.connected_components(
        ((strong | weak[y0:y1, x0:x1]) & ((in_box == 0) | strong)).astype(np.uint8), connectivity=8
    )
    own = np.isin(joined, np.unique(joined[strong])).astype(np.uint8) * 255
    own = np.pad(own, 1)
    own = np.asarray(Image.fromarray(own).filter(ImageFilter.MaxFilter(3)))  # with its soft edges
    y0, x0, y1, x1 = y0 - 1, x0 - 1, y1 + 1, x1 + 1  # the box of `own`, one pixel larger all round
    inside = np.pad(flat, 1, constant_values=1.0)[y0 + 1 : y1 + 1, x0 + 1 : x1 + 1]
    ink = np.where(own > 0, inside, 1.0)  # (h, w)
    side = round(CROP_PAPER * max(ink.shape))
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square = np.ones((side, side), np.float32)
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return np.round(square * 255).astype(np.uint8)
