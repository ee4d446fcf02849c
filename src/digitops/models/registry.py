"""The model registry: architectures are functions registered by name, as in timm.

    @register_model
    def digitnet(**kwargs) -> keras.Model: ...

    @register_model(aliases=("seed001",))   # old names that must still resolve
    def cnn_bn(**kwargs) -> keras.Model: ...

    build_model("cnn_bn")           # an unknown name lists the known ones
    build_model("seed001")          # the same architecture, through its alias
    resolve_model_name("seed001")   # "cnn_bn"
    list_models()                   # the canonical names, sorted (no aliases)

A model is named for what it is. Aliases keep the names it was once known by (the seed projects' numbers)
building it, so that old MLflow runs, dvc.lock and `-S train.model=seed001` still resolve.

Every registered model takes what the normaliser produces, (B, 28, 28) uint8 (0-255, white ink on black),
scales it to [0, 1] inside the model (so training and serving cannot disagree), and returns
(B, NUM_CLASSES) softmax probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import keras

from digitops.digits import NUM_CLASSES
from digitops.preprocess import MNIST_SIZE as IMAGE_SIZE  # models take what the normaliser makes

ModelFactory = Callable[..., keras.Model]
# The name of every model's softmax layer: digitops.calibration scales its weights by the temperature.
OUTPUT_LAYER = "probabilities"
_MODELS: dict[str, ModelFactory] = {}  # canonical name -> factory
_ALIASES: dict[str, str] = {}  # alias -> canonical name


def register_model(
    factory: ModelFactory | None = None, *, aliases: Iterable[str] = ()
) -> ModelFactory | Callable[[ModelFactory], ModelFactory]:
    """Register `factory` under its function name, and under each of `aliases`.

    Used bare (`@register_model`) or with aliases (`@register_model(aliases=("seed001",))`).

    Raises:
        ValueError: the name or an alias is already a model name or an alias; nothing is registered then.
        TypeError: `aliases` is a string (it would register each of its letters).
    """
    if isinstance(aliases, str):
        raise TypeError(f"aliases must be a sequence of names, not the string {aliases!r}")
    aliases = tuple(aliases)

    def register(factory: ModelFactory) -> ModelFactory:
        name = factory.__name__
        for new in (name, *aliases):
            if new in _MODELS:
                raise ValueError(f"cannot register {name!r}: {new!r} is already a registered model")
            if new in _ALIASES:
                raise ValueError(
                    f"cannot register {name!r}: {new!r} is already an alias of {_ALIASES[new]!r}"
                )
        if len({name, *aliases}) != 1 + len(aliases):
            raise ValueError(f"cannot register {name!r}: its name and aliases {aliases} repeat a name")
        _MODELS[name] = factory
        _ALIASES.update(dict.fromkeys(aliases, name))
        return factory

    return register if factory is None else register(factory)


def list_models() -> list[str]:
    """The registered model names, sorted; aliases are not listed."""
    return sorted(_MODELS)


def resolve_model_name(name: str) -> str:
    """The canonical name of `name`, a model name or an alias ("seed001" -> "cnn_bn").

    Raises:
        KeyError: `name` is neither; the message lists the registered model names.
    """
    if name in _MODELS:
        return name
    try:
        return _ALIASES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def build_model(name: str, **kwargs: Any) -> keras.Model:
    """Build a fresh, uncompiled model by name or alias; `kwargs` go to its factory."""
    return _MODELS[resolve_model_name(name)](**kwargs)


def digit_input() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The shared stem: (B, 28, 28) uint8 -> (B, 28, 28, 1) float32 in [0, 1]."""
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype="uint8", name="image")
    x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1))(inputs)
    x = keras.layers.Rescaling(1.0 / 255.0)(x)
    return inputs, x


def classifier_head(x: keras.KerasTensor) -> keras.KerasTensor:
    """The shared output: (B, features) -> (B, NUM_CLASSES) probabilities (softmax kept in float32)."""
    return keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name=OUTPUT_LAYER)(x)
