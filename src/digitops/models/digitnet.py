"""digitnet: our own architecture, a small residual CNN with batch norm built for accuracy per CPU-minute.

Most of a CNN's CPU time goes to convolutions at full 28x28 resolution, so digitnet spends one cheap
convolution there and does its work at 14x14 and 7x7, where residual blocks of two 3x3 convolutions add
depth cheaply; global average pooling replaces the large dense layers of the seed models.
"""

from __future__ import annotations

import keras
from keras import layers

from digitops.models.registry import classifier_head, digit_input, register_model


def _conv_bn_relu(x: keras.KerasTensor, filters: int, strides: int = 1) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def _residual_block(x: keras.KerasTensor, filters: int) -> keras.KerasTensor:
    shortcut = x
    x = _conv_bn_relu(x, filters)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(layers.Add()([shortcut, x]))


@register_model
def digitnet(width: int = 32, dropout: float = 0.3) -> keras.Model:
    """28x28: conv 3x3 `width` -> 14x14: conv 2*width, residual block -> 7x7: conv 4*width, residual
    block -> global average pool -> dropout -> softmax."""
    inputs, x = digit_input()
    x = _conv_bn_relu(x, width)  # (B, 28, 28, w)
    x = _conv_bn_relu(x, 2 * width, strides=2)  # (B, 14, 14, 2w)
    x = _residual_block(x, 2 * width)
    x = _conv_bn_relu(x, 4 * width, strides=2)  # (B, 7, 7, 4w)
    x = _residual_block(x, 4 * width)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(x), name="digitnet")
