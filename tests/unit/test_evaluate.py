from __future__ import annotations

import numpy as np
import pytest

from digitops.config import RobustnessParams
from digitops.evaluate import (
    add_noise,
    confusion_counts,
    expected_calibration_error,
    metrics_by_source,
    plot_confusion,
    plot_misclassified,
    robustness,
    rotate,
    shift,
)
from tests.fakes import interim_arrays


def _one_hot(labels, confidence=1.0):
    probabilities = np.full((len(labels), 10), (1 - confidence) / 9)
    probabilities[np.arange(len(labels)), labels] = confidence
    return probabilities


def test_calibration_error():
    labels = np.arange(100) % 10
    assert expected_calibration_error(_one_hot(labels), labels, 15) == pytest.approx(0.0)
    # 90% confident and right 90% of the time: calibrated
    predicted = labels.copy()
    predicted[:10] = (predicted[:10] + 1) % 10
    assert expected_calibration_error(_one_hot(predicted, 0.9), labels, 15) == pytest.approx(0.0, abs=1e-9)
    # 90% confident and always wrong: off by 0.9
    assert expected_calibration_error(_one_hot((labels + 1) % 10, 0.9), labels, 15) == pytest.approx(0.9)


def test_metrics_by_source_and_overall():
    labels = np.arange(40) % 10
    sources = np.array(["mnist"] * 20 + ["usps"] * 20)
    predicted = labels.copy()
    predicted[20:25] = (labels[20:25] + 1) % 10  # five usps mistakes
    results = metrics_by_source(_one_hot(predicted), labels, sources, 10)
    assert list(results) == ["mnist", "usps", "overall"]
    assert results["mnist"]["accuracy"] == 1.0 and results["mnist"]["macro_f1"] == 1.0
    assert results["usps"]["accuracy"] == 0.75 and results["usps"]["count"] == 20
    assert results["overall"]["accuracy"] == pytest.approx(35 / 40)
    assert 0 < results["usps"]["macro_f1"] < 1


def test_confusion_counts_rows_are_true_digits():
    counts = confusion_counts(np.array([3, 3, 5]), np.array([3, 8, 5]))
    assert counts[3, 3] == 1 and counts[3, 8] == 1 and counts[5, 5] == 1 and counts.sum() == 3


def test_perturbations():
    images = interim_arrays(1, 0)["images"][:3]
    np.testing.assert_array_equal(rotate(images, 0), images)
    assert np.abs(rotate(images, 30).astype(int) - images).mean() > 5
    moved = shift(images, 0, 3)
    np.testing.assert_array_equal(moved[:, :, 3:], images[:, :, :-3])
    assert (moved[:, :, :3] == 0).all()
    np.testing.assert_array_equal(shift(images, -2, 0)[:, :-2], images[:, 2:])
    noisy = add_noise(images, 50.0, np.random.default_rng(0))
    assert noisy.dtype == np.uint8 and 20 < np.abs(noisy.astype(int) - images).mean() < 60


def test_robustness_reports_every_perturbation():
    arrays = interim_arrays(5, 0)
    images, labels = arrays["images"], arrays["labels"]
    table = {image.tobytes(): label for image, label in zip(images, labels, strict=True)}

    def oracle(batch):  # knows the clean digits only
        return _one_hot(np.array([table.get(image.tobytes(), 1) for image in batch]))

    params = RobustnessParams(samples=30, rotations=(-15, 15), shifts=(2,), noise_std=40.0)
    result = robustness(oracle, images, labels, params, seed=0)
    assert set(result) == {
        "clean",
        "rotate_-15",
        "rotate_15",
        "shift_x_2",
        "shift_y_2",
        "noise_40",
        "inverted",
    }
    assert result["clean"] == 1.0
    # Every perturbed digit is new to the oracle, which then answers 1: right for the 1s, a tenth of the
    # stratified subset.
    assert all(value == pytest.approx(0.1) for name, value in result.items() if name != "clean")


def test_plots_render(tmp_path):
    arrays = interim_arrays(2, 0)
    labels = arrays["labels"]
    predicted = (labels + (np.arange(len(labels)) % 3 == 0)) % 10
    plot_confusion(confusion_counts(labels, predicted), "t").savefig(tmp_path / "c.png")
    plot_misclassified(arrays["images"], labels, predicted, np.full(len(labels), "mnist"), 8).savefig(
        tmp_path / "m.png"
    )
    assert (tmp_path / "c.png").stat().st_size > 10_000 and (tmp_path / "m.png").stat().st_size > 5_000
