"""THE normaliser: any digit image -> a 28x28 MNIST-style image.

MNIST was made like this (LeCun et al.): the digit's bounding box is fitted into a 20x20 box keeping its
aspect ratio, anti-aliased, then placed in a 28x28 field so that its centre of mass lies at the centre.
Measured on MNIST's 60,000 training images, the centre of mass sits at row/column (14.0, 14.0) in pixel-index
coordinates, within half a pixel: the original shift was a whole number of pixels. We do the same.

The same function serves ingest (USPS, EMNIST, user drawings) and the service (canvas drawings, photo
crops), so the model sees the same kind of input in training and in production.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

MNIST_SIZE = 28
BOX_SIZE = 20
MNIST_CENTRE = 14.0  # where MNIST puts the centre of mass, row and column (pixel-index coordinates)
INK_THRESHOLD = 0.1  # a pixel is ink for the bounding box when above this, after contrast stretching
MIN_CONTRAST = 0.1  # below this difference between ink and background the image counts as blank

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as PIL's convert("L")


class EmptyImageError(ValueError):
    """The image holds no ink: blank, uniform, or too faint to be a digit."""


def to_ink(image: Image.Image | np.ndarray) -> np.ndarray:
    """Turn any image into an ink map: 1 where the pen was, 0 on the paper.

    Accepts a PIL image or an array: grayscale (H, W) or (H, W, 1), RGB (H, W, 3), RGBA (H, W, 4), as
    uint8 (0-255), bool, or float in [0, 1].
    - RGBA whose alpha varies (a canvas drawing on a transparent background): the alpha channel is the ink.
    - Otherwise the luminance; if the background (the median of the outer frame) is light, it is inverted,
      so black-on-white scans and white-on-black MNIST both come out as white ink on black.
    The result is contrast-stretched: background level -> 0, the strongest ink -> 1.

    Returns:
        (H, W) float32 in [0, 1].

    Raises:
        EmptyImageError: the image has no ink.
        ValueError: the array has a shape or dtype that is not an image.
    """
    pixels = _as_float_array(image)  # (H, W) or (H, W, C) float32 in [0, 1]
    if pixels.ndim == 3 and pixels.shape[2] == 4 and np.ptp(pixels[..., 3]) > 0:
        ink = pixels[..., 3]
    else:
        gray = pixels if pixels.ndim == 2 else _to_gray(pixels)
        ink = 1.0 - gray if _frame_median(gray) > 0.5 else gray
    background = _frame_median(ink)
    contrast = float(ink.max()) - background
    if contrast < MIN_CONTRAST:
        raise EmptyImageError(
            f"the image has no ink: the strongest stroke differs from the background by {contrast:.3f} "
            f"(at least {MIN_CONTRAST} needed)"
        )
    return np.clip((ink - background) / contrast, 0.0, 1.0)


def normalize_digit(image: Image.Image | np.ndarray) -> np.ndarray:
    """Normalise one digit image the way MNIST was made.

    Args:
        image: anything `to_ink` accepts.

    Returns:
        (28, 28) uint8, white ink on black; the ink's bounding box fitted into 20x20 (aspect ratio kept,
        anti-aliased) and placed so that the centre of mass is at (14, 14) to within half a pixel.

    Raises:
        EmptyImageError: the image has no ink.
    """
    ink = to_ink(image)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if rows.size == 0:  # unreachable after the contrast stretch, kept as a guard against NaN downstream
        raise EmptyImageError("the image has no ink above the threshold")
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = BOX_SIZE / max(crop.shape)
    height = max(1, round(crop.shape[0] * scale))
    width = max(1, round(crop.shape[1] * scale))
    resized = Image.fromarray(crop, mode="F").resize((width, height), Image.Resampling.LANCZOS)
    patch = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)  # (h, w), h and w <= 20
    top = _offset(patch.sum(axis=1), MNIST_SIZE - height)
    left = _offset(patch.sum(axis=0), MNIST_SIZE - width)
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    canvas[top : top + height, left : left + width] = patch
    return np.round(canvas * 255.0).astype(np.uint8)


def normalize_digits(images: Iterable[Image.Image | np.ndarray]) -> np.ndarray:
    """`normalize_digit` over many images.

    Returns:
        (N, 28, 28) uint8.

    Raises:
        EmptyImageError: naming the index of the first blank image.
    """
    normalised = []
    for index, image in enumerate(images):
        try:
            normalised.append(normalize_digit(image))
        except EmptyImageError as error:
            raise EmptyImageError(f"image {index}: {error}") from error
    if not normalised:
        return np.zeros((0, MNIST_SIZE, MNIST_SIZE), dtype=np.uint8)
    return np.stack(normalised)


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """Centre of mass of each image's intensity, in pixel-index coordinates.

    Args:
        images: (N, H, W) any numeric dtype; an all-zero image gives NaN.

    Returns:
        (N, 2) float64: row, column.
    """
    weights = images.astype(np.float64)
    total = weights.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        row = (weights.sum(axis=2) * np.arange(images.shape[1])).sum(axis=1) / total
        col = (weights.sum(axis=1) * np.arange(images.shape[2])).sum(axis=1) / total
    return np.stack([row, col], axis=1)


def _offset(profile: np.ndarray, slack: int) -> int:
    """Whole-pixel offset that puts the mass of `profile` nearest MNIST_CENTRE, staying inside the field."""
    mass_centre = float((profile * np.arange(profile.size)).sum() / profile.sum())
    return int(np.clip(round(MNIST_CENTRE - mass_centre), 0, slack))


def _as_float_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = _pil_to_array(image)
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {pixels.shape}")
    if min(pixels.shape[:2]) < 1:
        raise ValueError(f"the image is empty: shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    if np.issubdtype(pixels.dtype, np.floating):
        if not np.isfinite(pixels).all() or pixels.min() < 0.0 or pixels.max() > 1.0:
            raise ValueError("a float image must hold finite values in [0, 1]")
        return pixels.astype(np.float32)
    raise ValueError(f"unsupported pixel type {pixels.dtype}: use uint8, bool or float in [0, 1]")


def _pil_to_array(image: Image.Image) -> np.ndarray:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        span = pixels.max() - pixels.min()
        return (pixels - pixels.min()) / span if span > 0 else np.zeros_like(pixels)
    return np.asarray(image.convert("RGBA" if has_alpha else "RGB" if image.mode != "L" else "L"))


def _to_gray(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3] @ _LUMA


def _frame_median(image: np.ndarray) -> float:
    """Median of the outermost row and column of pixels: the background level of a digit image."""
    frame = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(np.median(frame))
