"""The image-fidelity bootstrap fast path: FID, KID, precision/recall, density/coverage of every
resample at once from a (B, n) row-weight matrix (w[b, i] = how often resample b drew row i);
FID's covariances and eigensolvers run in torch on a CUDA device when one is given.

Nothing per resample touches the features beyond one weighted scatter: distances, kernels and
sorted neighbour lists are computed once for the original rows and reused::

    fast = WeightedFidelity(gen, ref, prc_k=3, prdc_k=5, seed=0)
    values = fast(w)        # {"fid": (B,), "kid": (B,), "precision": (B,), ...}

- FID: resample-weighted means and covariances (np.cov's n-1 denominator over the drawn rows); the
  trace term tr sqrt(S1 S2) from a symmetric eigensolver, on the smaller side: Cholesky S1 = L L^T
  and eigvalsh(L^T S2 L) (d x d) when the resample has more distinct rows than feature dims, else
  eigvalsh(K K^T) with K the (n1 x n2) weighted cross-product of the centred rows — the same
  nonzero spectrum as S1 S2, which torch-fidelity takes with np.linalg.eigvals.
- KID: the all-pairs unbiased MMD^2 of the drawn multiset (torch-fidelity's KID with one subset
  covering the set, its value whenever N <= the subset size) from the three kernel matrices and
  one product per kernel; kid_std is the spread over random subsets and is not resampled (NaN).
- precision/recall (torch-fidelity, <=) and density/coverage (prdc, <): the k-NN radius of a drawn
  row in the multiset from its sorted neighbour list (copies of a row sit at its self-distance),
  then only the (query, ball) pairs that can ever be inside a resample's radius are checked.
- fid_floor: FID between the drawn rows of the two fixed seeded halves of the reference rows.
"""
from __future__ import annotations

import os

import numpy as np

NEIGHBOURS = 48  # sorted neighbours kept per row; a radius that needs more is found by a full sort
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2 (d x d) via Cholesky + eigvalsh; eigh of S1 if singular."""
    try:
        L = np.linalg.cholesky(s1)
        lam = np.linalg.eigvalsh(L.T @ s2 @ L)
    except np.linalg.LinAlgError:
        v, U = np.linalg.eigh(s1)
        r = U * np.sqrt(np.clip(v, 0, None))
        lam = np.linalg.eigvalsh(r.T @ s2 @ r)
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def weighted_fid(w: np.ndarray, gen: np.ndarray, ref: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(B,) FID of every resample (gen and ref rows drawn together)."""
    return weighted_fid_two(w, gen, w, ref, device)


def poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """torch-fidelity's KID kernel (degree 3, gamma 1/d, coef0 1)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def weighted_kid(w: np.ndarray, kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> np.ndarray:
    """(B,) torch-fidelity's mmd2 ('unbiased') on the drawn multiset of rows, from the full kernels."""
    m = w.sum(1)
    sxx = ((w @ kxx) * w).sum(1) - w @ np.diagonal(kxx)
    syy = ((w @ kyy) * w).sum(1) - w @ np.diagonal(kyy)
    sxy = ((w @ kxy) * w).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m >= 2, (sxx + syy) / (m * (m - 1)) - 2 * sxy / (m * m), np.nan)


class NeighbourRadii:
    """k-NN radii of rows of a set in any resample of it: the (k+1)-th smallest distance of a row to
    the drawn multiset, self-copies included (as kthvalue / np.partition on the gathered rows)."""

    def __init__(self, dist: np.ndarray, k: int):
        self.dist, self.k = dist, k
        t = min(NEIGHBOURS, dist.shape[1])
        part = np.argpartition(dist, t - 1, axis=1)[:, :t] if t < dist.shape[1] else np.tile(np.arange(t), (len(dist), 1))
        pd = np.take_along_axis(dist, part, 1)
        order = np.argsort(pd, axis=1, kind="stable")
        self.nbr, self.nbr_d = np.take_along_axis(part, order, 1), np.take_along_axis(pd, order, 1)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """(B, n) radii (NaN for rows not drawn)."""
        cum = np.cumsum(w[:, self.nbr], axis=2)  # (B, n, T) drawn copies among the nearest t
        reached = cum >= self.k + 1
        pos = reached.argmax(axis=2)
        radii = np.take_along_axis(np.broadcast_to(self.nbr_d, cum.shape), pos[..., None], 2)[..., 0]
        for b, i in zip(*np.nonzero(~reached[:, :, -1] & (w > 0))):  # too few copies among the nearest t
            order = np.argsort(self.dist[i], kind="stable")
            c = np.cumsum(w[b, order])
            radii[b, i] = self.dist[i, order[min(np.searchsorted(c, self.k + 1), len(c) - 1)]]
        return np.where(w > 0, radii, np.nan)


def inside_any(w: np.ndarray, dist_qb: np.ndarray, radii: np.ndarray, strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """For queries (rows of dist_qb) and balls (columns, radii (B, n_b)): (B, n_q) whether a query is
    inside some drawn ball, and (B, n_q) how many drawn balls (with multiplicity) contain it."""
    r_max = np.nanmax(np.where(np.isfinite(radii), radii, -np.inf), axis=0)
    cmp = np.less if strict else np.less_equal
    q, bl = np.nonzero(cmp(dist_qb, r_max[None, :]))  # the only pairs any resample can have inside
    d = dist_qb[q, bl]
    with np.errstate(invalid="ignore"):
        hit = cmp(d[None, :], radii[:, bl]) & (w[:, bl] > 0)  # (B, P)
    count = np.zeros((len(w), dist_qb.shape[0]))
    for b in range(len(w)):
        count[b] = np.bincount(q, weights=hit[b] * w[b, bl], minlength=dist_qb.shape[0])
    return count > 0, count


class WeightedFidelity:
    """Everything the fast path reuses across resamples of one (gen, ref) feature set."""

    def __init__(self, gen: np.ndarray, ref: np.ndarray, prc_k: int, prdc_k: int,
                 floor_halves: tuple[np.ndarray, np.ndarray] | None, device: str = "cpu"):
        import torch

        from medbench.metrics.fidelity import _pairwise

        self.gen, self.ref = gen, ref
        self.kxx, self.kyy, self.kxy = poly_kernel(gen, gen), poly_kernel(ref, ref), poly_kernel(gen, ref)
        self.prc_k, self.prdc_k = prc_k, prdc_k
        big = len(gen) > max(prc_k, prdc_k)
        if big:
            g, r = torch.from_numpy(gen), torch.from_numpy(ref)
            self.cd_gg, self.cd_rr = torch.cdist(g, g).numpy(), torch.cdist(r, r).numpy()
            self.cd_rg = torch.cdist(r, g).numpy()
            self.prc_gen, self.prc_ref = NeighbourRadii(self.cd_gg, prc_k), NeighbourRadii(self.cd_rr, prc_k)
            self.pw_rg = _pairwise(ref, gen)
            self.prdc_ref = NeighbourRadii(_pairwise(ref, ref), prdc_k)
        self.big = big
        self.floor_halves, self.device = floor_halves, device

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        m = w.sum(1)
        out = {"fid": weighted_fid(w, self.gen, self.ref, self.device), "kid": weighted_kid(w, self.kxx, self.kyy, self.kxy),
               "kid_std": np.full(len(w), np.nan)}
        nan = np.full(len(w), np.nan)
        out.update(precision=nan, recall=nan, density=nan, coverage=nan, fid_floor=nan)
        if self.big:
            r_gen, r_ref = self.prc_gen(w), self.prc_ref(w)
            in_real, _ = inside_any(w, self.cd_rg.T, r_ref, strict=False)  # generated j inside a real ball
            in_gen, _ = inside_any(w, self.cd_rg, r_gen, strict=False)  # real i inside a generated ball
            out["precision"] = (w * in_real).sum(1) / m
            out["recall"] = (w * in_gen).sum(1) / m
            r5 = self.prdc_ref(w)
            _, balls = inside_any(w, self.pw_rg.T, r5, strict=True)  # per generated j: drawn real balls holding it
            out["density"] = (w * balls).sum(1) / (self.prdc_k * m)
            out["coverage"] = (w * covered_rows(w, self.pw_rg, r5)).sum(1) / m
        if self.floor_halves is not None:
            a, b = self.floor_halves
            out["fid_floor"] = weighted_fid_two(w[:, a], self.ref[a], w[:, b], self.ref[b], self.device)
        return out


def covered_rows(w: np.ndarray, dist_rg: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(B, n_r) whether some drawn generated row lies strictly inside each real row's own radius
    (prdc's coverage: the nearest generated sample is inside the real k-NN ball)."""
    r_max = np.nanmax(np.where(np.isfinite(radii), radii, -np.inf), axis=0)
    i, j = np.nonzero(dist_rg < r_max[:, None])
    d = dist_rg[i, j]
    out = np.zeros(radii.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        hit = (d[None, :] < radii[:, i]) & (w[:, j] > 0)
    for b in range(len(w)):
        out[b] = np.bincount(i, weights=hit[b], minlength=dist_rg.shape[0]) > 0
    return out


def weighted_covariances(w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m (B,), means (B, d), covariances (B, d, d), np.cov's ddof=1) of the drawn rows of x.
    Each resample's scatter about the full-sample mean is the full scatter plus one product over the
    rows it did not draw exactly once (w - 1 != 0: about 63 % of them), so no cancellation."""
    centre = x.mean(0)
    xc = x - centre
    full = xc.T @ xc
    m = w.sum(1)
    cov = np.empty((len(w),) + full.shape)
    for b in range(len(w)):
        dw = w[b] - 1
        rows = np.flatnonzero(dw)
        cov[b] = full + (xc[rows].T * dw[rows]) @ xc[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = (w @ xc) / m[:, None]  # resample mean - full mean
        cov -= m[:, None, None] * delta[:, :, None] * delta[:, None, :]
        cov /= (m - 1)[:, None, None]
    return m, delta + centre, cov


def _trace_sqrt_products(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """(B,) tr sqrt(S1 S2) of stacked pairs: batched Cholesky and eigvalsh, per pair if one is singular."""
    try:
        L = np.linalg.cholesky(ca)
    except np.linalg.LinAlgError:
        return np.array([trace_sqrt_product(a, b) for a, b in zip(ca, cb)])
    lam = np.linalg.eigvalsh(np.swapaxes(L, 1, 2) @ cb @ L)
    return np.sqrt(np.clip(lam, 0, None)).sum(1)


def _fid_feature_side_block(wa, xa, wb, xb) -> np.ndarray:
    ma, mua, ca = weighted_covariances(wa, xa)
    mb, mub, cb = weighted_covariances(wb, xb)
    ok = (ma >= 2) & (mb >= 2)
    out = np.full(len(wa), np.nan)
    if ok.any():
        ca, cb, diff = ca[ok], cb[ok], mua[ok] - mub[ok]
        traces = np.trace(ca, axis1=1, axis2=2) + np.trace(cb, axis1=1, axis2=2)
        out[ok] = (diff * diff).sum(1) + traces - 2 * _trace_sqrt_products(ca, cb)
    return out


def _fid_feature_side(wa, xa, wb, xb) -> np.ndarray:
    """d x d side, blocks of resamples on a thread per core (BLAS and LAPACK release the GIL; the
    caller holds BLAS at one thread, so the blocks do not oversubscribe)."""
    from concurrent.futures import ThreadPoolExecutor

    d = xa.shape[1]
    step = max(1, min((1 << 23) // (d * d), -(-len(wa) // CORES)))  # (step, d, d) covariances of <= 64 MB
    starts = range(0, len(wa), step)
    with ThreadPoolExecutor(max_workers=CORES) as pool:
        parts = pool.map(lambda s: _fid_feature_side_block(wa[s:s + step], xa, wb[s:s + step], xb), starts)
        return np.concatenate(list(parts)) if len(wa) else np.full(0, np.nan)


def _fid_sample_side(wa, xa, wb, xb) -> np.ndarray:
    out = np.full(len(wa), np.nan)
    for b in range(len(wa)):
        ra, rb = np.nonzero(wa[b])[0], np.nonzero(wb[b])[0]
        ma, mb = wa[b, ra].sum(), wb[b, rb].sum()
        if ma < 2 or mb < 2:
            continue
        mua, mub = wa[b, ra] @ xa[ra] / ma, wb[b, rb] @ xb[rb] / mb
        a = (xa[ra] - mua) * np.sqrt(wa[b, ra] / (ma - 1))[:, None]  # S1 = a^T a
        c = (xb[rb] - mub) * np.sqrt(wb[b, rb] / (mb - 1))[:, None]  # S2 = c^T c
        k = a @ c.T  # S1 S2 has the nonzero spectrum of k k^T (or k^T k)
        tr = float(np.sqrt(np.clip(np.linalg.eigvalsh(k @ k.T if len(ra) <= len(rb) else k.T @ k), 0, None)).sum())
        diff = mua - mub
        out[b] = diff @ diff + (a * a).sum() + (c * c).sum() - 2 * tr
    return out


def _fid_feature_side_torch(wa, xa, wb, xb, device: str) -> np.ndarray:
    """`_fid_feature_side` with torch on `device` (float64; batched Cholesky / eigvalsh)."""
    import torch

    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=device)  # noqa: E731
    xa_c, xb_c = t(xa - xa.mean(0)), t(xb - xb.mean(0))
    ca_, cb_ = t(xa.mean(0)), t(xb.mean(0))
    d = xa.shape[1]
    step = max(1, (1 << 27) // (d * max(len(xa), len(xb))))  # bounds the (step, n, d) weighted rows
    out = []
    for s in range(0, len(wa), step):
        res = []
        for w, xc, centre in ((t(wa[s:s + step]), xa_c, ca_), (t(wb[s:s + step]), xb_c, cb_)):
            m = w.sum(1)
            delta = (w @ xc) / m[:, None]
            scatter = torch.einsum("bn,nd,ne->bde", w, xc, xc)
            cov = (scatter - m[:, None, None] * delta[:, :, None] * delta[:, None, :]) / (m - 1)[:, None, None]
            res.append((m, delta + centre, cov))
        (ma, mua, ca), (mb, mub, cb) = res
        L, info = torch.linalg.cholesky_ex(ca)
        bad = info != 0
        if bad.any():  # singular S1: its PSD square root instead
            v, U = torch.linalg.eigh(ca[bad])
            L[bad] = U * v.clamp(min=0).sqrt()[:, None, :]
        lam = torch.linalg.eigvalsh(L.transpose(1, 2) @ cb @ L).clamp(min=0)
        diff = mua - mub
        fid = (diff * diff).sum(1) + ca.diagonal(dim1=1, dim2=2).sum(1) + cb.diagonal(dim1=1, dim2=2).sum(1) - 2 * lam.sqrt().sum(1)
        fid = torch.where((ma >= 2) & (mb >= 2), fid, torch.full_like(fid, float("nan")))
        out.append(fid.cpu().numpy())
    return np.concatenate(out)


def weighted_fid_two(wa: np.ndarray, xa: np.ndarray, wb: np.ndarray, xb: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(B,) FID between the drawn rows of two sets (each with its own weights), on the smaller side:
    d x d covariances when the resamples hold more distinct rows than feature dimensions, else the
    (rows x rows) cross-product of the centred rows. On a CUDA `device` the feature side runs in torch."""
    if str(device).startswith("cuda"):
        return _fid_feature_side_torch(wa, xa, wb, xb, device)
    if fid_side(wa, wb, xa.shape[1]) == "feature":
        return _fid_feature_side(wa, xa, wb, xb)
    return _fid_sample_side(wa, xa, wb, xb)


def fid_side(wa: np.ndarray, wb: np.ndarray, dim: int) -> str:
    """'feature' (d x d covariances) when every resample draws more distinct rows than feature dims
    on both sides, else 'sample' (the rows x rows cross-product)."""
    distinct = min(int((wa > 0).sum(1).min(initial=wa.shape[1])), int((wb > 0).sum(1).min(initial=wb.shape[1])))
    return "feature" if distinct > dim else "sample"
