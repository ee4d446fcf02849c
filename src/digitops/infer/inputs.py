"""Uploaded bytes -> a checked image -> the model's input, with an error that says what was wrong.

Everything a client can get wrong is a `BadInputError` (the service answers 400 with its message); nothing
here can take the server down: sizes are checked before decoding, decoding errors of every kind are caught.

A JPEG is decoded at a reduced size (1/2, 1/4 or 1/8 of its sides, by libjpeg's own scaling: `Image.draft`)
when what reads it needs fewer pixels: a digit is fitted into a 20x20 box, a photo is analysed at
`digitops.infer.segment.MAX_ANALYSIS_SIDE`. The pixel limit counts the pixels decoded, so a phone's JPEG
passes where a PNG of the same size would not: it never costs more memory than the limit allows.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from digitops.preprocess import EmptyImageError, normalize_digit

# A digit's JPEG is decoded with its longer side at least this long: a digit that spans a quarter of the
# image still spans four times the 28-px field, and the normaliser's anti-aliased resize to 20 px has nothing
# more to gain from extra pixels.
DIGIT_DRAFT_SIDE = 512

if TYPE_CHECKING:
    from digitops.config import ServeParams


class BadInputError(ValueError):
    """A request's input is unusable; the message is meant for the client."""


@dataclass(frozen=True)
class InputLimits:
    """What one route accepts, and how it decodes: the digit routes' limits by default.

    Attributes:
        max_images: per request.
        max_bytes: per file.
        max_pixels: width x height decoded per image, checked from the header before the pixels are decoded
            (a JPEG counts at the reduced size it is decoded at).
        draft_side: a JPEG is decoded at the smallest of 1/2, 1/4 and 1/8 of its size that keeps its longer
            side at least this long; 0: at full size.
        subject: what the route reads, for the messages ("a digit image", "a photo").
    """

    max_images: int
    max_bytes: int
    max_pixels: int
    draft_side: int = DIGIT_DRAFT_SIDE
    subject: str = "a digit image"

    @classmethod
    def from_serve(cls, serve: ServeParams | None) -> InputLimits:
        """The digit routes' limits (/classify, /digit, /feedback), from params.yaml's `serve` section.

        Args:
            serve: `load_params(...).serve`; None for the defaults that `ServeParams` declares (a client,
                such as `digitops predict`, run where there is no params.yaml).
        """
        return cls(
            max_images=_serve(serve).max_images_per_request,
            max_bytes=_serve(serve).max_image_bytes,
            max_pixels=_serve(serve).max_image_pixels,
        )

    @classmethod
    def photos_from_serve(cls, serve: ServeParams | None) -> InputLimits:
        """The photo route's limits (/read: one photo of several digits), from params.yaml's `serve`."""
        from digitops.infer.segment import MAX_ANALYSIS_SIDE  # the photo is analysed at this size

        return cls(
            max_images=1,
            max_bytes=_serve(serve).max_image_bytes,
            max_pixels=_serve(serve).max_photo_pixels,
            draft_side=MAX_ANALYSIS_SIDE,
            subject="a photo",
        )


def _serve(serve: ServeParams | None) -> ServeParams:
    if serve is None:
        from digitops.config import ServeParams

        serve = ServeParams.model_construct()  # no validation: only the fields with defaults are set
    return serve


# The formats that users send: a drawing, a photo, a scan. Pillow tries no other decoder on uploaded bytes
# (each of its dozens of format plugins is code an attacker could reach); GIF gives its first frame. A JPEG
# with several pictures (MPO, as some phones write) opens through the JPEG plugin.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"


def open_image(data: bytes, limits: InputLimits) -> Image.Image:
    """Decode uploaded bytes into a fully loaded PIL image (a JPEG at the reduced size `draft_side` allows).

    Raises:
        BadInputError: see `decode_image`.
    """
    return decode_image(data, limits)[0]


def decode_image(data: bytes, limits: InputLimits) -> tuple[Image.Image, tuple[int, int]]:
    """Decode uploaded bytes into a fully loaded PIL image, and tell the image's own size.

    Returns:
        The image (a JPEG at the reduced size `limits.draft_side` allows) and its width and height as the
        file declares them (before any EXIF rotation): a box found in the image maps back by their ratio.

    Raises:
        BadInputError: empty, over `max_bytes`, not in one of `FORMATS`, over `max_pixels` (decompression
            bombs are refused from their header, before decoding), truncated/corrupt, or with pixels that
            are not finite numbers (a float image holding inf or NaN).
    """
    if not data:
        raise BadInputError("the file is empty")
    if len(data) > limits.max_bytes:
        raise BadInputError(f"the file has {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInputError(
            f"the image is over the limit of {limits.max_pixels:,} pixels for {limits.subject}"
        ) from None
    except Exception:  # UnidentifiedImageError, or a plugin's own error on a header it half recognised
        raise BadInputError(f"not an image in a format the service reads: send {_FORMAT_NAMES}") from None
    full_size = image.size
    try:
        _draft(image, limits.draft_side)
    except Exception as error:  # a header the JPEG plugin half recognised
        raise BadInputError(f"the image data is truncated or corrupt ({error})") from None
    check_pixels(image, limits, full_size)
    try:
        image.load()
        finite = _has_finite_pixels(image)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error ... on bad data
        raise BadInputError(f"the image data is truncated or corrupt ({error})") from None
    if not finite:
        raise BadInputError("the image has pixels that are not finite numbers (inf or NaN)")
    return image, full_size


def _has_finite_pixels(image: Image.Image) -> bool:
    """False for a float image (mode F, e.g. a float TIFF) with an inf or NaN pixel; True for any other."""
    if image.mode != "F":
        return True
    return bool(np.isfinite(np.asarray(image)).all())


def _draft(image: Image.Image, side: int) -> None:
    """Asks a JPEG's decoder for the smallest size (1/2, 1/4, 1/8) whose longer side is at least `side`."""
    width, height = image.size
    if image.format != "JPEG" or not side:
        return
    for scale in (8, 4, 2):
        if max(width, height) // scale >= side:
            # Pillow takes the largest of these scales that the requested size allows: (W // s, H // s)
            # allows s, never more.
            image.draft(None, (max(1, width // scale), max(1, height // scale)))
            return


def check_pixels(image: Image.Image, limits: InputLimits, full_size: tuple[int, int] | None = None) -> None:
    """Raises BadInputError for an image over `max_pixels` (its size is known before it is decoded).

    Args:
        image: opened, not necessarily decoded; its size is the size it decodes at.
        limits: the route's limits.
        full_size: the image's own size when it is decoded at a reduced size (a JPEG), for the message.
    """
    width, height = image.size
    if width * height <= limits.max_pixels:
        return
    decoded = f" ({width}x{height} as decoded)" if full_size and full_size != image.size else ""
    full_width, full_height = full_size or image.size
    raise BadInputError(
        f"the image is {full_width}x{full_height} = {full_width * full_height:,} pixels{decoded}; "
        f"the limit is {limits.max_pixels:,} for {limits.subject}"
    )


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """An image (e.g. a (28, 28) uint8 digit) as the PNG file a client would upload."""
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_from_image(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any digit image -> (28, 28) uint8 model input, by the same normaliser the training data went through.

    Raises:
        BadInputError: the image is blank (no ink stands out from the background), or its pixels are not an
            image the normaliser reads (an array of another shape, float values outside [0, 1]).
    """
    try:
        return normalize_digit(image)
    except EmptyImageError:
        raise BadInputError("the image is blank: no ink stands out from the background") from None
    except ValueError as error:  # pixels the normaliser cannot read as an image (shape, type, range)
        raise BadInputError(f"the image cannot be read as a digit: {error}") from None


def check_count(count: int, limits: InputLimits) -> None:
    """Raises BadInputError for an empty list or one over `max_images`."""
    if count == 0:
        raise BadInputError("no images: send at least one")
    if count > limits.max_images:
        raise BadInputError(f"{count} images in one request; the limit is {limits.max_images}")
