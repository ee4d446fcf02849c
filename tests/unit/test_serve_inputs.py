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


# ---------------------------------------------------------------------------------- per-route limits, drafts

DIGIT_LIMITS = InputLimits(max_images=4, max_bytes=10_000_000, max_pixels=1_048_576)
PHOTO_LIMITS = InputLimits(4, 10_000_000, 13_000_000, draft_side=1600, subject="a photo")


def _large_seven(size: tuple[int, int]) -> Image.Image:
    """A black 7 filling half the height of a white RGB image of `size` (a phone photo of one digit)."""
    ink = Image.fromarray(draw_strokes(SEVEN_STROKES)).resize((size[1] // 2, size[1] // 2))
    image = Image.new("RGB", size, "white")
    image.paste("black", ((size[0] - ink.width) // 2, size[1] // 4), mask=ink)
    return image


def test_a_large_jpeg_is_decoded_reduced_to_what_a_digit_needs_and_reads_the_same():
    photo = _large_seven((4000, 3000))
    data = _encode(photo, "JPEG")
    image = open_image(data, DIGIT_LIMITS)  # 12 MP, over the digit limit, but decoded at 1/4
    assert image.size == (1000, 750)
    assert max(image.size) >= DIGIT_LIMITS.draft_side
    full = normalize_digit(photo).astype(np.float32)
    assert np.abs(normalize_digit(image).astype(np.float32) - full).mean() < 4  # of 255: the same digit


def test_a_png_over_a_digit_routes_limit_is_refused_there_and_read_as_a_photo():
    data = _encode(_large_seven((2000, 1500)))
    with pytest.raises(BadInputError, match=r"2000x1500 = 3,000,000 pixels; the limit is 1,048,576 for a"):
        open_image(data, DIGIT_LIMITS)
    assert open_image(data, PHOTO_LIMITS).size == (2000, 1500)  # no draft for a PNG


def test_a_jpeg_too_large_even_reduced_names_both_sizes():
    data = _encode(Image.new("RGB", (9000, 1000), "white"), "JPEG")  # 1/8: 1125x125, still over 100,000
    with pytest.raises(BadInputError, match=r"9000x1000 = 9,000,000 pixels \(1125x125 as decoded\); the"):
        open_image(data, InputLimits(1, 10_000_000, 100_000))


def test_a_photo_is_read_reduced_and_its_boxes_are_in_its_own_pixels():
    from digitops.serve.decoding import read_photo

    small = _large_seven((800, 600))
    large = small.resize((3200, 2400), Image.Resampling.NEAREST)

    def classify(digits):
        return np.full((len(digits), 10), 0.1, np.float32)

    [small_digit] = read_photo(_encode(small), PHOTO_LIMITS, classify).digits
    for data in (_encode(large), _encode(large, "JPEG")):  # reduced after decoding, or decoded reduced
        [digit] = read_photo(data, PHOTO_LIMITS, classify).digits
        assert digit.box == pytest.approx([4 * side for side in small_digit.box], abs=8)


def test_decoders_run_at_most_their_limit_at_once_off_the_event_loop():
    import threading
    import time

    import anyio

    from digitops.serve.decoding import Decoders

    running, most, lock = [0], [0], threading.Lock()
    loop_thread = threading.get_ident()

    def decode() -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return threading.get_ident()

    async def burst() -> list[int]:
        decoders = Decoders(digits=2, photos=1)
        threads = []

        async def one(kind) -> None:
            threads.append(await kind(decode))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(one, decoders.digits)
        assert most[0] == 2
        most[0] = 0
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(one, decoders.photos)
        assert most[0] == 1
        return threads

    assert loop_thread not in anyio.run(burst)
