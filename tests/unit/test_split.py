from __future__ import annotations

import numpy as np
import pytest

from digitops.errors import DataContractError
from digitops.sampling import stratified_sample, without_sources
from digitops.split import assign_splits, count_table, split_dataset
from tests.fakes import interim_arrays


def test_stratified_sample_keeps_each_share():
    labels = np.repeat(np.arange(10), np.arange(10, 110, 10))  # 10 of 0, 20 of 1, ... 100 of 9: 550
    chosen = stratified_sample(labels, 110, np.random.default_rng(1))
    assert len(chosen) == 110 and len(np.unique(chosen)) == 110
    counts = np.bincount(labels[chosen], minlength=10)
    np.testing.assert_allclose(counts, np.arange(2, 22, 2), atol=1)  # a fifth of each class


def test_stratified_sample_is_seeded_and_takes_all_when_n_is_large():
    labels = np.arange(100) % 7
    first = stratified_sample(labels, 30, np.random.default_rng(5))
    np.testing.assert_array_equal(first, stratified_sample(labels, 30, np.random.default_rng(5)))
    assert not np.array_equal(first, stratified_sample(labels, 30, np.random.default_rng(6)))
    np.testing.assert_array_equal(stratified_sample(labels, 500, np.random.default_rng(5)), np.arange(100))


def test_without_sources_drops_every_array_of_the_held_out_rows_together():
    arrays = {
        "images": np.arange(5 * 4).reshape(5, 2, 2),
        "labels": np.array([0, 1, 2, 3, 4]),
        "sources": np.array(["mnist", "bhmsds", "usps", "bhmsds", "optdigits-orig"]),
    }
    kept = without_sources(arrays, ["bhmsds", "optdigits-orig"])
    assert kept["sources"].tolist() == ["mnist", "usps"]
    np.testing.assert_array_equal(kept["labels"], [0, 2])
    np.testing.assert_array_equal(kept["images"], arrays["images"][[0, 2]])
    assert without_sources(arrays, [])["labels"].tolist() == [0, 1, 2, 3, 4]


def test_assign_splits_keeps_test_and_stratifies_val():
    n = 2000
    rng = np.random.default_rng(0)
    sources = np.where(np.arange(n) < 1500, "mnist", "usps")
    labels = rng.integers(0, 10, n)
    official = np.where(rng.random(n) < 0.2, "test", "train")
    hashes = np.array([f"h{i}" for i in range(n)])
    splits = assign_splits(sources, labels, official, hashes, 0.25, np.random.default_rng(0))
    np.testing.assert_array_equal(splits == "test", official == "test")
    for source in ("mnist", "usps"):
        for label in range(10):
            group = (sources == source) & (labels == label) & (official == "train")
            assert abs((splits[group] == "val").sum() - 0.25 * group.sum()) <= 1.5


def test_duplicates_never_straddle_train_and_val():
    n = 600
    labels = np.arange(n) % 10
    hashes = np.array([f"h{i // 3}" for i in range(n)])  # every image three times
    splits = assign_splits(
        np.full(n, "mnist"), labels, np.full(n, "train"), hashes, 0.3, np.random.default_rng(2)
    )
    for hash_ in np.unique(hashes):
        assert len(set(splits[hashes == hash_])) == 1
    assert 0.25 < (splits == "val").mean() < 0.35


@pytest.mark.parametrize("fraction", [0.0001, 0.9999])
def test_a_fraction_that_empties_val_or_train_is_refused(fraction):
    labels = np.arange(100) % 10
    hashes = np.array([f"h{i}" for i in range(100)])
    with pytest.raises(DataContractError, match="both need some"):
        assign_splits(
            np.full(100, "usps"), labels, np.full(100, "train"), hashes, fraction, np.random.default_rng(0)
        )


@pytest.fixture(scope="module")
def interim():
    return {"mnist": interim_arrays(20, 5, seed=1), "usps": interim_arrays(8, 3, seed=2)}


def test_split_dataset_manifest_points_at_the_right_images(interim):
    arrays, manifest = split_dataset(interim, 0.25, seed=3)
    assert set(manifest.columns) >= {"source", "split", "label", "hash", "row"}
    assert len(manifest) == 10 * (20 + 5 + 8 + 3)
    from digitops.fingerprint import image_hashes

    for split, split_arrays in arrays.items():
        rows = manifest[manifest["split"] == split].sort_values("row")
        assert rows["row"].tolist() == list(range(len(split_arrays["labels"])))
        np.testing.assert_array_equal(image_hashes(split_arrays["images"]), rows["hash"].to_numpy())
        np.testing.assert_array_equal(split_arrays["labels"], rows["label"].to_numpy())
        np.testing.assert_array_equal(split_arrays["sources"], rows["source"].astype(str).to_numpy())
    test = manifest[manifest["split"] == "test"]
    assert (test["official_split"] == "test").all() and len(test) == 10 * (5 + 3)
    assert not set(manifest.loc[manifest["split"] == "train", "hash"]) & set(
        manifest.loc[manifest["split"] != "train", "hash"]
    )


def test_split_is_reproducible_and_counts_add_up(interim):
    _, first = split_dataset(interim, 0.25, seed=3)
    _, again = split_dataset(interim, 0.25, seed=3)
    assert first.equals(again)
    counts = count_table(first)
    assert counts["count"].sum() == len(first)
    assert set(counts["split"]) == {"train", "val", "test"}
    mnist_test = counts[(counts["source"] == "mnist") & (counts["split"] == "test")]
    assert mnist_test["count"].tolist() == [5] * 10
