"""The data contract: what every ingested source must satisfy before it is split and trained on.

`check_sources` returns a report (JSON-ready) with a summary per source and split and the list of
violations; the validate stage fails when that list is not empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from digitops.config import ValidateParams
from digitops.data.sources import WHOLE
from digitops.digits import NUM_CLASSES, OFFICIAL_SPLITS
from digitops.fingerprint import image_hashes
from digitops.preprocess import BOX_SIZE, MNIST_CENTRE, MNIST_SIZE, centre_of_mass

INTERIM_KEYS = ("images", "labels", "split", "index")
_BORDER = 4  # MNIST leaves 4 px around its 20x20 box


def digit_problems(digit: np.ndarray, policy: ValidateParams) -> list[str]:
    """What the data contract has against one normalised (28, 28) uint8 digit, in words (none: it passes).

    The per-image checks of `check_sources`, for a digit on its own (a contributed drawing, before it is
    stored): it has ink, its centre of mass is near (14, 14), and its frame is dark. A source's border is
    checked on average; a single digit is held to the same mean on its own border.
    """
    if digit.max() < policy.min_peak_ink:
        return [f"it is blank (brightest pixel below {policy.min_peak_ink})"]
    problems = []
    offset = float(np.abs(centre_of_mass(digit[None]) - MNIST_CENTRE).max())
    if offset > policy.max_centre_offset:
        problems.append(
            f"its ink's centre of mass is {offset:.1f} px from the centre once normalised (at most "
            f"{policy.max_centre_offset}): not one digit on its own"
        )
    frame = np.ones_like(digit, dtype=bool)
    frame[_BORDER:-_BORDER, _BORDER:-_BORDER] = False
    if float(digit[frame].mean()) > policy.max_border_mean:
        problems.append(f"its ink reaches the frame (mean {float(digit[frame].mean()):.1f} on the border)")
    return problems


@dataclass
class ValidationReport:
    violations: list[str] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)
    leaks: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "violations": self.violations,
            "sources": self.sources,
            "leaks": self.leaks,
        }


def check_sources(
    interim: Mapping[str, Mapping[str, np.ndarray]],
    expected_counts: Mapping[str, Mapping[str, int] | None],
    policy: ValidateParams,
) -> ValidationReport:
    """Check every source against the contract, and all of them together for train/test leakage.

    Args:
        interim: source name -> arrays as ingest wrote them: images (N, 28, 28) uint8, labels (N,) int64,
            split (N,) 'train'/'test', index (N,) int64.
        expected_counts: source name -> official split -> how many digits it must hold (already capped
            by the caller; WHOLE counts all splits together, for a source split by content hash, whose
            train and test sizes follow from the hashes), or None for a source of open size (contributed
            drawings: a small folder that grows), for which neither the counts nor the class shares are
            checked; every other check (structure, blank images, framing, duplicates, leaks across
            sources) applies to it alike.
        policy: the thresholds from params.yaml.
    """
    report = ValidationReport()
    usable = {}
    for name, arrays in interim.items():
        problems = _structure_problems(arrays)
        if problems:
            report.violations += [f"{name}: {problem}" for problem in problems]
            continue
        hashes = image_hashes(arrays["images"])  # once: for duplicates here, for leaks below
        usable[name] = {**arrays, "hash": hashes}
        report.sources[name] = {}
        open_size = expected_counts.get(name, {}) is None
        for split in OFFICIAL_SPLITS:
            in_split = arrays["split"] == split
            expected = (expected_counts.get(name) or {}).get(split)
            summary, problems = _check_split(
                arrays["images"][in_split],
                arrays["labels"][in_split],
                hashes[in_split],
                expected,
                policy,
                check_class_shares=not open_size,
            )
            report.sources[name][split] = summary
            report.violations += [f"{name} {split}: {problem}" for problem in problems]
        total = (expected_counts.get(name) or {}).get(WHOLE)
        if total is not None and len(arrays["labels"]) != total:
            report.violations.append(f"{name}: {len(arrays['labels'])} digits in all, expected {total}")
    report.leaks, problems = _check_leaks(usable)
    report.violations += problems
    return report


def _structure_problems(arrays: Mapping[str, np.ndarray]) -> list[str]:
    missing = [key for key in INTERIM_KEYS if key not in arrays]
    if missing:
        return [f"missing arrays {missing}"]
    images, labels, splits, index = (arrays[key] for key in INTERIM_KEYS)
    problems = []
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        problems.append(f"images must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.ndim != 1:
        problems.append(f"labels must be int64 (N,), got {labels.dtype} {labels.shape}")
    if not (len(images) == len(labels) == len(splits) == len(index)):
        problems.append(
            f"arrays differ in length: images {len(images)}, labels {len(labels)}, split {len(splits)}, "
            f"index {len(index)}"
        )
    unknown_splits = sorted(set(np.unique(splits).tolist()) - set(OFFICIAL_SPLITS))
    if unknown_splits:
        problems.append(f"unknown split names {unknown_splits}, expected {list(OFFICIAL_SPLITS)}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
        problems.append(f"{bad.size} labels outside 0-9, e.g. {bad[:5].tolist()}")
    return problems


def _check_split(
    images: np.ndarray,
    labels: np.ndarray,
    hashes: np.ndarray,
    expected: int | None,
    policy: ValidateParams,
    check_class_shares: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    count = len(labels)
    class_counts = np.bincount(labels, minlength=NUM_CLASSES)
    peaks = images.max(axis=(1, 2)) if count else np.zeros(0, np.uint8)
    blank = peaks < policy.min_peak_ink
    inked = images[~blank]
    border = np.concatenate(
        [
            inked[:, :_BORDER].ravel(),
            inked[:, -_BORDER:].ravel(),
            inked[:, :, :_BORDER].ravel(),
            inked[:, :, -_BORDER:].ravel(),
        ]
    )
    border_mean = float(border.mean()) if border.size else 0.0
    centre_offset = np.abs(centre_of_mass(inked) - MNIST_CENTRE).max(axis=1) if len(inked) else np.zeros(0)
    rows_with_ink = (inked > 0).any(axis=2)
    cols_with_ink = (inked > 0).any(axis=1)
    box = np.maximum(_extent(rows_with_ink), _extent(cols_with_ink))

    summary = {
        "count": count,
        "expected": expected,
        "class_counts": class_counts.tolist(),
        "blank": int(blank.sum()),
        "border_mean": round(border_mean, 3),
        "max_centre_offset": round(float(centre_offset.max()), 3) if centre_offset.size else 0.0,
        "oversized": int((box > BOX_SIZE).sum()),
        "duplicates": int(count - len(np.unique(hashes))),
    }
    problems = []
    if expected is not None and count != expected:
        problems.append(f"{count} digits, expected {expected}")
    if count and check_class_shares:
        fractions = class_counts / count
        outside = np.flatnonzero(
            (fractions < policy.min_class_fraction) | (fractions > policy.max_class_fraction)
        )
        if outside.size:
            shares = ", ".join(f"{digit}: {fractions[digit]:.3f}" for digit in outside)
            problems.append(
                f"class shares outside [{policy.min_class_fraction}, {policy.max_class_fraction}]: {shares}"
            )
    if summary["blank"]:
        problems.append(f"{summary['blank']} blank images (brightest pixel below {policy.min_peak_ink})")
    if border_mean > policy.max_border_mean:
        problems.append(
            f"mean grey level of the {_BORDER}-px border is {border_mean:.1f} "
            f"(at most {policy.max_border_mean}): not white ink on black, or not framed like MNIST"
        )
    off_centre = int((centre_offset > policy.max_centre_offset).sum())
    if off_centre:
        problems.append(
            f"{off_centre} images have their centre of mass more than {policy.max_centre_offset} px from "
            f"({MNIST_CENTRE}, {MNIST_CENTRE})"
        )
    if summary["oversized"]:
        problems.append(f"{summary['oversized']} images have ink outside a {BOX_SIZE}x{BOX_SIZE} box")
    return summary, problems


def _extent(has_ink: np.ndarray) -> np.ndarray:
    """(N, L) bool -> (N,) distance from the first to the last True, inclusive (0 when none)."""
    first = np.argmax(has_ink, axis=1)
    last = has_ink.shape[1] - 1 - np.argmax(has_ink[:, ::-1], axis=1)
    return np.where(has_ink.any(axis=1), last - first + 1, 0)


def _check_leaks(interim: Mapping[str, Mapping[str, np.ndarray]]) -> tuple[dict[str, Any], list[str]]:
    """Images (by content hash) present in a training split and in a test split, across all sources.

    `interim` holds each source's arrays plus its image hashes under "hash".
    """
    if not interim:
        return {"train_test": 0, "examples": []}, []
    hashes = np.concatenate([arrays["hash"] for arrays in interim.values()])
    splits = np.concatenate([arrays["split"] for arrays in interim.values()])
    names = np.concatenate([np.full(len(arrays["split"]), name) for name, arrays in interim.items()])
    index = np.concatenate([arrays["index"] for arrays in interim.values()])
    leaked = np.intersect1d(hashes[splits == "train"], hashes[splits == "test"])
    in_test = np.flatnonzero((splits == "test") & np.isin(hashes, leaked))
    examples = [f"{names[row]} test #{index[row]}" for row in in_test[:5]]
    leaks = {"train_test": int(leaked.size), "examples": examples}
    problems = []
    if leaked.size:
        problems.append(
            f"{leaked.size} images are in both a training and a test split, e.g. {', '.join(examples)}"
        )
    return leaks, problems
