"""Training on arrays: a tf.data input pipeline, Adam with gradient clipping, a learning-rate schedule,
early stopping and checkpointing on the validation split (never on test).

Tracking is not done here: `train_model` takes extra Keras callbacks (tracking.py provides the MLflow one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from digitops.config import TrainParams
from digitops.digits import NUM_CLASSES
from digitops.models import build_model


def make_dataset(
    images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int
) -> tf.data.Dataset:
    """(N, 28, 28) uint8 images and (N,) int labels -> batches of ((B, 28, 28) uint8, (B,) int64).

    Shuffled once per epoch when `shuffle` (seeded), batched, prefetched.
    """
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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
) -> tuple[keras.Model, keras.callbacks.History]:
    """Build `params.model`, train it, and return it with the weights of its best validation epoch.

    Args:
        train, val: (images (N, 28, 28) uint8, labels (N,) int).
        params: the `train` section of params.yaml.
        seed: seeds weights, dropout and shuffling.
        checkpoint_path: where the best model so far is saved (a .keras file).
        callbacks: extra callbacks, e.g. tracking.
        verbose: Keras progress output.
    """
    keras.utils.set_random_seed(seed)
    steps_per_epoch = math.ceil(len(train[1]) / params.batch_size)
    with distribution_strategy(params.distribute).scope():  # variables live where the strategy puts them
        model = compile_model(build_model(params.model, **params.model_kwargs), params, steps_per_epoch)
    monitor = dict(monitor="val_accuracy", mode="max")
    schedule_callbacks = []
    if params.lr_schedule == "plateau":
        schedule_callbacks.append(
            keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2, min_lr=1e-5, **monitor)
        )
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    history = model.fit(
        make_dataset(*train, params.batch_size, shuffle=True, seed=seed),
        validation_data=make_dataset(*val, params.batch_size, shuffle=False, seed=seed),
        epochs=params.epochs,
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
