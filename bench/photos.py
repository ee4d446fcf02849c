"""Synthetic photos of handwritten numbers, with the truth: for the `/read` benchmark and its unit tests.

Digit images (white ink on black, e.g. MNIST or USPS test digits) are laid out in lines, written in a random
pen colour on a textured light paper, lit by a gradient and a soft shadow, slightly rotated, blurred, and
compressed to JPEG, as a phone photo of a note would be. Everything depends only on the `rng` given.

`Conditions` add what real scans of form fields and notes hold: a crop as tight as the digits,
separators written between and after them, underlines, ruled or boxed paper, a printed pattern, touching
neighbours, pen pressure and perspective. With none of them the photo is the same, pixel for pixel, as
before they existed: the conditions draw from their own generator, seeded from `rng` only when one is on.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digitops.strings import draw_strokes

# Pen colours as RGB transmittance in [0, 1]: black, blue, dark blue, red, green, purple, graphite.
PEN_COLOURS = (
    (0.05, 0.05, 0.08),
    (0.10, 0.15, 0.55),
    (0.05, 0.08, 0.30),
    (0.55, 0.08, 0.10),
    (0.08, 0.35, 0.15),
    (0.30, 0.10, 0.40),
    (0.30, 0.30, 0.32),
)
# Printed ink of forms and ruled paper, as RGB transmittance: light blue, grey, red, green, black.
PRINT_COLOURS = (
    (0.35, 0.65, 0.95),
    (0.55, 0.55, 0.55),
    (0.95, 0.35, 0.35),
    (0.45, 0.80, 0.50),
    (0.10, 0.10, 0.10),
)
# What is written between digits (a thousands mark, a date's slash) and after a number (an amount's end).
SEPARATORS_BETWEEN = (".", ",", "-", "/")
SEPARATORS_AFTER = ("-", ".-", ",-", "=", ".", "=-")


@dataclass(frozen=True)
class Conditions:
    """What makes a photo harder than a note on plain paper; each is off by default.

    Attributes:
        tight_crop: the photo is cropped to the written text, touching it on at least one side (a form
            field cut out of a scan), with at most a thin strip of paper on the others.
        separators: the probability of a separator pen mark in each gap between digits and after the
            number (`SEPARATORS_BETWEEN`, `SEPARATORS_AFTER`); they are not in the true digits.
        underline: a pen line under each line of digits, spanning the number's width.
        ruled: printed ruled lines (one photo in three: squared paper), some crossing the digits.
        boxed: each digit written in a printed box of a comb field, like a form; digits may touch it.
        pattern: a light printed security background: hatching, guilloche waves or a dot screen.
        touching: the probability that a digit touches or overlaps its left neighbour.
        pressure: the stroke width and darkness vary along each digit, as with a pen pressed unevenly.
        perspective: the page is photographed at a slant (a random projective warp).
        bilevel: the page is scanned in black and white, as a fax or a form scanner's default does: each
            pixel is ink or paper, the page lit evenly, the scan kept lossless instead of as a JPEG.
    """

    tight_crop: bool = False
    separators: float = 0.0
    underline: bool = False
    ruled: bool = False
    boxed: bool = False
    pattern: bool = False
    touching: float = 0.0
    pressure: bool = False
    perspective: bool = False
    bilevel: bool = False

    def any(self) -> bool:
        """Whether any condition is on."""
        return any(getattr(self, item.name) for item in fields(self))


@dataclass(frozen=True)
class SyntheticPhoto:
    """A generated photo and what is written on it.

    Attributes:
        image: the photo, RGB, decoded from its JPEG bytes.
        lines: the digits of each line, top to bottom, left to right.
        boxes: (x, y, width, height) of each digit's ink in the photo, in reading order.
        written: each line as written, separators included ("22970.-"); the digits alone when empty.
    """

    image: Image.Image
    lines: list[list[int]]
    boxes: list[tuple[int, int, int, int]]
    written: list[str] = field(default_factory=list)


def make_photo(
    lines: Sequence[Sequence[np.ndarray]],
    labels: Sequence[Sequence[int]],
    rng: np.random.Generator,
    digit_height: float | None = None,
    max_rotation: float = 4.0,
    jpeg_quality: int | None = None,
    paper_edge: bool = False,
    conditions: Conditions | None = None,
) -> SyntheticPhoto:
    """Write digits on paper and photograph them.

    Args:
        lines: per line, the digit images: (h, w) uint8, white ink on black (MNIST, USPS, a drawing).
        labels: the digit of each image, in the same nesting.
        rng: the only source of randomness.
        digit_height: in pixels; random in [24, 110] when None.
        max_rotation: the page is rotated by a random angle in [-max_rotation, max_rotation] degrees.
        jpeg_quality: random in [35, 90] when None.
        paper_edge: the paper ends inside the photo on one side, where a dark desk shows.
        conditions: what else makes the photo hard (`Conditions`); none when None.
    """
    conditions = conditions or Conditions()
    # The conditions' own draws: with none on, `rng` is used exactly as before they existed.
    extra = np.random.default_rng(rng.integers(2**63)) if conditions.any() else None
    height = digit_height or float(rng.uniform(24, 110))
    page = _layout(lines, labels, height, rng, conditions, extra)
    ink, owner, printed = page.ink, page.owner, None
    if extra is not None and (conditions.ruled or conditions.boxed):
        printed = _print_lines(ink.shape, page, height, conditions, extra)  # (H, W) float32
    angle = float(rng.uniform(-max_rotation, max_rotation))
    ink = _rotate(ink, angle)
    owner = np.asarray(Image.fromarray(owner, mode="I").rotate(angle, Image.Resampling.NEAREST, expand=True))
    printed = None if printed is None else _rotate(printed, angle)
    if extra is not None and conditions.perspective:
        warp = _perspective_coefficients(ink.shape, extra)
        ink, owner = _warp(ink, warp), _warp(owner, warp)
        printed = None if printed is None else _warp(printed, warp)
    if extra is not None and conditions.tight_crop:
        top, bottom, left, right = _tight_crop(owner, height, extra)
        ink, owner = ink[top:bottom, left:right], owner[top:bottom, left:right]
        printed = None if printed is None else printed[top:bottom, left:right]
    if extra is not None and conditions.pattern:
        printed = np.maximum(printed if printed is not None else 0.0, _pattern(ink.shape, height, extra))
    print_layer = None if printed is None else (printed, extra)
    blur = float(rng.uniform(0.2, 0.4 + height / 60))
    scanned = extra is not None and conditions.bilevel  # a scanner lights the page evenly
    photo = _photograph(ink, rng, blur=blur, paper_edge=paper_edge, printed=print_layer, lit=not scanned)
    quality = jpeg_quality or int(rng.integers(35, 91))
    boxes = []
    for index in range(1, sum(len(line) for line in lines) + 1):
        rows, cols = np.nonzero(owner == index)
        boxes.append((int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1))
    digits = [list(map(int, line)) for line in labels]
    written = page.written or ["".join(map(str, line)) for line in digits]
    if scanned:
        return SyntheticPhoto(_bilevel(photo, extra), digits, boxes, written)
    return SyntheticPhoto(_jpeg(photo, quality), digits, boxes, written)


def blank_photo(height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """Paper, light gradient, shadow, blur and JPEG, without a digit: RGB (height, width)."""
    ink = np.zeros((height, width), np.float32)
    return _jpeg(_photograph(ink, rng, blur=float(rng.uniform(0.2, 1.0))), int(rng.integers(35, 91)))


def ink_of(digit: np.ndarray) -> np.ndarray:
    """A digit image (white ink on black, uint8) cropped to its ink: (h, w) float32 in [0, 1]."""
    ink = digit.astype(np.float32) / 255.0
    rows, cols = np.nonzero(ink > 0.1)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@dataclass
class _Page:
    """The written page before it is photographed.

    Attributes:
        ink: (H, W) float32 in [0, 1], the pen's ink (digits and separators).
        owner: (H, W) int32: 1 + the reading-order index of the digit whose ink is there, -1 on a separator,
            0 on paper.
        written: each line as written, separators included (empty without separators).
        spans: per line, (left, top, right, bottom) of its digits' ink, exclusive ends.
        cells: (left, top, right, bottom) of each printed box of a comb field (boxed paper only).
    """

    ink: np.ndarray
    owner: np.ndarray
    written: list[str]
    spans: list[tuple[int, int, int, int]]
    cells: list[tuple[int, int, int, int]]


def _layout(
    lines: Sequence[Sequence[np.ndarray]],
    labels: Sequence[Sequence[int]],
    height: float,
    rng: np.random.Generator,
    conditions: Conditions,
    extra: np.random.Generator | None,
) -> _Page:
    """Place the digits in lines with random sizes, spacing and baseline jitter, on a margin of paper; with
    `extra` (the conditions' generator), also separators, underlines, touching neighbours, pressure, boxes."""
    placed = []  # (top, left, ink patch, digit number)
    marks = []  # separators: (points, pen width)
    underlines = []  # (points, pen width)
    written, spans, cells = [], [], []
    pen_width = max(1.0, height * extra.uniform(0.08, 0.13)) if extra is not None else 0.0
    number = 0
    top = margin = int(height * rng.uniform(0.4, 1.5))
    right = 0
    for line, line_labels in zip(lines, labels, strict=True):
        left = margin + int(height * rng.uniform(0, 0.5))
        boxed = extra is not None and conditions.boxed
        if boxed:  # a comb field: boxes of one size side by side, the digits written inside
            cell_width = round(height * extra.uniform(1.05, 1.4))
            cell_top = top - round(height * extra.uniform(0.1, 0.25))
            cell_bottom = top + round(height * extra.uniform(1.1, 1.25))
        text, line_left, line_right, line_bottom = "", None, left, top
        for position, (digit, label) in enumerate(zip(line, line_labels, strict=True)):
            patch = ink_of(digit)  # (h, w)
            size = height * rng.uniform(0.85, 1.1)
            scale = size / patch.shape[0]
            width = max(2, round(patch.shape[1] * scale * rng.uniform(0.9, 1.1)))
            patch = np.asarray(
                Image.fromarray(patch, mode="F").resize((width, round(size)), Image.Resampling.BILINEAR)
            )
            if extra is not None and conditions.pressure:
                patch = _pressure(patch, height, extra)
            jitter = int(height * rng.uniform(-0.08, 0.08))
            x = left
            if boxed:
                cells.append((left, cell_top, left + cell_width, cell_bottom))
                x = left + (cell_width - width) // 2 + int(height * extra.uniform(-0.12, 0.12))
            number += 1
            placed.append((max(0, top + jitter), max(0, x), np.clip(patch, 0.0, 1.0), number))
            line_left = x if line_left is None else min(line_left, x)
            line_right = max(line_right, x + width)
            line_bottom = max(line_bottom, max(0, top + jitter) + patch.shape[0])
            text += str(int(label))
            gap = int(height * rng.uniform(0.15, 0.6))
            last = position + 1 == len(line)
            if extra is None:
                left += width + gap
                continue
            if not last and extra.random() < conditions.touching:
                gap = int(height * extra.uniform(-0.1, 0.0))  # into the neighbour's space: strokes meet
            left = left + cell_width if boxed else x + width + gap
            if extra.random() < conditions.separators:
                mark = str(extra.choice(SEPARATORS_AFTER if last else SEPARATORS_BETWEEN))
                if boxed:
                    cells.append((left, cell_top, left + cell_width, cell_bottom))
                    _separator(mark, left + cell_width * 0.3, top, height, pen_width, extra, marks)
                    left += cell_width
                else:
                    start = x + width + height * extra.uniform(0.05, 0.2)
                    end = _separator(mark, start, top, height, pen_width, extra, marks)
                    left = max(left, round(end + height * extra.uniform(0.1, 0.3)))
                text += mark
            line_right = max(line_right, left - gap if not boxed else left)
        if extra is not None and conditions.underline:
            x0 = line_left - height * extra.uniform(0.0, 0.3)
            x1 = line_right + height * extra.uniform(0.0, 0.3)
            y = line_bottom + height * extra.uniform(0.05, 0.2)  # under the lowest digit
            slope = extra.uniform(-0.03, 0.03)
            sag = height * extra.uniform(-0.05, 0.05)  # a line drawn by hand bows a little
            xs = np.linspace(x0, x1, 9)
            ys = y + slope * (xs - x0) + sag * np.sin(np.pi * (xs - x0) / (x1 - x0))
            underlines.append(
                (list(zip(xs.tolist(), ys.tolist(), strict=True)), pen_width * extra.uniform(0.5, 1))
            )
            line_right = max(line_right, int(x1) + 1)
        written.append(text)
        spans.append((line_left, top, line_right, top + round(height)))
        right = max(right, left, line_right)
        top += int(height * rng.uniform(1.5, 2.0))
    canvas_height = top + margin
    canvas_width = right + margin
    ink = np.zeros((canvas_height, canvas_width), np.float32)
    owner = np.zeros((canvas_height, canvas_width), np.int32)
    for y, x, patch, index in placed:
        region = ink[y : y + patch.shape[0], x : x + patch.shape[1]]
        np.maximum(region, patch, out=region)
        owner[y : y + patch.shape[0], x : x + patch.shape[1]][patch > 0.3] = index
    if marks:
        pen = draw_strokes(ink.shape, marks)  # (H, W) float32
        owner[(pen > 0.3) & (owner == 0)] = -1
        np.maximum(ink, pen, out=ink)
    if underlines:
        np.maximum(ink, draw_strokes(ink.shape, underlines), out=ink)
    has_marks = extra is not None and conditions.separators > 0
    return _Page(ink, owner, written if has_marks else [], spans, cells)


def _separator(
    mark: str,
    left: float,
    top: float,
    height: float,
    pen_width: float,
    rng: np.random.Generator,
    strokes: list,
) -> float:
    """Add the pen strokes of a separator ('.', ',', '-', '=', '/' or a pair like '.-') that starts at
    `left`, on a line of digits `height` tall from `top`; returns where it ends on the right."""
    for char in mark:
        if char in ".,":
            x, y = left + pen_width, top + height * rng.uniform(0.88, 1.0)
            dot = [(x, y), (x + pen_width * 0.4, y + pen_width * 0.2)]  # a short dab, as a pen makes one
            strokes.append((dot, pen_width * rng.uniform(1.0, 1.5)))
            if char == ",":
                strokes.append(
                    ([(x + pen_width * 0.4, y), (x - height * 0.08, y + height * 0.22)], pen_width)
                )
            end = x + pen_width * 1.5
        elif char in "-=":
            length = height * rng.uniform(0.3, 0.6)
            levels = (rng.uniform(0.45, 0.65),) if char == "-" else (0.4, 0.68)
            for level in levels:
                y = top + height * (level + rng.uniform(-0.04, 0.04))
                tilt = length * rng.uniform(-0.1, 0.1)
                strokes.append(([(left, y), (left + length, y + tilt)], pen_width * rng.uniform(0.8, 1.1)))
            end = left + length
        elif char == "/":
            lean = height * rng.uniform(0.25, 0.45)
            y0, y1 = top + height * rng.uniform(-0.05, 0.1), top + height * rng.uniform(0.9, 1.05)
            strokes.append(([(left + lean, y0), (left, y1)], pen_width))
            end = left + lean
        else:
            raise ValueError(f"unknown separator {char!r}")
        left = end + height * rng.uniform(0.08, 0.2)
    return end


def _pressure(patch: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
    """A digit (h, w) in [0, 1] whose stroke is thicker and darker where the pen pressed harder: a smooth
    random field chooses, along the digit, between the stroke grown and shrunk by a few pixels."""
    radius = max(1, round(height / 30))
    image = Image.fromarray(patch.astype(np.float32), mode="F")
    grown = np.asarray(image.filter(ImageFilter.MaxFilter(2 * radius + 1)))
    shrunk = np.asarray(image.filter(ImageFilter.MinFilter(2 * radius + 1)))
    field_ = _smooth_noise(patch.shape[0], patch.shape[1], cells=int(rng.integers(2, 5)), rng=rng)
    varied = np.where(field_ > 0, patch + field_ * (grown - patch), patch - field_ * (shrunk - patch))
    return (varied * (0.85 + 0.15 * field_)).astype(np.float32)  # pressed lightly: fainter too


def _print_lines(
    shape: tuple[int, int], page: _Page, height: float, conditions: Conditions, rng: np.random.Generator
) -> np.ndarray:
    """Printed lines on the page: ruled (or squared) paper and the boxes of a comb field, (H, W) float32."""
    canvas_height, canvas_width = shape
    segments = []  # (x0, y0, x1, y1, width)
    if conditions.ruled:
        spacing = height * rng.uniform(0.9, 1.5)
        baseline = page.spans[0][3] + height * rng.uniform(-0.1, 0.1)  # one line near the digits' feet
        width = max(1.0, height * rng.uniform(0.015, 0.04))
        first = baseline - spacing * np.floor(baseline / spacing)
        for y in np.arange(first, canvas_height, spacing):
            segments.append((0, y, canvas_width, y, width))
        if rng.random() < 1 / 3:  # squared paper, as in a continental school notebook
            for x in np.arange(rng.uniform(0, spacing / 2), canvas_width, spacing / 2):
                segments.append((x, 0, x, canvas_height, width))
            segments.extend(
                (0, y, canvas_width, y, width) for y in np.arange(first + spacing / 2, canvas_height, spacing)
            )
    if conditions.boxed:
        width = max(1.0, height * rng.uniform(0.02, 0.06))
        for x0, y0, x1, y1 in page.cells:
            segments.extend(
                [
                    (x0, y0, x1, y0, width),
                    (x0, y1, x1, y1, width),
                    (x0, y0, x0, y1, width),
                    (x1, y0, x1, y1, width),
                ]
            )
    factor = 4
    canvas = Image.new("L", (canvas_width * factor, canvas_height * factor), 0)
    draw = ImageDraw.Draw(canvas)
    for x0, y0, x1, y1, width in segments:
        draw.line(
            [(x0 * factor, y0 * factor), (x1 * factor, y1 * factor)], fill=255, width=round(width * factor)
        )
    lines = np.asarray(canvas.resize((canvas_width, canvas_height), Image.Resampling.BOX), np.float32) / 255.0
    return lines * rng.uniform(0.5, 0.9)


def _pattern(shape: tuple[int, int], height: float, rng: np.random.Generator) -> np.ndarray:
    """A light printed security background over the whole photo: (H, W) float32 in [0, 0.4].

    Fine hatching (one or two directions), guilloche (interlaced waves) or a dot screen, with a period of
    a few pixels to a fifth of a digit.
    """
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    period = max(3.0, height * rng.uniform(0.06, 0.2))
    kind = rng.choice(["hatching", "guilloche", "dots"])
    if kind == "hatching":
        pattern = np.zeros(shape, np.float32)
        for _ in range(int(rng.integers(1, 3))):
            angle = rng.uniform(0, np.pi)
            phase = (np.cos(angle) * cols + np.sin(angle) * rows) / period
            pattern = np.maximum(
                pattern, (np.cos(2 * np.pi * phase) > rng.uniform(0.3, 0.7)).astype(np.float32)
            )
    elif kind == "guilloche":
        pattern = np.zeros(shape, np.float32)
        wave = period * rng.uniform(4, 10)
        for shift in range(int(rng.integers(2, 4))):
            amplitude = period * rng.uniform(1.0, 3.0)
            offset = rows + amplitude * np.sin(2 * np.pi * cols / wave + shift * 2.1)
            pattern = np.maximum(
                pattern, (np.cos(2 * np.pi * offset / (period * 2)) > 0.8).astype(np.float32)
            )
    else:
        radius = period * rng.uniform(0.15, 0.35)
        angle = rng.uniform(0, np.pi / 2)
        u = np.cos(angle) * cols + np.sin(angle) * rows
        v = -np.sin(angle) * cols + np.cos(angle) * rows
        du, dv = u - period * np.round(u / period), v - period * np.round(v / period)
        pattern = (du**2 + dv**2 < radius**2).astype(np.float32)
    soft = Image.fromarray((pattern * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))  # printed
    return np.asarray(soft, np.float32) / 255.0 * rng.uniform(0.15, 0.4)


def _rotate(layer: np.ndarray, angle: float) -> np.ndarray:
    return np.asarray(Image.fromarray(layer, mode="F").rotate(angle, Image.Resampling.BILINEAR, expand=True))


def _perspective_coefficients(shape: tuple[int, int], rng: np.random.Generator) -> tuple[float, ...]:
    """A projective warp that moves each corner of the page inwards by up to a tenth of its size (so the
    page stays in view): PIL's 8 coefficients, mapping output pixels to input pixels."""
    height, width = shape
    corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], np.float64)
    inward = np.array([(1, 1), (-1, 1), (-1, -1), (1, -1)], np.float64)
    moved = corners + inward * rng.uniform(0, 0.1, (4, 2)) * np.array([width, height])
    # Solve for (a..h): input = ((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (g x + h y + 1)).
    system, target = [], []
    for (x, y), (u, v) in zip(moved, corners, strict=True):
        system.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        system.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        target.extend([u, v])
    return tuple(float(c) for c in np.linalg.solve(np.array(system), np.array(target)))


def _warp(layer: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """A layer (H, W) through the projective warp: float layers bilinear, the owner map nearest."""
    mode, resample = (
        ("I", Image.Resampling.NEAREST) if layer.dtype == np.int32 else ("F", Image.Resampling.BILINEAR)
    )
    image = Image.fromarray(layer, mode=mode)
    return np.asarray(image.transform(image.size, Image.Transform.PERSPECTIVE, coefficients, resample))


def _tight_crop(owner: np.ndarray, height: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive ends, of a crop around the written text (digits and
    separators): each side touches the ink or keeps a strip of up to an eighth of a digit, and at least one
    side touches it."""
    rows, cols = np.nonzero(owner != 0)
    margins = np.where(rng.random(4) < 0.5, 0, np.round(height * rng.uniform(0.02, 0.12, 4))).astype(int)
    margins[int(rng.integers(4))] = 0
    top, bottom = max(0, rows.min() - margins[0]), min(owner.shape[0], rows.max() + 1 + margins[1])
    left, right = max(0, cols.min() - margins[2]), min(owner.shape[1], cols.max() + 1 + margins[3])
    return int(top), int(bottom), int(left), int(right)


def _photograph(
    ink: np.ndarray,
    rng: np.random.Generator,
    blur: float,
    paper_edge: bool = False,
    printed: tuple[np.ndarray, np.random.Generator] | None = None,
    lit: bool = True,
) -> np.ndarray:
    """Ink (H, W) in [0, 1] -> an RGB photo (H, W, 3) uint8: pen on paper, lit unevenly (unless not `lit`:
    a scanner's even light), blurred, noisy.

    `printed`: ink printed on the paper before it was written on, (H, W) in [0, 1], and the generator
    that picks its colour.
    """
    height, width = ink.shape
    pen = np.array(PEN_COLOURS[rng.integers(len(PEN_COLOURS))], np.float32)
    strength = rng.uniform(0.8, 1.0)  # a pen that does not cover fully
    rgb = _paper(height, width, rng)  # (H, W, 3)
    if printed is not None:
        layer, colour_rng = printed
        colour = np.array(PRINT_COLOURS[colour_rng.integers(len(PRINT_COLOURS))], np.float32)
        rgb *= 1.0 - layer[..., None] * (1.0 - colour)
    rgb *= 1.0 - (strength * ink)[..., None] * (1.0 - pen)  # the ink absorbs what the pen does not pass
    if paper_edge:
        rgb = np.where(_beyond_paper(ink, rng)[..., None], _table(height, width, rng), rgb)
    if lit:
        rgb *= _lighting(height, width, rng)[..., None]
    image = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(blur)
    )
    noisy = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(1, 6), (height, width, 1))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _beyond_paper(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where the paper has ended: (H, W) bool, a slightly slanted band along the side with the widest
    margin, covering part of that margin (never the ink)."""
    height, width = ink.shape
    rows, cols = np.nonzero(ink > 0.01)
    margins = {
        "left": cols.min(),
        "right": width - 1 - cols.max(),
        "top": rows.min(),
        "bottom": height - 1 - rows.max(),
    }
    side = max(margins, key=margins.get)
    depth = margins[side] * rng.uniform(0.2, 0.6)  # how far the table reaches in
    slope = rng.uniform(-0.03, 0.03)
    grid_rows, grid_cols = np.mgrid[0:height, 0:width]
    along, across, extent = (
        (grid_rows, grid_cols, width) if side in ("left", "right") else (grid_cols, grid_rows, height)
    )
    if side in ("right", "bottom"):
        across = extent - 1 - across
    limit = depth - abs(slope) * along.max() + slope * along  # stays within `depth`
    return across < limit


def _table(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A dark desk surface with a grain: (H, W, 3) float32."""
    colour = rng.uniform(0.08, 0.35) * np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.5, 1.0)])
    grain = _smooth_noise(height, width, cells=int(rng.integers(10, 30)), rng=rng) * 0.04
    return (colour[None, None, :] + grain[..., None]).astype(np.float32)


def _paper(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Light paper with a tint, blotches and grain: (H, W, 3) float32 in [0, 1]."""
    tint = rng.uniform(0.82, 0.98) - rng.uniform(0.0, 0.06, size=3)  # white, cream, greyish
    blotches = _smooth_noise(height, width, cells=int(rng.integers(3, 12)), rng=rng) * rng.uniform(0.01, 0.05)
    grain = rng.normal(0, rng.uniform(0.005, 0.03), (height, width)).astype(np.float32)
    return (tint[None, None, :] + (blotches + grain)[..., None]).astype(np.float32)


def _lighting(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Illumination: a linear gradient and a soft-edged shadow, (H, W) float32 in (0, 1]."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * cols + np.sin(direction) * rows) / max(height, width)  # spans about 1
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    light = 1.0 - rng.uniform(0.1, 0.45) * ramp
    if rng.random() < 0.7:  # the shadow of a hand or a phone: a half-plane with a blurred edge
        angle = rng.uniform(0, 2 * np.pi)
        edge = np.cos(angle) * (cols - width * rng.uniform(0.2, 0.8)) + np.sin(angle) * (
            rows - height * rng.uniform(0.2, 0.8)
        )
        softness = max(height, width) * rng.uniform(0.02, 0.15)
        shade = 1.0 / (1.0 + np.exp(-edge / softness))
        light *= 1.0 - rng.uniform(0.2, 0.5) * shade
    return light.astype(np.float32)


def _smooth_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a cells x cells random grid, upsampled bicubically."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC))


def _bilevel(rgb: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A black-and-white scan: RGB, each pixel black (ink) or white (paper).

    The threshold lies a random 40-70% of the way from the ink's darkness (the darkest half percent of the
    pixels) to the paper's brightness (the median pixel), as a scanner's automatic threshold puts it: a
    faint pen stays legible, and strokes come out bolder or thinner than they were.
    """
    gray = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)
    paper, ink = float(np.median(gray)), float(np.percentile(gray, 0.5))
    black = gray < ink + (paper - ink) * rng.uniform(0.4, 0.7)
    return Image.fromarray(np.where(black, 0, 255).astype(np.uint8)).convert("RGB")


def _jpeg(rgb: np.ndarray, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    image = Image.open(buffer)
    image.load()
    return image
