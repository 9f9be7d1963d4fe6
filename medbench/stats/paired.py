"""Paired comparison of two runs scored on the same samples.

For every metric: the difference B − A, its patient-bootstrap CI, and a two-sided paired
approximate-randomisation p-value (Riezler & Maxwell 2005): each patient's rows are swapped
between the systems with probability ½, the metric is recomputed on both sides, and
p = (#{|Δ_perm| ≥ |Δ_obs|} + 1) / (N + 1) (Phipson & Smyth 2010).

With ``weighted_compute`` (a family's fast path, see medbench.stats.bootstrap) the same permutations
and resamples are scored as weights: a permuted side is rows of A and B stacked with 0/1 weights,
a bootstrap resample is row multiplicities — the same numbers as the direct path, in one product.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medbench.stats.bootstrap import (BLOCK, Compute, Stats, WeightedCompute, patient_groups, resample_indices,
                                      resample_weights, take)


@dataclass(frozen=True)
class PairedResult:
    a: float
    b: float
    diff: float  # b - a
    ci_low: float | None
    ci_high: float | None
    p_value: float


def _swap(a: Stats, b: Stats, groups: list[np.ndarray], rng: np.random.Generator) -> tuple[Stats, Stats]:
    flip = rng.random(len(groups)) < 0.5
    rows = np.concatenate([g for g, f in zip(groups, flip) if f]) if flip.any() else np.zeros(0, dtype=np.int64)
    a2 = {k: v.copy() for k, v in a.items()}
    b2 = {k: v.copy() for k, v in b.items()}
    for k in a:
        a2[k][rows], b2[k][rows] = b[k][rows], a[k][rows]
    return a2, b2


def paired_compare(*args, **kwargs) -> dict[str, PairedResult]:
    """Compare system B with system A (see `_paired_compare`), with one BLAS thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _paired_compare(*args, **kwargs)


def _paired_compare(compute: Compute, a: Stats, b: Stats, patient_ids: list[str], *, n_perm: int = 1000,
                   n_boot: int = 1000, seed: int = 0, weighted_compute: WeightedCompute | None = None) -> dict[str, PairedResult]:
    """Compare system B with system A; rows of ``a`` and ``b`` must be aligned sample by sample."""
    for k in a:
        if k not in b or a[k].shape != b[k].shape:
            raise ValueError(f"paired stats differ in {k!r}: the runs were not scored on the same samples")
    va, vb = compute(a), compute(b)
    names = [n for n in va if n in vb]
    groups = patient_groups(patient_ids)
    observed = {n: abs(vb[n] - va[n]) for n in names}
    if weighted_compute is None:
        perm_diffs, boot_diffs = _direct(compute, a, b, groups, patient_ids, names, n_perm, n_boot, seed)
    else:
        perm_diffs, boot_diffs = _weighted(weighted_compute, a, b, groups, patient_ids, names, n_perm, n_boot, seed)
    out = {}
    for n in names:
        exceed = int((np.abs(perm_diffs[n]) >= observed[n] - 1e-12).sum())
        d = boot_diffs[n][np.isfinite(boot_diffs[n])]
        lo, hi = (float(x) for x in np.percentile(d, [2.5, 97.5])) if d.size else (None, None)
        out[n] = PairedResult(float(va[n]), float(vb[n]), float(vb[n] - va[n]), lo, hi, (exceed + 1) / (n_perm + 1))
    return out


def _direct(compute, a, b, groups, patient_ids, names, n_perm, n_boot, seed):
    rng = np.random.default_rng(seed)
    perm: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(n_perm):
        a2, b2 = _swap(a, b, groups, rng)
        pa, pb = compute(a2), compute(b2)
        for n in names:
            perm[n].append(pb[n] - pa[n])
    boot: dict[str, list[float]] = {n: [] for n in names}
    for idx in resample_indices(patient_ids, n_boot, seed + 1):
        pa, pb = compute(take(a, idx)), compute(take(b, idx))
        for n in names:
            boot[n].append(pb[n] - pa[n])
    return ({n: np.asarray(v, dtype=np.float64) for n, v in perm.items()},
            {n: np.asarray(v, dtype=np.float64) for n, v in boot.items()})


def _weighted(weighted_compute, a, b, groups, patient_ids, names, n_perm, n_boot, seed):
    rng = np.random.default_rng(seed)
    n_rows = len(patient_ids)
    of_row = np.zeros(n_rows, dtype=np.int64)
    for g, rows in enumerate(groups):
        of_row[rows] = g
    stacked = {k: np.concatenate([a[k], b[k]]) for k in a}
    perm: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, n_perm, BLOCK):
        flips = np.stack([rng.random(len(groups)) < 0.5 for _ in range(min(BLOCK, n_perm - start))])
        f = flips[:, of_row].astype(np.float64)  # 1: the row's patient is swapped
        pa = weighted_compute(stacked, np.concatenate([1 - f, f], axis=1))
        pb = weighted_compute(stacked, np.concatenate([f, 1 - f], axis=1))
        for n in names:
            perm[n].append(np.asarray(pb[n]) - np.asarray(pa[n]))
    boot: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for w in resample_weights(patient_ids, n_boot, seed + 1):
        pa, pb = weighted_compute(a, w), weighted_compute(b, w)
        for n in names:
            boot[n].append(np.asarray(pb[n]) - np.asarray(pa[n]))
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
    return {n: cat(v) for n, v in perm.items()}, {n: cat(v) for n, v in boot.items()}
