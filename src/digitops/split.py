"""The train/val/test split.

Official test sets stay test sets. Validation digits are carved from the official training data,
stratified by (source, label), and chosen by image content: identical images always land in the same
split, so no digit leaks from train into val.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from digitops.errors import DataContractError
from digitops.fingerprint import image_hashes
from digitops.sampling import stratified_sample

SPLITS = ("train", "val", "test")


def assign_splits(
    sources: np.ndarray,
    labels: np.ndarray,
    official_splits: np.ndarray,
    hashes: np.ndarray,
    val_fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Give each digit its split: official test -> 'test'; official train -> 'train' or 'val'.

    Args:
        sources, labels, official_splits, hashes: (N,) per digit; official_splits holds 'train'/'test'.
        val_fraction: share of the distinct training images (per source and label) that go to 'val'.
        rng: the random generator.

    Returns:
        (N,) str: 'train', 'val' or 'test'.

    Raises:
        DataContractError: the fraction would leave val or train empty.
    """
    splits = np.where(official_splits == "test", "test", "train").astype("U5")
    train_rows = np.flatnonzero(official_splits == "train")
    # One vote per distinct image, so that duplicates cannot straddle train and val.
    distinct, first, group_of = np.unique(hashes[train_rows], return_index=True, return_inverse=True)
    group_rows = train_rows[first]
    group_strata = np.char.add(
        np.char.add(sources[group_rows].astype(str), "/"), labels[group_rows].astype(str)
    )
    val_count = round(val_fraction * len(distinct))
    if not 0 < val_count < len(distinct):
        raise DataContractError(
            f"val_fraction {val_fraction} of {len(distinct)} distinct training images leaves "
            f"{val_count} for validation and {len(distinct) - val_count} for training: both need some"
        )
    val_groups = stratified_sample(group_strata, val_count, rng)
    is_val_group = np.zeros(len(distinct), dtype=bool)
    is_val_group[val_groups] = True
    splits[train_rows[is_val_group[group_of]]] = "val"
    return splits


def split_dataset(
    interim: Mapping[str, Mapping[str, np.ndarray]], val_fraction: float, seed: int
) -> tuple[dict[str, dict[str, np.ndarray]], pd.DataFrame]:
    """Combine the ingested sources and split them.

    Args:
        interim: source name -> the arrays ingest wrote (images, labels, split, index).
        val_fraction: see `assign_splits`.
        seed: seeds the choice of validation digits.

    Returns:
        split name -> {images (n, 28, 28) uint8, labels (n,) int64, sources (n,) str}, and the manifest:
        one row per digit with columns split, row (its position in that split's arrays), source, label,
        hash, official_split, official_index.
    """
    names = list(interim)
    images = np.concatenate([interim[name]["images"] for name in names])
    labels = np.concatenate([interim[name]["labels"] for name in names])
    official_splits = np.concatenate([interim[name]["split"] for name in names])
    official_index = np.concatenate([interim[name]["index"] for name in names])
    sources = np.concatenate([np.full(len(interim[name]["labels"]), name) for name in names])
    hashes = image_hashes(images)
    splits = assign_splits(
        sources, labels, official_splits, hashes, val_fraction, np.random.default_rng(seed)
    )

    arrays: dict[str, dict[str, np.ndarray]] = {}
    row = np.zeros(len(labels), dtype=np.int64)
    for split in SPLITS:
        members = np.flatnonzero(splits == split)
        row[members] = np.arange(len(members))
        arrays[split] = {"images": images[members], "labels": labels[members], "sources": sources[members]}
    manifest = pd.DataFrame(
        {
            "split": pd.Categorical(splits, categories=SPLITS),
            "row": row,
            "source": pd.Categorical(sources, categories=names),
            "label": labels,
            "hash": hashes,
            "official_split": official_splits,
            "official_index": official_index,
        }
    )
    return arrays, manifest


def count_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Digits per source, split and label: columns source, split, label, count (every combination)."""
    counts = manifest.groupby(["source", "split", "label"], observed=False).size()
    return counts.rename("count").reset_index()
