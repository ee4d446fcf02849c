"""Drift monitoring: the features of a digit, the reference profile, the PSI, the sliding window, and the
service's monitor that feeds it (digitops.monitoring, digitops.serve.drift)."""

from __future__ import annotations

import json
import re

import numpy as np
import prometheus_client
import pytest

from digitops.config import load_params
from digitops.digits import NUM_CLASSES
from digitops.monitoring import (
    FEATURES,
    IMAGE_FEATURES,
    PROFILE_FILE,
    DriftWindow,
    check_profile,
    features,
    image_features,
    prediction_features,
    psi,
    reference_profile,
)
from digitops.preprocess import centre_of_mass, normalize_digit
from tests.fakes import FOUR_STROKES, REPO_ROOT, SEVEN_STROKES, draw_strokes, random_digits

STROKE = IMAGE_FEATURES.index("stroke_width")
CENTRE = IMAGE_FEATURES.index("centre_offset")


def _thick(digits: np.ndarray) -> np.ndarray:
    """Each digit's ink grown by one pixel on every side (a 3x3 maximum): a broad pen."""
    padded = np.pad(digits, ((0, 0), (1, 1), (1, 1)))
    shifted = [padded[:, 1 + dy : 29 + dy, 1 + dx : 29 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.max(shifted, axis=0)


def _off_centre(digits: np.ndarray) -> np.ndarray:
    """The digits moved 4 px right and 3 px down (as a client that frames digits its own way sends them)."""
    return np.roll(digits, (3, 4), axis=(1, 2))


def _confident(labels: np.ndarray, confidence: float = 0.99) -> np.ndarray:
    """(N, 10) probabilities that give each label `confidence`, the rest spread evenly."""
    probabilities = np.full((len(labels), NUM_CLASSES), (1 - confidence) / (NUM_CLASSES - 1))
    probabilities[np.arange(len(labels)), labels] = confidence
    return probabilities


@pytest.fixture(scope="module")
def reference():
    """A profile of 2,000 random stroke digits, and 1,000 others drawn the same way (with predictions)."""
    train, served = random_digits(2000, seed=1), random_digits(1000, seed=2)
    rng = np.random.default_rng(0)
    val_probabilities = _confident(rng.integers(0, NUM_CLASSES, 1000))
    served_probabilities = _confident(rng.integers(0, NUM_CLASSES, len(served)))
    return reference_profile(train, val_probabilities), served, served_probabilities


def test_features_of_a_block_are_its_mass_box_centre_and_width():
    digit = np.zeros((1, 28, 28), np.uint8)
    digit[0, 9:19, 12:18] = 255  # 10 rows x 6 columns, centre of mass at (13.5, 14.5)
    mass, aspect, offset, stroke = image_features(digit)[0]
    assert mass == pytest.approx(60)
    assert aspect == pytest.approx(6 / 10)
    assert offset == pytest.approx(np.hypot(0.5, 0.5))
    assert stroke == pytest.approx(2 * 60 / (2 * (10 + 6)))  # 2 x area / perimeter
    faint = digit // 4  # below the ink level: mass and centre, but no box and no stroke
    assert image_features(faint)[0].tolist() == pytest.approx([60 * 63 / 255, 0, np.hypot(0.5, 0.5), 0])
    assert image_features(np.zeros((2, 28, 28), np.uint8)).tolist() == [[0, 0, 0, 0]] * 2


def test_image_features_are_computed_per_digit_over_a_batch():
    digits = random_digits(20, seed=3)
    batched = image_features(digits)
    assert batched.shape == (20, len(IMAGE_FEATURES))
    one_by_one = np.concatenate([image_features(digit[None]) for digit in digits])
    np.testing.assert_allclose(batched, one_by_one)
    expected_offset = np.hypot(*(centre_of_mass(digits) - 14.0).T)
    np.testing.assert_allclose(batched[:, CENTRE], expected_offset, atol=1e-9)
    with pytest.raises(ValueError, match=r"expected \(B, 28, 28\) uint8"):
        image_features(digits.astype(np.float32))


@pytest.mark.parametrize("strokes", [SEVEN_STROKES, FOUR_STROKES], ids=["seven", "four"])
def test_stroke_width_and_ink_grow_with_the_pen_width(strokes):
    pens = [4, 8, 12, 16, 20, 24, 30, 40]  # px on the 256x256 canvas
    digits = np.stack([normalize_digit(draw_strokes(strokes, width=pen)) for pen in pens])
    values = image_features(digits)
    assert np.all(np.diff(values[:, STROKE]) > 0), values[:, STROKE]
    assert np.all(np.diff(values[:, IMAGE_FEATURES.index("ink_mass")]) > 0)
    assert np.all(image_features(_thick(digits))[:, STROKE] > values[:, STROKE])


def test_prediction_features_are_the_confidence_and_the_digit():
    probabilities = np.array([[0.1] * 10, _confident(np.array([7]), 0.6)[0]])
    probabilities[0, 3] = 0.2
    assert prediction_features(probabilities).tolist() == [[0.2, 3], [0.6, 7]]
    combined = features(np.zeros((2, 28, 28), np.uint8), probabilities)
    assert combined.shape == (2, len(FEATURES)) and combined[:, -1].tolist() == [3, 7]


def test_the_reference_profile_has_decile_bins_and_one_bin_per_digit(reference):
    profile, _, _ = reference
    check_profile(json.loads(json.dumps(profile)))  # JSON-ready, and what a service accepts
    assert list(profile["features"]) == list(FEATURES)
    assert profile["digits"] == {"train": 2000, "val": 1000}
    for entry in profile["features"].values():
        assert len(entry["shares"]) == len(entry["edges"]) + 1
        assert sum(entry["shares"]) == pytest.approx(1)
        assert entry["edges"] == sorted(set(entry["edges"]))
    for name in ("ink_mass", "centre_offset", "stroke_width"):  # continuous: ten near-equal bins
        assert profile["features"][name]["shares"] == pytest.approx([0.1] * 10, abs=0.02)
    assert profile["features"]["predicted_digit"]["edges"] == [d + 0.5 for d in range(9)]


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    reference = np.full(10, 0.1)
    assert psi(reference, reference) == 0
    moved = np.array([0.05] * 5 + [0.15] * 5)
    assert psi(moved, reference) == pytest.approx(5 * 0.05 * np.log(2) + 5 * 0.05 * np.log(1.5))
    assert 0 < psi(moved, reference) < psi(np.array([0.0] * 9 + [1.0]), reference)
    # An empty bin counts as EPSILON, not as a division by zero.
    assert np.isfinite(psi(np.array([0.0] * 9 + [1.0]), reference))


def test_a_window_like_the_training_data_is_stable_and_shifted_ones_are_not(reference):
    profile, served, probabilities = reference
    window = DriftWindow(profile, size=1000, low_confidence=0.8)
    window.add(features(served, probabilities))
    same = window.psi()
    assert set(same) == set(FEATURES)
    assert max(same.values()) < 0.1, same  # stable

    window.add(features(_thick(served), probabilities))  # every digit in the window replaced
    thick = window.psi()
    assert thick["stroke_width"] > 0.25 and thick["ink_mass"] > 0.25, thick

    window.add(features(_off_centre(served), probabilities))
    moved = window.psi()
    assert moved["centre_offset"] > 0.25, moved
    assert moved["stroke_width"] < 0.1  # the same strokes as the training data's

    window.add(features(served, _confident(np.zeros(len(served), int))))  # every answer a 0
    assert window.psi()["predicted_digit"] > 0.25


def test_the_window_holds_exactly_its_last_digits(reference):
    """Counts kept up to date by adding and evicting equal a fresh count of the last `size` digits."""
    profile, served, probabilities = reference
    rows = np.concatenate(
        [features(variant, probabilities) for variant in (_thick(served), served, _off_centre(served))]
    )  # (3000, F)
    window = DriftWindow(profile, size=300, low_confidence=0.8)
    assert window.psi() == {} and window.count == 0
    start = 0
    for step in [1, 7, 120, 299, 300, 301, 1, 64, 1000]:  # smaller, as large as and larger than the window
        window.add(rows[start : start + step])
        start += step
        assert start <= len(rows)
        fresh = DriftWindow(profile, size=300, low_confidence=0.8)
        fresh.add(rows[max(0, start - 300) : start])
        assert window.count == fresh.count == min(start, 300)
        assert window.psi() == pytest.approx(fresh.psi(), abs=1e-12)


def test_low_confidence_rate_is_the_share_below_the_threshold(reference):
    profile, served, _ = reference
    labels = np.zeros(10, int)
    window = DriftWindow(profile, size=8, low_confidence=0.8)
    assert window.low_confidence_rate() == 0
    window.add(features(served[:4], _confident(labels[:4], 0.5)))  # 4 low of 4
    assert window.low_confidence_rate() == 1
    window.add(features(served[:4], _confident(labels[:4], 0.9)))  # 4 low of 8
    assert window.low_confidence_rate() == 0.5
    window.add(features(served[:2], _confident(labels[:2], 0.99)))  # the 2 oldest out: 2 low of 8
    assert window.low_confidence_rate() == 0.25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(version=0), "version 0"),
        (lambda p: p["features"].pop("aspect"), "features"),
        (lambda p: p["features"]["aspect"]["shares"].pop(), "feature aspect"),
    ],
)
def test_a_profile_of_another_kind_is_refused(reference, change, message):
    profile = json.loads(json.dumps(reference[0]))
    change(profile)
    with pytest.raises(ValueError, match=message):
        DriftWindow(profile, size=10, low_confidence=0.8)


# The service's side (digitops.serve.drift): gauges in this process's default Prometheus registry.


def _gauges() -> dict[str, float]:
    text = prometheus_client.generate_latest().decode()
    return {
        match.group(1): float(match.group(2))
        for match in re.finditer(r"^(digitops_(?:drift|low)\S*) ([0-9.e+-]+)$", text, re.MULTILINE)
    }


def _serve_params(**changes):
    return load_params(REPO_ROOT / "params.yaml").serve.model_copy(update=changes)


def test_the_monitor_updates_the_gauges_every_so_many_digits(reference, tmp_path):
    from digitops.serve.drift import TrafficMonitor

    profile, served, probabilities = reference
    (tmp_path / PROFILE_FILE).write_text(json.dumps(profile))
    monitor = TrafficMonitor.for_model(tmp_path, _serve_params(drift_window=100, drift_update_every=10))
    for index in range(9):
        monitor.observe(served[index : index + 1], probabilities[index : index + 1])
    assert monitor.window.count == 0  # collected, not yet binned
    monitor.observe(_thick(served[9:100]), probabilities[9:100])
    assert monitor.window.count == 100
    gauges = _gauges()
    assert gauges["digitops_drift_window_digits"] == 100
    assert gauges['digitops_drift_psi{feature="stroke_width"}'] == pytest.approx(
        monitor.window.psi()["stroke_width"]
    )
    assert gauges['digitops_drift_psi{feature="stroke_width"}'] > 0.25
    assert gauges["digitops_low_confidence_rate"] == 0


def test_monitoring_is_off_without_a_profile_or_when_turned_off(reference, tmp_path, capsys):
    from digitops.serve.drift import TrafficMonitor

    assert TrafficMonitor.for_model(tmp_path, _serve_params()) is None
    assert f"drift monitoring off: the model has no {PROFILE_FILE}" in capsys.readouterr().out
    (tmp_path / PROFILE_FILE).write_text("{not json")
    assert TrafficMonitor.for_model(tmp_path, _serve_params()) is None
    assert f"drift monitoring off: {PROFILE_FILE} is not usable" in capsys.readouterr().out
    (tmp_path / PROFILE_FILE).write_text(json.dumps(reference[0]))
    assert TrafficMonitor.for_model(tmp_path, _serve_params(monitoring=False)) is None
    assert "drift monitoring off (serve.monitoring: false)" in capsys.readouterr().out


def test_a_failing_monitor_never_raises_and_stops(reference, tmp_path, caplog):
    from digitops.serve.drift import TrafficMonitor

    (tmp_path / PROFILE_FILE).write_text(json.dumps(reference[0]))
    monitor = TrafficMonitor.for_model(tmp_path, _serve_params(drift_update_every=1))
    monitor.observe(np.zeros((1, 10, 10), np.uint8), np.zeros((1, 10)))  # not digits: features() raises
    assert monitor.failed
    assert "drift monitoring failed" in caplog.text
    monitor.observe(reference[1][:1], reference[2][:1])  # ignored from now on
    assert monitor.window.count == 0
