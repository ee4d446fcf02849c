"""Temperature scaling on arrays (digitops.calibration): fitting, rescaling and undoing, the report and the
reliability diagram. The model side (the temperature inside a Keras model and its ONNX export) is in
tests/model/test_calibration.py."""

from __future__ import annotations

import numpy as np
import pytest

from digitops.calibration import (
    calibration_report,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability,
    reliability,
    reliability_table,
    temper,
    uncalibrated,
)
from digitops.evaluate import expected_calibration_error


def _softmax(logits: np.ndarray) -> np.ndarray:
    exps = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exps / exps.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def calibrated_case() -> tuple[np.ndarray, np.ndarray]:
    """(N, 10) logits and (N,) labels drawn from softmax(logits): softmax(logits) is calibrated."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (20_000, 10))
    cumulative = _softmax(logits).cumsum(axis=1)
    labels = (rng.random((len(logits), 1)) > cumulative).sum(axis=1)  # one draw per row
    return logits, np.minimum(labels, 9)


@pytest.mark.parametrize(("scale", "kind"), [(3.0, "overconfident"), (0.4, "underconfident")])
def test_the_fit_recovers_the_temperature_and_lowers_the_error(calibrated_case, scale, kind):
    logits, labels = calibrated_case
    shown = _softmax(logits * scale)  # a model whose logits are `scale` times the calibrated ones
    temperature = fit_temperature(shown, labels)
    assert temperature == pytest.approx(scale, rel=0.05), kind
    fixed = temper(shown, temperature)
    before, after = (expected_calibration_error(p, labels, 15) for p in (shown, fixed))
    assert before > 0.05 and after < 0.01, (before, after)
    assert negative_log_likelihood(fixed, labels) < negative_log_likelihood(shown, labels)
    np.testing.assert_array_equal(fixed.argmax(axis=1), shown.argmax(axis=1))  # accuracy unchanged


def test_a_calibrated_model_keeps_a_temperature_near_one(calibrated_case):
    logits, labels = calibrated_case
    assert fit_temperature(_softmax(logits), labels) == pytest.approx(1.0, rel=0.05)


def test_temper_divides_the_logits_and_its_inverse_undoes_it():
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 4.0, (50, 10))
    probabilities = _softmax(logits)
    np.testing.assert_allclose(temper(probabilities, 0.7), _softmax(logits / 0.7), atol=1e-12)
    np.testing.assert_allclose(temper(probabilities, 1.0), probabilities, atol=1e-12)
    calibrated = temper(probabilities, 0.7)
    np.testing.assert_allclose(uncalibrated(calibrated, 0.7), probabilities, atol=1e-9)
    np.testing.assert_array_equal(uncalibrated(calibrated, None), calibrated)  # no temperature: as given


def test_float32_probabilities_that_underflowed_stay_finite():
    probabilities = np.zeros((2, 10), np.float32)
    probabilities[:, 3] = 1.0  # every other class underflowed to exactly 0
    for temperature in (0.1, 10.0):
        scaled = temper(probabilities, temperature)
        assert np.isfinite(scaled).all() and (scaled.argmax(axis=1) == 3).all()
    assert np.isfinite(fit_temperature(probabilities, np.array([3, 4])))


@pytest.mark.parametrize(
    ("probabilities", "labels", "message"),
    [
        (np.full((3, 9), 1 / 9), np.zeros(3, int), r"must be \(N, 10\)"),
        (np.full((3, 10), 0.1), np.zeros(4, int), "labels must be"),
        (np.full((0, 10), 0.1), np.zeros(0, int), "validation split is empty"),
        (np.full((3, 10), 0.1), np.array([0, 1, 10]), "integers in 0-9"),
        (np.full((3, 10), 0.1), np.array([0.0, 1.0, 2.0]), "integers in 0-9"),
        (np.full((3, 10), np.nan), np.zeros(3, int), "finite"),
    ],
)
def test_bad_input_to_the_fit_is_refused_with_a_reason(probabilities, labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(probabilities, labels)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_a_temperature_must_be_positive_and_finite(temperature):
    with pytest.raises(ValueError, match="positive finite"):
        temper(np.full((1, 10), 0.1), temperature)


def test_the_report_gives_ece_before_and_after_per_source_and_overall(calibrated_case):
    logits, labels = calibrated_case
    sources = np.where(np.arange(len(labels)) % 4 == 0, "usps", "mnist")
    raw = _softmax(logits * 0.4)  # underconfident, as label smoothing leaves a model
    temperature = fit_temperature(raw, labels)
    served = temper(raw, temperature)  # what the calibrated model answers
    report = calibration_report(served, labels, sources, temperature, 15)
    assert list(report) == ["temperature", "usps", "mnist", "overall"]  # sources in order of appearance
    assert report["temperature"] == temperature
    assert report["overall"]["ece_before"] == pytest.approx(expected_calibration_error(raw, labels, 15))
    assert report["overall"]["ece_after"] == pytest.approx(expected_calibration_error(served, labels, 15))
    usps = sources == "usps"
    assert report["usps"]["ece_before"] == pytest.approx(
        expected_calibration_error(raw[usps], labels[usps], 15)
    )
    for name in ("mnist", "usps", "overall"):
        assert report[name]["ece_after"] < report[name]["ece_before"]
    # A model trained without calibration: nothing to undo, before equals after.
    plain = calibration_report(raw, labels, sources, None, 15)
    assert plain["temperature"] is None
    assert plain["overall"]["ece_before"] == plain["overall"]["ece_after"]


def test_reliability_bins_match_the_expected_calibration_error(calibrated_case):
    logits, labels = calibrated_case
    probabilities = _softmax(logits * 2)
    table = reliability(probabilities, labels, 15)
    assert len(table) == 15 and table["count"].sum() == len(labels)
    assert table.loc[0, "count"] == 0 and np.isnan(table.loc[0, "accuracy"])  # a top probability >= 0.1
    filled = table[table["count"] > 0]
    ece = (filled["count"] / len(labels) * (filled["accuracy"] - filled["confidence"]).abs()).sum()
    assert ece == pytest.approx(expected_calibration_error(probabilities, labels, 15))


def test_the_reliability_csv_and_diagram(calibrated_case, tmp_path):
    logits, labels = calibrated_case
    before, after = _softmax(logits * 0.4), _softmax(logits)
    table = reliability_table(before, after, labels, 15)
    assert list(table) == [
        "confidence",
        "ideal",
        "accuracy_before",
        "accuracy_after",
        "count_before",
        "count_after",
    ]
    assert not table.isna().any().any() and (table["count_before"] > 0).all()
    assert (table["confidence"] == table["ideal"]).all() and table["confidence"].is_monotonic_increasing
    plot_reliability(before, after, labels, 15, 0.4).savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000
