"""Uploaded bytes -> a checked image -> the model's input, with an error that says what was wrong.

Everything a client can get wrong is a `BadInputError` (the service answers 400 with its message); nothing
here can take the server down: sizes are checked before decoding, decoding errors of every kind are caught.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from digitops.preprocess import EmptyImageError, normalize_digit

if TYPE_CHECKING:
    from digitops.config import ServeParams


class BadInputError(ValueError):
    """A request's input is unusable; the message is meant for the client."""


@dataclass(frozen=True)
class InputLimits:
    max_images: int  # per request
    max_bytes: int  # per file
    max_pixels: int  # width x height per image, checked before the pixels are decoded

    @classmethod
    def from_serve(cls, serve: ServeParams | None) -> InputLimits:
        """The service's limits, from params.yaml's `serve` section.

        Args:
            serve: `load_params(...).serve`; None for the defaults that `ServeParams` declares (a client,
                such as `digitops predict`, run where there is no params.yaml).
        """
        if serve is None:
            from digitops.config import ServeParams

            serve = ServeParams.model_construct()  # no validation: only the fields with defaults are set
        return cls(
            max_images=serve.max_images_per_request,
            max_bytes=serve.max_image_bytes,
            max_pixels=serve.max_image_pixels,
        )


# The formats that users send: a drawing, a photo, a scan. Pillow tries no other decoder on uploaded bytes
# (each of its dozens of format plugins is code an attacker could reach); GIF gives its first frame. A JPEG
# with several pictures (MPO, as some phones write) opens through the JPEG plugin.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"


def open_image(data: bytes, limits: InputLimits) -> Image.Image:
    """Decode uploaded bytes into a fully loaded PIL image.

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
        raise BadInputError(f"the image is over the limit of {limits.max_pixels:,} pixels") from None
    except Exception:  # UnidentifiedImageError, or a plugin's own error on a header it half recognised
        raise BadInputError(f"not an image in a format the service reads: send {_FORMAT_NAMES}") from None
    check_pixels(image, limits)
    try:
        image.load()
        finite = _has_finite_pixels(image)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error ... on bad data
        raise BadInputError(f"the image data is truncated or corrupt ({error})") from None
    if not finite:
        raise BadInputError("the image has pixels that are not finite numbers (inf or NaN)")
    return image


def _has_finite_pixels(image: Image.Image) -> bool:
    """False for a float image (mode F, e.g. a float TIFF) with an inf or NaN pixel; True for any other."""
    if image.mode != "F":
        return True
    return bool(np.isfinite(np.asarray(image)).all())


def check_pixels(image: Image.Image, limits: InputLimits) -> None:
    """Raises BadInputError for an image over `max_pixels` (its size is known before it is decoded)."""
    width, height = image.size
    if width * height > limits.max_pixels:
        raise BadInputError(
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}"
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
