"""Evaluation on arrays: accuracy, macro-F1 and calibration per source and overall, accuracy per digit,
the most frequent confusions, a summary over the real-world sources, the figures of contributed sources
apart from all the rest, the confusion matrix, and robustness to rotations, shifts, noise and inverted
colours. Plots are drawn by `plot_*`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import f1_score

from digitops.config import RobustnessParams
from digitops.digits import NUM_CLASSES
from digitops.sampling import stratified_sample

Predict = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) uint8 -> (N, 10) probabilities

OVERALL = "overall"  # the key of the figures over every source together
REAL_WORLD = "real_world"  # the key of the summary over the sources that are not lab sources
CONTRIBUTED = "contributed"  # the key of the figures of contributed sources, kept apart from the rest
ROBUSTNESS = "robustness"
CALIBRATION = "calibration"  # ECE before and after temperature scaling (digitops.calibration)
# The keys of metrics/eval.json that are not per-source figures
SUMMARIES = (REAL_WORLD, CONTRIBUTED, ROBUSTNESS, CALIBRATION)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """`calibration_error` of the top digit of each row.

    Args:
        probabilities: (N, 10); labels: (N,) int.
    """
    return calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, bins)


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """|accuracy - confidence| averaged over equal-width confidence bins, weighted by their share, for any
    predictions: (N,) confidences in [0, 1] and whether each prediction was right."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def digit_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, float]]:
    """Accuracy (the share of that digit read right) and count of each digit present in `labels`.

    Keys are the digits as text ("0" ... "9"), as JSON keys are. A digit absent from `labels` has no
    entry: its accuracy is undefined.

    Args:
        labels, predicted: (N,) int.
    """
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    right = np.bincount(labels[predicted == labels], minlength=NUM_CLASSES)
    return {
        str(digit): {"accuracy": float(right[digit] / counts[digit]), "count": int(counts[digit])}
        for digit in range(NUM_CLASSES)
        if counts[digit]
    }


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, Any]:
    """accuracy, macro_f1, ece, count and `digits` (digit_metrics) for one set of predictions."""
    predicted = probabilities.argmax(axis=1)
    return {
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(
            f1_score(labels, predicted, average="macro", labels=range(NUM_CLASSES), zero_division=0)
        ),
        "ece": expected_calibration_error(probabilities, labels, bins),
        "count": len(labels),
        "digits": digit_metrics(labels, predicted),
    }


def metrics_by_source(
    probabilities: np.ndarray, labels: np.ndarray, sources: np.ndarray, bins: int
) -> dict[str, dict[str, Any]]:
    """classification_metrics for each source (by name, in order of appearance) and for all of them
    (OVERALL)."""
    results = {
        str(source): classification_metrics(probabilities[sources == source], labels[sources == source], bins)
        for source in dict.fromkeys(sources.tolist())
    }
    results[OVERALL] = classification_metrics(probabilities, labels, bins)
    return results


def pooled_accuracy(
    predicted: np.ndarray, labels: np.ndarray, sources: np.ndarray, names: Sequence[str]
) -> float:
    """Accuracy over the digits of the sources `names`, pooled (real_world, the benchmarks' held-out
    writers)."""
    chosen = np.isin(sources, names)
    return float((predicted[chosen] == labels[chosen]).mean())


def top_confusions(labels: np.ndarray, predicted: np.ndarray, limit: int) -> list[dict[str, int]]:
    """The `limit` most frequent mistakes as {"true", "predicted", "count"}, most frequent first.

    Ties are listed by true digit, then predicted digit; pairs never confused are left out.
    """
    counts = confusion_counts(labels, predicted)
    np.fill_diagonal(counts, 0)  # right answers are not confusions
    # A stable sort of the negated counts keeps tied pairs in (true, predicted) order.
    order = np.argsort(-counts, axis=None, kind="stable")[:limit]
    return [
        {"true": int(true), "predicted": int(guess), "count": int(counts[true, guess])}
        for true, guess in zip(*np.unravel_index(order, counts.shape), strict=True)
        if counts[true, guess]
    ]


def real_world_summary(
    labels: np.ndarray, predicted: np.ndarray, sources: np.ndarray, lab_sources: Sequence[str]
) -> dict[str, Any] | None:
    """Accuracy over the test digits of every source outside `lab_sources`, pooled, and the worst of them.

    Returns:
        {"sources": [...], "count", "accuracy" (pooled), "worst_source", "worst_accuracy"}, or None when
        every test digit comes from a lab source (there is nothing to summarise).
    """
    names = [str(name) for name in dict.fromkeys(sources.tolist()) if name not in lab_sources]
    if not names:
        return None
    accuracy = {name: pooled_accuracy(predicted, labels, sources, [name]) for name in names}
    worst = min(names, key=accuracy.__getitem__)  # ties: the first in the split's order
    return {
        "sources": names,
        "count": int(np.isin(sources, names).sum()),
        "accuracy": pooled_accuracy(predicted, labels, sources, names),
        "worst_source": worst,
        "worst_accuracy": accuracy[worst],
    }


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate each (28, 28) uint8 image about its centre (bilinear, black fill)."""
    return np.stack(
        [np.asarray(Image.fromarray(image).rotate(degrees, Image.Resampling.BILINEAR)) for image in images]
    )


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate each image by whole pixels, filling with black (no wrap-around)."""
    shifted = np.zeros_like(images)
    height, width = images.shape[1:]
    shifted[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return shifted


def add_noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of `std` grey levels, clipped to 0-255."""
    noisy = images.astype(np.float32) + rng.normal(0.0, std, images.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def robustness(
    predict: Predict, images: np.ndarray, labels: np.ndarray, params: RobustnessParams, seed: int
) -> dict[str, float]:
    """Accuracy on perturbed copies of a stratified subset of the test digits.

    Keys: clean, rotate_<deg>, shift_x_<px>, shift_y_<px>, noise_<std>, inverted.
    """
    rng = np.random.default_rng(seed)
    subset = stratified_sample(labels, params.samples, rng)
    images, labels = images[subset], labels[subset]
    variants: dict[str, np.ndarray] = {"clean": images}
    for degrees in params.rotations:
        variants[f"rotate_{degrees:g}"] = rotate(images, degrees)
    for pixels in params.shifts:
        variants[f"shift_x_{pixels}"] = shift(images, 0, pixels)
        variants[f"shift_y_{pixels}"] = shift(images, pixels, 0)
    variants[f"noise_{params.noise_std:g}"] = add_noise(images, params.noise_std, rng)
    variants["inverted"] = 255 - images
    return {
        name: float((predict(variant).argmax(axis=1) == labels).mean()) for name, variant in variants.items()
    }


def confusion_counts(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(10, 10) int64: rows are true digits, columns predicted digits."""
    return np.bincount(labels * NUM_CLASSES + predicted, minlength=NUM_CLASSES**2).reshape(
        NUM_CLASSES, NUM_CLASSES
    )


def plot_confusion(counts: np.ndarray, title: str) -> Any:
    """A matplotlib figure of the confusion matrix, with its counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 6))
    shown = axes.imshow(np.log1p(counts), cmap="Blues")
    for (row, col), count in np.ndenumerate(counts):
        if count:
            colour = "white" if count > counts.max() / 3 else "black"
            axes.text(col, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    axes.set(
        xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xlabel="predicted", ylabel="true", title=title
    )
    figure.colorbar(shown, ax=axes, label="log(1 + count)")
    figure.tight_layout()
    return figure


def plot_misclassified(
    images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, sources: np.ndarray, limit: int
) -> Any:
    """A grid of up to `limit` misclassified digits, each titled 'true→predicted (source)'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = np.flatnonzero(labels != predicted)[:limit]
    columns = 8
    rows = max(1, int(np.ceil(len(wrong) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), wrong, strict=False):
        axis.imshow(images[index], cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"{labels[index]}→{predicted[index]} ({sources[index]})", fontsize=7)
    figure.suptitle(
        f"{len(wrong)} of {int((labels != predicted).sum())} misclassified test digits (true→predicted)"
    )
    figure.tight_layout()
    return figure


def evaluation_report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    robustness_accuracy: Mapping[str, float],
    bins: int,
    lab_sources: Sequence[str],
    confusions: int,
    contributed: Sequence[str] = (),
) -> dict[str, Any]:
    """metrics/eval.json: {<source>: {...}, "overall": {...}, "real_world": {...} or null,
    "contributed": {<source>: {...}} or null, "robustness": ...}.

    Each source and "overall" holds accuracy, macro_f1, ece, count, `digits` (per digit: accuracy, count)
    and `confusions` (the `confusions` most frequent mistakes). "real_world" is real_world_summary: null
    when the test split has only lab sources. The digits of a `contributed` source count in none of
    these: they are chosen by whoever contributes, so they get the same figures in "contributed" only
    (null when the test split has none), and "overall" is over the other sources.

    Args:
        probabilities: (N, 10); labels: (N,) int; sources: (N,) str.
        contributed: names of the contributed sources (`digitops.data.sources.contributed_sources`).
    """
    held = np.isin(sources, list(contributed))  # (N,) bool
    report = _figures_with_confusions(probabilities[~held], labels[~held], sources[~held], bins, confusions)
    predicted = probabilities.argmax(axis=1)
    report[REAL_WORLD] = real_world_summary(labels[~held], predicted[~held], sources[~held], lab_sources)
    report[CONTRIBUTED] = None
    if held.any():
        apart = _figures_with_confusions(probabilities[held], labels[held], sources[held], bins, confusions)
        report[CONTRIBUTED] = {name: figures for name, figures in apart.items() if name != OVERALL}
    report[ROBUSTNESS] = dict(robustness_accuracy)
    return report


def _figures_with_confusions(
    probabilities: np.ndarray, labels: np.ndarray, sources: np.ndarray, bins: int, confusions: int
) -> dict[str, dict[str, Any]]:
    """metrics_by_source, each source's and OVERALL's figures with their `confusions` top confusions."""
    report = metrics_by_source(probabilities, labels, sources, bins)
    predicted = probabilities.argmax(axis=1)
    for name, figures in report.items():
        members = np.ones(len(labels), bool) if name == OVERALL else sources == name
        figures["confusions"] = top_confusions(labels[members], predicted[members], confusions)
    return report
