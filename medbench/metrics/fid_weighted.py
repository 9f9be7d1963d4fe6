"""FID of every bootstrap resample at once from (B, n) row weights (w[b, i] = how often resample b
drew row i), on the smaller side of the trace term tr sqrt(S1 S2):

- feature side (every resample draws more distinct rows than feature dims): each resample's
  scatter is one syrk over the rows it drew (about 63 % of them), scaled by sqrt(w), about the full
  set's mean; then batched Cholesky S1 = L L^T and eigvalsh(L^T S2 L) (d x d), blocks of resamples
  on a thread per core; in torch (float64, batched) on a CUDA device when one is given. With the
  real-vs-real floor the reference's sums are its two halves' sums;
- sample side: eigvalsh(K K^T) with K the (n1 x n2) weighted cross-product of the centred rows,
  the same nonzero spectrum as S1 S2 (which torch-fidelity takes with np.linalg.eigvals).

Means and covariances are np.cov's (n - 1 denominator) over the drawn rows::

    fid = weighted_fid_two(w, gen, w, ref)      # (B,) FID of every resample
    fid, floor = weighted_fid_and_floor(w, gen, ref, (a, b))
"""
from __future__ import annotations

import os

import numpy as np

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


def resample_sums(w: np.ndarray, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sum w (B,), sum w x (B, d), sum w x x^T (B, d, d)) over the rows each resample drew. The sums
    add over disjoint row sets; a.T @ a of one buffer is a BLAS syrk (half a product)."""
    sq = np.empty((len(w), xc.shape[1], xc.shape[1]))
    for b in range(len(w)):
        rows = np.flatnonzero(w[b])
        a = xc[rows] * np.sqrt(w[b, rows])[:, None]
        np.matmul(a.T, a, out=sq[b])
    return w.sum(1), w @ xc, sq


def moments(m: np.ndarray, s: np.ndarray, sq: np.ndarray, centre: np.ndarray):
    """(means (B, d), covariances (B, d, d), np.cov's ddof=1) from `resample_sums` of rows centred on
    `centre` (the full set's mean, so the resample means are close to it and nothing cancels).
    The covariances overwrite `sq`."""
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = s / m[:, None]
        sq -= m[:, None, None] * delta[:, :, None] * delta[:, None, :]
        sq /= (m - 1)[:, None, None]
    return delta + centre, sq


def _trace_sqrt_products(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """(B,) tr sqrt(S1 S2) of stacked pairs: batched Cholesky and eigvalsh, per pair if one is singular."""
    try:
        L = np.linalg.cholesky(ca)
    except np.linalg.LinAlgError:
        return np.array([trace_sqrt_product(a, b) for a, b in zip(ca, cb)])
    lam = np.linalg.eigvalsh(np.swapaxes(L, 1, 2) @ cb @ L)
    return np.sqrt(np.clip(lam, 0, None)).sum(1)


def fid_of_moments(ma, mua, ca, mb, mub, cb) -> np.ndarray:
    """(B,) FID from each side's (count, means, covariances); NaN where a side drew fewer than 2 rows."""
    ok = (ma >= 2) & (mb >= 2)
    out = np.full(len(ma), np.nan)
    if ok.any():
        ca, cb, diff = ca[ok], cb[ok], mua[ok] - mub[ok]
        traces = np.trace(ca, axis1=1, axis2=2) + np.trace(cb, axis1=1, axis2=2)
        out[ok] = (diff * diff).sum(1) + traces - 2 * _trace_sqrt_products(ca, cb)
    return out


def _side_moments(w: np.ndarray, x: np.ndarray):
    centre = x.mean(0)
    m, s, sq = resample_sums(w, x - centre)
    return (m, *moments(m, s, sq, centre))


def _in_blocks(n: int, d: int, block) -> np.ndarray:
    """Run block(start, stop) over resample blocks on a thread per core (BLAS and LAPACK release the
    GIL; the caller holds BLAS at one thread, so the blocks do not oversubscribe); stack the results."""
    from concurrent.futures import ThreadPoolExecutor

    step = max(1, min((1 << 22) // (d * d), -(-n // CORES)))  # (step, d, d) covariances of <= 32 MB
    with ThreadPoolExecutor(max_workers=CORES) as pool:
        parts = list(pool.map(lambda s: block(s, s + step), range(0, n, step)))
    return np.concatenate(parts, axis=-1) if parts else np.full(0, np.nan)


def _fid_feature_side(wa, xa, wb, xb) -> np.ndarray:
    """d x d side: every resample's moments on both sides, then batched FID."""
    return _in_blocks(len(wa), xa.shape[1],
                      lambda s, e: fid_of_moments(*_side_moments(wa[s:e], xa), *_side_moments(wb[s:e], xb)))


def _fid_and_floor_block(w, gen, ref, halves) -> np.ndarray:
    """(2, B): FID(gen, ref) and FID(ref[a], ref[b]); the reference's sums are its halves' sums."""
    a, b = halves
    centre = ref.mean(0)
    ha, hb = resample_sums(w[:, a], ref[a] - centre), resample_sums(w[:, b], ref[b] - centre)
    whole = tuple(u + v for u, v in zip(ha, hb))  # before moments() overwrites the halves' sums
    fid = fid_of_moments(*_side_moments(w, gen), whole[0], *moments(*whole, centre))
    floor = fid_of_moments(ha[0], *moments(*ha, centre), hb[0], *moments(*hb, centre))
    return np.stack([fid, floor])


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


def weighted_fid_and_floor(w: np.ndarray, gen: np.ndarray, ref: np.ndarray, halves: tuple[np.ndarray, np.ndarray],
                           device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(B,) FID(gen, ref) and (B,) FID(ref[a], ref[b]) (the real-vs-real floor on the halves a, b that
    partition the reference rows) of every resample. On the CPU feature side the reference's sums are
    its halves' sums: three scatters per resample instead of four."""
    a, b = halves
    d = gen.shape[1]
    if not len(w) or str(device).startswith("cuda") or "sample" in (fid_side(w, w, d), fid_side(w[:, a], w[:, b], d)):
        return weighted_fid_two(w, gen, w, ref, device), weighted_fid_two(w[:, a], ref[a], w[:, b], ref[b], device)
    both = _in_blocks(len(w), d, lambda s, e: _fid_and_floor_block(w[s:e], gen, ref, halves))
    return both[0], both[1]


def fid_side(wa: np.ndarray, wb: np.ndarray, dim: int) -> str:
    """'feature' (d x d covariances) when every resample draws more distinct rows than feature dims
    on both sides, else 'sample' (the rows x rows cross-product)."""
    distinct = min(int((wa > 0).sum(1).min(initial=wa.shape[1])), int((wb > 0).sum(1).min(initial=wb.shape[1])))
    return "feature" if distinct > dim else "sample"
