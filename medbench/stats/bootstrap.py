"""Percentile-bootstrap CIs that resample patients, from per-sample sufficient statistics.

A patient carries all of their studies into the resample (metrics-landscape §8): rows are
grouped by patient id, patients are drawn with replacement, and the metric's pure ``compute``
is re-run on the gathered rows. Nothing is regenerated or re-extracted.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

Stats = dict[str, np.ndarray]
Compute = Callable[[Stats], dict[str, float]]


def patient_groups(patient_ids: list[str]) -> list[np.ndarray]:
    """Row indices per patient, in first-seen order (deterministic)."""
    index: dict[str, list[int]] = {}
    for i, p in enumerate(patient_ids):
        index.setdefault(p, []).append(i)
    return [np.asarray(rows, dtype=np.int64) for rows in index.values()]


def resample_indices(patient_ids: list[str], n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` row-index arrays, each a with-replacement draw of whole patients."""
    groups = patient_groups(patient_ids)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        picks = rng.integers(0, len(groups), size=len(groups))
        yield np.concatenate([groups[g] for g in picks])


def take(stats: Stats, idx: np.ndarray) -> Stats:
    return {k: v[idx] for k, v in stats.items()}


def bootstrap_ci(compute: Compute, stats: Stats, patient_ids: list[str], *, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, tuple[float | None, float | None]]:
    """{metric name: (low, high)} percentile CIs; (None, None) where every resample was NaN."""
    from threadpoolctl import threadpool_limits

    draws: dict[str, list[float]] = {}
    with threadpool_limits(1):  # many small linear-algebra calls: threads only oversubscribe
        for idx in resample_indices(patient_ids, n_boot, seed):
            for name, value in compute(take(stats, idx)).items():
                draws.setdefault(name, []).append(float(value))
    tail = 100 * (1 - level) / 2
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, values in draws.items():
        arr = np.asarray(values)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            out[name] = (None, None)
        else:
            lo, hi = np.percentile(arr, [tail, 100 - tail])
            out[name] = (float(lo), float(hi))
    return out
