from __future__ import annotations

import numpy as np
import pytest

from digitops.config import load_params
from digitops.data.sources import WHOLE
from digitops.validate import check_sources
from tests.fakes import REPO_ROOT, interim_arrays

POLICY = load_params(REPO_ROOT / "params.yaml").validate_
TRAIN, TEST = 12, 4  # digits per class


@pytest.fixture(scope="module")
def clean():
    return interim_arrays(TRAIN, TEST, seed=7)


def _check(arrays, expected=None):
    expected = expected if expected is not None else {"train": 10 * TRAIN, "test": 10 * TEST}
    return check_sources({"src": arrays}, {"src": expected}, POLICY)


def _copy(arrays):
    return {key: value.copy() for key, value in arrays.items()}


def test_clean_data_passes_with_a_summary(clean):
    report = _check(clean)
    assert report.passed, report.violations
    summary = report.to_dict()["sources"]["src"]
    assert summary["train"]["count"] == 10 * TRAIN and summary["train"]["class_counts"] == [TRAIN] * 10
    assert summary["test"]["blank"] == 0 and summary["test"]["duplicates"] == 0
    assert report.to_dict()["passed"] is True


def test_open_counts_are_not_checked(clean):
    assert _check(clean, expected={}).passed


def test_wrong_count(clean):
    report = _check(clean, {"train": 10 * TRAIN + 1, "test": 10 * TEST})
    assert report.violations == [f"src train: {10 * TRAIN} digits, expected {10 * TRAIN + 1}"]


def test_a_source_split_by_hash_is_counted_whole(clean):
    """No official test split (bhmsds): train and test sizes follow from hashes, only the total is known."""
    total = 10 * (TRAIN + TEST)
    assert _check(clean, {WHOLE: total}).passed
    report = _check(clean, {WHOLE: total + 1})
    assert report.violations == [f"src: {total} digits in all, expected {total + 1}"]


def test_labels_outside_0_to_9(clean):
    arrays = _copy(clean)
    arrays["labels"][3] = 10
    assert any("1 labels outside 0-9, e.g. [10]" in v for v in _check(arrays).violations)


def test_train_test_leak_is_found_across_sources(clean):
    other = interim_arrays(TRAIN, TEST, seed=8)
    other["images"][-1] = clean["images"][0]  # a training image of src reappears in other's test split
    report = check_sources({"src": clean, "other": other}, {}, POLICY)
    assert report.leaks["train_test"] == 1
    assert report.violations == [
        f"1 images are in both a training and a test split, e.g. other test #{other['index'][-1]}"
    ]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda a: a.update(images=255 - a["images"]), "border is"),  # black ink on white
        (lambda a: a.update(images=np.roll(a["images"], 4, axis=2)), "centre of mass more than"),
        (lambda a: a["images"].__setitem__(5, 0), "1 blank images"),
        (lambda a: a.update(labels=np.where(a["labels"] == 3, 4, a["labels"])), "class shares outside"),
        (lambda a: a.update(images=a["images"].astype(np.float32)), "images must be uint8"),
        (lambda a: a.update(split=np.where(a["split"] == "test", "dev", a["split"])), "unknown split names"),
        (lambda a: a.pop("index"), "missing arrays ['index']"),
    ],
)
def test_each_violation_is_reported(clean, corrupt, message):
    arrays = _copy(clean)
    corrupt(arrays)
    report = _check(arrays)
    assert not report.passed
    assert any(message in violation for violation in report.violations), report.violations
