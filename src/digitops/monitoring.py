"""Drift of served digits: cheap features of each normalised digit and of its prediction, a reference
profile of them made from the training data, and the population-stability index (PSI) of a sliding window
of served digits against that profile.

The train stage builds the profile (`reference_profile`) and ships it with the model; the service keeps a
`DriftWindow` per worker and publishes its PSI per feature (digitops.serve.drift). NumPy only: the service
has no TensorFlow.

The features, one value per digit (the image ones on the normaliser's (28, 28) uint8 output):
    ink_mass         the ink in full-strength pixels: sum of grey levels / 255
    aspect           the ink's bounding box, width / height (0 for a digit without ink)
    centre_offset    px from the ink's centre of mass to (14, 14), where the normaliser puts it
    stroke_width     px: 2 x ink area / ink perimeter (a stroke of width w and length L >> w has area w L
                     and a perimeter of about 2 L), on the pixels of at least INK_LEVEL
    confidence       the predicted digit's probability
    predicted_digit  the predicted digit (its bins are the ten digits)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from digitops.digits import NUM_CLASSES
from digitops.preprocess import MNIST_CENTRE, MNIST_SIZE

IMAGE_FEATURES = ("ink_mass", "aspect", "centre_offset", "stroke_width")
PREDICTION_FEATURES = ("confidence", "predicted_digit")
FEATURES = IMAGE_FEATURES + PREDICTION_FEATURES
PROFILE_FILE = "reference_profile.json"  # in models/, in the registered version and in the BentoML model
# The profile's format and feature definitions: a service refuses a profile of another version, whose
# figures would not be comparable with the ones it computes.
PROFILE_VERSION = 1
INK_LEVEL = 128  # a pixel is ink (bounding box, stroke width) from half the pen's full strength
BINS = 10  # quantile bins per continuous feature: deciles of the training data
EPSILON = 1e-4  # stands in for an empty bin's share in the PSI's logarithm
_CHUNK = 8192  # digits per step when profiling a whole training split (bounds the working arrays)


def image_features(digits: np.ndarray) -> np.ndarray:
    """(B, 28, 28) uint8 normalised digits -> (B, 4) float64 features, in IMAGE_FEATURES order.

    Vectorised over the batch: a handful of whole-array operations, whatever B is.
    """
    if digits.ndim != 3 or digits.shape[1:] != (MNIST_SIZE, MNIST_SIZE) or digits.dtype != np.uint8:
        raise ValueError(f"expected (B, 28, 28) uint8 digits, got {digits.shape} {digits.dtype}")
    count = len(digits)
    # Sums of grey levels per row and per column give the mass and its centre without a float copy.
    rows = digits.sum(axis=2, dtype=np.int32)  # (B, 28)
    cols = digits.sum(axis=1, dtype=np.int32)  # (B, 28)
    total = rows.sum(axis=1)  # (B,)
    mass = total / 255.0
    position = np.arange(MNIST_SIZE)
    with np.errstate(invalid="ignore", divide="ignore"):  # a digit without ink has no centre: 0 below
        offset = np.hypot(rows @ position / total - MNIST_CENTRE, cols @ position / total - MNIST_CENTRE)
    offset = np.where(total > 0, offset, 0.0)

    height = _extent(digits.max(axis=2) >= INK_LEVEL)  # (B,) px
    width = _extent(digits.max(axis=1) >= INK_LEVEL)
    aspect = np.divide(width, height, out=np.zeros(count), where=height > 0)

    # Each ink pixel has 4 sides; a side it shares with another ink pixel is not on the perimeter.
    ink = digits >= INK_LEVEL  # (B, 28, 28) bool
    area = np.count_nonzero(ink, axis=(1, 2))
    shared = np.count_nonzero(ink[:, 1:] & ink[:, :-1], axis=(1, 2)) + np.count_nonzero(
        ink[:, :, 1:] & ink[:, :, :-1], axis=(1, 2)
    )
    perimeter = 4 * area - 2 * shared
    stroke = np.divide(2.0 * area, perimeter, out=np.zeros(count), where=perimeter > 0)
    return np.stack([mass, aspect, offset, stroke], axis=1)


def prediction_features(probabilities: np.ndarray) -> np.ndarray:
    """(B, 10) probabilities -> (B, 2) float64: confidence and predicted digit (PREDICTION_FEATURES)."""
    if probabilities.ndim != 2 or probabilities.shape[1] != NUM_CLASSES:
        raise ValueError(f"expected (B, {NUM_CLASSES}) probabilities, got {probabilities.shape}")
    digit = probabilities.argmax(axis=1)  # (B,)
    confidence = probabilities[np.arange(len(probabilities)), digit]
    return np.stack([confidence.astype(np.float64), digit.astype(np.float64)], axis=1)


def quantile_edges(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The inner edges of `bins` equal-count bins of `values` ((bins - 1,) at most: ties merge bins)."""
    if not len(values):
        raise ValueError("no values to take quantiles of")
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each bin's share of `values`: (len(edges) + 1,) summing to 1.

    Bin i holds edges[i - 1] <= v < edges[i]; the first and last bins are open-ended, so a served value
    outside the training range still lands in a bin.
    """
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def reference_profile(train_digits: np.ndarray, val_probabilities: np.ndarray, bins: int = BINS) -> dict:
    """What served digits are compared with: per feature, bin edges and the reference's share per bin.

    Args:
        train_digits: (N, 28, 28) uint8, the training split as prepared (not augmented: what real inputs
            look like).
        val_probabilities: (M, 10), the model's (as it serves: calibrated) on the validation split; the
            model's answers on its training digits would be more confident than on new ones.
        bins: quantile bins per continuous feature.

    Returns:
        {"version", "digits": {"train", "val"}, "features": {name: {"edges": [...], "shares": [...]}}},
        JSON-ready.
    """
    if not len(train_digits) or not len(val_probabilities):
        raise ValueError("a reference profile needs training digits and validation predictions")
    image = np.concatenate(
        [
            image_features(train_digits[start : start + _CHUNK])
            for start in range(0, len(train_digits), _CHUNK)
        ]
    )  # (N, 4)
    prediction = prediction_features(val_probabilities)  # (M, 2)
    columns = {
        **dict(zip(IMAGE_FEATURES, image.T, strict=True)),
        **dict(zip(PREDICTION_FEATURES, prediction.T, strict=True)),
    }
    features = {}
    for name, values in columns.items():
        # The digit is a category: one bin per digit, whatever the quantiles would merge.
        edges = (
            np.arange(NUM_CLASSES - 1) + 0.5 if name == "predicted_digit" else quantile_edges(values, bins)
        )
        features[name] = {"edges": edges.tolist(), "shares": bin_shares(values, edges).tolist()}
    return {
        "version": PROFILE_VERSION,
        "digits": {"train": len(train_digits), "val": len(val_probabilities)},
        "features": features,
    }


def check_profile(profile: Mapping[str, Any]) -> None:
    """Raise ValueError unless `profile` is one `reference_profile` of this version makes."""
    if profile.get("version") != PROFILE_VERSION:
        raise ValueError(f"reference profile version {profile.get('version')!r}, expected {PROFILE_VERSION}")
    features = profile.get("features", {})
    if tuple(features) != FEATURES:
        raise ValueError(f"reference profile features {tuple(features)}, expected {FEATURES}")
    for name, entry in features.items():
        edges, shares = entry["edges"], entry["shares"]
        if len(shares) != len(edges) + 1 or not np.isclose(sum(shares), 1.0):
            raise ValueError(f"reference profile feature {name}: {len(edges)} edges, shares {shares}")


def psi(window_shares: np.ndarray, reference_shares: np.ndarray) -> float:
    """Population-stability index: sum over bins of (w - r) ln(w / r); an empty bin counts as EPSILON.

    0 for the same shares; under 0.1 is usually read as stable, over 0.25 as a shift.
    """
    return float(_psi_terms(np.asarray(window_shares), np.asarray(reference_shares)).sum())


class DriftWindow:
    """The last `size` digits' features, kept as bin counts against a reference profile.

    Each digit's features are binned once, when it enters; the counts are updated for the digits that enter
    and leave, so `add` and `psi` cost the same whatever the window's size.

    Args:
        profile: a `reference_profile` (checked).
        size: digits in the window.
        low_confidence: a prediction below this confidence counts as low (`low_confidence_rate`).
    """

    def __init__(self, profile: Mapping[str, Any], size: int, low_confidence: float) -> None:
        check_profile(profile)
        if size < 1:
            raise ValueError(f"the window must hold at least one digit, not {size}")
        features = profile["features"]
        self.size = size
        self.low_confidence = low_confidence
        self._edges = [np.asarray(features[name]["edges"], np.float64) for name in FEATURES]
        bins = np.array([len(edges) + 1 for edges in self._edges])  # (F,)
        self._starts = np.concatenate([[0], np.cumsum(bins)[:-1]])  # (F,) each feature's first flat bin
        self._reference = np.concatenate([features[name]["shares"] for name in FEATURES])  # (total,)
        total = int(bins.sum())
        # The bins of every feature side by side, plus one bin (index `total`) that the empty slots of a
        # window not yet full point at: taking a digit out of an empty slot empties that bin only.
        self._counts = np.zeros(total + 1, np.int64)
        self._slots = np.full((size, len(FEATURES)), total, np.int64)  # (size, F) flat bin per feature
        self._counts[total] = size * len(FEATURES)
        self._low = np.zeros(size, bool)  # (size,) whether each slot's prediction was low-confidence
        self._next = 0  # the slot the next digit goes into
        self.count = 0  # digits in the window

    def add(self, features: np.ndarray) -> None:
        """Put (n, F) feature rows (FEATURES order, oldest first) into the window, evicting the oldest."""
        features = features[-self.size :]  # (n, F), n <= size
        n = len(features)
        if not n:
            return
        flat = (
            np.stack(
                [np.searchsorted(edges, features[:, f], side="right") for f, edges in enumerate(self._edges)],
                axis=1,
            )
            + self._starts
        )  # (n, F)
        slots = (self._next + np.arange(n)) % self.size  # (n,)
        total = len(self._counts)
        self._counts -= np.bincount(self._slots[slots].ravel(), minlength=total)
        self._counts += np.bincount(flat.ravel(), minlength=total)
        self._slots[slots] = flat
        self._low[slots] = features[:, FEATURES.index("confidence")] < self.low_confidence
        self._next = int((self._next + n) % self.size)
        self.count = min(self.count + n, self.size)

    def psi(self) -> dict[str, float]:
        """PSI per feature of the digits in the window against the reference ({} while it is empty)."""
        if not self.count:
            return {}
        terms = _psi_terms(self._counts[:-1] / self.count, self._reference)  # (total,) one per bin
        return dict(zip(FEATURES, np.add.reduceat(terms, self._starts).tolist(), strict=True))

    def low_confidence_rate(self) -> float:
        """Share of the window's predictions below `low_confidence` (0 while it is empty)."""
        return float(np.count_nonzero(self._low)) / self.count if self.count else 0.0


def features(digits: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(B, 28, 28) uint8 digits and their (B, 10) probabilities -> (B, 6) features in FEATURES order."""
    return np.concatenate([image_features(digits), prediction_features(probabilities)], axis=1)


def _psi_terms(window_shares: np.ndarray, reference_shares: np.ndarray) -> np.ndarray:
    """Each bin's term of the PSI, (w - r) ln(w / r), with empty bins' shares raised to EPSILON."""
    window = np.maximum(window_shares, EPSILON)
    reference = np.maximum(reference_shares, EPSILON)
    return (window - reference) * np.log(window / reference)


def _extent(has_ink: np.ndarray) -> np.ndarray:
    """(B, L) bool -> (B,) length from the first True to the last, inclusive (0 when none)."""
    first = np.argmax(has_ink, axis=1)
    last = has_ink.shape[1] - 1 - np.argmax(has_ink[:, ::-1], axis=1)
    return np.where(has_ink.any(axis=1), last - first + 1, 0)
