"""Read several handwritten digits from a photo: find each digit's ink, then classify them all at once.

`find_digits` works on the photo alone (numpy, Pillow and cc3d; no OpenCV or scipy, so that the serving image
stays small):
1. grayscale, downscaled to at most `MAX_ANALYSIS_SIDE` pixels on the long side (boxes are mapped back);
2. the paper's brightness is estimated on a coarse grid (the median per cell, then rank filters wider than
   a pen stroke) and divided out: shadows and uneven light disappear, the paper is ~1;
3. a pixel is ink when it is darker than the paper by at least `INK_FRACTION` of the nearby ink's strength,
   by `MIN_INK`, and by `NOISE_SIGMAS` times the paper's local noise (so that blank paper, its texture and
   JPEG noise give no ink);
4. long thin lines (underlines, ruled lines, the sides of printed boxes) are taken out of the ink, so
   that digits touching them come apart (`_without_lines`);
5. connected components (cc3d); the pieces of a broken stroke are merged (stacked like the bar and body of
   a '5', overlapping like the arm and upright of a '4', or a small bit close to a digit, but not a dot,
   comma or dash beside it); specks, faint stains, paper-edge artefacts and flat marks (dashes, equals
   signs) are dropped;
6. the digits are grouped into lines (each digit joins the line whose last digit sits at its height, which
   tolerates a slightly rotated photo) and ordered top to bottom, left to right;
7. a photo cropped as tight as its writing (`_tight_margin`) is surrounded by paper and analysed again,
   so that the digits touching its sides are not taken for the paper's edge or the desk.

`read_digits` normalises every crop with `digitops.preprocess.normalize_digit` and classifies them in one
batched call; a crop wider than one digit of its line is classified cut into parts too, in the same call,
and read as touching digits when the classifier is sure of each part and surer than of the crop whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cc3d
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from digitops.preprocess import EmptyImageError, normalize_digit

MAX_ANALYSIS_SIDE = 1600  # px: larger photos are analysed downscaled
BACKGROUND_GRID = 64  # cells along the long side for the paper's brightness
BACKGROUND_WINDOW = 15  # cells (odd): wider than a pen stroke, about a quarter of the photo
MIN_INK = 0.12  # darker than the paper by at least this fraction to be ink
NOISE_SIGMAS = 5.0  # ink is also darker than the paper by this many standard deviations of its noise
INK_FRACTION = 0.45  # ink is also darker than the paper by this fraction of the strongest ink nearby
FRAME_SIZE = 2.0  # a group at the photo's side, longer than this many digit heights, is the paper's edge
FRAME_ASPECT = 3.0  # a group at the photo's side, this many times longer than wide, is the paper's edge
EDGE_DARK = 0.45  # a cell darker than this fraction of the paper's brightness is dark (desk or ink)
EDGE_CONTACT = 0.3  # a dark region along more than this fraction of a side is the desk, not paper
MIN_DIGIT_SIDE = 0.04  # a digit's box is at least this fraction of the photo's short side tall
MIN_DIGIT_PIXELS = 12  # px at analysis scale
MAX_COMPONENTS = 500  # the largest components considered (1 to 20 digits, a few pieces each)
SPECK_HEIGHT = 0.4  # a group less tall than this fraction of the typical digit is a speck
SPECK_AREA = 0.12  # a group that is not tall, with less ink than this fraction of a digit's, is a speck
FAINT_INK = 0.4  # a group whose ink is fainter than this fraction of the digits' is a stain or a shadow
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
LINE_SLOPES = (
    -0.03,
    0.0,
    0.03,
)  # the slopes along which runs are followed (a line drawn or photographed askew)
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
    gray = _grayscale(image)  # (H, W) float32 in [0, 1]
    original_height, original_width = gray.shape
    scale = min(1.0, MAX_ANALYSIS_SIDE / max(gray.shape))
    if scale < 1.0:
        size = (max(1, round(original_width * scale)), max(1, round(original_height * scale)))
        gray = np.asarray(Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BOX))
    found, margin = _analyse(gray)
    if margin:
        # A crop as tight as the writing: the digits at its sides would look like the paper's edge or the
        # desk. Surrounded by paper (its own brightness, continued past the sides), they are digits again.
        padded = np.pad(_upsample(_paper_cells(gray), gray.shape), margin, mode="edge")  # (h + 2m, w + 2m)
        padded[margin:-margin, margin:-margin] = gray
        height, width = gray.shape
        found = [
            (_unpad(box, margin, (width, height)), pixels, line) for box, pixels, line in _analyse(padded)[0]
        ]
    return [
        DigitCrop(box=_to_original(box, scale, (original_width, original_height)), pixels=pixels, line=line)
        for box, pixels, line in found
    ]


def _analyse(gray: np.ndarray) -> tuple[list[tuple[tuple[int, int, int, int], np.ndarray, int]], int]:
    """Steps 2-6 of the module on the analysis image (h, w) float32.

    Returns:
        (x0, y0, x1, y1), the crop's pixels and the line number of each digit, in reading order; and the
        margin of paper to add around a tight crop (`_tight_margin`), 0 when the photo is not one.
    """
    brightness_cells = _paper_cells(gray)  # (gh, gw)
    relative = gray / _upsample(brightness_cells, gray.shape)  # (h, w): paper ~1, ink darker
    ink = _mean3(1.0 - relative)  # (h, w), paper ~0; averaged over 3x3 to quieten grain and sensor noise
    flat = np.clip(relative, 0.0, 1.0)
    floor = np.maximum(MIN_INK, NOISE_SIGMAS * _noise_sigma(ink))  # (h, w): more where the light is dim
    mask = (ink > floor) & (ink > INK_FRACTION * _local_max(ink))  # (h, w) bool
    mask = _without_lines(mask)
    labels, boxes, areas = _components(mask)
    ink_sums = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=len(areas) + 1)[1:]  # (n,)
    desk = _upsample(_desk_cells(gray, brightness_cells), gray.shape) > 0.5  # (h, w) bool
    on_desk = np.bincount(labels[desk], minlength=len(areas) + 1)[1:] > 0.5 * areas  # (n,)
    groups = _digit_groups(boxes, areas, ink_sums, mask.shape, on_desk)  # component indices per digit
    found = []
    for line_number, line in enumerate(_reading_order([_union(boxes[g]) for g in groups])):
        for index in line:
            box = _union(boxes[groups[index]])
            found.append((box, _crop(flat, labels, groups[index], box), line_number))
    kept = np.array([box for box, _, _ in found], np.int64).reshape(-1, 4)  # (d, 4)
    return found, _tight_margin(boxes, areas, kept, mask.shape)


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


def read_digits(image: Image.Image | np.ndarray, classify: Callable[[np.ndarray], np.ndarray]) -> ReadResult:
    """Read the digits of a photo.

    A crop wider than one digit of its line (`_is_wide`) may be touching digits that make one component:
    it is also cut at the columns of least ink into 2 to `MAX_PARTS` parts (`_cut_sets`), and read as the
    cut set whose parts the classifier is surest of (by its least confident part), when it is sure of every
    part (`SPLIT_SURE`) and surer than of the crop read whole. A wide '0' or '4' read whole is surer than
    of its slices; a slice of a stroke can look like a '1', but rarely one of which it is that sure.
    A part cut off that is a slash touching a digit (`_is_slash`) is left out of the text.

    Args:
        image: anything `find_digits` accepts.
        classify: (B, 28, 28) uint8 MNIST-style digits -> (B, 10) float32 probabilities, e.g. a
            `digitops.infer.classifier.Classifier`. Called once, with every crop and every candidate part
            (not at all when there are none).

    Returns:
        The digits in reading order with their boxes and confidences, and the text they spell.
    """
    crops = []
    digits = []  # (N, 28, 28) uint8: the crops, then the candidate parts of the wide ones
    for crop in find_digits(image):
        try:
            digits.append(normalize_digit(crop.pixels))
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


def _without_lines(mask: np.ndarray) -> np.ndarray:
    """The ink without long thin lines (underlines, ruled lines, the edges of printed boxes): (h, w) bool.

    A line is a run of ink along a row (column), allowing a slight slope, much longer than a digit is wide
    (tall); its pixels are removed where the ink across the run is about as thin as the line itself, so
    that a stroke crossing or touching the line keeps its ink there while the rest of the line goes. The
    digit height is not known while lines still join the digits: a first pass takes only runs across a
    good part of the photo (a rule, an underline, a comb field), and the digits found then give the height
    for the second.
    """
    if not mask.any():
        return mask
    along_rows = _sloped_run_lengths(mask)  # (h, w)
    along_cols = _sloped_run_lengths(mask.T).T
    thickness_rows = _run_lengths(mask.T).T  # (h, w): the vertical extent of the ink through each pixel
    thickness_cols = _run_lengths(mask)  # (h, w): its horizontal extent
    height, width = mask.shape
    # Long for the photo and long for its own thickness: a digit's bar may cross a good part of a tight
    # crop, but it is not many strokes long.
    long_rows = (along_rows >= LINE_SPAN * width) & (along_rows >= LINE_ELONGATION * thickness_rows)
    long_cols = (along_cols >= LINE_SPAN * height) & (along_cols >= LINE_ELONGATION * thickness_cols)
    horizontal = _thin_part(mask & long_rows, thickness_rows)
    vertical = _thin_part(mask & long_cols, thickness_cols, mask & ~horizontal)
    _, boxes, areas = _components(mask & ~horizontal & ~vertical)
    digit_height = _typical_height(boxes, areas, mask.shape)
    if digit_height is None:
        return mask & ~horizontal & ~vertical
    long_rows = along_rows >= LINE_LENGTH * digit_height
    long_cols = along_cols >= LINE_HEIGHT * digit_height
    horizontal = _thin_part(mask & long_rows, thickness_rows)
    vertical = _thin_part(mask & long_cols, thickness_cols, mask & ~horizontal)
    # Where a rule crosses a box's side, each line is thick across the other: measured again without the
    # other lines, the crossing goes too (it would stay as a blob beside a digit).
    horizontal = _thin_part(mask & long_rows, _run_lengths((mask & ~vertical).T).T)
    vertical = _thin_part(mask & long_cols, _run_lengths(mask & ~horizontal), mask & ~horizontal)
    return mask & ~horizontal & ~vertical


def _thin_part(line: np.ndarray, thickness: np.ndarray, strokes: np.ndarray | None = None) -> np.ndarray:
    """The pixels of long runs `line` (h, w) bool where the ink across is no thicker than the lines' usual
    width (`thickness` (h, w), the ink's extent across the run through each pixel): (h, w) bool.

    With `strokes` (h, w) bool, the ink that may hold digits, the runs count as lines only if they are
    thinner than `LINE_STROKE` of its strokes: a printed line is thinner than a pen's stroke, while a
    '1' as tall as a tight crop is as thick as its neighbours' strokes.
    """
    if not line.any():
        return line
    line_width = float(np.median(thickness[line]))
    if strokes is not None:
        others = strokes & ~line
        if others.any() and line_width > LINE_STROKE * float(np.median(thickness[others])):
            return np.zeros_like(line)
    return line & (thickness <= LINE_THICKNESS * line_width + 1)


def _sloped_run_lengths(mask: np.ndarray) -> np.ndarray:
    """The longest run along a row, or along a slightly sloping line (`LINE_SLOPES`), through each pixel of
    `mask` (h, w): (h, w) int, 0 off the ink. The ink is dilated by a pixel across the run, so that a line
    between two slopes, drawn as steps, is one run."""
    height, width = mask.shape
    dilated = mask.copy()
    dilated[1:] |= mask[:-1]
    dilated[:-1] |= mask[1:]
    pad = int(np.ceil(max(abs(slope) for slope in LINE_SLOPES) * width)) + 1
    padded = np.pad(dilated, ((pad, pad), (0, 0)))
    columns = np.arange(width)
    longest = np.zeros((height, width), np.int64)
    for slope in LINE_SLOPES:
        shift = np.round(slope * (columns - width / 2)).astype(np.int64)  # (w,): the line's rise per column
        # sheared[i, x] = padded[i + shift[x], x]: a line of this slope runs along a row of `sheared`.
        sheared = padded[
            (np.arange(padded.shape[0])[:, None] + shift[None, :]).clip(0, len(padded) - 1), columns
        ]
        runs = _run_lengths(sheared)
        longest = np.maximum(longest, runs[np.arange(pad, pad + height)[:, None] - shift[None, :], columns])
    return np.where(mask, longest, 0)


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
    """
    lines: list[list[int]] = []
    for index in sorted(range(len(boxes)), key=lambda i: boxes[i][0]):
        _, y0, _, y1 = boxes[index]
        centre = (y0 + y1) / 2
        best, best_distance = None, None
        for line in lines:
            last = boxes[line[-1]]
            distance = abs((last[1] + last[3]) / 2 - centre)
            if distance <= 0.5 * max(y1 - y0, last[3] - last[1]) and (
                best_distance is None or distance < best_distance
            ):
                best, best_distance = line, distance
        if best is None:
            lines.append([index])
        else:
            best.append(index)
    return sorted(lines, key=lambda line: np.mean([(boxes[i][1] + boxes[i][3]) / 2 for i in line]))


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
    flat: np.ndarray, labels: np.ndarray, group: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """The digit's pixels, dark ink on white, everything else (neighbours, specks) blanked out to paper.

    The ink sits in the middle of a square of paper `CROP_PAPER` times its longer side: the normaliser
    takes the median pixel for the paper, so ink must cover less than half of the crop (a thick '1' fills
    its own box).

    Returns:
        (s, s) uint8.
    """
    x0, y0, x1, y1 = box
    own = np.isin(labels[y0:y1, x0:x1], group + 1).astype(np.uint8) * 255  # this digit's thresholded ink
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
