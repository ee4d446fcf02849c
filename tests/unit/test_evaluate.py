from __future__ import annotations

import numpy as np
import pytest

from digitops.config import RobustnessParams
from digitops.evaluate import (
    add_noise,
    confusion_counts,
    digit_metrics,
    evaluation_report,
    expected_calibration_error,
    metrics_by_source,
    plot_confusion,
    plot_misclassified,
    pooled_accuracy,
    real_world_summary,
    robustness,
    rotate,
    shift,
    top_confusions,
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


def test_pooled_accuracy_counts_only_the_named_sources_digits():
    labels = np.arange(30) % 10
    sources = np.array(["mnist"] * 10 + ["bhmsds"] * 10 + ["optdigits-orig"] * 10)
    predicted = labels.copy()
    predicted[:10] = (labels[:10] + 1) % 10  # every mnist digit wrong: not among the pooled
    predicted[[10, 20, 21]] = (labels[[10, 20, 21]] + 1) % 10  # 3 of the 20 pooled wrong
    assert pooled_accuracy(predicted, labels, sources, ["bhmsds", "optdigits-orig"]) == 17 / 20
    assert pooled_accuracy(predicted, labels, sources, ["mnist"]) == 0.0


def test_metrics_by_source_carries_the_per_digit_figures():
    labels = np.arange(40) % 10
    sources = np.array(["mnist"] * 20 + ["usps"] * 20)
    predicted = labels.copy()
    predicted[[21, 31]] = 7  # both usps 1s read as 7
    results = metrics_by_source(_one_hot(predicted), labels, sources, 10)
    assert results["usps"]["digits"]["1"] == {"accuracy": 0.0, "count": 2}
    assert results["usps"]["digits"]["7"] == {"accuracy": 1.0, "count": 2}
    assert results["mnist"]["digits"]["1"] == {"accuracy": 1.0, "count": 2}
    assert results["overall"]["digits"]["1"] == {"accuracy": 0.5, "count": 4}


def test_digit_metrics_on_known_answers():
    labels = np.array([1, 1, 1, 1, 7, 7, 9], np.uint8)
    predicted = np.array([1, 7, 7, 1, 7, 1, 9])
    assert digit_metrics(labels, predicted) == {
        "1": {"accuracy": 0.5, "count": 4},
        "7": {"accuracy": 0.5, "count": 2},
        "9": {"accuracy": 1.0, "count": 1},
    }  # digits absent from the labels have no entry: their accuracy is undefined


def test_top_confusions_most_frequent_first_ties_in_digit_order_right_answers_left_out():
    labels = np.array([1, 1, 1, 9, 9, 9, 7, 7, 4, 4, 2, 0, 0, 0], np.uint8)
    predicted = np.array([7, 7, 7, 8, 3, 8, 4, 2, 9, 9, 2, 0, 0, 0])
    assert top_confusions(labels, predicted, 4) == [
        {"true": 1, "predicted": 7, "count": 3},
        {"true": 4, "predicted": 9, "count": 2},
        {"true": 9, "predicted": 8, "count": 2},
        {"true": 7, "predicted": 2, "count": 1},
    ]
    assert len(top_confusions(labels, predicted, 10)) == 6  # only the six pairs ever confused
    assert top_confusions(labels, labels, 5) == []


def test_real_world_summary_pools_every_source_outside_the_lab_and_names_the_worst():
    sources = np.array(["mnist"] * 4 + ["drawings"] * 4 + ["emnist-digits"] * 2)
    labels = np.arange(10) % 10
    predicted = labels.copy()
    predicted[[1, 2]] = 0  # mnist: 2 of 4 right, but a lab source
    predicted[4] = 0  # drawings: 3 of 4 right
    predicted[9] = 0  # emnist-digits: 1 of 2 right, the worst
    summary = real_world_summary(labels, predicted, sources, ("mnist", "usps"))
    assert summary == {
        "sources": ["drawings", "emnist-digits"],
        "count": 6,
        "accuracy": pytest.approx(4 / 6),
        "worst_source": "emnist-digits",
        "worst_accuracy": 0.5,
    }
    # The lab sources come from the parameter: listed there, emnist-digits is no longer real-world.
    assert real_world_summary(labels, predicted, sources, ("mnist", "emnist-digits"))["sources"] == [
        "drawings"
    ]
    assert real_world_summary(labels, predicted, np.array(["mnist"] * 10), ("mnist", "usps")) is None


def test_evaluation_report_layout():
    labels = np.arange(30) % 10
    sources = np.array(["mnist"] * 10 + ["usps"] * 10 + ["drawings"] * 10)
    predicted = labels.copy()
    predicted[21] = 7  # a drawings 1 read as 7
    predicted[3] = 8  # an mnist 3 read as 8
    report = evaluation_report(_one_hot(predicted), labels, sources, {"clean": 1.0}, 10, ("mnist", "usps"), 5)
    assert list(report) == ["mnist", "usps", "drawings", "overall", "real_world", "contributed", "robustness"]
    assert report["contributed"] is None  # no source named contributed: drawings count like any other
    assert report["drawings"]["confusions"] == [{"true": 1, "predicted": 7, "count": 1}]
    assert report["usps"]["confusions"] == []
    assert report["overall"]["confusions"] == [
        {"true": 1, "predicted": 7, "count": 1},
        {"true": 3, "predicted": 8, "count": 1},
    ]
    assert report["drawings"]["digits"]["1"] == {"accuracy": 0.0, "count": 1}
    assert report["real_world"]["accuracy"] == 0.9 and report["real_world"]["worst_source"] == "drawings"
    assert report["robustness"] == {"clean": 1.0}
    lab_only = evaluation_report(
        _one_hot(labels[:20]), labels[:20], sources[:20], {}, 10, ("mnist", "usps"), 5
    )
    assert lab_only["real_world"] is None


def test_contributed_digits_are_reported_apart_and_count_in_no_other_figure():
    labels = np.arange(30) % 10
    sources = np.array(["mnist"] * 10 + ["drawings"] * 10 + ["usps"] * 10)
    predicted = labels.copy()
    predicted[10:15] = (labels[10:15] + 1) % 10  # half the drawings wrong: a manufactured regression
    predicted[3] = 8  # an mnist 3 read as 8
    report = evaluation_report(
        _one_hot(predicted), labels, sources, {}, 10, ("mnist",), 5, contributed=("drawings",)
    )
    assert list(report) == ["mnist", "usps", "overall", "real_world", "contributed", "robustness"]
    assert report["overall"]["count"] == 20 and report["overall"]["accuracy"] == 19 / 20
    assert report["overall"]["confusions"] == [{"true": 3, "predicted": 8, "count": 1}]
    assert report["real_world"]["sources"] == ["usps"] and report["real_world"]["accuracy"] == 1.0
    assert list(report["contributed"]) == ["drawings"]
    drawn = report["contributed"]["drawings"]
    assert drawn["count"] == 10 and drawn["accuracy"] == 0.5 and len(drawn["confusions"]) == 5
    assert drawn["digits"]["0"] == {"accuracy": 0.0, "count": 1}
    # Without contributed digits in the test split the section is null, and the rest is unchanged.
    others = sources != "drawings"
    alone = evaluation_report(
        _one_hot(predicted[others]), labels[others], sources[others], {}, 10, ("mnist",), 5, ("drawings",)
    )
    assert alone["contributed"] is None and alone["overall"] == report["overall"]


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
