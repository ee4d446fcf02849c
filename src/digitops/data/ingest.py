"""One source's verified original files (or a local source's folder) -> one table of MNIST-style digits."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from digitops.data.drawings import split_by_hash
from digitops.data.sources import LocalSource, Source
from digitops.digits import OFFICIAL_SPLITS
from digitops.errors import DataFileError
from digitops.fingerprint import image_hashes
from digitops.preprocess import EmptyImageError, normalize_digits
from digitops.sampling import stratified_sample


def ingest_source(
    source: Source, files: Mapping[str, Path], max_per_split: int | None, seed: int
) -> dict[str, np.ndarray]:
    """Parse a source's files, cap each official split (stratified by label), normalise to MNIST style.

    Args:
        source: the source.
        files: its verified files, name -> path (from `fetch_source_files`).
        max_per_split: keep at most this many digits of each official split; None keeps all.
        seed: with the source's name, seeds the choice of the capped subset.

    Returns:
        images (N, 28, 28) uint8, labels (N,) int64, split (N,) 'train'/'test', and index (N,) int64:
        each digit's position in its official split file.
    """
    rng = np.random.default_rng([seed, zlib.crc32(source.name.encode())])
    parsed = source.parse(files)
    columns: dict[str, list[np.ndarray]] = {"images": [], "labels": [], "split": [], "index": []}
    for split in OFFICIAL_SPLITS:
        images, labels = parsed[split]
        index = np.arange(len(labels))
        if max_per_split is not None:
            index = stratified_sample(labels, max_per_split, rng)
        images, labels = images[index], labels[index]
        if not source.mnist_format:
            try:
                images = normalize_digits(images)
            except EmptyImageError as error:
                position = int(index[error.index]) if error.index is not None else "?"
                raise DataFileError(source.name, f"{split} digit #{position} has no ink ({error})") from error
        columns["images"].append(images)
        columns["labels"].append(labels)
        columns["split"].append(np.full(len(labels), split))
        columns["index"].append(index.astype(np.int64))
    return {key: np.concatenate(parts) for key, parts in columns.items()}


def ingest_local_source(
    source: LocalSource, folder: Path, test_fraction: float, max_per_split: int | None, seed: int
) -> dict[str, np.ndarray]:
    """Read a local source's folder, normalise every image to MNIST style, split by content hash, cap.

    Each digit goes to `test` or `train` by the hash of its normalised pixels (`split_by_hash`): the
    choice depends on the digit alone, so it never moves as the folder grows, and identical digits always
    share a split (no train/test leak within the source). An empty or missing folder gives zero digits.

    Args:
        source: the local source (e.g. `drawings`).
        folder: the folder it reads (params.yaml `base.paths.feedback` for drawings).
        test_fraction: expected share of the digits that go to `test`.
        max_per_split: keep at most this many digits of each split (stratified by label); None keeps all.
        seed: with the source's name, seeds the choice of the capped subset.

    Returns:
        the same arrays as `ingest_source`: images (N, 28, 28) uint8, labels (N,) int64, split (N,)
        'train'/'test', and index (N,) int64: each digit's position in the folder's manifest order.
    """
    rng = np.random.default_rng([seed, zlib.crc32(source.name.encode())])
    raw_images, all_labels = source.read(folder)
    try:
        all_images = normalize_digits(raw_images)  # (N, 28, 28) uint8
    except EmptyImageError as error:
        raise DataFileError(folder, f"{source.name} #{error.index} has no ink ({error})") from error
    all_splits = split_by_hash(image_hashes(all_images), test_fraction)
    columns: dict[str, list[np.ndarray]] = {"images": [], "labels": [], "split": [], "index": []}
    for split in OFFICIAL_SPLITS:
        index = np.flatnonzero(all_splits == split)
        if max_per_split is not None:
            index = index[stratified_sample(all_labels[index], max_per_split, rng)]
        columns["images"].append(all_images[index])
        columns["labels"].append(all_labels[index])
        columns["split"].append(np.full(len(index), split, dtype="U5"))
        columns["index"].append(index.astype(np.int64))
    return {key: np.concatenate(parts) for key, parts in columns.items()}
