"""Read several handwritten digits from a photo: find each digit's ink, then classify them all at once.

`find_digits` works on the photo alone (numpy, Pillow and cc3d; no OpenCV or scipy, so that the serving image
stays small):
1. grayscale, downscaled to at most `MAX_ANALYSIS_SIDE` pixels on the long side (boxes are mapped back);
2. the paper's brightness is estimated on a coarse grid (a bright percentile per cell, then a morphological
   closing wider than a pen stroke) and divided out: shadows and uneven light disappear, the paper is ~1;
3. a pixel is ink when it is darker than the paper by at least half of the nearby ink's strength, and by
   at least `MIN_INK` (so that blank paper, its texture and JPEG noise give no ink at all);
4. connected components (cc3d); the pieces of a broken stroke are merged (their boxes overlap horizontally
   and are stacked closely, as the bar and body of a '5'); specks and paper-edge artefacts are dropped;
5. the digits are grouped into lines (each digit joins the line whose last digit sits at its height, which
   tolerates a slightly rotated photo) and ordered top to bottom, left to right.

`read_digits` normalises every crop with `digitops.preprocess.normalize_digit` and classifies them in one
batched call.
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
BACKGROUND_WINDOW = 7  # cells (odd): the closing removes dark features narrower than this (pen strokes)
MIN_INK = 0.12  # darker than the paper by at least this fraction to be ink
NOISE_SIGMAS = 5.0  # ... and by this many standard deviations of the paper's noise
INK_FRACTION = 0.45  # ... and by at least this fraction of the strongest ink nearby
MIN_DIGIT_SIDE = 0.02  # a digit's box is at least this fraction of the photo's short side tall
MIN_DIGIT_PIXELS = 12  # px at analysis scale
SPECK_HEIGHT = 0.4  # a group less tall than this fraction of the typical digit is a speck, and so is
SPECK_AREA = 0.12  # ... one with less ink than this fraction of a digit's that is not tall
STACK_GAP = 0.3  # pieces this close vertically (fraction of the typical digit height) can be one digit:
STACK_OVERLAP = 0.2  # ... one above the other, sharing this fraction of the narrower one's width,
NEST_OVERLAP = 0.5  # ... or side by side, sharing this fraction of it;
MAX_MERGED_HEIGHT = 1.6  # ... and the merged box is at most this many digit heights tall
FRAGMENT_AREA = 0.35  # a group with less ink than this fraction of a digit's,
FRAGMENT_HEIGHT = 0.6  # ... and less tall than this fraction of a digit, is a fragment, and
FRAGMENT_GAP = 0.2  # ... joins the nearest digit when within this fraction of the digit height of it;
TOUCH_GAP = 0.05  # a small group that is not short joins a digit only this close
CROP_PAPER = 1.5  # a crop is a square of paper this many times the digit's longer side


@dataclass(frozen=True)
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
    """What a photo says: `text` has one line of digits per written line, separated by '\\n'."""

    text: str
    digits: list[ReadDigit]

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
    relative = gray / _paper_brightness(gray)  # (h, w): paper ~1, ink darker
    ink = _mean3(1.0 - relative)  # (h, w), paper ~0; averaged over 3x3 to quieten grain and sensor noise
    flat = np.clip(relative, 0.0, 1.0)
    floor = np.maximum(MIN_INK, NOISE_SIGMAS * _noise_sigma(ink))  # (h, w): more where the light is dim
    mask = (ink > floor) & (ink > INK_FRACTION * _local_max(ink))  # (h, w) bool
    labels, boxes, areas = _components(mask)
    groups = _digit_groups(boxes, areas, mask.shape)  # lists of component ids, one list per digit
    crops = []
    for line_number, line in enumerate(_reading_order([_union(boxes[g]) for g in groups])):
        for index in line:
            x0, y0, x1, y1 = _union(boxes[groups[index]])
            crops.append(
                DigitCrop(
                    box=_to_original((x0, y0, x1, y1), scale, (original_width, original_height)),
                    pixels=_crop(flat, labels, groups[index], (x0, y0, x1, y1)),
                    line=line_number,
                )
            )
    return crops


def read_digits(image: Image.Image | np.ndarray, classify: Callable[[np.ndarray], np.ndarray]) -> ReadResult:
    """Read the digits of a photo.

    Args:
        image: anything `find_digits` accepts.
        classify: (B, 28, 28) uint8 MNIST-style digits -> (B, 10) float32 probabilities, e.g. a
            `digitops.serve.classifier.Classifier`. Called once with every digit (not at all when none).

    Returns:
        The digits in reading order with their boxes and confidences, and the text they spell.
    """
    crops = []
    digits = []  # (N, 28, 28) uint8
    for crop in find_digits(image):
        try:
            digits.append(normalize_digit(crop.pixels))
        except EmptyImageError:  # cannot happen for a crop of ink; a guard, not a path
            continue
        crops.append(crop)
    if not crops:
        return ReadResult(text="", digits=[])
    probabilities = np.asarray(classify(np.stack(digits)))  # (N, 10)
    predicted = probabilities.argmax(axis=1)
    read = [
        ReadDigit(digit=int(label), confidence=float(row[label]), box=crop.box)
        for crop, row, label in zip(crops, probabilities, predicted, strict=True)
    ]
    lines: dict[int, str] = {}
    for crop, digit in zip(crops, read, strict=True):
        lines[crop.line] = lines.get(crop.line, "") + str(digit.digit)
    return ReadResult(text="\n".join(lines[number] for number in sorted(lines)), digits=read)


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


def _paper_brightness(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness under the local light, without the ink: (h, w) float32 > 0.

    The median of each cell of a coarse grid ignores thin strokes; a closing (max then min filter)
    over `BACKGROUND_WINDOW` cells removes whole strokes but keeps the edges of shadows where they are.
    """
    cells = _grid_reduce(gray, lambda blocks: np.median(blocks, axis=-1))  # (gh, gw)
    # Continue the light's slope past the edges (odd reflection): with the edge value repeated, as the rank
    # filters do, a photo darkening towards its edge would get the brighter inner paper there.
    pad = BACKGROUND_WINDOW // 2
    padded = np.clip(np.pad(cells, pad, mode="reflect", reflect_type="odd"), cells.min(), cells.max())
    small = Image.fromarray(padded.astype(np.float32), mode="F")
    small = small.filter(ImageFilter.MaxFilter(BACKGROUND_WINDOW)).filter(
        ImageFilter.MinFilter(BACKGROUND_WINDOW)
    )
    small = small.crop((pad, pad, pad + cells.shape[1], pad + cells.shape[0]))
    brightness = np.asarray(small.resize(gray.shape[::-1], Image.Resampling.BILINEAR))
    return np.maximum(brightness, 1e-3)


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


def _digit_groups(boxes: np.ndarray, areas: np.ndarray, shape: tuple[int, int]) -> list[np.ndarray]:
    """Decide which components make up each digit; drop specks and paper-edge artefacts.

    Args:
        boxes: (n, 4) x0, y0, x1, y1; areas: (n,); shape: the analysis image's (h, w).

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
    keep = np.flatnonzero(~tiny & ~(touches_edge & (elongated | huge)))
    if keep.size == 0:
        return []
    # Typical digit height and ink: medians weighted by ink, so that many specks do not drag them down.
    digit_height = _weighted_median(heights[keep], areas[keep])
    digit_area = _weighted_median(areas[keep], areas[keep])
    groups = [np.array([index]) for index in keep]
    while pair := next(  # pieces of one digit: merge pairs until none is left (a few dozen components)
        (
            (a, b)
            for a, b in itertools.combinations(range(len(groups)), 2)
            if _pieces_of_one(_union(boxes[groups[a]]), _union(boxes[groups[b]]), digit_height)
        ),
        None,
    ):
        groups[pair[0]] = np.concatenate([groups[pair[0]], groups.pop(pair[1])])
    # A bit broken off a stroke joins the nearest digit: a small group that is short (not a thin '1' or
    # '7') and near it, or any small group almost touching it.
    fragments = [group for group in groups if areas[group].sum() < FRAGMENT_AREA * digit_area]
    for fragment in sorted(fragments, key=lambda group: areas[group].sum()):
        others = [group for group in groups if group is not fragment]
        if not others:
            break
        gaps = [_gap(_union(boxes[fragment]), _union(boxes[other])) for other in others]
        nearest = others[int(np.argmin(gaps))]
        short = _height(_union(boxes[fragment])) < FRAGMENT_HEIGHT * digit_height
        near = min(gaps) <= (FRAGMENT_GAP if short else TOUCH_GAP) * digit_height
        if near and _height(_union(boxes[np.concatenate([fragment, nearest])])) <= (
            MAX_MERGED_HEIGHT * digit_height
        ):
            groups = [group for group in others if group is not nearest] + [
                np.concatenate([nearest, fragment])
            ]
    group_areas = np.array([areas[group].sum() for group in groups])
    group_boxes = np.array([_union(boxes[group]) for group in groups])
    group_heights = group_boxes[:, 3] - group_boxes[:, 1]
    speck = (group_heights < SPECK_HEIGHT * digit_height) | (
        (group_areas < SPECK_AREA * digit_area) & (group_heights < 0.6 * digit_height)
    )
    too_small = group_heights < max(MIN_DIGIT_SIDE * min(height, width), 4)
    return [group for group, drop in zip(groups, speck | too_small, strict=True) if not drop]


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _pieces_of_one(first: tuple[int, ...], second: tuple[int, ...], digit_height: float) -> bool:
    """Two boxes (x0, y0, x1, y1) hold pieces of one digit.

    Stacked: one above the other, close, sharing some width (the bar and the body of a '5'). Or
    overlapping: sharing most of the narrower one's width (the arm and the upright of a '4'). Either way
    the merged box must not be much taller than a digit (two lines of digits stay apart).
    """
    overlap_x = min(first[2], second[2]) - max(first[0], second[0])
    overlap_y = min(first[3], second[3]) - max(first[1], second[1])  # negative: the gap between them
    narrower = min(first[2] - first[0], second[2] - second[0])
    shorter = min(first[3] - first[1], second[3] - second[1])
    merged_height = max(first[3], second[3]) - min(first[1], second[1])
    if overlap_y < -STACK_GAP * digit_height or merged_height > MAX_MERGED_HEIGHT * digit_height:
        return False
    stacked = overlap_y <= 0.5 * shorter and overlap_x >= STACK_OVERLAP * narrower
    return stacked or overlap_x >= NEST_OVERLAP * narrower


def _height(box: tuple[int, ...]) -> int:
    return box[3] - box[1]


def _gap(first: tuple[int, ...], second: tuple[int, ...]) -> int:
    """The distance between two boxes (x0, y0, x1, y1): the larger of the horizontal and vertical gaps."""
    gap_x = max(first[0], second[0]) - min(first[2], second[2])
    gap_y = max(first[1], second[1]) - min(first[3], second[3])
    return max(gap_x, gap_y)


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
