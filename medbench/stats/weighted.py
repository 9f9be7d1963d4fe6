"""Row-weighted statistics for the bootstrap fast path: one value per weight row.

``w`` is a (B, n) matrix of row multiplicities (resample b drew row i ``w[b, i]`` times). Each
function equals the plain statistic on the rows gathered by that resample (up to summation order)::

    means = wmean(w, x)                 # == [x[idx_b].mean() for each resample b]
    meds = wquantile(w, x, 50)          # == [np.median(x[idx_b]) ...]
"""
from __future__ import annotations

import numpy as np


def wsum(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(B, ...) weighted column sums of x (n, ...)."""
    x = np.asarray(x, dtype=np.float64)
    return (w @ x.reshape(len(x), -1)).reshape((len(w),) + x.shape[1:])


def wmean(w: np.ndarray, x: np.ndarray, skip_nan: bool = False) -> np.ndarray:
    """(B,) weighted means of a 1-d x; with skip_nan, NaN rows are left out (NaN where nothing is left)."""
    x = np.asarray(x, dtype=np.float64)
    if skip_nan:
        ok = np.isfinite(x)
        w, x = w[:, ok], x[ok]
    den = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (w @ x) / np.where(den > 0, den, 1.0), np.nan)


def row_mean(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(B,) mean of each row of (B, L) values over its kept finite entries; NaN where none (a macro average)."""
    keep = keep & np.isfinite(values)
    k = keep.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, np.where(keep, values, 0.0).sum(1) / np.maximum(k, 1), np.nan)


def wquantile(w: np.ndarray, x: np.ndarray, q: float) -> np.ndarray:
    """(B,) np.percentile(x[idx_b], q) (linear interpolation) for integer weights; NaN rows of x are
    left out (as the callers do before calling np.percentile); NaN where a resample has no rows."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    w, x = w[:, ok], x[ok]
    order = np.argsort(x, kind="stable")
    xs, cum = x[order], np.cumsum(w[:, order], axis=1)  # (B, n) rows drawn up to each sorted value
    m = cum[:, -1] if len(xs) else np.zeros(len(w))
    h = (m - 1) * (q / 100.0)
    lo = np.floor(h)
    hi = np.minimum(lo + 1, m - 1)
    i0 = np.minimum((cum <= lo[:, None]).sum(1), max(len(xs) - 1, 0))  # first sorted value whose copies reach lo
    i1 = np.minimum((cum <= hi[:, None]).sum(1), max(len(xs) - 1, 0))
    if not len(xs):
        return np.full(len(w), np.nan)
    return np.where(m > 0, xs[i0] + (h - lo) * (xs[i1] - xs[i0]), np.nan)


def wauroc(w: np.ndarray, target: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(B,) ROC AUC of one label (Mann-Whitney with ties counted ½, as average ranks give) on the
    resampled rows; rows with a non-finite score are left out; NaN where a class is absent."""
    score = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(score)
    w, y, s = w[:, ok], np.asarray(target)[ok].astype(bool), score[ok]
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # C[b, j]: weight of negatives among the j lowest scores; ties span [start, end) in sorted order
    C = np.concatenate([np.zeros((len(w), 1)), np.cumsum(w[:, order] * ~y[order], axis=1)], axis=1)
    start, end = np.searchsorted(s_sorted, s[y], "left"), np.searchsorted(s_sorted, s[y], "right")
    wins = (w[:, y] * (C[:, start] + 0.5 * (C[:, end] - C[:, start]))).sum(1)
    n_pos, n_neg = w[:, y].sum(1), w[:, ~y].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)
