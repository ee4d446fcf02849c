from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from digitops.preprocess import (
    BOX_SIZE,
    MNIST_CENTRE,
    EmptyImageError,
    centre_of_mass,
    normalize_digit,
    normalize_digits,
    to_ink,
)
from tests.fakes import FOUR_STROKES, SEVEN_STROKES, canvas_rgba, draw_strokes


def _box_side(image: np.ndarray) -> int:
    rows, cols = np.nonzero(image)
    return max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)


@pytest.mark.parametrize("strokes", [SEVEN_STROKES, FOUR_STROKES])
def test_output_is_mnist_style(strokes):
    out = normalize_digit(draw_strokes(strokes))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert _box_side(out) == BOX_SIZE  # the longer side of the ink fills the 20x20 box
    assert np.abs(centre_of_mass(out[None])[0] - MNIST_CENTRE).max() <= 0.5
    assert out.max() == 255


def test_canvas_rgba_and_grayscale_scan_of_the_same_strokes_agree():
    """A canvas drawing (alpha = ink) and the same strokes scanned black on white give one image."""
    ink = draw_strokes(SEVEN_STROKES)
    from_canvas = normalize_digit(canvas_rgba(ink, colour=(20, 40, 200)))  # blue pen on transparent
    from_scan = normalize_digit(255 - ink)  # black ink on white paper
    from_mnist_style = normalize_digit(ink)  # white ink on black
    np.testing.assert_array_equal(from_canvas, from_mnist_style)
    np.testing.assert_array_equal(from_scan, from_mnist_style)


def test_rgb_photo_with_light_background_is_inverted():
    ink = draw_strokes(FOUR_STROKES).astype(np.float32) / 255
    paper, pen = np.array([235, 230, 215]), np.array([30, 30, 90])  # off-white paper, dark blue pen
    photo = (paper * (1 - ink[..., None]) + pen * ink[..., None]).round().astype(np.uint8)
    expected = normalize_digit(draw_strokes(FOUR_STROKES))
    assert np.abs(normalize_digit(photo).astype(int) - expected).mean() < 2.0


def test_shifting_the_input_does_not_change_the_output():
    base = normalize_digit(draw_strokes(SEVEN_STROKES))
    for offset in [(-40, 0), (25, 20), (0, -35), (13, 7)]:  # strokes stay on the canvas
        np.testing.assert_array_equal(normalize_digit(draw_strokes(SEVEN_STROKES, offset=offset)), base)


def test_small_inputs_are_scaled_up_like_usps():
    sixteen = np.asarray(Image.fromarray(draw_strokes(FOUR_STROKES)).resize((16, 16), Image.Resampling.BOX))
    out = normalize_digit(sixteen)
    assert _box_side(out) == BOX_SIZE
    reference = normalize_digit(draw_strokes(FOUR_STROKES))
    assert np.abs(out.astype(int) - reference).mean() < 20  # the same digit, blurrier


@pytest.mark.parametrize(
    "blank",
    [
        np.zeros((28, 28), np.uint8),
        np.full((100, 80), 255, np.uint8),
        np.full((50, 50, 3), 128, np.uint8),
        np.zeros((256, 256, 4), np.uint8),  # an untouched canvas
        np.full((28, 28), 0.5, np.float32),
        np.random.default_rng(0).integers(0, 12, (64, 64)).astype(np.uint8),  # sensor noise, no stroke
    ],
)
def test_blank_images_raise_instead_of_nan(blank):
    with pytest.raises(EmptyImageError, match="no ink"):
        normalize_digit(blank)


def test_batch_names_the_blank_image():
    images = [draw_strokes(SEVEN_STROKES), np.zeros((30, 30), np.uint8)]
    with pytest.raises(EmptyImageError, match="image 1"):
        normalize_digits(images)
    assert normalize_digits([]).shape == (0, 28, 28)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1", "I;16"])
def test_pil_images_of_every_common_mode(mode):
    ink = draw_strokes(SEVEN_STROKES)
    if mode in ("RGBA", "LA"):
        image = Image.fromarray(canvas_rgba(ink)).convert(mode)
    else:
        image = Image.fromarray(255 - ink).convert(mode)  # black on white
    out = normalize_digit(image)
    assert np.abs(out.astype(int) - normalize_digit(ink)).mean() < 3.0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((28, 28, 2), np.uint8), "expected an image of shape"),
        (np.zeros((0, 28), np.uint8), "the image is empty"),
        (np.full((28, 28), 3.0), r"finite values in \[0, 1\]"),
        (np.full((28, 28), np.nan), r"finite values in \[0, 1\]"),
        (np.zeros((28, 28), np.complex64), "unsupported pixel type"),
    ],
)
def test_arrays_that_are_not_images(bad, message):
    with pytest.raises(ValueError, match=message):
        to_ink(bad)


def _photo(ink: np.ndarray) -> np.ndarray:
    """Dark blue pen on off-white paper, (H, W, 3) uint8."""
    weight = ink.astype(np.float32)[..., None] / 255
    return (
        (np.array([235, 230, 215]) * (1 - weight) + np.array([30, 30, 90]) * weight).round().astype(np.uint8)
    )


def test_rgba_photo_is_read_as_a_picture_not_as_a_canvas():
    ink = draw_strokes(FOUR_STROKES)
    expected = normalize_digit(_photo(ink))
    with_holes = np.dstack([_photo(ink), np.full(ink.shape, 255, np.uint8)])
    with_holes[:2, :2, 3] = 0  # a few transparent corner pixels
    np.testing.assert_array_equal(normalize_digit(with_holes), expected)
    margin = np.zeros((300, 300, 4), np.uint8)  # the photo on a transparent margin
    margin[22:278, 22:278, :3] = _photo(ink)
    margin[22:278, 22:278, 3] = 255
    assert np.abs(normalize_digit(margin).astype(int) - expected).mean() < 3.0


def test_exif_orientation_is_applied(tmp_path):
    upright = Image.fromarray(_photo(draw_strokes(SEVEN_STROKES)))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways camera writes...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with Orientation = rotate 90 clockwise to display
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    out = normalize_digit(Image.open(tmp_path / "photo.jpg"))
    assert np.abs(out.astype(int) - normalize_digit(upright)).mean() < 6.0


def test_ink_touching_the_border_keeps_its_polarity():
    """A tight crop of a bold, squarish 0: its outline is the whole frame; the hole must stay black."""
    zero = np.full((60, 40), 255, np.uint8)
    zero[6:-6, 6:-6] = 0  # ink: 44% of the pixels, 100% of the frame
    out = normalize_digit(zero)
    assert out[14, 14] == 0  # the hole
    assert out[14, 4:24].max() == 255  # the sides


@pytest.mark.parametrize(("size", "width"), [(1000, 6), (3000, 4), (3000, 1)])
def test_thin_strokes_on_large_images_keep_full_strength(size, width):
    strokes = [[(int(x * size / 256), int(y * size / 256)) for x, y in SEVEN_STROKES[0]]]
    out = normalize_digit(draw_strokes(strokes, size=size, width=width))
    assert out.max() == 255
    assert (out > 64).sum() >= 20  # a visible stroke, not a few faint pixels


def test_integer_arrays():
    square = np.pad(np.full((10, 10), 255), 5)  # int64
    np.testing.assert_array_equal(normalize_digit(square), normalize_digit(square.astype(np.uint8)))
    np.testing.assert_array_equal(
        normalize_digit(square.astype(np.uint16) * 257), normalize_digit(square.astype(np.uint8))
    )
    with pytest.raises(ValueError, match=r"integers must be in 0-255"):
        normalize_digit(square * 2)
