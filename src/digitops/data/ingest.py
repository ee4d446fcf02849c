"""One source's verified original files (or a local source's folder) -> one table of MNIST-style digits."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitops.data.drawings import split_by_hash
from digitops.data.sources import WHOLE, LocalSource, Source
from digitops.digits import OFFICIAL_SPLITS
from digitops.errors import DataFileError
from digitops.fingerprint import image_hashes
from digitops.preprocess import MNIST_SIZE, EmptyImageError, normalize_digit, normalize_digits
from digitops.sampling import stratified_sample


def ingest_source(
    source: Source,
    files: Mapping[str, Path],
    max_per_split: int | None,
    seed: int,
    hash_test_fraction: float | None = None,
) -> dict[str, np.ndarray]:
    """Parse a source's files, cap each official split (stratified by label), normalise to MNIST style.

    A source without an official test split (`Source.hash_split`) is normalised whole, then each digit goes
    to `test` or `train` by the hash of its normalised pixels (`split_by_hash`), as contributed drawings
    do, and each split is capped after that.

    Args:
        source: the source.
        files: its verified files, name -> path (from `fetch_source_files`).
        max_per_split: keep at most this many digits of each official split; None keeps all.
        seed: with the source's name, seeds the choice of the capped subset.
        hash_test_fraction: for a source split by hash, the expected share of test (params.yaml
            `ingest.hash_test_fraction`); unused otherwise.

    Returns:
        images (N, 28, 28) uint8, labels (N,) int64, split (N,) 'train'/'test', and index (N,) int64:
        each digit's position in its official split file (in the whole set, for a source split by hash).
    """
    rng = np.random.default_rng([seed, zlib.crc32(source.name.encode())])
    parsed = source.parse(files)
    if source.hash_split:
        if hash_test_fraction is None:
            raise ValueError(f"{source.name} has no official test split: give hash_test_fraction")
        raw_images, labels = parsed[WHOLE]
        images = _normalise(source, raw_images, np.arange(len(labels)), "")
        return _split_and_cap(
            images, labels, split_by_hash(image_hashes(images), hash_test_fraction), max_per_split, rng
        )
    columns: dict[str, list[np.ndarray]] = {"images": [], "labels": [], "split": [], "index": []}
    for split in OFFICIAL_SPLITS:
        images, labels = parsed[split]
        index = np.arange(len(labels))
        if max_per_split is not None:
            index = stratified_sample(labels, max_per_split, rng)
        images, labels = images[index], labels[index]
        if not source.mnist_format:
            images = _normalise(source, images, index, f"{split} ")
        columns["images"].append(images)
        columns["labels"].append(labels)
        columns["split"].append(np.full(len(labels), split))
        columns["index"].append(index.astype(np.int64))
    return {key: np.concatenate(parts) for key, parts in columns.items()}


def _normalise(source: Source, images: np.ndarray, index: np.ndarray, where: str) -> np.ndarray:
    """`normalize_digits`, naming a blank digit by its position in the source's file ("train digit #12")."""
    try:
        return normalize_digits(images)
    except EmptyImageError as error:
        position = int(index[error.index]) if error.index is not None else "?"
        raise DataFileError(source.name, f"{where}digit #{position} has no ink ({error})") from error


def _split_and_cap(
    images: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    max_per_split: int | None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Digits already assigned to a split (by content hash) -> the ingest arrays, each split capped.

    Args:
        images: (N, 28, 28) uint8, normalised.
        labels: (N,) int64.
        splits: (N,) 'train'/'test'.
        max_per_split: keep at most this many digits of each split (stratified by label); None keeps all.
        rng: chooses the capped subset.

    Returns:
        images, labels, split and index (each digit's position in the input), train first.
    """
    columns: dict[str, list[np.ndarray]] = {"images": [], "labels": [], "split": [], "index": []}
    for split in OFFICIAL_SPLITS:
        index = np.flatnonzero(splits == split)
        if max_per_split is not None:
            index = index[stratified_sample(labels[index], max_per_split, rng)]
        columns["images"].append(images[index])
        columns["labels"].append(labels[index])
        columns["split"].append(np.full(len(index), split, dtype="U5"))
        columns["index"].append(index.astype(np.int64))
    return {key: np.concatenate(parts) for key, parts in columns.items()}


SET_ASIDE_NAME = "set_aside.json"  # in the interim folder: the digits of local sources that ingest left out

# one normalised digit (28, 28) uint8 -> what the data contract has against it, in words (none: it passes)
Contract = Callable[[np.ndarray], list[str]]


@dataclass(frozen=True)
class SetAside:
    """A digit of a local source that ingest left out because the data contract refuses it."""

    name: str  # how the source names it (a drawing: the SHA-256 of its file)
    index: int  # its position in the folder's order
    label: int
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.name, "index": self.index, "label": self.label, "reasons": list(self.reasons)}


def ingest_local_source(
    source: LocalSource,
    folder: Path,
    test_fraction: float,
    max_per_split: int | None,
    seed: int,
    contract: Contract | None = None,
) -> tuple[dict[str, np.ndarray], list[SetAside]]:
    """Read a local source's folder, normalise every image to MNIST style, split by content hash, cap.

    Each digit goes to `test` or `train` by the hash of its normalised pixels (`split_by_hash`): the
    choice depends on the digit alone, so it never moves as the folder grows, and identical digits always
    share a split (no train/test leak within the source). An empty or missing folder gives zero digits.

    A digit that is blank, or that `contract` objects to, is set aside and reported instead of stopping
    ingest: one contributed drawing must not be able to stop the pipeline at validate.

    Args:
        source: the local source (e.g. `drawings`).
        folder: the folder it reads (params.yaml `base.paths.feedback` for drawings).
        test_fraction: expected share of the digits that go to `test`.
        max_per_split: keep at most this many digits of each split (stratified by label); None keeps all.
        seed: with the source's name, seeds the choice of the capped subset.
        contract: the data contract's per-digit check (`digitops.validate.digit_problems` with the
            policy); None sets aside blank digits only.

    Returns:
        the same arrays as `ingest_source` (images (N, 28, 28) uint8, labels (N,) int64, split (N,)
        'train'/'test', and index (N,) int64: each digit's position in the folder's order), without the
        digits set aside; and those, in the folder's order.
    """
    rng = np.random.default_rng([seed, zlib.crc32(source.name.encode())])
    raw_images, all_labels, names = source.read(folder)
    digits, set_aside = [], []
    kept = np.ones(len(raw_images), dtype=bool)
    for position, raw in enumerate(raw_images):
        try:
            digit = normalize_digit(raw)  # (28, 28) uint8
            problems = contract(digit) if contract is not None else []
        except EmptyImageError as error:
            digit, problems = None, [f"it is blank ({error})"]
        if problems:
            kept[position] = False
            set_aside.append(SetAside(names[position], position, int(all_labels[position]), tuple(problems)))
        else:
            digits.append(digit)
    all_images = np.stack(digits) if digits else np.zeros((0, MNIST_SIZE, MNIST_SIZE), np.uint8)
    positions = np.flatnonzero(kept)
    all_splits = split_by_hash(image_hashes(all_images), test_fraction)
    arrays = _split_and_cap(all_images, all_labels[positions], all_splits, max_per_split, rng)
    arrays["index"] = positions[arrays["index"]].astype(np.int64)  # back to the folder's order
    return arrays, set_aside
