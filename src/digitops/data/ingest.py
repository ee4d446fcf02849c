"""One source's verified original files -> one table of MNIST-style digits."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from digitops.data.sources import Source
from digitops.digits import OFFICIAL_SPLITS
from digitops.errors import DataFileError
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
