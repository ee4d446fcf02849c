"""The architectures of the seed projects, kept for comparison (see docs/results.md).

Each is named for what it is; its alias is the number it had as a seed project (seed000-seed004), the
name that older MLflow runs and dvc.lock files record.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

from digitops.models.registry import classifier_head, digit_input, register_model


def _lenet_trunk(x: keras.KerasTensor, filters: tuple[int, int]) -> keras.KerasTensor:
    """LeNet's feature extractor: conv 5x5 -> max-pool, twice, then flatten."""
    for count in filters:
        x = layers.Conv2D(count, 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    return layers.Flatten()(x)


@register_model(aliases=("seed000",))
def lenet5_wide(dropout: float = 0.5) -> keras.Model:
    """LeNet-style: conv 5x5 32 -> pool -> conv 5x5 64 -> pool -> dense 1024 -> dropout (3.27 M params)."""
    inputs, x = digit_input()
    x = _lenet_trunk(x, (32, 64))
    x = layers.Dense(1024, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(x), name="lenet5_wide")


@register_model(aliases=("seed001",))
def cnn_bn(dropout: float = 0.25) -> keras.Model:
    """A CNN with batch norm and dropout: two blocks of two 3x3 convs (32, 64), dense 256."""
    inputs, x = digit_input()
    for filters in (32, 64):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Dropout(2 * dropout)(x)
    return keras.Model(inputs, classifier_head(x), name="cnn_bn")


@register_model(aliases=("seed002",))
def tutorial_cnn(l2: float = 0.0, dropout: float = 0.0) -> keras.Model:
    """The Keras tutorial CNN: conv 3x3 32 -> pool -> conv 64 -> pool -> conv 64 -> dense 64,
    with optional L2 weight decay and dropout."""
    regulariser = regularizers.l2(l2) if l2 else None
    inputs, x = digit_input()
    x = layers.Conv2D(32, 3, activation="relu", kernel_regularizer=regulariser)(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu", kernel_regularizer=regulariser)(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu", kernel_regularizer=regulariser)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu", kernel_regularizer=regulariser)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(x), name="tutorial_cnn")


@register_model(aliases=("seed003",))
def deep3block(l2: float = 1e-4) -> keras.Model:
    """The deep 3-block CNN: two 3x3 convs per block (32, 96, 128) with BN, max-pool, SpatialDropout2D
    0.2; dense 1050 with L2, BN, dropout 0.5 (1.61 M params)."""
    inputs, x = digit_input()
    for filters in (32, 96, 128):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D()(x)
        x = layers.SpatialDropout2D(0.2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1050, activation="relu", kernel_regularizer=regularizers.l2(l2))(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, classifier_head(x), name="deep3block")


@register_model(aliases=("seed004",))
def small_cnn() -> keras.Model:
    """The small CNN: conv 5x5 16 -> pool -> conv 5x5 32 -> pool -> linear."""
    inputs, x = digit_input()
    return keras.Model(inputs, classifier_head(_lenet_trunk(x, (16, 32))), name="small_cnn")
