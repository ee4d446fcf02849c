"""The temperature inside the model (digitops.calibration): every registered model takes it in its softmax
layer, the saved .keras file and the ONNX export carry it, a model without that layer is refused, and on a
small model trained for real with label smoothing it lowers the calibration error on held-out digits."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from digitops.calibration import apply_temperature, calibrate_model, negative_log_likelihood, temper
from digitops.config import TrainParams
from digitops.data.fetch import fetch_source_files
from digitops.data.ingest import ingest_source
from digitops.data.sources import get_source
from digitops.evaluate import expected_calibration_error
from digitops.export import export_onnx
from digitops.infer.classifier import load_classifier
from digitops.models import build_model, list_models
from digitops.models.registry import OUTPUT_LAYER, digit_input
from digitops.train import predict_probabilities, train_model
from tests.fakes import random_digits


def _answers(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False))


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_takes_the_temperature_in_its_softmax_layer(name):
    keras.utils.set_random_seed(0)
    model = build_model(name)
    images = random_digits(16, seed=1)
    before = _answers(model, images)  # (16, 10)
    layers_before = len(model.layers)
    apply_temperature(model, 0.5)
    after = _answers(model, images)
    assert len(model.layers) == layers_before  # no new layer: the softmax layer's weights changed
    np.testing.assert_allclose(after, temper(before, 0.5), atol=1e-5)
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))


def _model_ending_in(layer: keras.layers.Layer) -> keras.Model:
    inputs, x = digit_input()
    return keras.Model(inputs, layer(keras.layers.Flatten()(x)), name="custom")


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Dense(10, name=OUTPUT_LAYER),  # logits, no softmax
        keras.layers.Dense(10, activation="softmax", name="head"),  # not the registry's head
        keras.layers.Dense(10, activation="sigmoid", name=OUTPUT_LAYER),
    ],
    ids=["no-softmax", "other-name", "sigmoid"],
)
def test_a_model_without_the_registry_softmax_layer_is_refused(layer):
    model = _model_ending_in(layer)
    weights = [w.copy() for w in model.get_weights()]
    probabilities = np.full((4, 10), 0.1)
    with pytest.raises(ValueError, match=f"Dense softmax layer named '{OUTPUT_LAYER}'.*model 'custom'"):
        calibrate_model(model, probabilities, np.arange(4), 15)
    with pytest.raises(ValueError, match="temperature scaling needs"):
        apply_temperature(model, 0.5)
    for kept, weight in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, weight)  # left as it was


def test_the_keras_file_and_the_onnx_export_carry_the_temperature(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn")
    images = random_digits(64, seed=2)
    before = _answers(model, images)
    apply_temperature(model, 0.3)
    model.save(tmp_path / "calibrated.keras")
    loaded = keras.saving.load_model(tmp_path / "calibrated.keras", compile=False)
    expected = temper(before, 0.3)
    np.testing.assert_allclose(_answers(loaded, images), expected, atol=1e-5)
    served = load_classifier(export_onnx(loaded, tmp_path / "calibrated.onnx"))
    onnx_answers = served(images)
    np.testing.assert_allclose(onnx_answers, _answers(model, images), atol=1e-5)  # ONNX answers as Keras
    np.testing.assert_allclose(onnx_answers, expected, atol=1e-5)
    np.testing.assert_array_equal(onnx_answers.argmax(axis=1), before.argmax(axis=1))


@pytest.fixture(scope="module")
def digits(mirror, tmp_path_factory):
    """MNIST from the mirror, 1000 digits per official split: (train, fit half, check half of test)."""
    source = get_source("mnist")
    arrays = ingest_source(
        source, fetch_source_files(source, mirror, tmp_path_factory.mktemp("c")), 1000, seed=0
    )
    train = np.flatnonzero(arrays["split"] == "train")
    held_out = np.flatnonzero(arrays["split"] != "train")
    images, labels = arrays["images"], arrays["labels"]
    return tuple((images[rows], labels[rows]) for rows in (train, held_out[::2], held_out[1::2]))


def test_calibration_lowers_the_error_of_a_label_smoothed_model_on_held_out_digits(digits, tmp_path):
    train, fit, check = digits
    params = TrainParams(
        model="small_cnn",
        model_kwargs={},
        epochs=3,
        batch_size=64,
        learning_rate=0.003,
        clipnorm=1.0,
        lr_schedule="cosine",
        early_stopping_patience=3,
        label_smoothing=0.1,  # leaves the model underconfident, as the pipeline's smoothing does
        calibrate=True,
        distribute="default",
        source_mix={},
    )
    model, _ = train_model(train, fit, params, seed=1, checkpoint_path=tmp_path / "best.keras", verbose=0)
    fit_before = predict_probabilities(model, fit[0])
    check_before = predict_probabilities(model, check[0])
    summary = calibrate_model(model, fit_before, fit[1], bins=15)
    assert summary["temperature"] < 1  # sharpened
    assert summary["val_ece_after"] < summary["val_ece_before"]
    assert summary["val_nll_after"] < summary["val_nll_before"]
    check_after = predict_probabilities(model, check[0])  # the calibrated model's own answers
    np.testing.assert_allclose(check_after, temper(check_before, summary["temperature"]), atol=1e-5)
    np.testing.assert_array_equal(check_after.argmax(axis=1), check_before.argmax(axis=1))
    labels = check[1]
    ece_before, ece_after = (expected_calibration_error(p, labels, 15) for p in (check_before, check_after))
    assert ece_after < ece_before * 0.7, (ece_before, ece_after)
    assert negative_log_likelihood(check_after, labels) < negative_log_likelihood(check_before, labels)
