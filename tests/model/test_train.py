"""Training on real digits (a small stratified sample of MNIST from the mirror), and the per-source mix
that chooses each epoch's training rows."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from digitops.config import SourceMixParams, TrainParams, load_params
from digitops.data.fetch import fetch_source_files
from digitops.data.ingest import ingest_source
from digitops.data.sources import get_source
from digitops.train import (
    epoch_indices,
    make_dataset,
    mix_counts,
    predict_probabilities,
    steps_per_epoch,
    train_model,
)
from tests.fakes import REPO_ROOT

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
    calibrate=True,
    distribute="default",
    source_mix={},
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


# --- The per-source mix -------------------------------------------------------------------------------------

# A training set of three sources, each with every digit equally often: 1000 + 300 + 50 rows.
SOURCES = np.repeat(np.array(["mnist", "usps", "drawings"]), [1000, 300, 50])
LABELS = np.concatenate([np.arange(1000) % 10, np.arange(300) % 10, np.arange(50) % 10])


def _mix(**entries: dict) -> dict[str, SourceMixParams]:
    return {name: SourceMixParams(**entry) for name, entry in entries.items()}


def _per_source(rows: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(SOURCES[rows], return_counts=True)
    return dict(zip(names.tolist(), counts.tolist(), strict=True))


def test_shares_and_caps_are_respected_per_source_and_keep_the_digit_balance():
    mix = _mix(mnist={"share": 0.25}, usps={"max_per_epoch": 100})
    rows = epoch_indices(SOURCES, LABELS, mix, seed=7, epoch=0)
    assert _per_source(rows) == {"mnist": 250, "usps": 100, "drawings": 50} == mix_counts(SOURCES, mix)
    assert len(np.unique(rows)) == len(rows)  # drawn without replacement
    for source, per_digit in (("mnist", 25), ("usps", 10)):
        mine = rows[SOURCES[rows] == source]
        assert np.bincount(LABELS[mine], minlength=10).tolist() == [per_digit] * 10  # stratified by label
    # With both knobs the smaller count wins; a cap above the source's size does not up-weight it.
    both = _mix(mnist={"share": 0.5, "max_per_epoch": 300}, usps={"share": 0.2, "max_per_epoch": 100})
    assert mix_counts(SOURCES, both) == {"drawings": 50, "mnist": 300, "usps": 60}
    assert mix_counts(SOURCES, _mix(drawings={"max_per_epoch": 500}))["drawings"] == 50


def test_the_repository_params_cap_the_drawings_of_an_epoch():
    """The pool of contributed drawings, however large it grows, draws at most its cap per epoch."""
    mix = load_params(REPO_ROOT / "params.yaml").train.source_mix
    cap = mix["drawings"].max_per_epoch
    assert cap is not None
    sources = np.repeat(np.array(["mnist", "drawings"]), [1000, 3 * cap])  # three times the cap
    labels = np.arange(len(sources)) % 10
    assert mix_counts(sources, mix) == {"drawings": cap, "mnist": 1000}
    rows = epoch_indices(sources, labels, mix, seed=7, epoch=0)
    assert (sources[rows] == "drawings").sum() == cap and (sources[rows] == "mnist").sum() == 1000
    few = np.repeat(np.array(["mnist", "drawings"]), [1000, 50])  # under the cap: each drawing once
    assert mix_counts(few, mix)["drawings"] == 50


def test_unlisted_sources_are_used_whole_and_once():
    rows = epoch_indices(SOURCES, LABELS, _mix(mnist={"share": 0.1}), seed=7, epoch=3)
    np.testing.assert_array_equal(rows[SOURCES[rows] != "mnist"], np.arange(1000, 1350))


def test_an_empty_mix_or_one_naming_absent_sources_selects_every_row_once():
    for mix in ({}, _mix(emnist_digits={"share": 0.1})):
        np.testing.assert_array_equal(epoch_indices(SOURCES, LABELS, mix, seed=7, epoch=0), np.arange(1350))
        assert steps_per_epoch(1350, 100, SOURCES, mix) == 14


def test_each_epoch_draws_afresh_and_the_same_seed_draws_the_same():
    mix = _mix(mnist={"share": 0.3})
    first, second = (epoch_indices(SOURCES, LABELS, mix, seed=7, epoch=epoch) for epoch in (0, 1))
    assert len(first) == len(second) and not np.array_equal(first, second)
    np.testing.assert_array_equal(first, epoch_indices(SOURCES, LABELS, mix, seed=7, epoch=0))
    assert not np.array_equal(first, epoch_indices(SOURCES, LABELS, mix, seed=8, epoch=0))


def test_a_share_above_one_repeats_a_small_source():
    rows = epoch_indices(SOURCES, LABELS, _mix(drawings={"share": 3.5}), seed=7, epoch=0)
    times = np.bincount(rows, minlength=1350)[1300:]  # how often each drawing is used
    assert sorted(np.unique(times).tolist()) == [3, 4] and (times == 4).sum() == 25
    assert _per_source(rows) == {"mnist": 1000, "usps": 300, "drawings": 175}


def test_a_mix_needs_the_sources_and_some_digits():
    with pytest.raises(ValueError, match="source of each training digit"):
        epoch_indices(None, LABELS, _mix(mnist={"share": 0.5}), seed=7, epoch=0)
    nothing = _mix(mnist={"share": 0.0001}, usps={"share": 0.0001}, drawings={"share": 0.0001})
    with pytest.raises(ValueError, match="no training digits"):
        steps_per_epoch(1350, 100, SOURCES, nothing)


def _rows_of(batch_images: np.ndarray) -> np.ndarray:
    """The row index each image was made to carry (see `_indexed_images`)."""
    return batch_images[:, 0, 0].astype(np.int64) * 256 + batch_images[:, 0, 1]


def _indexed_images(n: int) -> np.ndarray:
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    return images


def test_a_mixed_dataset_holds_each_epoch_in_the_expected_number_of_batches():
    mix, epochs, batch = _mix(mnist={"share": 0.25}, drawings={"share": 2}), 3, 64
    dataset = make_dataset(
        _indexed_images(1350), LABELS, batch, shuffle=True, seed=7, sources=SOURCES, mix=mix, epochs=epochs
    )
    steps = steps_per_epoch(1350, batch, SOURCES, mix)
    assert steps == math.ceil((250 + 300 + 100) / batch) == 11
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert int(dataset.cardinality()) == len(batches) == epochs * steps
    for epoch in range(epochs):
        chunk = batches[epoch * steps : (epoch + 1) * steps]
        rows = np.concatenate([_rows_of(x) for x, _ in chunk])
        np.testing.assert_array_equal(np.sort(rows), epoch_indices(SOURCES, LABELS, mix, 7, epoch))
        np.testing.assert_array_equal(np.concatenate([y for _, y in chunk]), LABELS[rows])
        assert not np.array_equal(rows, np.sort(rows))  # shuffled


def test_without_a_mix_the_dataset_is_todays():
    images = _indexed_images(1350)
    plain = make_dataset(images, LABELS, 100, shuffle=True, seed=7)
    absent = make_dataset(
        images, LABELS, 100, shuffle=True, seed=7, sources=SOURCES, mix=_mix(emnist_digits={"share": 0.5})
    )
    for first, second in zip(plain, absent, strict=True):
        np.testing.assert_array_equal(first[0], second[0])
    assert int(plain.cardinality()) == 14
    np.testing.assert_array_equal(
        np.sort(np.concatenate([_rows_of(x.numpy()) for x, _ in plain])), np.arange(1350)
    )


class _BatchesPerEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.counts = [*getattr(self, "counts", []), 0]

    def on_train_batch_end(self, batch, logs=None):
        self.counts[-1] += 1


def test_training_on_a_mix_reads_every_epoch_in_full(digits, tmp_path):
    """Half of the digits pose as a second source; a share of it and a repeat of the rest train for real."""
    (images, labels), val = digits
    sources = np.where(np.arange(len(labels)) % 2 == 0, "mnist", "usps")
    params = PARAMS.model_copy(
        update={"epochs": 2, "source_mix": _mix(usps={"share": 0.5}, mnist={"share": 1.5})}
    )
    counter = _BatchesPerEpoch()
    _, history = train_model(
        (images, labels),
        val,
        params,
        seed=1,
        checkpoint_path=tmp_path / "x.keras",
        callbacks=[counter],
        verbose=0,
        train_sources=sources,
    )
    expected = math.ceil(sum(mix_counts(sources, params.source_mix).values()) / params.batch_size)
    assert counter.counts == [expected, expected]
    assert len(history.history["loss"]) == 2 and history.history["loss"][-1] < 2.3
