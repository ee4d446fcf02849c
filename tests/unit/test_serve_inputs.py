"""What the service accepts: checked sizes before decoding, and an error message for every bad upload."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from digitops.infer.inputs import BadInputError, InputLimits, check_count, digit_from_image, open_image
from digitops.preprocess import normalize_digit
from tests.fakes import SEVEN_STROKES, canvas_rgba, draw_strokes

LIMITS = InputLimits(max_images=4, max_bytes=100_000, max_pixels=1_000_000)


def _encode(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def test_a_png_and_a_jpeg_decode():
    digit = Image.fromarray(draw_strokes(SEVEN_STROKES))
    assert open_image(_encode(digit), LIMITS).size == digit.size
    assert open_image(_encode(digit.convert("RGB"), "JPEG"), LIMITS).mode == "RGB"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"GIF89a but not really", "not an image"),
        (b"<html>hello</html>", "not an image"),
        (b"x" * 100_001, "the limit is 100,000"),
    ],
)
def test_unusable_bytes_are_refused_with_a_reason(data, message):
    with pytest.raises(BadInputError, match=message):
        open_image(data, LIMITS)


def test_a_truncated_png_is_refused():
    data = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
    with pytest.raises(BadInputError, match="truncated or corrupt"):
        open_image(data[: len(data) // 2], LIMITS)


def test_pixels_over_the_limit_are_refused_before_decoding():
    data = _encode(Image.new("L", (1001, 1000)))
    with pytest.raises(BadInputError, match="1001x1000 = 1,001,000 pixels; the limit is 1,000,000"):
        open_image(data, LIMITS)


def test_a_blank_image_is_refused_and_a_drawing_is_normalised_as_in_training():
    with pytest.raises(BadInputError, match="blank"):
        digit_from_image(Image.new("L", (280, 280), 255))
    canvas = canvas_rgba(draw_strokes(SEVEN_STROKES))
    np.testing.assert_array_equal(digit_from_image(canvas), normalize_digit(canvas))


@pytest.mark.parametrize(("count", "ok"), [(0, False), (1, True), (4, True), (5, False)])
def test_the_image_count_is_limited(count, ok):
    if ok:
        check_count(count, LIMITS)
    else:
        with pytest.raises(BadInputError):
            check_count(count, LIMITS)


@pytest.mark.parametrize("format", ["WEBP", "BMP", "TIFF", "GIF"])
def test_the_other_formats_users_send_decode(format):
    digit = Image.fromarray(draw_strokes(SEVEN_STROKES))
    assert open_image(_encode(digit, format), LIMITS).size == digit.size


def test_a_gif_gives_its_first_frame():
    frames = [Image.new("L", (28, 28), 0), Image.new("L", (28, 28), 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(open_image(buffer.getvalue(), LIMITS).convert("L")).max() == 0


@pytest.mark.parametrize("format", ["PCX", "ICO", "TGA", "PPM"])
def test_a_format_users_do_not_send_is_not_decoded(format):
    """Pillow reads these, but no plugin outside the accepted list touches uploaded bytes."""
    data = _encode(Image.fromarray(draw_strokes(SEVEN_STROKES)).resize((56, 56)).convert("RGB"), format)
    assert Image.open(io.BytesIO(data)).format == format  # a well-formed file of that format
    with pytest.raises(BadInputError, match="not an image in a format the service reads: send PNG, JPEG"):
        open_image(data, LIMITS)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_a_float_tiff_with_a_non_finite_pixel_is_refused(value):
    seven = Image.fromarray(draw_strokes(SEVEN_STROKES)).resize((56, 56))
    pixels = np.asarray(seven, dtype=np.float32) / 255  # (56, 56) float32 in [0, 1]
    pixels[28, 28] = value  # one pixel in the middle, where a min/max scan could skip a NaN
    data = _encode(Image.fromarray(pixels, mode="F"), "TIFF")
    with pytest.raises(BadInputError, match=r"pixels that are not finite numbers \(inf or NaN\)"):
        open_image(data, LIMITS)
    finite = _encode(Image.fromarray(np.nan_to_num(pixels, nan=0, posinf=1, neginf=0), mode="F"), "TIFF")
    assert open_image(finite, LIMITS).mode == "F"


def test_pixels_the_normaliser_cannot_read_are_refused_with_its_reason():
    with pytest.raises(BadInputError, match="cannot be read as a digit: a float image must hold finite"):
        digit_from_image(np.full((28, 28), 2.0, dtype=np.float32))
    with pytest.raises(BadInputError, match="cannot be read as a digit: expected an image of shape"):
        digit_from_image(np.zeros((28, 28, 2), dtype=np.uint8))
