"""The model registry: architectures are functions registered by name, as in timm.

    @register_model
    def seed000(**kwargs) -> keras.Model: ...

    build_model("seed000")          # an unknown name lists the known ones
    list_models()                   # sorted names

Every registered model takes what the normaliser produces, (B, 28, 28) uint8 (0-255, white ink on black),
scales it to [0, 1] inside the model (so training and serving cannot disagree), and returns
(B, 10) softmax probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from digitops.digits import NUM_CLASSES
from digitops.preprocess import MNIST_SIZE as IMAGE_SIZE  # models take what the normaliser makes

ModelFactory = Callable[..., keras.Model]
_MODELS: dict[str, ModelFactory] = {}


def register_model(factory: ModelFactory) -> ModelFactory:
    """Register `factory` under its function name."""
    name = factory.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = factory
    return factory


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def build_model(name: str, **kwargs: Any) -> keras.Model:
    """Build a fresh, uncompiled model by name; `kwargs` go to its factory."""
    try:
        factory = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None
    return factory(**kwargs)


def digit_input() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The shared stem: (B, 28, 28) uint8 -> (B, 28, 28, 1) float32 in [0, 1]."""
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype="uint8", name="image")
    x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1))(inputs)
    x = keras.layers.Rescaling(1.0 / 255.0)(x)
    return inputs, x


def classifier_head(x: keras.KerasTensor) -> keras.KerasTensor:
    """The shared output: (B, features) -> (B, 10) probabilities (softmax kept in float32)."""
    return keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)
