"""Synthetic photos of handwritten numbers, with the truth: for the `/read` benchmark and its unit tests.

Digit images (white ink on black, e.g. MNIST or USPS test digits) are laid out in lines, written in a random
pen colour on a textured light paper, lit by a gradient and a soft shadow, slightly rotated, blurred, and
compressed to JPEG, as a phone photo of a note would be. Everything depends only on the `rng` given.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

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


@dataclass(frozen=True)
class SyntheticPhoto:
    """A generated photo and what is written on it.

    Attributes:
        image: the photo, RGB, decoded from its JPEG bytes.
        lines: the digits of each line, top to bottom, left to right.
        boxes: (x, y, width, height) of each digit's ink in the photo, in reading order.
    """

    image: Image.Image
    lines: list[list[int]]
    boxes: list[tuple[int, int, int, int]]


def make_photo(
    lines: Sequence[Sequence[np.ndarray]],
    labels: Sequence[Sequence[int]],
    rng: np.random.Generator,
    digit_height: float | None = None,
    max_rotation: float = 4.0,
    jpeg_quality: int | None = None,
    paper_edge: bool = False,
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
    """
    height = digit_height or float(rng.uniform(24, 110))
    ink, owner = _layout(lines, height, rng)  # (H, W) float32 ink in [0, 1], (H, W) int32 digit index + 1
    angle = float(rng.uniform(-max_rotation, max_rotation))
    ink = np.asarray(Image.fromarray(ink, mode="F").rotate(angle, Image.Resampling.BILINEAR, expand=True))
    owner = np.asarray(Image.fromarray(owner, mode="I").rotate(angle, Image.Resampling.NEAREST, expand=True))
    photo = _photograph(ink, rng, blur=float(rng.uniform(0.2, 0.4 + height / 60)), paper_edge=paper_edge)
    quality = jpeg_quality or int(rng.integers(35, 91))
    boxes = []
    for index in range(1, sum(len(line) for line in lines) + 1):
        rows, cols = np.nonzero(owner == index)
        boxes.append((int(cols.min()), int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1))
    return SyntheticPhoto(_jpeg(photo, quality), [list(map(int, line)) for line in labels], boxes)


def blank_photo(height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """Paper, light gradient, shadow, blur and JPEG, without a digit: RGB (height, width)."""
    ink = np.zeros((height, width), np.float32)
    return _jpeg(_photograph(ink, rng, blur=float(rng.uniform(0.2, 1.0))), int(rng.integers(35, 91)))


def ink_of(digit: np.ndarray) -> np.ndarray:
    """A digit image (white ink on black, uint8) cropped to its ink: (h, w) float32 in [0, 1]."""
    ink = digit.astype(np.float32) / 255.0
    rows, cols = np.nonzero(ink > 0.1)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _layout(
    lines: Sequence[Sequence[np.ndarray]], height: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Place the digits in lines with random sizes, spacing and baseline jitter, on a margin of paper.

    Returns:
        ink (H, W) float32 in [0, 1] and owner (H, W) int32: 1 + the reading-order index of the digit whose
        ink is there (0: paper).
    """
    placed = []  # (top, left, ink patch)
    top = margin = int(height * rng.uniform(0.4, 1.5))
    right = 0
    for line in lines:
        left = margin + int(height * rng.uniform(0, 0.5))
        for digit in line:
            patch = ink_of(digit)  # (h, w)
            size = height * rng.uniform(0.85, 1.1)
            scale = size / patch.shape[0]
            width = max(2, round(patch.shape[1] * scale * rng.uniform(0.9, 1.1)))
            patch = np.asarray(
                Image.fromarray(patch, mode="F").resize((width, round(size)), Image.Resampling.BILINEAR)
            )
            jitter = int(height * rng.uniform(-0.08, 0.08))
            placed.append((max(0, top + jitter), left, np.clip(patch, 0.0, 1.0)))
            left += width + int(height * rng.uniform(0.15, 0.6))
        right = max(right, left)
        top += int(height * rng.uniform(1.5, 2.0))
    canvas_height = top + margin
    canvas_width = right + margin
    ink = np.zeros((canvas_height, canvas_width), np.float32)
    owner = np.zeros((canvas_height, canvas_width), np.int32)
    for index, (y, x, patch) in enumerate(placed, start=1):
        region = ink[y : y + patch.shape[0], x : x + patch.shape[1]]
        np.maximum(region, patch, out=region)
        owner[y : y + patch.shape[0], x : x + patch.shape[1]][patch > 0.3] = index
    return ink, owner


def _photograph(
    ink: np.ndarray, rng: np.random.Generator, blur: float, paper_edge: bool = False
) -> np.ndarray:
    """Ink (H, W) in [0, 1] -> an RGB photo (H, W, 3) uint8: pen on paper, lit unevenly, blurred, noisy."""
    height, width = ink.shape
    pen = np.array(PEN_COLOURS[rng.integers(len(PEN_COLOURS))], np.float32)
    strength = rng.uniform(0.8, 1.0)  # a pen that does not cover fully
    rgb = _paper(height, width, rng)  # (H, W, 3)
    rgb *= 1.0 - (strength * ink)[..., None] * (1.0 - pen)  # the ink absorbs what the pen does not pass
    if paper_edge:
        rgb = np.where(_beyond_paper(ink, rng)[..., None], _table(height, width, rng), rgb)
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


def _jpeg(rgb: np.ndarray, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    image = Image.open(buffer)
    image.load()
    return image
