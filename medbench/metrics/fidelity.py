"""Image fidelity (family ``image.fidelity``): FID, KID, IS, precision/recall, density/coverage.

One cached feature pass per image (medbench.features.cache) with the extractor chosen by
``options["extractor"]`` (default ``phantom-encoder``; ``inception-v3-compat``, ``hf:FOLDER``)
and ``options["weights"]``. Per-sample statistics are the generated image's feature row and the
same sample's real image's feature row, so a patient resample moves both sets together::

    image.fid@phantom-encoder        Fréchet distance (torch-fidelity's fid_statistics_to_metric)
    image.kid@... / image.kid_std@   KID mean / std over subsets (torch-fidelity's kid_features_to_metric)
    image.precision@ / image.recall@ k-NN manifold P/R, k=3 (torch-fidelity's prc_features_to_metric)
    image.density@ / image.coverage@ density/coverage, k=5 (prdc semantics, Naeem et al. 2020)
    image.is@inception-v3-compat     Inception Score (only with Inception logits)
    image.fid_floor@...              split-half real-vs-real FID of the reference rows (seeded)

Rows whose generated or reference image is missing are dropped (and counted in extras).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap

KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's defaults
PRC_K, PRDC_K = 3, 5
IS_SPLITS = 10


# ---- the math (pure functions of feature matrices) --------------------------------------------

def fid(gen: np.ndarray, ref: np.ndarray) -> float:
    from torch import from_numpy
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    s1, s2 = fid_features_to_statistics(from_numpy(gen)), fid_features_to_statistics(from_numpy(ref))
    return float(fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"])


def kid(gen: np.ndarray, ref: np.ndarray, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's KID with subset size min(subset_size, N). When one subset covers both sets
    every subset is the same set, so one subset gives the same mean (and std 0) at 1/100 the cost."""
    from torch import from_numpy
    from torch_fidelity.metric_kid import kid_features_to_metric

    size = min(subset_size, len(gen), len(ref))
    if size >= len(gen) and size >= len(ref):
        subsets = 1
    out = kid_features_to_metric(from_numpy(gen), from_numpy(ref), kid_subsets=subsets, kid_subset_size=size,
                                 rng_seed=seed, verbose=False)
    return float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"])


STREAM_ROWS = 512  # k-NN in blocks of this many query rows: memory grows with N, not N^2


def precision_recall(gen: np.ndarray, ref: np.ndarray, k: int = PRC_K) -> tuple[float, float]:
    """torch-fidelity's PRC; above STREAM_ROWS samples its block-wise mode (save_cpu_ram) with
    STREAM_ROWS-row blocks, so no N x N matrix is held (same distances, same comparisons)."""
    from torch import from_numpy
    from torch_fidelity.metric_prc import prc_features_to_metric

    stream = max(len(gen), len(ref)) > STREAM_ROWS
    out = prc_features_to_metric(from_numpy(gen), from_numpy(ref), prc_neighborhood=k,
                                 prc_batch_size=STREAM_ROWS if stream else 10000, save_cpu_ram=stream, verbose=False)
    return float(out["precision"]), float(out["recall"])


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances in sklearn's order (-2 a.b + |a|^2 + |b|^2), in place: one (rows x n) block alive."""
    d = a @ b.T
    d *= -2.0
    d += (a * a).sum(1)[:, None]
    d += (b * b).sum(1)[None, :]
    np.maximum(d, 0.0, out=d)
    return np.sqrt(d, out=d)


def density_coverage(gen: np.ndarray, ref: np.ndarray, k: int = PRDC_K) -> tuple[float, float]:
    """Naeem et al. (arXiv 2002.09797), as the `prdc` package computes them: real k-NN radii
    (k-th neighbour excluding self), strict '<' comparisons."""
    radii = np.concatenate([np.partition(_pairwise(ref[s:s + STREAM_ROWS], ref), k, axis=1)[:, k].copy()  # not a view
                            for s in range(0, len(ref), STREAM_ROWS)])  # of the block, which would stay alive
    inside_per_gen = np.zeros(len(gen))
    covered = np.zeros(len(ref), dtype=bool)
    for s in range(0, len(ref), STREAM_ROWS):  # blocks of real rows: (block, n_gen) distances at a time
        d_rf = _pairwise(ref[s:s + STREAM_ROWS], gen)
        inside = d_rf < radii[s:s + STREAM_ROWS, None]
        inside_per_gen += inside.sum(axis=0)
        covered[s:s + STREAM_ROWS] = d_rf.min(axis=1) < radii[s:s + STREAM_ROWS]
    return float(inside_per_gen.mean() / k), float(covered.mean())


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS, seed: int = 2020) -> tuple[float, float]:
    from torch import from_numpy
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = isc_features_to_metric(from_numpy(logits), splits=splits, shuffle=True, rng_seed=seed)
    return float(out["inception_score_mean"]), float(out["inception_score_std"])


def split_half(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 1729]).permutation(n)
    return perm[: n // 2], perm[n // 2 :]


# ---- the metric -------------------------------------------------------------------------------

class ImageFidelity(WeightedBootstrap, Metric):
    name = "image.fidelity"

    def __init__(self, extractor, seed: int = 0, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
                 prc_k: int = PRC_K, prdc_k: int = PRDC_K, batch_size: int = 64, device: str = "cpu"):
        self.extractor, self.device = extractor, device  # device: where the bootstrap's FID linear algebra runs
        self.seed, self.kid_subsets, self.kid_subset_size = seed, kid_subsets, kid_subset_size
        self.prc_k, self.prdc_k, self.batch_size = prc_k, prdc_k, batch_size
        self.has_logits = "logits" in extractor.outputs()  # a softmax classifier head (Inception)
        self.tag = extractor.name
        names = ["fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "fid_floor"]
        names += ["is", "is_std"] if self.has_logits else []
        lower = {"fid", "kid", "kid_std", "fid_floor", "is_std"}
        self.higher_is_better = {f"image.{n}@{self.tag}": n not in lower for n in names}
        self._rows: dict[str, list[np.ndarray]] = {"gen_features": [], "ref_features": []}
        if self.has_logits:
            self._rows["gen_logits"] = []
        self._cache = None
        self._missing = {"generated": 0, "reference": 0}
        self._fast: tuple | None = None  # (gen, ref, WeightedFidelity) of the stats last resampled

    @property
    def variant(self) -> str:
        import torch_fidelity

        card = self.extractor.card()
        return (f"extractor={card['name']} weights_sha256={card['weights_sha256']} preprocessing="
                f"{json.dumps(card['preprocessing'], sort_keys=True)}; FID/KID/PRC/IS: torch-fidelity "
                f"{torch_fidelity.__version__} functions (KID poly3 kernel, {self.kid_subsets} subsets of min("
                f"{self.kid_subset_size}, N), seed 2020; PRC k={self.prc_k}); density/coverage: prdc semantics k={self.prdc_k}; "
                f"fid_floor: FID between two seeded halves of the reference rows (N/2 each); "
                + ("IS over Inception's 1008 logits" if self.has_logits else
                   "IS omitted: this extractor has no single-label softmax classifier (multi-label sigmoid heads)"))

    def _features(self, items: list) -> dict[str, np.ndarray]:
        from medbench.features.cache import FeatureCache

        if self._cache is None:
            self._cache = FeatureCache(self.extractor)
        return self._cache.outputs(items, batch_size=self.batch_size, progress=False)

    def _gather(self, items: list, which: str) -> dict[str, np.ndarray]:
        """Outputs per item, NaN rows where the image is missing."""
        widths = self.extractor.outputs()
        out = {n: np.full((len(items), w), np.nan) for n, w in widths.items()}
        present = [i for i, it in enumerate(items) if it is not None]
        self._missing[which] += len(items) - len(present)
        if present:
            got = self._features([items[i] for i in present])
            for n in widths:
                out[n][present] = got[n]
        return out

    def update(self, batch: list[Scored]) -> None:
        try:
            gen = self._gather([s.output.image for s in batch], "generated")
            ref = self._gather([s.sample.image_path for s in batch], "reference")
        except FileNotFoundError as e:  # weights of a lazily loaded extractor
            raise MetricUnavailable(str(e)) from e
        # float32 rows: lossless for float32 networks, half the memory at 20k samples x 2048-d
        self._rows["gen_features"].append(gen["features"].astype(np.float32))
        self._rows["ref_features"].append(ref["features"].astype(np.float32))
        if self.has_logits:
            self._rows["gen_logits"].append(gen["logits"].astype(np.float32))

    def stats(self) -> dict[str, np.ndarray]:
        if self._cache is not None:
            self._cache.flush()
        return {k: (np.concatenate(v) if v else np.zeros((0, 0))) for k, v in self._rows.items()}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        from threadpoolctl import threadpool_limits

        # one BLAS thread: multi-threaded OpenBLAS on small (<= 2048-d) matrices is up to 40x slower on busy CPUs
        with threadpool_limits(1, user_api="blas"):
            return self._compute(stats)

    def _compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        keep = np.isfinite(stats["gen_features"]).all(1) & np.isfinite(stats["ref_features"]).all(1)
        gen = stats["gen_features"][keep].astype(np.float64)
        ref = stats["ref_features"][keep].astype(np.float64)
        out = {k: float("nan") for k in self.higher_is_better}
        if len(gen) < 2:
            return out
        t = self.tag
        out[f"image.fid@{t}"] = fid(gen, ref)
        out[f"image.kid@{t}"], out[f"image.kid_std@{t}"] = kid(gen, ref, self.kid_subsets, self.kid_subset_size)
        if len(gen) > max(self.prc_k, self.prdc_k):
            out[f"image.precision@{t}"], out[f"image.recall@{t}"] = precision_recall(gen, ref, self.prc_k)
            out[f"image.density@{t}"], out[f"image.coverage@{t}"] = density_coverage(gen, ref, self.prdc_k)
        if len(ref) >= 4:
            a, b = split_half(len(ref), self.seed)
            out[f"image.fid_floor@{t}"] = fid(ref[a], ref[b])
        if self.has_logits:
            out[f"image.is@{t}"], out[f"image.is_std@{t}"] = inception_score(stats["gen_logits"][keep].astype(np.float64))
        return out

    def warnings(self, stats: dict[str, np.ndarray], values: dict[str, float]) -> list[str]:
        """FID on fewer samples than feature dimensions (rank-deficient covariance), a negative KID
        (the unbiased estimator below zero: no detectable difference at this N), a KID std of 0."""
        t, out = self.tag, []
        n, dim = stats["gen_features"].shape if np.ndim(stats["gen_features"]) == 2 else (0, 0)
        if 0 < n <= dim:
            out.append(f"image.fid@{t}: {n} samples for {dim}-dimensional features: the covariance is rank-deficient "
                       f"and FID is unreliable (use more samples than dimensions, or compare only at identical N)")
        kid_value, kid_std = values.get(f"image.kid@{t}"), values.get(f"image.kid_std@{t}")
        if kid_value is not None and np.isfinite(kid_value) and kid_value < 0:
            out.append(f"image.kid@{t} = {kid_value:.3g} is negative: the unbiased estimate is below zero, i.e. no "
                       f"difference is detectable at n={n}; read it as 0 with its CI")
        if kid_std is not None and np.isfinite(kid_std) and kid_std == 0:
            out.append(f"image.kid_std@{t} is 0: every KID subset was the same (too few samples for the subset size), "
                       f"so the std says nothing about uncertainty")
        return out

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """Every resample of a (B, n) row-weight matrix at once (medbench.metrics.fidelity_weighted).
        Same values as `compute` on the drawn rows, except: KID is the all-pairs estimate of the drawn
        set (torch-fidelity's value whenever N <= kid_subset_size), kid_std and IS are not resampled
        (NaN), and fid_floor resamples the fixed halves of the reference rows."""
        from threadpoolctl import threadpool_limits

        from medbench.metrics.fidelity_weighted import WeightedFidelity

        gen_all, ref_all = stats["gen_features"], stats["ref_features"]
        keep = np.isfinite(gen_all).all(1) & np.isfinite(ref_all).all(1)
        if self._fast is None or self._fast[0] is not gen_all or self._fast[1] is not ref_all:
            gen, ref = gen_all[keep].astype(np.float64), ref_all[keep].astype(np.float64)
            halves = split_half(len(ref), self.seed) if len(ref) >= 4 else None
            with threadpool_limits(1, user_api="blas"):
                self._fast = (gen_all, ref_all, WeightedFidelity(gen, ref, self.prc_k, self.prdc_k, halves, self.device))
        with threadpool_limits(1, user_api="blas"):
            values = self._fast[2](w[:, keep])
        t = self.tag
        out = {f"image.{k}@{t}": v for k, v in values.items()}
        if self.has_logits:
            out[f"image.is@{t}"] = out[f"image.is_std@{t}"] = np.full(len(w), np.nan)
        return out

    def extras(self) -> dict[str, Any]:
        return {"extractor": self.extractor.card(), "missing_images": dict(self._missing),
                "notes": "FID is biased upward roughly in 1/N and needs N > feature dim for a full-rank covariance: "
                         "compare systems only at identical N, extractor and preprocessing; fid_floor is the real-vs-real "
                         "bracket at N/2. Bootstrap resamples duplicate rows, which shrinks k-NN radii (PRC/PRDC CIs are approximate). "
                         "CIs: 1,000 patient resamples by the weighted fast path (KID CI from the all-pairs estimate; no CI for "
                         "kid_std and IS)."}


def make_extractor(name: str, weights: str | None):
    """Registry lookup + construction; anything missing becomes MetricUnavailable with the reason."""
    from medbench.features import get_extractor

    try:
        return get_extractor(name, weights)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise MetricUnavailable(f"image.fidelity with extractor {name!r}: {e}") from e


def factory(ctx: MetricContext) -> ImageFidelity:
    opts = ctx.options
    ex = make_extractor(opts.get("extractor") or "phantom-encoder", opts.get("weights"))
    return ImageFidelity(ex, seed=ctx.seed, kid_subsets=opts.get("kid_subsets") or KID_SUBSETS,
                         kid_subset_size=opts.get("kid_subset_size") or KID_SUBSET_SIZE, device=ctx.device or "cpu")


@hookimpl
def medbench_metrics():
    from medbench.metrics.common_options import EXTRACTOR, WEIGHTS
    from medbench.options import Option

    options = (EXTRACTOR, WEIGHTS, Option("kid_subsets", int, KID_SUBSETS, "KID subsets", low=1, high=100_000),
               Option("kid_subset_size", int, KID_SUBSET_SIZE, "KID subset size (capped at the sample count)", low=2))
    return [MetricSpec("image.fidelity", factory, requires=("image",), kinds=("report->image", "prompt->pair"),
                       options=options, produces=("image.*@*",),
                       description="FID, KID, precision/recall, density/coverage (+IS with Inception) and the real-vs-real "
                                   "FID floor on one cached feature pass; extractor from options['extractor']")]
