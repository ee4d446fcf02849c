"""bhmsds and optdigits-orig from the original files in ../shared/datasets: counts per class and split,
the content-hash split, and the data contract with today's thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from digitops.config import load_params
from digitops.data.sources import expected_counts, get_source
from digitops.validate import check_sources
from tests.fakes import REPO_ROOT, ingest_from_mirror

PARAMS = load_params(REPO_ROOT / "params.yaml")
NAMES = ("bhmsds", "optdigits-orig")
# The class counts that ../shared/datasets/optdigits-orig/SOURCE.md and optdigits-orig.names give.
OPTDIGITS_CLASSES = {
    "train": [189, 198, 195, 199, 186, 187, 195, 201, 180, 204],
    "test": [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
}


@pytest.fixture(scope="module")
def interim(mirror, tmp_path_factory):
    missing = [name for name in NAMES if not (mirror / name).is_dir()]
    if missing:
        pytest.skip(f"the mirror has no {', '.join(missing)}")
    cache = tmp_path_factory.mktemp("cache")
    return ingest_from_mirror(NAMES, mirror, cache, None, PARAMS.ingest.hash_test_fraction)


@pytest.mark.slow
def test_official_counts_per_class(interim):
    optdigits = interim["optdigits-orig"]
    for split, counts in OPTDIGITS_CLASSES.items():
        in_split = optdigits["labels"][optdigits["split"] == split]
        assert np.bincount(in_split, minlength=10).tolist() == counts
    bhmsds = interim["bhmsds"]
    assert np.bincount(bhmsds["labels"], minlength=10).tolist() == [1500] * 10
    assert sorted(bhmsds["index"].tolist()) == list(range(15000))  # every image once


@pytest.mark.slow
def test_bhmsds_test_split_is_a_share_by_content_hash(interim):
    in_test = interim["bhmsds"]["split"] == "test"
    assert abs(in_test.mean() - PARAMS.ingest.hash_test_fraction) < 0.01  # 15,000 fair coin flips
    test_classes = np.bincount(interim["bhmsds"]["labels"][in_test], minlength=10)
    assert test_classes.min() > 0.5 * test_classes.mean()  # every digit is tested


@pytest.mark.slow
def test_both_meet_the_contract_with_todays_thresholds(interim):
    expected = {name: expected_counts(get_source(name), None) for name in NAMES}
    report = check_sources(interim, expected, PARAMS.validate_)
    assert report.passed, report.violations
    assert report.leaks["train_test"] == 0
    assert report.sources["optdigits-orig"]["test"]["count"] == 1797
