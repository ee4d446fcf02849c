"""Temperature scaling (Guo et al., 2017): one scalar T, fitted on the validation split, that divides the
logits before the softmax so that a confidence of 0.9 is right 9 times in 10. It never changes which digit
wins, so accuracy stays as it was.

The temperature is applied inside the model: every registered model ends in a Dense layer with a softmax
(digitops.models.registry.classifier_head), and dividing that layer's kernel and bias by T divides its
logits by T. The saved .keras file and its ONNX export then carry the calibration with no new layer, and
every runtime that serves them gets it.

Logits are recovered from probabilities as log(p): that is the logits up to a per-row constant, which the
softmax ignores, so a model's probabilities are all this module needs.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from digitops.digits import NUM_CLASSES
from digitops.evaluate import OVERALL, expected_calibration_error
from digitops.models.registry import OUTPUT_LAYER

# The search range of T. An underconfident model (label smoothing) needs T < 1, an overconfident one
# T > 1; a fit at either end means the probabilities carry almost no ranking to scale.
TEMPERATURE_BOUNDS = (0.05, 20.0)
_TINY = np.finfo(np.float32).tiny  # a probability that underflowed to 0 still has a finite log


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(N, 10) probabilities -> (N, 10) float64 logits up to a per-row constant (log p, clipped above 0)."""
    return np.log(np.clip(np.asarray(probabilities, np.float64), _TINY, None))


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities the same model gives with its logits divided by `temperature`.

    softmax(z / T) = softmax(log p / T), since log p = z - logsumexp(z) and the softmax ignores a per-row
    constant. temper(q, 1 / T) undoes temper(p, T): log q = z / T - c, so softmax(T log q) = softmax(z).

    Args:
        probabilities: (N, 10).
        temperature: > 0; 1 returns the probabilities unchanged (up to rounding).

    Returns:
        (N, 10) float64, rows summing to 1.
    """
    _check_temperature(temperature)
    scaled = log_probabilities(probabilities) / temperature  # (N, 10)
    scaled -= scaled.max(axis=1, keepdims=True)  # exp of at most 0: no overflow
    exps = np.exp(scaled)
    return exps / exps.sum(axis=1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true digit) over the rows (the cross-entropy that temperature scaling minimises)."""
    rows = np.arange(len(labels))
    return float(-log_probabilities(probabilities)[rows, labels].mean())


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_BOUNDS that minimises the negative log-likelihood of temper(probabilities, T).

    A bounded 1-D search over log T (the likelihood is smooth and unimodal in it).

    Args:
        probabilities: (N, 10) of the uncalibrated model on held-out digits (the validation split).
        labels: (N,) int in 0-9.

    Raises:
        ValueError: no rows, mismatched shapes, labels outside 0-9 or probabilities that are not finite.
    """
    probabilities, labels = _checked(probabilities, labels)
    logits = log_probabilities(probabilities)  # (N, 10)
    true_logit = logits[np.arange(len(labels)), labels]  # (N,)

    def nll(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        top = scaled.max(axis=1)
        log_sum = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))  # logsumexp per row
        return float((log_sum - true_logit / np.exp(log_t)).mean())

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


def apply_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """Divide the logits of `model` by `temperature`, in place, by scaling its softmax layer's weights.

    The output layer must be the registry's: a Dense layer named OUTPUT_LAYER with a softmax. A model built
    otherwise is refused rather than wrapped, because every registered model has that layer and a wrapping
    layer would be a custom object that every loader of the .keras file must know.

    Returns:
        `model`, for chaining.

    Raises:
        ValueError: the model's output layer is not a Dense softmax layer named OUTPUT_LAYER, or the
            temperature is not a positive finite number.
    """
    _check_temperature(temperature)
    layer = _softmax_output_layer(model)
    # Dense computes softmax(x @ kernel + bias): dividing both by T divides the logits by T.
    layer.set_weights([weight / temperature for weight in layer.get_weights()])
    return model


def calibrate_model(
    model: keras.Model, probabilities: np.ndarray, labels: np.ndarray, bins: int
) -> dict[str, float]:
    """Fit T on the model's validation probabilities and apply it to the model.

    Args:
        model: the trained model, with its best weights; changed in place.
        probabilities: (N, 10) of `model` on the validation split, before calibration.
        labels: (N,) int.
        bins: confidence bins of the expected calibration error.

    Returns:
        {"temperature", "val_ece_before", "val_ece_after", "val_nll_before", "val_nll_after"}.
    """
    _softmax_output_layer(model)  # refuse a model it cannot apply to before fitting anything
    temperature = fit_temperature(probabilities, labels)
    apply_temperature(model, temperature)
    calibrated = temper(probabilities, temperature)
    return {
        "temperature": temperature,
        "val_ece_before": expected_calibration_error(probabilities, labels, bins),
        "val_ece_after": expected_calibration_error(calibrated, labels, bins),
        "val_nll_before": negative_log_likelihood(probabilities, labels),
        "val_nll_after": negative_log_likelihood(calibrated, labels),
    }


def calibration_report(
    probabilities: np.ndarray, labels: np.ndarray, sources: np.ndarray, temperature: float | None, bins: int
) -> dict[str, Any]:
    """eval.json's "calibration": the temperature and, per source and overall, ECE before and after it.

    Args:
        probabilities: (N, 10) of the evaluated model, which already applies `temperature`.
        labels: (N,) int; sources: (N,) str.
        temperature: the model's T (metrics/train.json), or None when it was not calibrated (then
            "before" equals "after").
        bins: confidence bins of the expected calibration error.

    Returns:
        {"temperature": T or None, <source>: {"ece_before", "ece_after"}, ..., "overall": {...}}
    """
    before = uncalibrated(probabilities, temperature)
    report: dict[str, Any] = {"temperature": temperature}
    groups = {str(name): sources == name for name in dict.fromkeys(sources.tolist())}
    groups[OVERALL] = np.ones(len(labels), bool)
    for name, members in groups.items():
        report[name] = {
            "ece_before": expected_calibration_error(before[members], labels[members], bins),
            "ece_after": expected_calibration_error(probabilities[members], labels[members], bins),
        }
    return report


def uncalibrated(probabilities: np.ndarray, temperature: float | None) -> np.ndarray:
    """What a model that applies `temperature` gave before it did: temper(probabilities, 1 / T)."""
    if temperature is None:
        return np.asarray(probabilities, np.float64)
    _check_temperature(temperature)
    return temper(probabilities, 1.0 / temperature)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> pd.DataFrame:
    """Per equal-width confidence bin (the expected calibration error's): its range, how many digits fall
    in it, their mean confidence and their accuracy (NaN for an empty bin).

    Returns:
        `bins` rows: bin, low, high, count, confidence, accuracy.
    """
    confidence = probabilities.max(axis=1)  # (N,)
    correct = probabilities.argmax(axis=1) == labels  # (N,)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # as expected_calibration_error bins
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty bin's mean is NaN
        mean_confidence = np.bincount(which, confidence, minlength=bins) / count
        accuracy = np.bincount(which, correct.astype(float), minlength=bins) / count
    edges = np.arange(bins + 1) / bins
    return pd.DataFrame(
        {
            "bin": np.arange(bins),
            "low": edges[:-1],
            "high": edges[1:],
            "count": count,
            "confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )


def reliability_table(before: np.ndarray, after: np.ndarray, labels: np.ndarray, bins: int) -> pd.DataFrame:
    """plots/eval/reliability.csv for `dvc plots`: per bin with digits before and after calibration, its
    centre (`confidence`), the accuracy before and after, and `ideal` (the diagonal: accuracy = confidence).

    Bins empty before or after are left out: DVC's templates cannot draw a missing value.
    """
    first, second = reliability(before, labels, bins), reliability(after, labels, bins)
    table = pd.DataFrame(
        {
            "confidence": (first["low"] + first["high"]) / 2,
            "ideal": (first["low"] + first["high"]) / 2,
            "accuracy_before": first["accuracy"],
            "accuracy_after": second["accuracy"],
            "count_before": first["count"],
            "count_after": second["count"],
        }
    )
    return table[(table["count_before"] > 0) & (table["count_after"] > 0)].reset_index(drop=True)


def plot_reliability(
    before: np.ndarray, after: np.ndarray, labels: np.ndarray, bins: int, temperature: float | None
) -> Any:
    """A reliability diagram: accuracy against mean confidence per bin, before and after calibration, with
    the diagonal of a calibrated model, and below it how many digits each bin holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curve, counts) = plt.subplots(
        2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    curve.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
    edges = np.arange(bins + 1) / bins
    for probabilities, name, colour in ((before, "before", "tab:red"), (after, "after", "tab:blue")):
        table = reliability(probabilities, labels, bins)
        shown = table[table["count"] > 0]
        ece = expected_calibration_error(probabilities, labels, bins)
        curve.plot(
            shown["confidence"], shown["accuracy"], marker="o", color=colour, label=f"{name} (ECE {ece:.4f})"
        )
        counts.stairs(table["count"], edges, color=colour, label=name)
    t_text = "no temperature" if temperature is None else f"T = {temperature:.3f}"
    curve.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02), title=f"reliability on test digits ({t_text})")
    curve.legend(loc="upper left")
    counts.set(xlabel="confidence (the top probability)", ylabel="digits", yscale="log")
    figure.tight_layout()
    return figure


def _softmax_output_layer(model: keras.Model) -> keras.layers.Dense:
    """The model's output layer if it is a Dense softmax layer named OUTPUT_LAYER, else ValueError."""
    layer = model.layers[-1] if model.layers else None
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if (
        not isinstance(layer, keras.layers.Dense)
        or layer.name != OUTPUT_LAYER
        or activation != "softmax"
        or layer.units != NUM_CLASSES
    ):
        found = "no layer" if layer is None else f"{type(layer).__name__} {layer.name!r}"
        raise ValueError(
            f"temperature scaling needs the registry's output layer (a Dense softmax layer named "
            f"{OUTPUT_LAYER!r} with {NUM_CLASSES} units, digitops.models.registry.classifier_head); "
            f"model {model.name!r} ends in {found} (activation {activation})"
        )
    return layer


def _check_temperature(temperature: float) -> None:
    if not (isinstance(temperature, int | float) and np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"a temperature must be a positive finite number, got {temperature!r}")


def _checked(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape[1] != NUM_CLASSES:
        raise ValueError(f"probabilities must be (N, {NUM_CLASSES}), got shape {probabilities.shape}")
    if len(labels) != len(probabilities) or labels.ndim != 1:
        raise ValueError(
            f"labels must be (N,) beside probabilities {probabilities.shape}, got shape {labels.shape}"
        )
    if not len(labels):
        raise ValueError("no digits to fit a temperature on: the validation split is empty")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must be integers in 0-{NUM_CLASSES - 1}")
    if not np.isfinite(probabilities).all() or (probabilities < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    return probabilities, labels
