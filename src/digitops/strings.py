"""Lines of handwritten digits composed from single digits, with the truth: the string reader's training data.

A form field, a meter reading or an amount on a receipt is a line of digits, often with separators ('.',
',', '-', '=', '/'), often on printed lines, boxes or patterns, cropped tight, written with touching
digits and uneven pressure. No dataset of such lines with their truth is at hand, but the training split
holds tens of thousands of single digits from several sources: `compose_line` writes them into lines, as
one writer would (all digits of a line from one source), and draws around them what real fields hold.

Everything is composed as ink darkness relative to the paper (0: paper, 1: the pen's full darkness), the
quantity `digitops.infer.segment` measures in a photo once the paper's brightness is divided out; both
sides then pass it through `line_pixels`, so that the reader is trained on exactly what it will see.
Everything depends only on the `rng` given.

The composer is deliberately broader than `bench/photos.py`, which generates the benchmark's photos from
the *test* digits: its own stroke shapes for separators, wider ranges for every condition, and conditions
the benchmark does not have (neighbouring lines showing at the band's edges, blur, coarse resolution), so
that the reader learns the conditions, not one generator's way of drawing them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

READER_HEIGHT = 32  # px: the reader's input height; a line's band is scaled to it
MAX_READER_WIDTH = 256  # px at READER_HEIGHT: the training width (the reader itself takes any width)
SEPARATORS = ".,-=/"
ALPHABET = "0123456789" + SEPARATORS  # class k + 1 is ALPHABET[k]; class 0 is CTC's blank
BLANK = 0
MAX_LABEL = 14  # characters per composed line at most
COMB_SHARE = 0.15  # lines written in a comb field: one printed box per character, as on a form
BILEVEL_SHARE = 0.12  # lines scanned in black and white (a fax, a form scanner's default), thresholded
_DIGIT_HEIGHT = 20  # px: the height of a digit's ink box in a normalised 28x28 image (MNIST's 20x20 box)


@dataclass(frozen=True)
class DigitPool:
    """Single digits to compose lines from: per source, per digit, the images' indices.

    Attributes:
        images: (N, 28, 28) uint8, white ink on black (the normaliser's output).
        by_source: source name -> 10 index arrays, one per digit (empty where the source lacks it).
        weights: each source's chance of writing a line, in `by_source`'s order.
    """

    images: np.ndarray
    by_source: dict[str, tuple[np.ndarray, ...]]
    weights: np.ndarray


def digit_pool(images: np.ndarray, labels: np.ndarray, sources: np.ndarray) -> DigitPool:
    """Group digits by source and label. Every source writes lines equally often: a source of a few
    writers (USPS, optdigits) teaches as many lines as MNIST's hundreds, and no source's hand dominates."""
    names = sorted(set(sources.tolist()))
    by_source = {
        name: tuple(np.flatnonzero((sources == name) & (labels == digit)) for digit in range(10))
        for name in names
    }
    complete = [name for name in names if all(len(indices) for indices in by_source[name])]
    if not complete:
        raise ValueError("no source has every digit 0-9: cannot compose lines")
    by_source = {name: by_source[name] for name in complete}
    return DigitPool(images=images, by_source=by_source, weights=np.full(len(complete), 1.0 / len(complete)))


def encode(text: str) -> list[int]:
    """Characters -> class indices (1..len(ALPHABET)); raises ValueError on a character outside it."""
    unknown = sorted(set(text) - set(ALPHABET))
    if unknown:
        raise ValueError(f"cannot encode {unknown!r}: the reader knows {ALPHABET!r}")
    return [ALPHABET.index(char) + 1 for char in text]


def line_pixels(darkness: np.ndarray, floor: float | np.ndarray) -> np.ndarray:
    """Ink darkness (h, w) relative to the paper -> the reader's pixels (h, w) float32 in [0, 1].

    Darkness under `floor` (the paper's noise) becomes 0; the rest is divided by the line's ink strength
    (the 90th percentile of what is left), so that a faint pencil and a black marker look alike.
    """
    ink = np.where(darkness > floor, darkness, 0.0).astype(np.float32)
    strong = ink[ink > 0]
    if strong.size == 0:
        return ink
    return np.clip(ink / max(float(np.percentile(strong, 90)), 1e-3), 0.0, 1.0)


def to_line_height(pixels: np.ndarray, height: int = READER_HEIGHT) -> np.ndarray:
    """A band (h, w) float in [0, 1] -> (height, w') uint8 at the same aspect, w' >= 1."""
    width = max(1, round(pixels.shape[1] * height / pixels.shape[0]))
    image = Image.fromarray(pixels.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BOX)
    return np.round(np.clip(np.asarray(image), 0.0, 1.0) * 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class ComposedLines:
    """Lines and their truth: images (N, READER_HEIGHT, MAX_READER_WIDTH) uint8 (ink bright on black,
    padded with black on the right), labels (N, MAX_LABEL) int32 class indices padded with BLANK, and the
    source whose digits wrote each line (N,)."""

    images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray


def compose_lines(pool: DigitPool, count: int, seed: int) -> ComposedLines:
    """`count` composed lines, deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, READER_HEIGHT, MAX_READER_WIDTH), np.uint8)
    labels = np.zeros((count, MAX_LABEL), np.int32)
    sources = []
    for index in range(count):
        pixels, text, source = compose_line(pool, rng)
        images[index, :, : pixels.shape[1]] = pixels
        labels[index, : len(text)] = encode(text)
        sources.append(source)
    return ComposedLines(images, labels, np.array(sources))


def compose_line(pool: DigitPool, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """One line: (READER_HEIGHT, w) uint8 with w <= MAX_READER_WIDTH, its text (digits and separators) and
    the source that wrote it."""
    while True:
        text = _line_text(rng)
        source = list(pool.by_source)[rng.choice(len(pool.by_source), p=pool.weights)]
        pixels = _render(pool, source, text, rng)
        if pixels.shape[1] <= MAX_READER_WIDTH:
            return pixels, text, source


def texts_of(labels: np.ndarray) -> list[str]:
    """(N, L) class indices padded with BLANK -> the texts."""
    return ["".join(ALPHABET[c - 1] for c in row if c != BLANK) for row in labels]


def edit_distance(first: str, second: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, one each."""
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i]
        for j, b in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def _line_text(rng: np.random.Generator) -> str:
    """What is written: a number, a grouped amount, a date or a code, maybe with an amount's end mark."""
    digits = lambda n: "".join(str(d) for d in rng.integers(0, 10, n))  # noqa: E731
    kind = rng.choice(
        ["number", "grouped", "decimal", "date", "code", "none"], p=[0.48, 0.15, 0.12, 0.1, 0.12, 0.03]
    )
    if kind == "none":  # only a printed background or lines: segmentation's false finds must read as ""
        return ""
    if kind == "number":
        text = digits(int(rng.choice(np.arange(1, 11), p=_NUMBER_LENGTHS)))
    elif kind == "grouped":  # 12.345 or 1,234,567
        mark = rng.choice([".", ","])
        text = digits(int(rng.integers(1, 4))) + "".join(mark + digits(3) for _ in range(rng.integers(1, 3)))
    elif kind == "decimal":  # 123,45
        text = digits(int(rng.integers(1, 6))) + rng.choice([".", ","]) + digits(int(rng.integers(1, 3)))
    elif kind == "date":  # 12/05/24, 3.11.2026
        mark = rng.choice(["/", ".", "-"])
        text = mark.join(
            [
                digits(int(rng.integers(1, 3))),
                digits(int(rng.integers(1, 3))),
                digits(2 + 2 * rng.integers(0, 2)),
            ]
        )
    else:  # a code or phone number: groups joined by dashes
        text = "-".join(digits(int(rng.integers(2, 5))) for _ in range(rng.integers(2, 4)))
    if rng.random() < 0.25:
        text += rng.choice(["-", ".-", ",-", "=", "=-", ".", "--"])
    if rng.random() < 0.03:
        text = rng.choice(["-", "="]) + text
    return text[:MAX_LABEL]


_NUMBER_LENGTHS = np.array([2, 4, 8, 10, 10, 10, 9, 8, 6, 4], float) / 71.0


def _render(pool: DigitPool, source: str, text: str, rng: np.random.Generator) -> np.ndarray:
    """Write `text` in `source`'s hand with the paper's conditions; crop the line's band."""
    height = rng.uniform(26, 44)  # px: the digits' height while composing
    scale = height / _DIGIT_HEIGHT
    stroke = height * rng.uniform(0.06, 0.13)  # the separators' pen width, near the digits'
    touching = rng.random() < 0.3  # a writer who crowds the digits
    gap_mean = rng.uniform(-0.25, 0.02) if touching else rng.uniform(0.05, 0.45)
    canvas_height = round(3 * height)
    middle = canvas_height / 2 + rng.uniform(-0.1, 0.1) * height
    comb = _comb_field(middle, height, rng) if rng.random() < COMB_SHARE else None
    # The line's drift up or down, px per px; a comb field's boxes keep the writer level.
    slope = rng.uniform(-0.01, 0.01) if comb else rng.uniform(-0.04, 0.04)
    pieces = []  # (patch, x, y): digit ink to paste
    strokes = []  # (points, width): separator strokes
    ink_boxes = []  # (x0, y0, x1, y1) per character, for the crop
    x = comb.sides[-1] if comb else height * 1.5
    for char in text:
        cell = x  # a comb field's box for this character starts here
        if char.isdigit():
            patch = _digit_patch(pool, source, int(char), scale * rng.uniform(0.9, 1.1), rng)
            if comb:  # in its box, off centre as a hand puts it, at times over a side
                x = cell + (comb.pitch - patch.shape[1]) / 2 + rng.uniform(-0.15, 0.15) * height
            else:
                x += gap_mean * height * 0.6 + rng.uniform(-0.06, 0.06) * height
            y = middle + slope * x - patch.shape[0] / 2 + rng.uniform(-0.06, 0.06) * height
            pieces.append((patch, x, y))
            ink_boxes.append((x, y, x + patch.shape[1], y + patch.shape[0]))
            x += patch.shape[1]
        else:
            if comb:
                x = cell + comb.pitch * rng.uniform(0.1, 0.5)
            else:
                x += max(0.0, gap_mean) * height * 0.4 + rng.uniform(0.05, 0.2) * height
            top = middle + slope * x - height / 2
            box = _separator_strokes(char, x, top, height, stroke, rng, strokes)
            ink_boxes.append(box)
            x = box[2]
        if comb:
            comb.sides.append(cell + comb.pitch)
            x = cell + comb.pitch
    if comb:  # the boxes left empty after the writing
        comb.sides.extend(x + comb.pitch * np.arange(1, rng.integers(0, 4) + 1))
    width = round(max(x, comb.sides[-1] if comb else 0.0) + height * 1.5)
    writing = np.zeros((canvas_height, width), np.float32)
    for patch, px, py in pieces:
        left, top = round(px), round(py)
        region = writing[top : top + patch.shape[0], left : left + patch.shape[1]]
        np.maximum(region, patch[: region.shape[0], : region.shape[1]], out=region)
    if strokes:
        writing = np.maximum(writing, draw_strokes(writing.shape, strokes))
    writing = _pen(writing, height, rng)
    if not text:  # a band of the paper's own marks, as wide as a few digits
        ink_boxes = [(x, middle - height / 2, x + rng.uniform(1, 6) * height, middle + height / 2)]
        writing = np.zeros((canvas_height, round(ink_boxes[0][2] + height * 1.5)), np.float32)
    x0, y0 = min(b[0] for b in ink_boxes), min(b[1] for b in ink_boxes)
    x1, y1 = max(b[2] for b in ink_boxes), max(b[3] for b in ink_boxes)
    if comb and not text:  # an empty comb field, boxes all along the band
        comb.sides.extend(np.arange(comb.sides[-1] + comb.pitch, x1 + comb.pitch, comb.pitch))
    printed = _printed(writing.shape, (x0, y0, x1, y1), height, ink_boxes, comb, rng)
    if not text:
        printed = np.maximum(printed, _pattern(writing.shape, height, rng) * rng.uniform(1.0, 2.0))
    pen_darkness = rng.uniform(0.3, 0.95)
    darkness = 1.0 - (1.0 - pen_darkness * writing) * (1.0 - printed)
    darkness = _camera(darkness, rng)
    noise = rng.uniform(0.0, 0.04)
    darkness = darkness + rng.normal(0.0, noise, darkness.shape).astype(np.float32) if noise else darkness
    if rng.random() < BILEVEL_SHARE:  # a black-and-white scan: every pixel is ink or paper, hard-edged
        darkness = np.where(darkness > pen_darkness * rng.uniform(0.3, 0.6), 1.0, 0.0).astype(np.float32)
    pixels = line_pixels(darkness, max(0.12, 5 * noise))
    return to_line_height(_band(pixels, (x0, y0, x1, y1), height, rng))


@dataclass
class _CombField:
    """A form's comb field: printed boxes of one width side by side, one per character, the first ones and
    the last ones often left empty. Its sides rise from `bottom` to `sides_top`: to `top` for closed boxes,
    lower for an open comb of ticks (which has no top line)."""

    pitch: float  # px: a box's width
    top: float
    bottom: float
    sides_top: float
    sides: list[float]  # x of each side, left to right, filled in as the characters are written


def _comb_field(middle: float, height: float, rng: np.random.Generator) -> _CombField:
    """A comb field around a line of digits `height` tall centred on `middle`, starting with 0-1 empty
    boxes (its sides then grow with the writing)."""
    pitch = height * rng.uniform(1.0, 1.5)
    top = middle - height * rng.uniform(0.55, 0.85)
    bottom = middle + height * rng.uniform(0.55, 0.85)
    sides_top = top if rng.random() < 0.6 else bottom - height * rng.uniform(0.25, 0.6)
    empty_before = int(rng.random() < 0.3)
    return _CombField(
        pitch, top, bottom, sides_top, [height * 1.5 + pitch * i for i in range(empty_before + 1)]
    )


def _digit_patch(
    pool: DigitPool, source: str, digit: int, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """One digit of `source`, its ink box scaled by `scale` and slanted a little: (h, w) float32 in [0, 1]."""
    indices = pool.by_source[source][digit]
    image = pool.images[indices[rng.integers(len(indices))]].astype(np.float32) / 255.0
    rows, columns = np.flatnonzero(image.max(axis=1) > 0.1), np.flatnonzero(image.max(axis=0) > 0.1)
    if rows.size == 0:
        return np.zeros((round(_DIGIT_HEIGHT * scale), round(6 * scale)), np.float32)
    ink = image[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    shear = rng.uniform(-0.2, 0.2)  # a writer's slant, beyond the digit's own
    pad = round(abs(shear) * ink.shape[0]) + 1
    wide = np.pad(ink, ((0, 0), (pad, pad)))
    sheared = Image.fromarray(wide, mode="F").transform(
        wide.shape[::-1],
        Image.Transform.AFFINE,
        (1, shear, -shear * ink.shape[0] / 2, 0, 1, 0),
        Image.Resampling.BILINEAR,
    )
    size = (
        max(1, round(wide.shape[1] * scale * rng.uniform(0.85, 1.15))),
        max(1, round(ink.shape[0] * scale)),
    )
    patch = np.clip(np.asarray(sheared.resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)
    columns = np.flatnonzero(patch.max(axis=0) > 0.1)
    return patch[:, columns[0] : columns[-1] + 1] if columns.size else patch


def _separator_strokes(
    char: str, left: float, top: float, height: float, stroke: float, rng: np.random.Generator, strokes: list
) -> tuple[float, float, float, float]:
    """Add a separator's pen strokes starting at `left` on a line `height` tall from `top` (bent a little, as
    a hand draws them); returns its ink box (x0, y0, x1, y1)."""
    width = stroke * rng.uniform(0.8, 1.3)
    if char in ".,":
        x, y = left + width, top + height * rng.uniform(0.82, 1.02)
        dab = rng.uniform(0.2, 0.8) * width
        strokes.append(([(x, y), (x + dab, y + dab * rng.uniform(-0.5, 0.5))], width * rng.uniform(1.0, 1.6)))
        bottom = y + width
        if char == ",":
            tail = height * rng.uniform(0.12, 0.28)
            strokes.append(
                ([(x + dab, y), (x + dab * 0.3, y + tail * 0.6), (x - tail * 0.4, y + tail)], width)
            )
            bottom = y + tail
        return left, y - width, x + dab + width, bottom
    if char in "-=":
        length = height * rng.uniform(0.25, 0.7)
        levels = (rng.uniform(0.4, 0.7),) if char == "-" else (rng.uniform(0.3, 0.45), rng.uniform(0.6, 0.75))
        for level in levels:
            y = top + height * level
            bend = height * rng.uniform(-0.05, 0.05)
            tilt = length * rng.uniform(-0.15, 0.15)
            strokes.append(
                ([(left, y), (left + length / 2, y + bend + tilt / 2), (left + length, y + tilt)], width)
            )
        return (
            left,
            top + height * min(levels) - width,
            left + length + width,
            top + height * max(levels) + width,
        )
    lean = height * rng.uniform(0.15, 0.5)  # '/'
    y0, y1 = top + height * rng.uniform(-0.1, 0.15), top + height * rng.uniform(0.85, 1.1)
    bend = height * rng.uniform(-0.04, 0.04)
    strokes.append(([(left + lean, y0), (left + lean / 2 + bend, (y0 + y1) / 2), (left, y1)], width))
    return left - width, y0 - width, left + lean + width, y1 + width


def draw_strokes(shape: tuple[int, int], strokes: list) -> np.ndarray:
    """Strokes, each (points, width), drawn at 4x with round joints and averaged down: (H, W) float32."""
    factor = 4
    canvas = Image.new("L", (shape[1] * factor, shape[0] * factor), 0)
    draw = ImageDraw.Draw(canvas)
    for points, width in strokes:
        scaled = [(x * factor, y * factor) for x, y in points]
        size = max(1, round(width * factor))
        draw.line(scaled, fill=255, width=size, joint="curve")
        for x, y in (scaled[0], scaled[-1]):
            draw.ellipse((x - size / 2, y - size / 2, x + size / 2, y + size / 2), fill=255)
    return np.asarray(canvas.resize((shape[1], shape[0]), Image.Resampling.BOX), np.float32) / 255.0


def _pen(writing: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
    """The pen: a broader or finer stroke; uneven pressure that fades parts of strokes, even breaks them."""
    image = Image.fromarray(writing, mode="F")
    roll = rng.random()
    if roll < 0.2:
        writing = np.asarray(image.filter(ImageFilter.MaxFilter(3)))
    elif roll < 0.35:
        writing = np.asarray(image.filter(ImageFilter.MinFilter(3))) * 0.5 + writing * 0.5
    if rng.random() < 0.25:  # pressure: a smooth field of darkness along the line
        field_ = _smooth_noise(writing.shape, cells=max(2, round(writing.shape[1] / height)), rng=rng)
        writing = writing * np.clip(0.25 + field_ * rng.uniform(0.8, 1.5), 0.15, 1.0)
    return writing.astype(np.float32)


def _printed(
    shape: tuple[int, int],
    writing_box: tuple[float, float, float, float],
    height: float,
    char_boxes: list[tuple[float, float, float, float]],
    comb: _CombField | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """What the paper itself carries, as darkness (H, W) float32: underlines, ruled or squared paper, a
    field's frame, comb boxes (`comb`'s, or ticks between the characters), a printed security pattern,
    neighbouring lines' ink. Often nothing."""
    canvas_height, canvas_width = shape
    x0, y0, x1, y1 = writing_box
    image = Image.new("F", (canvas_width * 2, canvas_height * 2), 0.0)  # 2x: thin lines anti-aliased
    draw = ImageDraw.Draw(image)

    def line(points: list[tuple[float, float]], darkness: float, width: float) -> None:
        draw.line(
            [(2 * px, 2 * py) for px, py in points], fill=float(darkness), width=max(1, round(2 * width))
        )

    thin = max(1.0, height * rng.uniform(0.02, 0.06))
    print_darkness = rng.uniform(0.15, 0.8)
    if rng.random() < 0.25:  # an underline, by pen or printed
        y = y1 + height * rng.uniform(-0.05, 0.3)
        left, right = x0 - height * rng.uniform(-0.2, 1.0), x1 + height * rng.uniform(-0.2, 1.0)
        line(
            [
                (left, y),
                ((left + right) / 2, y + height * rng.uniform(-0.05, 0.05)),
                (right, y + height * rng.uniform(-0.1, 0.1)),
            ],
            rng.uniform(0.3, 1.0),
            thin * rng.uniform(1, 2),
        )
    if rng.random() < 0.2:  # ruled paper; a third of it squared
        spacing = height * rng.uniform(0.9, 1.7)
        offset = rng.uniform(0, spacing)
        for y in np.arange(offset, canvas_height, spacing):
            line([(0, y), (canvas_width, y + rng.uniform(-1, 1))], print_darkness, thin)
        if rng.random() < 0.33:
            for x in np.arange(rng.uniform(0, spacing), canvas_width, spacing):
                line([(x, 0), (x, canvas_height)], print_darkness * rng.uniform(0.5, 1), thin)
    if comb is not None:
        for side in comb.sides:
            line([(side, comb.sides_top), (side, comb.bottom)], print_darkness, thin)
        line([(comb.sides[0], comb.bottom), (comb.sides[-1], comb.bottom)], print_darkness, thin)
        if comb.sides_top == comb.top:
            line([(comb.sides[0], comb.top), (comb.sides[-1], comb.top)], print_darkness, thin)
    elif rng.random() < 0.15:  # ticks in each gap between characters, a line below or around
        bottom = y1 + height * rng.uniform(0.0, 0.2)
        top = y0 - height * rng.uniform(0.0, 0.3)
        for (_, _, right, _), (left, _, _, _) in itertools.pairwise(char_boxes):
            tick = (right + left) / 2
            line([(tick, bottom - height * rng.uniform(0.3, 1.2)), (tick, bottom)], print_darkness, thin)
        line([(x0 - height * 0.3, bottom), (x1 + height * 0.3, bottom)], print_darkness, thin)
        if rng.random() < 0.5:
            line([(x0 - height * 0.3, top), (x1 + height * 0.3, top)], print_darkness, thin)
    if rng.random() < 0.15:  # the field's frame, near or through the writing's edges
        margin = height * rng.uniform(-0.05, 0.4)
        draw.rectangle(
            [2 * (x0 - margin), 2 * (y0 - margin), 2 * (x1 + margin), 2 * (y1 + margin)],
            outline=float(print_darkness),
            width=max(1, round(2 * thin)),
        )
    printed = np.asarray(image.resize((canvas_width, canvas_height), Image.Resampling.BOX), np.float32)
    if rng.random() < 0.15:
        printed = np.maximum(printed, _pattern(shape, height, rng))
    if rng.random() < 0.1:  # the next line's descenders or the previous one's bottoms at the band's edge
        y = y0 - height * rng.uniform(0.6, 1.0) if rng.random() < 0.5 else y1 + height * rng.uniform(0.6, 1.0)
        for _ in range(rng.integers(1, 5)):
            x = rng.uniform(0, canvas_width)
            line(
                [(x, y), (x + height * rng.uniform(-0.4, 0.4), y + height * rng.uniform(-0.4, 0.4))],
                rng.uniform(0.3, 0.9),
                height * 0.08,
            )
        printed = np.maximum(
            printed, np.asarray(image.resize((canvas_width, canvas_height), Image.Resampling.BOX), np.float32)
        )
    return np.clip(printed, 0.0, 1.0)


def _pattern(shape: tuple[int, int], height: float, rng: np.random.Generator) -> np.ndarray:
    """A light printed background (H, W): hatching, waves or a dot screen."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    period = height * rng.uniform(0.12, 0.4)
    kind = rng.integers(3)
    if kind == 0:  # hatching at an angle
        angle = rng.uniform(0, np.pi)
        phase = (columns * np.cos(angle) + rows * np.sin(angle)) / period
    elif kind == 1:  # guilloche-like waves
        phase = (rows + height * 0.3 * np.sin(columns / (period * rng.uniform(2, 6)))) / period
    else:  # a dot screen
        phase = None
    if phase is None:
        pattern = (np.sin(2 * np.pi * columns / period) * np.sin(2 * np.pi * rows / period)) > 0.6
    else:
        pattern = np.abs(np.sin(np.pi * phase)) < rng.uniform(0.15, 0.35)
    return pattern.astype(np.float32) * rng.uniform(0.1, 0.45)


def _camera(darkness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Focus and resolution: a little blur, or a coarse scan (down and up again)."""
    image = Image.fromarray(darkness.astype(np.float32), mode="F")
    if rng.random() < 0.2:  # Pillow blurs 8-bit images only
        eight_bit = Image.fromarray(np.round(np.clip(darkness, 0, 1) * 255).astype(np.uint8))
        blurred = np.asarray(eight_bit.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4))), np.float32)
        image = Image.fromarray(blurred / 255.0, mode="F")
    if rng.random() < 0.15:
        factor = rng.uniform(0.35, 0.7)
        small = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(small, Image.Resampling.BILINEAR).resize(
            darkness.shape[::-1], Image.Resampling.BILINEAR
        )
    return np.asarray(image, np.float32)


def _band(
    pixels: np.ndarray,
    writing_box: tuple[float, float, float, float],
    height: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The line's band as `digitops.infer.segment` cuts it: the writing plus a margin on each side, which is
    as often none (a tight crop, even cutting the ink by a pixel) as generous."""
    x0, y0, x1, y1 = writing_box
    tight = rng.random() < 0.3
    above, below = (rng.uniform(-0.03, 0.05, 2) if tight else rng.uniform(0.05, 0.4, 2)) * height
    left, right = (rng.uniform(-0.03, 0.05, 2) if tight else rng.uniform(0.1, 1.2, 2)) * height
    top, bottom = max(0, round(y0 - above)), min(pixels.shape[0], round(y1 + below))
    start, end = max(0, round(x0 - left)), min(pixels.shape[1], round(x1 + right))
    return pixels[top:bottom, start:end]


def _smooth_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field (H, W) in [0, 1]: uniform noise on a coarse grid, upsampled."""
    grid = rng.random((2, cells + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize(shape[::-1], Image.Resampling.BICUBIC)).clip(
        0, 1
    )
