"""Paired comparison of two runs scored on the same samples.

For every metric: the difference B − A, its patient-bootstrap CI, and a two-sided paired
approximate-randomisation p-value (Riezler & Maxwell 2005): each patient's rows are swapped
between the systems with probability ½, the metric is recomputed on both sides, and
p = (#{|Δ_perm| ≥ |Δ_obs|} + 1) / (N + 1) (Phipson & Smyth 2010).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medbench.stats.bootstrap import Compute, Stats, patient_groups, resample_indices, take


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
                   n_boot: int = 1000, seed: int = 0) -> dict[str, PairedResult]:
    """Compare system B with system A; rows of ``a`` and ``b`` must be aligned sample by sample."""
    for k in a:
        if k not in b or a[k].shape != b[k].shape:
            raise ValueError(f"paired stats differ in {k!r}: the runs were not scored on the same samples")
    va, vb = compute(a), compute(b)
    names = [n for n in va if n in vb]
    groups = patient_groups(patient_ids)
    rng = np.random.default_rng(seed)
    exceed = {n: 0 for n in names}
    observed = {n: abs(vb[n] - va[n]) for n in names}
    for _ in range(n_perm):
        a2, b2 = _swap(a, b, groups, rng)
        pa, pb = compute(a2), compute(b2)
        for n in names:
            if abs(pb[n] - pa[n]) >= observed[n] - 1e-12:
                exceed[n] += 1
    diffs: dict[str, list[float]] = {n: [] for n in names}
    for idx in resample_indices(patient_ids, n_boot, seed + 1):
        pa, pb = compute(take(a, idx)), compute(take(b, idx))
        for n in names:
            diffs[n].append(pb[n] - pa[n])
    out = {}
    for n in names:
        d = np.asarray(diffs[n])
        d = d[np.isfinite(d)]
        lo, hi = (float(x) for x in np.percentile(d, [2.5, 97.5])) if d.size else (None, None)
        out[n] = PairedResult(float(va[n]), float(vb[n]), float(vb[n] - va[n]), lo, hi, (exceed[n] + 1) / (n_perm + 1))
    return out
