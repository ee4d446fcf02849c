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
from PIL import ExifTags, Image, ImageOps

MNIST_SIZE = 28
BOX_SIZE = 20
MNIST_CENTRE = 14.0  # where MNIST puts the centre of mass, row and column (pixel-index coordinates)
INK_THRESHOLD = 0.1  # a pixel is ink for the bounding box when above this, after contrast stretching
MIN_CONTRAST = 0.1  # below this difference between ink and background the image counts as blank
PEN_COLOUR_SPREAD = 0.1  # std of luminance over a canvas's opaque pixels when one pen drew them all

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as PIL's convert("L")


class EmptyImageError(ValueError):
    """The image holds no ink: blank, uniform, or too faint to be a digit.

    `index` is the position of the blank image when `normalize_digits` raises it.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def to_ink(image: Image.Image | np.ndarray) -> np.ndarray:
    """Turn any image into an ink map: 1 where the pen was, 0 on the paper.

    Accepts a PIL image (EXIF orientation applied) or an array: grayscale (H, W) or (H, W, 1), RGB
    (H, W, 3), RGBA (H, W, 4), as uint8 (0-255), uint16 (0-65535), other integers in 0-255, bool, or
    float in [0, 1].
    - A canvas drawing (RGBA on a mostly transparent background, drawn with one pen colour): the alpha
      channel is the ink, whatever the pen's colour.
    - Anything else (RGBA is first composited onto white): the luminance, inverted when the background is
      light, so black-on-white scans and white-on-black MNIST both come out as white ink on black.
    The background level is the median pixel (a digit covers less than half of its image). The result is
    contrast-stretched: background -> 0, the strongest ink -> 1.

    Returns:
        (H, W) float32 in [0, 1].

    Raises:
        EmptyImageError: the image has no ink.
        ValueError: the array has a shape or dtype that is not an image.
    """
    pixels = _as_float_array(image)  # (H, W) or (H, W, C) float32 in [0, 1]
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        alpha = np.ascontiguousarray(pixels[..., 3])  # read several times: contiguous is quicker
        if _alpha_is_ink(pixels, alpha):
            return _stretch(alpha, _median(alpha))
        alpha = alpha[..., None]  # (H, W, 1): weighs each colour channel
        pixels = pixels[..., :3] * alpha + (1.0 - alpha)  # onto white paper
    gray = pixels if pixels.ndim == 2 else _to_gray(pixels)
    background = _median(gray)
    if background > 0.5:
        return _stretch(1.0 - gray, 1.0 - background)
    return _stretch(gray, background)


def normalize_digit(image: Image.Image | np.ndarray) -> np.ndarray:
    """Normalise one digit image the way MNIST was made.

    Args:
        image: anything `to_ink` accepts.

    Returns:
        (28, 28) uint8, white ink on black, brightest pixel 255; the ink's bounding box fitted into 20x20
        (aspect ratio kept, anti-aliased) and placed so that the centre of mass is at (14, 14) to within
        half a pixel, unless that would push ink out of the field (a digit whose mass sits more than
        4 px from its box's centre: the box then touches the field's edge).

    Raises:
        EmptyImageError: the image has no ink.
    """
    ink = to_ink(image)
    is_ink = ink > INK_THRESHOLD
    rows = np.flatnonzero(is_ink.any(axis=1))  # the rows that hold ink
    cols = np.flatnonzero(is_ink.any(axis=0))
    if rows.size == 0:  # unreachable after the contrast stretch, kept as a guard against NaN downstream
        raise EmptyImageError("the image has no ink above the threshold")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = BOX_SIZE / max(crop.shape)
    height = max(1, round(crop.shape[0] * scale))
    width = max(1, round(crop.shape[1] * scale))
    resized = Image.fromarray(crop, mode="F").resize((width, height), Image.Resampling.LANCZOS)
    # np.frombuffer: the same values as np.asarray(resized), several times quicker on so small an image
    patch = np.frombuffer(resized.tobytes(), dtype=np.float32).reshape(height, width)
    patch = np.clip(patch, 0.0, 1.0)  # (h, w), h and w <= 20
    patch /= patch.max()  # thin strokes shrunk from a large image stay full-strength, like MNIST's ink
    top = _offset(patch.sum(axis=1), MNIST_SIZE - height)
    left = _offset(patch.sum(axis=0), MNIST_SIZE - width)
    digit = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.uint8)
    digit[top : top + height, left : left + width] = np.round(patch * 255.0)  # whole numbers 0-255: exact
    return digit


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
            raise EmptyImageError(f"image {index}: {error}", index=index) from error
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
    return min(max(round(MNIST_CENTRE - mass_centre), 0), slack)


def _stretch(ink: np.ndarray, background: float) -> np.ndarray:
    contrast = float(ink.max()) - background
    if contrast < MIN_CONTRAST:
        raise EmptyImageError(
            f"the image has no ink: the strongest stroke differs from the background by {contrast:.3f} "
            f"(at least {MIN_CONTRAST} needed)"
        )
    stretched = ink - background
    stretched /= contrast
    return np.clip(stretched, 0.0, 1.0, out=stretched)


def _median(values: np.ndarray) -> float:
    """float(np.median(values)) for a float array of finite values, without np.median's overhead."""
    middle = values.size // 2
    kth = [middle] if values.size % 2 else [middle - 1, middle]
    ordered = np.partition(values, kth, axis=None)  # flattened, and in sorted order at the `kth` positions
    return float(ordered[kth].mean())  # as np.median: the mean of the middle value(s), in float32


def _alpha_is_ink(rgba: np.ndarray, alpha: np.ndarray) -> bool:
    """A canvas drawing: a mostly transparent frame, and the opaque pixels all of one colour."""
    frame = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    if _median(frame) >= 0.5:  # an opaque picture (perhaps with a few transparent pixels)
        return False
    opaque = alpha > 0.5
    if not opaque.any():
        return True
    # rgba[opaque], as an (N, 4) array in the same order, several times quicker on a large image
    opaque_pixels = rgba.reshape(-1, 4).compress(opaque.ravel(), axis=0)
    return float(_to_gray(opaque_pixels).std()) < PEN_COLOUR_SPREAD


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
        floats = pixels.astype(np.float32)
        floats /= 255.0  # in place: on a large image, a second copy costs more than the division
        return floats
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    if np.issubdtype(pixels.dtype, np.integer):
        if pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(
                f"{pixels.dtype} pixels span [{pixels.min()}, {pixels.max()}]: integers must be in 0-255 "
                "(uint16: 0-65535)"
            )
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    if np.issubdtype(pixels.dtype, np.floating):
        if not np.isfinite(pixels).all() or pixels.min() < 0.0 or pixels.max() > 1.0:
            raise ValueError("a float image must hold finite values in [0, 1]")
        return pixels.astype(np.float32)
    raise ValueError(f"unsupported pixel type {pixels.dtype}: use integers, bool or float in [0, 1]")


def _pil_to_array(image: Image.Image) -> np.ndarray:
    image.load()  # before getexif, as exif_transpose does: some formats read their EXIF with the pixels
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # else exif_transpose would only copy it
        image = ImageOps.exif_transpose(image)  # a phone photo stored sideways is shown upright
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        span = pixels.max() - pixels.min()
        return (pixels - pixels.min()) / span if span > 0 else np.zeros_like(pixels)
    mode = "RGBA" if has_alpha else "RGB" if image.mode != "L" else "L"
    return np.asarray(image if image.mode == mode else image.convert(mode))


def _to_gray(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3] @ _LUMA
