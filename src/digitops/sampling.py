"""Stratified sampling: choose a subset that keeps every stratum's share (used by ingest's cap and by the
validation split)."""

from __future__ import annotations

import numpy as np


def stratified_sample(strata: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Choose `n` members at random so that every stratum keeps its share.

    Each stratum's members are shuffled and given evenly spaced positions in [0, 1); the `n` lowest
    positions win. Every stratum thus contributes round(n * its share), give or take one.

    Args:
        strata: (N,) stratum key of each member (any sortable dtype).
        n: how many to choose; n >= N chooses all.
        rng: the random generator (seeded by the caller).

    Returns:
        (min(n, N),) int64 indices into `strata`, ascending.
    """
    total = len(strata)
    if n >= total:
        return np.arange(total)
    order = rng.permutation(total)
    _, stratum_of, counts = np.unique(strata[order], return_inverse=True, return_counts=True)
    by_stratum = np.argsort(stratum_of, kind="stable")
    starts = np.cumsum(counts) - counts
    rank = np.empty(total, dtype=np.int64)
    rank[by_stratum] = np.arange(total) - np.repeat(starts, counts)
    position = (rank + 0.5) / counts[stratum_of]
    chosen = order[np.argsort(position, kind="stable")[:n]]
    return np.sort(chosen)


def without_sources(arrays: dict[str, np.ndarray], sources: list[str]) -> dict[str, np.ndarray]:
    """The rows of a split (its `images`, `labels`, `sources`, ...) whose source is not in `sources`:
    the benchmarks hold whole sources out of training to measure the model on writers it never met."""
    keep = ~np.isin(arrays["sources"], sources)
    return {key: values[keep] for key, values in arrays.items()}
