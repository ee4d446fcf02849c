"""Training on arrays: a tf.data input pipeline (with per-source sampling redrawn each epoch), Adam with
gradient clipping, a learning-rate schedule, early stopping and checkpointing on the validation split
(never on test).

Tracking is not done here: `train_model` takes extra Keras callbacks (tracking.py provides the MLflow one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from digitops.config import SourceMixParams, TrainParams
from digitops.digits import NUM_CLASSES
from digitops.models import build_model
from digitops.sampling import stratified_sample

SourceMix = Mapping[str, SourceMixParams]


def mix_counts(sources: np.ndarray, mix: SourceMix) -> dict[str, int]:
    """Rows each source of the training set contributes to one epoch, by source name (sorted).

    A listed source gives round(share x its rows), at most `max_per_epoch`; an unlisted one all its rows.
    The counts are the same every epoch (only which rows are drawn changes), so the epoch's length is known.

    Args:
        sources: (N,) source name of each training row.
        mix: `train.source_mix`.
    """
    names, counts = np.unique(sources, return_counts=True)
    result = {}
    for name, count in zip(names.tolist(), counts.tolist(), strict=True):
        entry = mix.get(name)
        if entry is not None:
            count = count if entry.share is None else round(entry.share * count)
            count = count if entry.max_per_epoch is None else min(count, entry.max_per_epoch)
        result[name] = count
    return result


def mix_applies(sources: np.ndarray | None, mix: SourceMix) -> bool:
    """Whether `mix` names a source present in `sources` (otherwise every row is used once, as without it).

    Raises:
        ValueError: `mix` is set but the source of each row is not given.
    """
    if not mix:
        return False
    if sources is None:
        raise ValueError("train.source_mix is set, but the source of each training digit was not given")
    return not set(mix).isdisjoint(np.unique(sources).tolist())


def epoch_indices(
    sources: np.ndarray, labels: np.ndarray, mix: SourceMix, seed: int, epoch: int
) -> np.ndarray:
    """The training rows of `epoch`: per source, the count `mix_counts` gives, drawn afresh each epoch.

    A listed source repeats all its rows count // rows times and draws the remainder without replacement,
    stratified by label (so a share keeps the source's digit balance). Unlisted sources are taken whole.
    The draw depends only on (seed, epoch, the data, the mix): the same arguments give the same rows.

    Args:
        sources, labels: (N,) per training row.
        mix: `train.source_mix`; empty (or naming no source present) selects every row once.
        seed: base.seed.
        epoch: 0-based.

    Returns:
        (M,) int64 row indices, ascending (a repeated row appears repeatedly), M = sum of `mix_counts`.
    """
    if not mix_applies(sources, mix):
        return np.arange(len(sources))
    rng = np.random.default_rng([seed, epoch, 0])
    chosen = []
    for name, count in mix_counts(sources, mix).items():
        rows = np.flatnonzero(sources == name)  # (n,)
        repeats, rest = divmod(count, len(rows))
        chosen += [np.tile(rows, repeats), rows[stratified_sample(labels[rows], rest, rng)]]
    return np.sort(np.concatenate(chosen))


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int,
    sources: np.ndarray | None = None,
    mix: SourceMix | None = None,
    epochs: int = 1,
) -> tf.data.Dataset:
    """(N, 28, 28) uint8 images and (N,) int labels -> batches of ((B, 28, 28) uint8, (B,) int64).

    Without a `mix` that applies (see `mix_applies`): every row once per epoch, shuffled each epoch when
    `shuffle` (seeded), batched, prefetched; Keras iterates it afresh each epoch.

    With one: `epochs` epochs back to back, each the rows `epoch_indices` draws (shuffled when `shuffle`,
    seeded by seed and the epoch), cut into ceil(M / batch_size) batches that do not straddle epochs. Fit
    it with that many `steps_per_epoch` (`steps_per_epoch` computes it) so Keras reads on across epochs.
    The selection is done in NumPy up front (epochs x M indices); tf.data only gathers the batches' rows.

    Args:
        sources: (N,) source name per row; needed when `mix` is set.
        mix: `train.source_mix`.
        epochs: how many epochs to draw (with a mix only).
    """
    labels = labels.astype(np.int64)
    if not mix_applies(sources, mix or {}):
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        if shuffle:
            dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    orders = []
    for epoch in range(epochs):
        rows = epoch_indices(sources, labels, mix, seed, epoch)
        orders.append(np.random.default_rng([seed, epoch, 1]).permutation(rows) if shuffle else rows)
    with tf.device("/cpu:0"):  # the input pipeline's copy of the data stays in host memory
        all_images, all_labels = tf.constant(images), tf.constant(labels)
    dataset = tf.data.Dataset.from_tensor_slices(np.stack(orders)).flat_map(  # one element per epoch: (M,)
        lambda epoch_rows: tf.data.Dataset.from_tensor_slices(epoch_rows).batch(batch_size)
    )
    dataset = dataset.map(
        lambda rows: (tf.gather(all_images, rows), tf.gather(all_labels, rows)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    # flat_map hides the length; state it (tf.data checks it as it reads) so Keras and callers know it.
    total = epochs * math.ceil(len(orders[0]) / batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(total)).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n_rows: int, batch_size: int, sources: np.ndarray | None, mix: SourceMix) -> int:
    """Batches per epoch: of the rows a mix draws per epoch when it applies, else of all `n_rows`."""
    if mix_applies(sources, mix):
        n_rows = sum(mix_counts(sources, mix).values())
    if n_rows == 0:
        raise ValueError("no training digits in an epoch: is train.source_mix drawing none?")
    return math.ceil(n_rows / batch_size)


def learning_rate_schedule(
    params: TrainParams, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Cosine decay over all steps (`cosine`), or the constant start rate that ReduceLROnPlateau lowers."""
    if params.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            params.learning_rate, decay_steps=max(1, params.epochs * steps_per_epoch), alpha=0.01
        )
    return params.learning_rate


def compile_model(model: keras.Model, params: TrainParams, steps_per_epoch: int) -> keras.Model:
    """Adam with gradient-norm clipping; sparse categorical cross-entropy (with label smoothing)."""
    optimizer = keras.optimizers.Adam(
        learning_rate_schedule(params, steps_per_epoch), clipnorm=params.clipnorm
    )
    if params.label_smoothing:
        loss = _SmoothedSparseCrossEntropy(params.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy `train.distribute` names (docs/scaling.md).

    default: the one device TensorFlow picks (a GPU if visible). mirrored: synchronous data parallelism
    over every GPU of this machine (the CPU when there is none). multi_worker_mirrored: the same across
    machines, each started with a TF_CONFIG that lists the cluster and its own index.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def train_model(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    params: TrainParams,
    seed: int,
    checkpoint_path: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    train_sources: np.ndarray | None = None,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Build `params.model`, train it, and return it with the weights of its best validation epoch.

    Args:
        train, val: (images (N, 28, 28) uint8, labels (N,) int).
        params: the `train` section of params.yaml.
        seed: seeds weights, dropout, shuffling and the per-epoch source mix.
        checkpoint_path: where the best model so far is saved (a .keras file).
        callbacks: extra callbacks, e.g. tracking.
        verbose: Keras progress output.
        train_sources: (N,) source name of each training row; needed when `params.source_mix` is set.
    """
    keras.utils.set_random_seed(seed)
    mixed = mix_applies(train_sources, params.source_mix)
    steps = steps_per_epoch(len(train[1]), params.batch_size, train_sources, params.source_mix)
    with distribution_strategy(params.distribute).scope():  # variables live where the strategy puts them
        model = compile_model(build_model(params.model, **params.model_kwargs), params, steps)
    monitor = dict(monitor="val_accuracy", mode="max")
    schedule_callbacks = []
    if params.lr_schedule == "plateau":
        schedule_callbacks.append(
            keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2, min_lr=1e-5, **monitor)
        )
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    history = model.fit(
        make_dataset(
            *train,
            params.batch_size,
            shuffle=True,
            seed=seed,
            sources=train_sources,
            mix=params.source_mix,
            epochs=params.epochs,
        ),
        validation_data=make_dataset(*val, params.batch_size, shuffle=False, seed=seed),
        epochs=params.epochs,
        # A mixed dataset holds all epochs back to back; without a mix Keras finds the epoch's end itself.
        steps_per_epoch=steps if mixed else None,
        shuffle=False,  # the dataset shuffles itself, seeded
        callbacks=[
            *schedule_callbacks,
            keras.callbacks.EarlyStopping(
                patience=params.early_stopping_patience, restore_best_weights=True, **monitor
            ),
            keras.callbacks.ModelCheckpoint(checkpoint_path, save_best_only=True, **monitor),
            *callbacks,
        ],
        verbose=verbose,
    )
    return model, history


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 10) float32 probabilities, batch by batch."""
    batches = [
        model(images[start : start + batch_size], training=False)
        for start in range(0, len(images), batch_size)
    ]
    if not batches:
        return np.zeros((0, NUM_CLASSES), np.float32)
    return np.concatenate([keras.ops.convert_to_numpy(batch) for batch in batches])


@keras.saving.register_keras_serializable(package="digitops")
class _SmoothedSparseCrossEntropy(keras.losses.Loss):
    """Cross-entropy against labels smoothed by `smoothing` (Keras' sparse loss has no smoothing)."""

    def __init__(self, smoothing: float, name: str = "smoothed_sparse_cross_entropy", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), NUM_CLASSES)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing}
