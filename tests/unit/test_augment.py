from __future__ import annotations

import numpy as np
import pytest

import digitops.augment
from digitops.augment import augment, build_pipeline, preview_grid
from digitops.config import load_params
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


def test_output_does_not_depend_on_the_number_of_workers(digits, monkeypatch):
    monkeypatch.setattr(digitops.augment, "CHUNK", 7)  # several chunks from 40 digits
    params = PARAMS.model_copy(update={"copies": 2})
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
        "Affine",
        "ElasticTransform",
        "CoarseDropout",
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
