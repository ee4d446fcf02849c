from __future__ import annotations

import cv2
import numpy as np
import pytest

import digitops.augment
from digitops.augment import augment, build_pipeline, preview_grid
from digitops.config import REAL_WORLD_AUGMENTATIONS, load_params
from digitops.preprocess import normalize_digit
from tests.fakes import REPO_ROOT, draw_strokes, random_digits

PARAMS = load_params(REPO_ROOT / "params.yaml").augment


@pytest.fixture(scope="module")
def digits():
    return random_digits(40, seed=5)


def test_same_seed_same_bytes_other_seed_other_bytes(digits):
    first = augment(digits, PARAMS, seed=1, workers=1)
    assert first.shape == digits.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(augment(digits, PARAMS, seed=1, workers=1), first)
    assert not np.array_equal(augment(digits, PARAMS, seed=2, workers=1), first)
    assert not np.array_equal(first, digits)


REAL_WORLD = list(REAL_WORLD_AUGMENTATIONS)
CLASSIC = ["affine", "elastic", "noise", "dropout", "brightness_contrast"]


def _with_p(params, names, p):
    return params.model_copy(
        update={name: getattr(params, name).model_copy(update={"p": p}) for name in names}
    )


def _only(name, **settings):
    """Every transform off but `name`, which is always on (with `settings` replacing its strengths)."""
    quiet = _with_p(PARAMS, CLASSIC + REAL_WORLD, 0.0).model_copy(update={"invert_p": 0.0})
    return quiet.model_copy(update={name: getattr(PARAMS, name).model_copy(update={"p": 1.0, **settings})})


@pytest.mark.parametrize("real_world", [False, True], ids=["repository-params", "real-world-on"])
def test_output_does_not_depend_on_the_number_of_workers(digits, monkeypatch, real_world):
    monkeypatch.setattr(digitops.augment, "CHUNK", 7)  # several chunks from 40 digits
    params = PARAMS.model_copy(update={"copies": 2})
    if real_world:  # the new transforms draw from albumentations' generators too: still reproducible
        params = _with_p(params, REAL_WORLD, 0.5)
    one = augment(digits, params, seed=3, workers=1)
    assert one.shape == (80, 28, 28)
    np.testing.assert_array_equal(augment(digits, params, seed=3, workers=2), one)


def _only_geometry(params):
    off = {"p": 0.0}
    return params.model_copy(
        update={
            "noise": params.noise.model_copy(update=off),
            "dropout": params.dropout.model_copy(update=off),
            "brightness_contrast": params.brightness_contrast.model_copy(update=off),
            "invert_p": 0.0,
        }
    )


def test_a_moved_one_stays_in_frame():
    """The geometry (rotation, shear, zoom, shift, elastic) keeps a digit's meaning: a 1, the tallest
    digit, is never pushed out of the 28x28 field."""
    one = normalize_digit(draw_strokes([[(128, 30), (128, 226)]]))
    moved = augment(np.repeat(one[None], 300, axis=0), _only_geometry(PARAMS), seed=0, workers=1)
    edges = np.concatenate([moved[:, 0], moved[:, -1], moved[:, :, 0], moved[:, :, -1]], axis=1)
    assert (edges.max(axis=1) > 64).mean() < 0.05  # (3% here: the largest zoom plus shift grazes the edge)
    rows_with_ink = (moved > 64).any(axis=2)
    height = 28 - rows_with_ink[:, ::-1].argmax(axis=1) - rows_with_ink.argmax(axis=1)
    assert height.min() >= 15  # still a long upright stroke: still a 1
    assert len({image.tobytes() for image in moved}) > 250  # and the copies differ


def test_every_configured_transform_is_in_the_pipeline():
    names = [type(transform).__name__ for transform in build_pipeline(PARAMS, seed=0).transforms]
    assert names == [
        "Affine",  # slant
        "Morphological",  # thicker
        "KeepInkErosion",  # thinner
        "Affine",
        "ElasticTransform",
        "CoarseDropout",
        "GaussianBlur",
        "MotionBlur",
        "Binarize",
        "Downscale",  # low resolution
        "PaperResidue",
        "RandomBrightnessContrast",
        "GaussNoise",
        "InvertImg",
    ]


def test_inversion_probability_is_honoured(digits):
    always = PARAMS.model_copy(
        update={"invert_p": 1.0, "affine": PARAMS.affine.model_copy(update={"p": 0.0})}
    )
    quiet = always.model_copy(
        update={
            "elastic": PARAMS.elastic.model_copy(update={"p": 0.0}),
            "noise": PARAMS.noise.model_copy(update={"p": 0.0}),
            "dropout": PARAMS.dropout.model_copy(update={"p": 0.0}),
            "brightness_contrast": PARAMS.brightness_contrast.model_copy(update={"p": 0.0}),
        }
    )
    np.testing.assert_array_equal(augment(digits, quiet, seed=0, workers=1), 255 - digits)


def test_preview_grid_puts_each_original_beside_its_copies(digits):
    augmented = augment(digits, PARAMS.model_copy(update={"copies": 2}), seed=0, workers=1)
    grid = preview_grid(digits, augmented, copies=2, count=10, per_row=4)
    assert grid.shape == (3 * 30, 4 * (3 * 30 + 6))
    np.testing.assert_array_equal(grid[1:29, 1:29], digits[0])
    np.testing.assert_array_equal(grid[1:29, 31:59], augmented[0])
    np.testing.assert_array_equal(grid[1:29, 61:89], augmented[len(digits)])


# Real-world conditions, one at a time on synthetic digits.


def _ink(images):
    return images.astype(np.int64).sum(axis=(1, 2))


@pytest.fixture(scope="module")
def seven():
    """A synthetic 7 in MNIST framing: a 3-px pen with soft edges, inside rows and columns 4-23."""
    digit = np.zeros((28, 28), np.uint8)
    cv2.polylines(digit, [np.array([(8, 7), (19, 7), (12, 20)], np.int32)], False, 255, thickness=3)
    return cv2.GaussianBlur(digit, (3, 3), 0.6)


def _apply(digit, params, copies=20, seed=0):
    """`copies` augmented versions of one digit: (copies, 28, 28) uint8."""
    out = augment(np.repeat(digit[None], copies, axis=0), params, seed=seed, workers=1)
    assert out.shape == (copies, 28, 28) and out.dtype == np.uint8
    return out


@pytest.mark.parametrize("name", REAL_WORLD)
def test_each_real_world_transform_is_reproducible_and_keeps_the_frame(seven, name):
    out = _apply(seven, _only(name))
    np.testing.assert_array_equal(_apply(seven, _only(name)), out)
    assert not np.array_equal(out[0], seven)  # it did something
    border = np.ones((28, 28), bool)
    border[3:-3, 3:-3] = False
    assert (
        out[:, border] <= 64
    ).all()  # no ink pushed into the frame's border: white on black, MNIST framing
    assert (out.reshape(len(out), -1).max(axis=1) >= 128).all()  # the ink is still bright


def test_all_probabilities_zero_change_nothing(digits):
    off = _with_p(PARAMS, CLASSIC + REAL_WORLD, 0.0).model_copy(update={"invert_p": 0.0, "copies": 2})
    np.testing.assert_array_equal(augment(digits, off, seed=0, workers=1), np.concatenate([digits, digits]))


def test_thicker_adds_ink(seven):
    out = _apply(seven, _only("thicker"), copies=1)
    assert _ink(out)[0] > 1.15 * _ink(seven[None])[0]
    assert (out[0] >= seven).all()  # dilation only ever adds


def test_thinner_removes_some_ink_but_never_all(seven):
    out = _apply(seven, _only("thinner"), copies=1)
    assert 0.4 * _ink(seven[None])[0] <= _ink(out)[0] < 0.8 * _ink(seven[None])[0]
    hairline = np.zeros((28, 28), np.uint8)
    hairline[4:24, 14] = 255  # 1 px wide: any erosion would erase it
    np.testing.assert_array_equal(_apply(hairline, _only("thinner"), copies=1)[0], hairline)


def test_binarized_digit_has_two_grey_levels(seven):
    out = _apply(seven, _only("binarize"))
    assert set(np.unique(out)) == {0, 255}
    assert (out == 255).any(axis=(1, 2)).all()


def test_low_resolution_loses_fine_detail():
    stripes = np.zeros((28, 28), np.uint8)
    stripes[6:22, 6:22:2] = 255  # 1-px stripes: finer than a 16x16 scan can hold
    out = _apply(stripes, _only("low_resolution", scale=(16 / 28, 16 / 28)), copies=1)[0]
    assert (
        np.abs(np.diff(out[6:22, 6:22].astype(int), axis=1)).mean()
        < 0.5 * np.abs(np.diff(stripes[6:22, 6:22].astype(int), axis=1)).mean()
    )


def _column(rows):
    """The mean column of the ink in `rows` (a horizontal position)."""
    weights = rows.astype(float).sum(axis=0)
    return (weights * np.arange(rows.shape[1])).sum() / weights.sum()


def test_slant_moves_the_top_of_a_vertical_bar_sideways():
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 13:15] = 255
    for slanted in _apply(bar, _only("slant", shear=(15.0, 15.0)), copies=3):
        top, bottom = _column(slanted[4:8]), _column(slanted[20:24])
        assert abs(top - bottom) >= 3  # tan(15 degrees) over 16 rows: about 4 px
        assert abs((top + bottom) / 2 - 13.5) < 1  # a shear about the centre: the middle stays
        assert (slanted[:4] == 0).all() and (slanted[24:] == 0).all()  # horizontal only: rows stay
    left = _apply(bar, _only("slant", shear=(-15.0, -15.0)), copies=1)[0]
    assert np.sign(_column(left[4:8]) - 13.5) != np.sign(_column(slanted[4:8]) - 13.5)


def test_residue_raises_the_background_and_leaves_the_ink_brighter(seven):
    out = _apply(seven, _only("residue"))
    background = seven == 0
    assert (out[:, background].mean(axis=1) > 3).all()  # a faint texture where the paper was black
    assert (out[:, background].max(axis=1) <= PARAMS.residue.level[1]).all()
    ink = seven >= 128
    assert (out[:, ink] == seven[ink]).all()  # the ink is untouched, brighter than any residue
    assert len({image.tobytes() for image in out}) == len(out)  # a different texture each time


def test_blurs_soften_edges(seven):
    for name in ("gaussian_blur", "motion_blur"):
        out = _apply(seven, _only(name), copies=1)[0]
        assert (
            np.abs(np.diff(out.astype(int), axis=1)).sum() < np.abs(np.diff(seven.astype(int), axis=1)).sum()
        )
