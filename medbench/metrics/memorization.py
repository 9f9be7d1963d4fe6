"""Memorization (family ``memorization``): are generated samples copies of training samples?

Two parts, each used when the request kind produces that modality (report->image: image part;
image->report: report part; prompt->pair: both). They measure copying, not quality.

Image part — nearest-training-neighbour distance in encoder feature space (phantom encoder by
default; features through the feature cache, the train split's computed once). Distance: cosine
(1 - cos of the feature vectors; option ``memorization_distance: l2`` for Euclidean). Each
generated image's NN distance is compared with the NN distances of the held-out real images (the
evaluated samples' reference images) to the same training set:

    memorization.nn_closer_than_p1   share of generated images closer to their nearest training image
                                     than the 1st percentile of the real held-out distances (lower is
                                     better; real held-out data sit at ~0.01 by construction)
    memorization.nn_distance_ratio   median generated NN distance / median real held-out NN distance
                                     (< 1: generated images sit closer to training images than new real
                                     data does; higher is better, i.e. less copying)

Report part — copy rate against the training reports, after normalisation (lowercase, whitespace
collapsed, punctuation split into tokens). Phantom (and MIMIC) reports are templated, so copies
happen naturally: the same statistic on the held-out real reports is reported beside it:

    memorization.report_copy_rate / _real        share identical to some training report
    memorization.report_ngram12_rate / _real     share sharing a 12-token n-gram with some training
                                                  report (n from option ``memorization_ngram``)

Twelve tokens: long enough that a shared span is a copied clause rather than a stock phrase of a
single finding ("there is no pleural effusion ." is 6), short enough to catch a copied sentence pair.

Per-sample statistics: ``gen_nn``, ``real_nn`` (NaN where an image is missing), ``gen_copy``,
``real_copy``, ``gen_ngram``, ``real_ngram`` (0/1, NaN where a report is missing). `extras()` keeps
each generated image's 3 nearest training ids and distances for the report's gallery.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.metrics.image_labels import ImageEncoder, check_extractor, encoder_choice
from medbench.records import produces
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap
from medbench.stats.weighted import wmean, wquantile

FAMILY = "memorization"
TOP_K = 3
NGRAM = 12
CHUNK = 1024  # query rows per matmul block
TOKEN = re.compile(r"\w+|[^\w\s]")


# ---- report copying -------------------------------------------------------------------------------

def normalise(report: str) -> str:
    """Lowercase, whitespace collapsed: the form compared for exact copies."""
    return " ".join(report.lower().split())


def tokens(report: str) -> list[str]:
    return TOKEN.findall(normalise(report))


def ngram_hashes(report: str, n: int) -> set[bytes]:
    toks = tokens(report)
    return {hashlib.blake2b("\x1f".join(toks[i:i + n]).encode(), digest_size=12).digest() for i in range(len(toks) - n + 1)}


class ReportIndex:
    """Exact-copy and n-gram lookup over a fixed set of (training) reports."""

    def __init__(self, reports: list[str], n: int = NGRAM):
        self.n = n
        self.exact = {normalise(r) for r in reports}
        self.ngrams: set[bytes] = set()
        for r in reports:
            self.ngrams |= ngram_hashes(r, n)

    def is_copy(self, report: str) -> bool:
        return normalise(report) in self.exact

    def shares_ngram(self, report: str) -> bool:
        return not self.ngrams.isdisjoint(ngram_hashes(report, self.n))

    def flags(self, reports: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(copy, ngram) float rows, NaN where the report is missing."""
        copy = np.array([np.nan if r is None else float(self.is_copy(r)) for r in reports])
        gram = np.array([np.nan if r is None else float(self.shares_ngram(r)) for r in reports])
        return copy, gram


# ---- image nearest neighbours ------------------------------------------------------------------

def nearest(query: np.ndarray, base: np.ndarray, k: int = TOP_K, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of the k nearest rows of `base` for every query row, ascending, in chunks.
    cosine: 1 - cos (rows L2-normalised first); l2: Euclidean. Ties: lower index first. A row's
    distances do not depend on the other query rows beyond BLAS summation order (~1e-16)."""
    k = min(k, len(base))
    if metric == "cosine":
        base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    elif metric != "l2":
        raise ValueError(f"unknown memorization distance {metric!r}; choose 'cosine' or 'l2'")
    base_sq = (base * base).sum(1)
    idx = np.zeros((len(query), k), np.int64)
    dist = np.zeros((len(query), k))
    for s in range(0, len(query), CHUNK):
        q = query[s:s + CHUNK]
        if metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            d = np.maximum(1.0 - q @ base.T, 0.0)
        else:
            d = np.sqrt(np.maximum((q * q).sum(1)[:, None] + base_sq[None, :] - 2.0 * q @ base.T, 0.0))
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(q), 1))
        pd = np.take_along_axis(d, part, 1)
        order = np.lexsort((part, pd), axis=1)
        idx[s:s + len(q)] = np.take_along_axis(part, order, 1)
        dist[s:s + len(q)] = np.take_along_axis(pd, order, 1)
    return idx, dist


def closer_than_p1(gen_nn: np.ndarray, real_nn: np.ndarray) -> float:
    """Share of generated NN distances strictly below the 1st percentile (linear) of the real ones."""
    g, r = gen_nn[np.isfinite(gen_nn)], real_nn[np.isfinite(real_nn)]
    if not len(g) or not len(r):
        return float("nan")
    return float((g < np.percentile(r, 1)).mean())


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


# ---- the metric -------------------------------------------------------------------------------

class Memorization(WeightedBootstrap, Metric):
    name = FAMILY

    def __init__(self, parts: tuple[str, ...], encoder: ImageEncoder | None, train: list | None = None,
                 distance: str = "cosine", ngram: int = NGRAM):
        if distance not in ("cosine", "l2"):
            raise ValueError(f"unknown memorization distance {distance!r}; choose 'cosine' or 'l2'")
        self.parts, self.encoder, self.train, self.distance, self.ngram = parts, encoder, list(train or []), distance, ngram
        names: dict[str, bool] = {}
        if "image" in parts:
            names |= {f"{FAMILY}.nn_closer_than_p1": False, f"{FAMILY}.nn_distance_ratio": True}
        if "report" in parts:
            for stat in ("report_copy_rate", f"report_ngram{ngram}_rate"):
                names |= {f"{FAMILY}.{stat}": False, f"{FAMILY}.{stat}_real": False}
        self.higher_is_better = names
        self._train_features = self._train_ids = self._reports = None
        rows = ("gen_nn", "real_nn", "gen_copy", "real_copy", "gen_ngram", "real_ngram")
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in rows}
        self._neighbours: list[dict[str, Any]] = []

    @property
    def variant(self) -> str:
        bits = []
        if "image" in self.parts:
            bits.append(f"image: {self.distance} distance on {self.encoder.extractor_name} features to the nearest of "
                        f"{len(self.train)} training images; p1 = 1st percentile (linear) of held-out real NN distances")
        if "report" in self.parts:
            bits.append(f"report: exact match after lowercase/whitespace normalisation, or a shared {self.ngram}-token "
                        "n-gram (tokens: \\w+ or one punctuation mark) with any training report; baseline on the "
                        "held-out real reports")
        return "; ".join(bits)

    @property
    def weights_sha256(self) -> dict[str, str]:
        return self.encoder.weights_sha256 if self.encoder is not None else {}

    def _setup(self) -> None:
        if not self.train:
            raise MetricUnavailable(f"{FAMILY}: needs the dataset's train split (MetricContext.train is empty)")
        if "image" in self.parts:
            with_image = [s for s in self.train if s.image_path is not None]
            if not with_image:
                raise MetricUnavailable(f"{FAMILY}: the train split has no images to search")
            self._train_ids = [s.id for s in with_image]
            self._train_paths = [str(s.image_path) for s in with_image]
            self._train_features = self._features([s.image_path for s in with_image])
        if "report" in self.parts:
            self._reports = ReportIndex([s.report for s in self.train if s.report], self.ngram)

    def _features(self, items: list) -> np.ndarray:
        return self.encoder.outputs(items)["features"]

    def _nn(self, items: list) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances) of the nearest training images; NaN distances for missing images."""
        feats = self._features(items)
        ok = np.isfinite(feats).all(1)
        idx = np.full((len(items), min(TOP_K, len(self._train_ids))), -1, np.int64)
        dist = np.full(idx.shape, np.nan)
        if ok.any():
            idx[ok], dist[ok] = nearest(feats[ok], self._train_features, TOP_K, self.distance)
        return idx, dist

    def update(self, batch: list[Scored]) -> None:
        if self._train_ids is None and self._reports is None:
            self._setup()
        if "image" in self.parts:
            idx, dist = self._nn([s.output.image for s in batch])
            _, real = self._nn([s.sample.image_path for s in batch])
            self._rows["gen_nn"].append(dist[:, 0])
            self._rows["real_nn"].append(real[:, 0])
            for s, row_i, row_d in zip(batch, idx, dist):
                ok = row_i >= 0
                self._neighbours.append({"id": s.sample.id, "train_ids": [self._train_ids[i] for i in row_i[ok]],
                                         "train_image_paths": [self._train_paths[i] for i in row_i[ok]],
                                         "distances": [float(d) for d in row_d[ok]]})
        if "report" in self.parts:
            gc, gg = self._reports.flags([s.output.report for s in batch])
            rc, rg = self._reports.flags([s.sample.report for s in batch])
            for k, v in (("gen_copy", gc), ("gen_ngram", gg), ("real_copy", rc), ("real_ngram", rg)):
                self._rows[k].append(v)

    def stats(self) -> dict[str, np.ndarray]:
        if self.encoder is not None:
            self.encoder.flush()
        return {k: np.concatenate(v) for k, v in self._rows.items() if v}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        stats = {k: stats.get(k, np.zeros(0)) for k in self._rows}
        out = {}
        if "image" in self.parts:
            g, r = stats["gen_nn"], stats["real_nn"]
            out[f"{FAMILY}.nn_closer_than_p1"] = closer_than_p1(g, r)
            gm = np.median(g[np.isfinite(g)]) if np.isfinite(g).any() else np.nan
            rm = np.median(r[np.isfinite(r)]) if np.isfinite(r).any() else np.nan
            out[f"{FAMILY}.nn_distance_ratio"] = float(gm / rm) if rm > 0 else float("nan")
        if "report" in self.parts:
            for stat, key in (("report_copy_rate", "copy"), (f"report_ngram{self.ngram}_rate", "ngram")):
                out[f"{FAMILY}.{stat}"] = _mean(stats[f"gen_{key}"])
                out[f"{FAMILY}.{stat}_real"] = _mean(stats[f"real_{key}"])
        return out

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of the (B, n) weight matrix at once (the bootstrap fast path)."""
        stats = {k: stats.get(k, np.zeros(0)) for k in self._rows}
        out = {}
        if "image" in self.parts:
            g, r = stats["gen_nn"], stats["real_nn"]
            p1 = wquantile(w, r, 1)
            gen_ok = np.isfinite(g)
            with np.errstate(invalid="ignore"):
                below = (g[None, gen_ok] < p1[:, None]).astype(np.float64)
                n_gen = w[:, gen_ok].sum(1)
                share = np.where(n_gen > 0, (w[:, gen_ok] * below).sum(1) / np.where(n_gen > 0, n_gen, 1), np.nan)
            out[f"{FAMILY}.nn_closer_than_p1"] = np.where(np.isfinite(p1), share, np.nan)
            gm, rm = wquantile(w, g, 50), wquantile(w, r, 50)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{FAMILY}.nn_distance_ratio"] = np.where(rm > 0, gm / np.where(rm > 0, rm, 1), np.nan)
        if "report" in self.parts:
            for stat, key in (("report_copy_rate", "copy"), (f"report_ngram{self.ngram}_rate", "ngram")):
                out[f"{FAMILY}.{stat}"] = wmean(w, stats[f"gen_{key}"], skip_nan=True)
                out[f"{FAMILY}.{stat}_real"] = wmean(w, stats[f"real_{key}"], skip_nan=True)
        return out

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Per output: the distance to its nearest training image and that image's id (and the real
        image's own distance, the bracket), and whether the report copies a training report or
        shares a long n-gram with one."""
        out = {}
        if "gen_nn" in stats:
            out[f"{FAMILY}.nn_distance"] = [float(d) if np.isfinite(d) else None for d in stats["gen_nn"]]
            out[f"{FAMILY}.real_nn_distance"] = [float(d) if np.isfinite(d) else None for d in stats["real_nn"]]
            if len(self._neighbours) == len(stats["gen_nn"]):
                out[f"{FAMILY}.nn_train_id"] = [(n["train_ids"] or [None])[0] for n in self._neighbours]
        for key, name in (("gen_copy", "report_copy"), ("gen_ngram", "report_ngram")):
            if key in stats:
                out[f"{FAMILY}.{name}"] = [int(v) if np.isfinite(v) else None for v in stats[key]]
        return out

    def per_sample_direction(self, key: str) -> bool | None:
        return False if key in (f"{FAMILY}.report_copy", f"{FAMILY}.report_ngram") else None

    def extras(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parts": list(self.parts), "n_train": len(self.train)}
        if "image" in self.parts:
            st = self.stats()
            r = st.get("real_nn", np.zeros(0))
            r = r[np.isfinite(r)]
            out |= {"distance": self.distance, "extractor": self.encoder.extractor_name, "neighbours": self._neighbours,
                    "real_p1": float(np.percentile(r, 1)) if len(r) else None,
                    "real_median": float(np.median(r)) if len(r) else None}
        if "report" in self.parts:
            out["ngram"] = self.ngram
        return out


def factory(ctx: MetricContext) -> Memorization:
    """Cheap: picks the parts from the task's request kind and checks the extractor is registered."""
    kind = getattr(ctx.task, "request", None) or ctx.options.get("request")
    parts = produces(kind) if kind else ("image", "report")
    encoder = None
    if "image" in parts:
        name, weights = encoder_choice(ctx.options, "memorization_extractor")
        check_extractor(FAMILY, name)
        encoder = ImageEncoder(name, weights, ctx.domain, FAMILY, need_head=False)
    return Memorization(parts, encoder, ctx.train, distance=ctx.options.get("memorization_distance") or "cosine",
                        ngram=ctx.options.get("memorization_ngram") or NGRAM)


@hookimpl
def medbench_metrics():
    from medbench.metrics import common_options as co
    from medbench.options import Option

    options = (co.MEMORIZATION_EXTRACTOR, co.MEMORIZATION_EXTRACTOR_WEIGHTS, co.EXTRACTOR, co.WEIGHTS,
               Option("memorization_distance", str, "cosine", "nearest-neighbour distance", choices=("cosine", "l2")),
               Option("memorization_ngram", int, NGRAM, "n of the report n-gram copy rate", low=1, high=1000))
    return [MetricSpec(FAMILY, factory, requires=(), kinds=("report->image", "image->report", "prompt->pair"),
                       options=options, produces=(f"{FAMILY}.*",),
                       description="memorization: nearest-training-image distance vs held-out real images (share closer "
                                   "than their 1st percentile) and report copy rate (exact / 12-gram) vs held-out reports")]
