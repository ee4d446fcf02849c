"""Every registered architecture, as timm tests its models: builds, right shapes, valid probabilities."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from digitops.models import build_model, list_models, register_model

SEED_MODELS = ["seed000", "seed001", "seed002", "seed003", "seed004"]


def test_the_seed_architectures_and_our_default_are_registered():
    assert set(SEED_MODELS) | {"digitnet"} <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(KeyError, match=r"unknown model 'lenet'; registered models: digitnet, seed000"):
        build_model("lenet")


def test_a_name_cannot_be_registered_twice():
    def seed000():
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="registered twice"):
        register_model(seed000)


@pytest.mark.parametrize("name", list_models())
def test_model_outputs_probabilities_for_uint8_digits(name):
    model = build_model(name)
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
    assert probabilities.shape == (5, 10) and probabilities.dtype == np.float32
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.inputs[0].dtype == "uint8" and tuple(model.inputs[0].shape) == (None, 28, 28)


def test_seed_parameter_counts_match_their_descriptions():
    assert build_model("seed000").count_params() == 3_274_634  # 3.27 M
    assert build_model("seed003").count_params() == 1_606_064  # 1.61 M


def test_factory_options_are_passed_through():
    plain, regularised = build_model("seed002"), build_model("seed002", l2=1e-3, dropout=0.3)
    assert not plain.losses and len(regularised.losses) == 4  # one L2 term per conv and dense layer
    assert any(layer.__class__.__name__ == "Dropout" for layer in regularised.layers)
    assert build_model("digitnet", width=16).count_params() < build_model("digitnet").count_params()
