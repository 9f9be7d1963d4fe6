"""The image-fidelity bootstrap fast path: FID, KID, precision/recall, density/coverage of every
resample at once from a (B, n) row-weight matrix (w[b, i] = how often resample b drew row i).

Nothing per resample touches the features beyond one weighted scatter (FID, medbench.metrics.
fid_weighted); neighbour lists and candidate pairs are found once, in blocks of rows, so memory grows
with N, not N^2 (no N x N matrix is held: 20,000 samples fit)::

    fast = WeightedFidelity(gen, ref, prc_k=3, prdc_k=5, floor_halves=None)
    values = fast(w)        # {"fid": (B,), "kid": (B,), "precision": (B,), ...}

- KID: the all-pairs unbiased MMD^2 of the drawn multiset (torch-fidelity's KID with one subset
  covering the set, its value whenever N <= the subset size): one product per kernel block; the
  kernel blocks are kept while they fit KERNEL_CACHE_BYTES, else recomputed per call.
  kid_std is the spread over random subsets and is not resampled (NaN).
- precision/recall (torch-fidelity, <=) and density/coverage (prdc, <): the k-NN radius of a drawn
  row in the multiset from its sorted neighbour list (copies of a row sit at its self-distance);
  only the (query, ball) pairs within a ball's NEIGHBOURS-th neighbour distance can be inside a
  resample's radius (a ball that needs more is searched in full), and only those are checked.
- fid_floor: FID between the drawn rows of the two fixed seeded halves of the reference rows.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from medbench.metrics.fid_weighted import weighted_fid_and_floor, weighted_fid_two

NEIGHBOURS = 48  # sorted neighbours kept per row; a radius that needs more is found by a full search
ROWS = 512  # rows per distance / kernel block (the same blocks as fidelity.py's density radii)
KERNEL_CACHE_BYTES = 1 << 30  # KID kernel blocks kept up to this size (N ~ 6,500 for the three)
Dist = Callable[[np.ndarray, np.ndarray], np.ndarray]


def poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """torch-fidelity's KID kernel (degree 3, gamma 1/d, coef0 1)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def torch_cdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """torch-fidelity's PRC distances."""
    import torch

    return torch.cdist(torch.from_numpy(a), torch.from_numpy(b)).numpy()


class KernelSums:
    """sum_ij wx[b, i] wy[b, j] k(x_i, y_j) for every resample b, block by block over rows of x."""

    def __init__(self, x: np.ndarray, y: np.ndarray, same: bool):
        self.x, self.y, self.same = x, y, same
        keep = 3 * len(x) * len(y) * 8 <= KERNEL_CACHE_BYTES  # the three kernels of one WeightedFidelity
        self.blocks = [poly_kernel(x[s:s + ROWS], y) for s in range(0, len(x), ROWS)] if keep else None
        self.diag = None
        if same:  # a copy, not a view: a view would keep every recomputed block alive
            self.diag = np.concatenate([np.diagonal(b, s).copy() for s, b in zip(range(0, len(x), ROWS), self._blocks())])

    def _blocks(self):
        return self.blocks if self.blocks is not None else (poly_kernel(self.x[s:s + ROWS], self.y) for s in range(0, len(self.x), ROWS))

    def __call__(self, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
        total = np.zeros(len(wx))
        for s, k in zip(range(0, len(self.x), ROWS), self._blocks()):
            total += ((wy @ k.T) * wx[:, s:s + ROWS]).sum(1)
        return total - wx @ self.diag if self.same else total  # the unbiased estimate drops i == j


def weighted_kid(w: np.ndarray, sxx: KernelSums, syy: KernelSums, sxy: KernelSums) -> np.ndarray:
    """(B,) torch-fidelity's mmd2 ('unbiased') on the drawn multiset of rows."""
    m = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m >= 2, (sxx(w, w) + syy(w, w)) / (m * (m - 1)) - 2 * sxy(w, w) / (m * m), np.nan)


class NeighbourRadii:
    """k-NN radii of rows of a set in any resample of it: the (k+1)-th smallest distance of a row to
    the drawn multiset, self-copies included (as kthvalue / np.partition on the gathered rows)."""

    def __init__(self, x: np.ndarray, dist: Dist, k: int):
        self.x, self.dist, self.k = x, dist, k
        t = min(NEIGHBOURS, len(x))
        nbr, nbr_d = [], []
        for s in range(0, len(x), ROWS):
            d = dist(x[s:s + ROWS], x)
            part = np.argpartition(d, t - 1, axis=1)[:, :t] if t < len(x) else np.tile(np.arange(t), (len(d), 1))
            pd = np.take_along_axis(d, part, 1)
            order = np.argsort(pd, axis=1, kind="stable")
            nbr.append(np.take_along_axis(part, order, 1))
            nbr_d.append(np.take_along_axis(pd, order, 1))
        self.nbr, self.nbr_d = np.concatenate(nbr), np.concatenate(nbr_d)
        self.reach = self.nbr_d[:, -1]  # no resample's radius exceeds it unless it is searched in full

    def _row(self, i: int) -> np.ndarray:
        s = i - i % ROWS  # the block it was found in: the same distances, bit for bit
        return self.dist(self.x[s:s + ROWS], self.x)[i - s]

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """(B, n) radii (NaN for rows not drawn)."""
        radii = np.empty(w.shape)
        step = max(1, (1 << 22) // (len(w) * self.nbr.shape[1]))  # rows per (B, rows, t) block of counts
        for s in range(0, w.shape[1], step):
            cum = np.cumsum(w[:, self.nbr[s:s + step]], axis=2)  # drawn copies among the nearest t
            reached = cum >= self.k + 1
            pos = reached.argmax(axis=2)
            nd = np.broadcast_to(self.nbr_d[s:s + step], cum.shape)
            radii[:, s:s + step] = np.take_along_axis(nd, pos[..., None], 2)[..., 0]
            for b, i in zip(*np.nonzero(~reached[:, :, -1] & (w[:, s:s + step] > 0))):  # too few among the nearest t
                row = self._row(s + i)
                order = np.argsort(row, kind="stable")
                c = np.cumsum(w[b, order])
                radii[b, s + i] = row[order[min(np.searchsorted(c, self.k + 1), len(c) - 1)]]
        return np.where(w > 0, radii, np.nan)


class Pairs:
    """The (query, ball) pairs with d(query, ball) <= the ball's reach, found in blocks of balls."""

    def __init__(self, queries: np.ndarray, balls: np.ndarray, dist: Dist, reach: np.ndarray):
        self.queries, self.balls, self.dist, self.reach = queries, balls, dist, reach
        q, bl, dd = [], [], []
        for s in range(0, len(balls), ROWS):
            d = dist(balls[s:s + ROWS], queries)
            b_i, q_i = np.nonzero(d <= reach[s:s + ROWS, None])
            q.append(q_i)
            bl.append(b_i + s)
            dd.append(d[b_i, q_i])
        self.q, self.bl, self.d = np.concatenate(q), np.concatenate(bl), np.concatenate(dd)

    def within(self, radii: np.ndarray, strict: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs some resample can have inside (d < or <= the ball's largest radius), including
        those of balls whose radius in some resample outgrew their reach."""
        r_max = np.nanmax(np.where(np.isfinite(radii), radii, -np.inf), axis=0)
        cmp = np.less if strict else np.less_equal
        keep = cmp(self.d, r_max[self.bl])
        q, bl, d = [self.q[keep]], [self.bl[keep]], [self.d[keep]]
        for j in np.flatnonzero(r_max > self.reach):
            row = self.dist(self.balls[j:j + 1], self.queries)[0]
            extra = np.flatnonzero((row > self.reach[j]) & cmp(row, r_max[j]))
            q.append(extra)
            bl.append(np.full(len(extra), j))
            d.append(row[extra])
        return np.concatenate(q), np.concatenate(bl), np.concatenate(d)


def _pair_chunks(w: np.ndarray, pairs: Pairs, radii: np.ndarray, strict: bool):
    """(q, bl, hit (B, chunk)) over chunks of the candidate pairs: hit = d inside the resample's radius."""
    q, bl, d = pairs.within(radii, strict)
    cmp = np.less if strict else np.less_equal
    step = max(1, (1 << 24) // max(len(w), 1))
    for s in range(0, len(q), step):
        with np.errstate(invalid="ignore"):
            yield q[s:s + step], bl[s:s + step], cmp(d[None, s:s + step], radii[:, bl[s:s + step]])


def inside_count(w: np.ndarray, pairs: Pairs, radii: np.ndarray, strict: bool) -> np.ndarray:
    """(B, n_q): how many drawn balls (with multiplicity) contain each query."""
    count = np.zeros((len(w), len(pairs.queries)))
    for q, bl, hit in _pair_chunks(w, pairs, radii, strict):
        inside = hit * w[:, bl]  # a ball not drawn has weight 0
        for b in range(len(w)):
            count[b] += np.bincount(q, weights=inside[b], minlength=count.shape[1])
    return count


def covered_balls(w: np.ndarray, pairs: Pairs, radii: np.ndarray) -> np.ndarray:
    """(B, n_balls): whether some drawn query lies strictly inside each ball's own radius (prdc's
    coverage: the nearest generated sample is inside the real k-NN ball)."""
    hits = np.zeros((len(w), len(pairs.balls)))
    for q, bl, hit in _pair_chunks(w, pairs, radii, strict=True):
        inside = hit & (w[:, q] > 0)
        for b in range(len(w)):
            hits[b] += np.bincount(bl, weights=inside[b], minlength=hits.shape[1])
    return hits > 0


class WeightedFidelity:
    """Everything the fast path reuses across resamples of one (gen, ref) feature set."""

    def __init__(self, gen: np.ndarray, ref: np.ndarray, prc_k: int, prdc_k: int,
                 floor_halves: tuple[np.ndarray, np.ndarray] | None, device: str = "cpu"):
        from medbench.metrics.fidelity import _pairwise

        self.gen, self.ref = gen, ref
        self.kxx, self.kyy, self.kxy = KernelSums(gen, gen, True), KernelSums(ref, ref, True), KernelSums(gen, ref, False)
        self.prc_k, self.prdc_k = prc_k, prdc_k
        self.big = len(gen) > max(prc_k, prdc_k)
        if self.big:
            self.prc_gen, self.prc_ref = NeighbourRadii(gen, torch_cdist, prc_k), NeighbourRadii(ref, torch_cdist, prc_k)
            self.prdc_ref = NeighbourRadii(ref, _pairwise, prdc_k)
            self.in_real = Pairs(gen, ref, torch_cdist, self.prc_ref.reach)  # generated queries, real balls
            self.in_gen = Pairs(ref, gen, torch_cdist, self.prc_gen.reach)  # real queries, generated balls
            self.in_real5 = Pairs(gen, ref, _pairwise, self.prdc_ref.reach)
        self.floor_halves, self.device = floor_halves, device

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        m = w.sum(1)
        out = {"kid": weighted_kid(w, self.kxx, self.kyy, self.kxy), "kid_std": np.full(len(w), np.nan)}
        nan = np.full(len(w), np.nan)
        out.update(precision=nan, recall=nan, density=nan, coverage=nan, fid_floor=nan)
        if self.floor_halves is None:
            out["fid"] = weighted_fid_two(w, self.gen, w, self.ref, self.device)
        else:
            out["fid"], out["fid_floor"] = weighted_fid_and_floor(w, self.gen, self.ref, self.floor_halves, self.device)
        if self.big:
            r_gen, r_ref = self.prc_gen(w), self.prc_ref(w)
            out["precision"] = (w * (inside_count(w, self.in_real, r_ref, strict=False) > 0)).sum(1) / m
            out["recall"] = (w * (inside_count(w, self.in_gen, r_gen, strict=False) > 0)).sum(1) / m
            r5 = self.prdc_ref(w)
            out["density"] = (w * inside_count(w, self.in_real5, r5, strict=True)).sum(1) / (self.prdc_k * m)
            out["coverage"] = (w * covered_balls(w, self.in_real5, r5)).sum(1) / m
        return out
