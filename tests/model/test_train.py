"""Training on real digits (a small stratified sample of MNIST from the mirror)."""

from __future__ import annotations

import numpy as np
import pytest

from digitops.config import TrainParams
from digitops.data.fetch import fetch_source_files
from digitops.data.ingest import ingest_source
from digitops.data.sources import get_source
from digitops.train import predict_probabilities, train_model

PARAMS = TrainParams(
    model="small_cnn",
    model_kwargs={},
    epochs=3,
    batch_size=64,
    learning_rate=0.003,
    clipnorm=1.0,
    lr_schedule="cosine",
    early_stopping_patience=3,
    label_smoothing=0.05,
    distribute="default",
)


@pytest.fixture(scope="module")
def digits(mirror, tmp_path_factory):
    source = get_source("mnist")
    arrays = ingest_source(
        source, fetch_source_files(source, mirror, tmp_path_factory.mktemp("c")), 1000, seed=0
    )
    train = arrays["split"] == "train"
    return (arrays["images"][train], arrays["labels"][train]), (
        arrays["images"][~train],
        arrays["labels"][~train],
    )


def test_loss_goes_down_and_the_model_learns(digits, tmp_path):
    train, val = digits
    model, history = train_model(
        train, val, PARAMS, seed=1, checkpoint_path=tmp_path / "best.keras", verbose=0
    )
    losses = history.history["loss"]
    assert losses[-1] < losses[0] * 0.7
    accuracy = (predict_probabilities(model, val[0]).argmax(axis=1) == val[1]).mean()
    assert accuracy > 0.8  # chance is 0.1
    assert (tmp_path / "best.keras").exists()  # checkpointed on validation accuracy


def test_training_is_reproducible_for_a_seed(digits, tmp_path):
    train, val = digits
    params = PARAMS.model_copy(update={"epochs": 1})
    first, _ = train_model(train, val, params, seed=3, checkpoint_path=tmp_path / "a.keras", verbose=0)
    second, _ = train_model(train, val, params, seed=3, checkpoint_path=tmp_path / "b.keras", verbose=0)
    np.testing.assert_allclose(
        predict_probabilities(first, val[0][:50]), predict_probabilities(second, val[0][:50]), atol=1e-5
    )


def test_plateau_schedule_and_early_stopping_keep_the_best_epoch(digits, tmp_path):
    train, val = digits
    params = PARAMS.model_copy(update={"epochs": 4, "lr_schedule": "plateau", "early_stopping_patience": 1})
    model, history = train_model(
        train, val, params, seed=2, checkpoint_path=tmp_path / "best.keras", verbose=0
    )
    best = max(history.history["val_accuracy"])
    accuracy = (predict_probabilities(model, val[0]).argmax(axis=1) == val[1]).mean()
    assert accuracy == pytest.approx(best, abs=1e-6)  # restored to the best validation epoch


def test_a_mirrored_strategy_trains_the_same_way(digits, tmp_path):
    """MirroredStrategy on this machine's one device (the CPU here, every GPU where there are some)."""
    train, val = digits
    params = PARAMS.model_copy(update={"epochs": 1, "distribute": "mirrored"})
    model, history = train_model(train, val, params, seed=1, checkpoint_path=tmp_path / "m.keras", verbose=0)
    assert history.history["loss"][0] < 2.3  # below chance's cross-entropy after one epoch
    assert "Mirrored" in type(model.distribute_strategy).__name__
