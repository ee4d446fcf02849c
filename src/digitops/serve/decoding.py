"""What the service does with an upload's bytes, in a thread off the event loop, a few at a time.

A large image costs a worker memory and CPU while it is decoded: on the event loop, that CPU would stall
every other request of the worker, and any number of concurrent uploads would each hold their decoded
pixels at once. So the routes read an upload's bytes only (`schemas`), and call these functions through
`Decoders`: each kind of upload (digit images, photos) has its own limit on concurrent decodes per worker;
more requests wait for a turn holding only their bytes, and a digit never waits behind a photo.

Every function raises `BadInputError` for a bad upload, which fails its own request only (a 400).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import anyio
import numpy as np
from PIL import ExifTags, Image

from digitops.infer.inputs import (
    BadInputError,
    InputLimits,
    check_pixels,
    decode_image,
    digit_from_image,
    open_image,
)
from digitops.infer.reader import Reader
from digitops.infer.segment import ReadResult, read_digits

T = TypeVar("T")


class Decoders:
    """A worker's bounded decoding: at most `digits` digit requests and `photos` photos at once, in threads.

    Each waiting request holds its upload's bytes only (bounded by the request size limit): the decoded
    pixels of at most `digits` + `photos` uploads are in memory at once, whatever the burst.
    """

    def __init__(self, digits: int, photos: int) -> None:
        self._digits = anyio.CapacityLimiter(digits)
        self._photos = anyio.CapacityLimiter(photos)

    async def digits(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a thread, when one of the digit uploads' turns is free."""
        return await anyio.to_thread.run_sync(partial(function, *args), limiter=self._digits)

    async def photos(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a thread, when one of the photos' turns is free."""
        return await anyio.to_thread.run_sync(partial(function, *args), limiter=self._photos)


def digit_from_upload(upload: bytes | Image.Image, limits: InputLimits) -> np.ndarray:
    """One uploaded file (or an image a Python caller passed) -> its (28, 28) uint8 digit."""
    if isinstance(upload, Image.Image):
        check_pixels(upload, limits)
        return digit_from_image(upload)
    return digit_from_image(open_image(upload, limits))


def digits_from_uploads(uploads: Sequence[bytes | Image.Image], limits: InputLimits) -> np.ndarray:
    """A request's uploaded files -> (B, 28, 28) uint8 digits, one at a time (one decoded image at once).

    Raises:
        BadInputError: naming the first bad file by its 0-based index when there are several.
    """
    digits = []
    for index, upload in enumerate(uploads):
        try:
            digits.append(digit_from_upload(upload, limits))
        except BadInputError as error:
            raise BadInputError(f"image {index}: {error}" if len(uploads) > 1 else str(error)) from None
    return np.stack(digits)


def read_photo(
    upload: bytes | Image.Image,
    limits: InputLimits,
    classify: Callable[[np.ndarray], np.ndarray],
    reader: Reader | None = None,
) -> ReadResult:
    """A photo of several digits -> its digits in reading order, with boxes in the photo's own pixels.

    The photo is analysed at about `limits.draft_side` pixels on its longer side, the segmenter's analysis
    size: a JPEG is decoded at a reduced size, any other format is reduced right after decoding, so that
    segmenting never works on more pixels than it uses.
    """
    if isinstance(upload, Image.Image):
        check_pixels(upload, limits)
        image, full_size = upload, upload.size
    else:
        image, full_size = decode_image(upload, limits)
    factor = max(image.size) // limits.draft_side if limits.draft_side else 1
    if factor >= 2:  # block averages: what the segmenter's own BOX resize would make of the full image
        image = image.reduce(factor)  # keeps the EXIF orientation the segmenter applies
    scale = max(full_size) / max(image.size)  # the photo's pixels per analysed pixel, on either side
    result = read_digits(image, classify, reader)
    if scale == 1:
        return result
    width, height = full_size
    if _turns(image):  # the segmenter's boxes are in the upright photo's pixels
        width, height = height, width
    return replace(
        result,
        digits=[replace(d, box=_scaled(d.box, scale, (width, height))) for d in result.digits],
        separators=[replace(s, box=_scaled(s.box, scale, (width, height))) for s in result.separators],
    )


def _turns(image: Image.Image) -> bool:
    """True when the image's EXIF orientation turns it a quarter (its width and height swap upright)."""
    return image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8)


def _scaled(box: tuple[int, int, int, int], scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, width, height) in analysed pixels -> in the photo's own pixels (`size`: its width, height)."""
    x0, y0 = min(round(box[0] * scale), size[0] - 1), min(round(box[1] * scale), size[1] - 1)
    x1, y1 = min(round((box[0] + box[2]) * scale), size[0]), min(round((box[1] + box[3]) * scale), size[1])
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)
