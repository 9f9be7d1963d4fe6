"""Percentile-bootstrap CIs that resample patients, from per-sample sufficient statistics.

A patient carries all of their studies into the resample (metrics-landscape §8): rows are
grouped by patient id, patients are drawn with replacement. Nothing is regenerated or re-extracted.

Two equivalent paths, the same resamples (same seed, same draws):

- direct: the metric's pure ``compute`` is re-run on the gathered rows of every resample;
- weighted (the fast path): a resample is a vector of row multiplicities (how often each row was
  drawn), and a family's ``weighted_compute(stats, weights)`` returns every resample's value at once
  from a (B, n_rows) weight matrix — sums become one matrix product::

      ci = bootstrap_ci(metric.compute, stats, patients, n_boot=1000)            # direct
      ci = bootstrap_ci_weighted(metric.weighted_compute, stats, patients, n_boot=1000)  # same numbers
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

Stats = dict[str, np.ndarray]
Compute = Callable[[Stats], dict[str, float]]
WeightedCompute = Callable[[Stats, np.ndarray], dict[str, np.ndarray]]
BLOCK = 100  # resamples per weight block: bounds memory at (BLOCK, n_rows) float64


def patient_groups(patient_ids: list[str]) -> list[np.ndarray]:
    """Row indices per patient, in first-seen order (deterministic)."""
    index: dict[str, list[int]] = {}
    for i, p in enumerate(patient_ids):
        index.setdefault(p, []).append(i)
    return [np.asarray(rows, dtype=np.int64) for rows in index.values()]


def patient_picks(n_groups: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The patient draws of every resample (the one source of randomness for both paths)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n_groups, size=n_groups)


def resample_indices(patient_ids: list[str], n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` row-index arrays, each a with-replacement draw of whole patients."""
    groups = patient_groups(patient_ids)
    for picks in patient_picks(len(groups), n_boot, seed):
        yield np.concatenate([groups[g] for g in picks])


def row_of_group(patient_ids: list[str]) -> np.ndarray:
    """(n_rows,) the group index of every row (groups as in `patient_groups`)."""
    index: dict[str, int] = {}
    return np.asarray([index.setdefault(p, len(index)) for p in patient_ids], dtype=np.int64)


def resample_weights(patient_ids: list[str], n_boot: int, seed: int, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Yield (<=block, n_rows) float64 row multiplicities; row b of the stacked blocks is resample b of
    `resample_indices` with the same seed (np.bincount of its indices)."""
    of_group = row_of_group(patient_ids)
    n_groups = int(of_group.max()) + 1 if len(of_group) else 0
    rows: list[np.ndarray] = []
    for picks in patient_picks(n_groups, n_boot, seed):
        rows.append(np.bincount(picks, minlength=n_groups))
        if len(rows) == block:
            yield np.stack(rows)[:, of_group].astype(np.float64)
            rows = []
    if rows:
        yield np.stack(rows)[:, of_group].astype(np.float64)


def take(stats: Stats, idx: np.ndarray) -> Stats:
    return {k: v[idx] for k, v in stats.items()}


def percentile_ci(draws: dict[str, np.ndarray], level: float = 0.95) -> dict[str, tuple[float | None, float | None]]:
    """{name: (low, high)} percentile intervals over the finite draws; (None, None) when there are none."""
    tail = 100 * (1 - level) / 2
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, values in draws.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            out[name] = (None, None)
        else:
            lo, hi = np.percentile(arr, [tail, 100 - tail])
            out[name] = (float(lo), float(hi))
    return out


def bootstrap_draws(compute: Compute, stats: Stats, patient_ids: list[str], *, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Direct path: every resample's values, recomputed on gathered rows."""
    from threadpoolctl import threadpool_limits

    draws: dict[str, list[float]] = {}
    with threadpool_limits(1):  # many small linear-algebra calls: threads only oversubscribe
        for idx in resample_indices(patient_ids, n_boot, seed):
            for name, value in compute(take(stats, idx)).items():
                draws.setdefault(name, []).append(float(value))
    return {k: np.asarray(v) for k, v in draws.items()}


def weighted_draws(weighted_compute: WeightedCompute, stats: Stats, patient_ids: list[str], *, n_boot: int,
                   seed: int, block: int = BLOCK) -> dict[str, np.ndarray]:
    """Fast path: every resample's values from blocks of row weights."""
    parts: dict[str, list[np.ndarray]] = {}
    for w in resample_weights(patient_ids, n_boot, seed, block):
        for name, values in weighted_compute(stats, w).items():
            parts.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}


def bootstrap_ci(compute: Compute, stats: Stats, patient_ids: list[str], *, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, tuple[float | None, float | None]]:
    """{metric name: (low, high)} percentile CIs (direct path); (None, None) where every resample was NaN."""
    return percentile_ci(bootstrap_draws(compute, stats, patient_ids, n_boot=n_boot, seed=seed), level)


def bootstrap_ci_weighted(weighted_compute: WeightedCompute, stats: Stats, patient_ids: list[str], *,
                          n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float | None, float | None]]:
    """The same CIs as `bootstrap_ci` (same resamples) from a family's ``weighted_compute``."""
    return percentile_ci(weighted_draws(weighted_compute, stats, patient_ids, n_boot=n_boot, seed=seed), level)


class WeightedBootstrap:
    """Mixin for metric families with a ``weighted_compute(stats, weights) -> {name: (B,) values}``:
    their CIs take the fast path (put it before `Metric` in the bases)."""

    def confidence_intervals(self, stats: Stats, patient_ids: list[str], *, n_boot: int,
                             seed: int) -> dict[str, tuple[float | None, float | None]]:
        return bootstrap_ci_weighted(self.weighted_compute, stats, patient_ids, n_boot=n_boot, seed=seed)
