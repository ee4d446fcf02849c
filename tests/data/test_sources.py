"""Data tests on the original files in ../shared/datasets: the registry, ingest and the contract."""

from __future__ import annotations

import numpy as np
import pytest

from digitops.config import load_params
from digitops.data.fetch import fetch_source_files
from digitops.data.ingest import ingest_source
from digitops.data.sources import SOURCES, WHOLE, expected_counts, get_source
from digitops.preprocess import normalize_digits
from digitops.validate import check_sources
from tests.fakes import REPO_ROOT, ingest_from_mirror

PARAMS = load_params(REPO_ROOT / "params.yaml")
DEFAULT_MIX = PARAMS.ingest.sources


def test_registry_checksums_match_the_published_list(mirror):
    if not (mirror / "SHA256SUMS").exists():
        pytest.skip("this mirror has no SHA256SUMS list to compare with")
    published = {}
    for line in (mirror / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        published[name.removeprefix("./")] = digest
    # Files published on their own; archive members (bhmsds' images, inside its tar) are checked against
    # the registry in test_bhmsds.py.
    for name in (*DEFAULT_MIX, "optdigits-orig"):
        loose = [remote for remote in get_source(name).files if remote.archive is None]
        for remote in loose:
            assert published[f"{name}/{remote.name}"] == remote.sha256


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(
        KeyError, match="known sources: bhmsds, drawings, emnist-digits, mnist, optdigits-orig, usps"
    ):
        get_source("kmnist")
    assert [name for name, source in SOURCES.items() if source.opt_in] == ["emnist-digits"]


@pytest.fixture(scope="module")
def capped(mirror, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return ingest_from_mirror(DEFAULT_MIX, mirror, cache, 300, PARAMS.ingest.hash_test_fraction)


def test_capped_ingest_is_stratified_and_meets_the_contract(capped):
    for name, arrays in capped.items():
        assert arrays["images"].shape == (600, 28, 28) and arrays["images"].dtype == np.uint8
        assert arrays["labels"].dtype == np.int64
        for split in ("train", "test"):
            counts = np.bincount(arrays["labels"][arrays["split"] == split], minlength=10)
            assert counts.sum() == 300 and counts.min() >= 300 * 0.05, (name, split, counts)
    report = check_sources(
        capped, {name: expected_counts(get_source(name), 300) for name in capped}, PARAMS.validate_
    )
    assert report.passed, report.violations


def test_capped_ingest_is_reproducible(mirror, capped, tmp_path):
    again = ingest_source(
        get_source("usps"), fetch_source_files(get_source("usps"), mirror, tmp_path), 300, seed=1
    )
    for key in ("images", "labels", "index"):
        np.testing.assert_array_equal(again[key], capped["usps"][key])


def test_mnist_is_a_fixed_point_of_the_normaliser(capped):
    """MNIST is ingested as published; our normaliser reproduces its format (one normaliser, no skew)."""
    mnist = capped["mnist"]["images"]
    renormalised = normalize_digits(mnist)
    per_image = np.abs(renormalised.astype(int) - mnist).mean(axis=(1, 2))
    assert np.median(per_image) == 0.0
    assert per_image.mean() < 0.5  # grey levels out of 255


@pytest.mark.slow
def test_full_default_mix_has_the_official_counts_and_meets_the_contract(mirror, tmp_path):
    interim = ingest_from_mirror(DEFAULT_MIX, mirror, tmp_path, None, PARAMS.ingest.hash_test_fraction)
    counts = {
        name: {s: int((a["split"] == s).sum()) for s in ("train", "test")} for name, a in interim.items()
    }
    official = {
        "mnist": {"train": 60000, "test": 10000},
        "usps": {"train": 7291, "test": 2007},
        "optdigits-orig": {"train": 1934, "test": 1797},
    }
    for name, split_counts in counts.items():
        if get_source(name).hash_split:  # bhmsds: the published whole, shared out by content hash
            assert sum(split_counts.values()) == SOURCES[name].expected_counts[WHOLE]
        else:
            assert split_counts == official[name]
    report = check_sources(
        interim, {name: expected_counts(get_source(name), None) for name in interim}, PARAMS.validate_
    )
    assert report.passed, report.violations
    assert report.leaks["train_test"] == 0
