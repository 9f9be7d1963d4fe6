"""Joint-pair consistency (family ``pair.consistency``): do a generated image and its report agree?

For every generated pair, the report's labels (the domain labeler, mapping ``unc_pos`` by default)
are compared with the image's labels (the encoder's label head, thresholded per label on held-out
real images, see image_labels.py) — per-label F1 and Cohen's κ, macro-averaged. A raw agreement
means little without its range for this labeler and classifier, so the same statistic is always
computed on REAL data in the same way, from the evaluated samples:

    pair.consistency.f1 / .kappa                  generated image vs generated report
    pair.consistency.f1_ceiling / .kappa_ceiling  matched real pairs: real image vs its own report
    pair.consistency.f1_floor / .kappa_floor      shuffled real pairs: real image vs the report of another
                                                  evaluated sample (a derangement seeded by the run seed)
    pair.consistency.f1_relative                  (f1 - floor) / (ceiling - floor): 0 = chance, 1 = real pairs

Per-sample statistics are the 0/1 label rows of each side (``gen_report``, ``gen_image``,
``real_report``, ``real_image``, ``shuffled_report``) plus ``gen_valid`` (0 where the generated image
is missing), so a bootstrap resample moves the value and both brackets together.

Macro F1 averages labels positive on either side (zero_division 0); macro κ averages labels where κ
is defined (κ is undefined when both sides are constant on the same class).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, Scored
from medbench.metrics.image_labels import (DEFAULT_MAPPING, ImageEncoder, binarise, check_extractor, check_labeler,
                                           encoder_choice, fit_label_space, mapping_or_error)
from medbench.metrics.label_fidelity import f1_from_counts, macro
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap
from medbench.stats.weighted import row_mean, wsum

FAMILY = "pair.consistency"
SIDES = ("gen_report", "gen_image", "real_report", "real_image", "shuffled_report")


# ---- the math --------------------------------------------------------------------------------

def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Per-label F1 and Cohen's κ between two (n, L) 0/1 label matrices (a as reference, b as
    prediction; both statistics are symmetric), and their macro averages."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    n = len(a)
    tp, fp = (a & b).sum(0), ((1 - a) & b).sum(0)
    fn, tn = (a & (1 - b)).sum(0), ((1 - a) & (1 - b)).sum(0)
    f1 = f1_from_counts(tp, fp, fn)
    with np.errstate(divide="ignore", invalid="ignore"):
        po = (tp + tn) / n
        pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / float(n) ** 2
        kappa = np.where(pe < 1.0, (po - pe) / (1.0 - pe), np.nan) if n else np.full(a.shape[1], np.nan)
    present = (tp + fp + fn) > 0
    return {"f1": f1, "kappa": kappa, "f1_macro": macro(f1, present) if n else float("nan"),
            "kappa_macro": macro(kappa, np.ones_like(present)), "positives_a": a.sum(0), "positives_b": b.sum(0)}


def weighted_agreement(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f1_macro, kappa_macro) of `agreement` for every resample of a (B, n) row-weight matrix."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    n = w.sum(1)[:, None]
    tp, fp, fn, tn = wsum(w, a & b), wsum(w, (1 - a) & b), wsum(w, a & (1 - b)), wsum(w, (1 - a) & (1 - b))
    f1 = f1_from_counts(tp, fp, fn)
    with np.errstate(divide="ignore", invalid="ignore"):
        po = (tp + tn) / n
        pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n ** 2
        kappa = np.where(pe < 1.0, (po - pe) / (1.0 - pe), np.nan)
    empty = n[:, 0] == 0
    f1_macro = np.where(empty, np.nan, row_mean(f1, (tp + fp + fn) > 0))
    kappa_macro = row_mean(np.where(empty[:, None], np.nan, kappa), np.ones_like(kappa, dtype=bool))
    return f1_macro, kappa_macro


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (n >= 2): a random cyclic shift of a random order."""
    if n < 2:
        raise ValueError(f"a shuffled-pair floor needs at least 2 samples, got {n}")
    rng = np.random.default_rng([seed, 2718])
    order = rng.permutation(n)
    shift = int(rng.integers(1, n))
    out = np.empty(n, dtype=np.int64)
    out[order] = order[(np.arange(n) + shift) % n]
    return out


# ---- the metric -------------------------------------------------------------------------------

class PairConsistency(WeightedBootstrap, Metric):
    name = FAMILY

    def __init__(self, heads: ImageEncoder, labeler_spec, mapping: str = DEFAULT_MAPPING, train: list | None = None,
                 reference: list | None = None, dataset: Any = None, evaluated_split: str | None = None, seed: int = 0):
        self.heads, self.labeler_spec, self.mapping = heads, labeler_spec, mapping_or_error(mapping)
        self.train, self.reference, self.dataset = list(train or []), list(reference or []), dataset
        self.evaluated_split, self.seed = evaluated_split, seed
        names = ["f1", "kappa", "f1_ceiling", "kappa_ceiling", "f1_floor", "kappa_floor", "f1_relative"]
        self.higher_is_better = {f"{FAMILY}.{n}": True for n in names}
        self._labeler = self._names = self._threshold = None
        self._partner: dict[str, str] = {}
        self._threshold_info: dict[str, Any] = {}
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in (*SIDES, "gen_valid")}

    @property
    def variant(self) -> str:
        return (f"report side: labeler {self.labeler_spec.name}, mapping {self.mapping}; image side: "
                f"{self.heads.extractor_name} label head ({self.heads.domain}) at per-label F1-optimal thresholds fixed "
                f"on real {self._threshold_info.get('split', 'val/train')} images; per-label F1 and Cohen's kappa, "
                f"macro; brackets: matched real pairs (ceiling) and a seeded derangement of the real reports (floor)")

    @property
    def weights_sha256(self) -> dict[str, str]:
        return self.heads.weights_sha256

    def _setup(self) -> None:
        self._labeler, self._names, self._threshold, self._threshold_info = fit_label_space(
            FAMILY, self.heads, self.labeler_spec, self.train, self.dataset, self.evaluated_split, self.mapping, self.seed)
        ids = [s.id for s in self.reference]
        if len(ids) >= 2:  # the floor's partner of every evaluated sample, fixed before any batch is seen
            by_id = {s.id: s for s in self.reference}
            self._partner = {ids[i]: by_id[ids[j]].report for i, j in enumerate(derangement(len(ids), self.seed))}

    def _shuffled_report(self, sample) -> str:
        if sample.id in self._partner:
            return self._partner[sample.id] or ""
        raise ValueError(f"{FAMILY}: sample {sample.id!r} is not among the {len(self.reference)} evaluated reference "
                         "samples the shuffled-pair floor was built from (MetricContext.reference)")

    def _labels(self, reports: list[str | None]) -> np.ndarray:
        return binarise([self._labeler.label(r or "") for r in reports], self._names, self.mapping)

    def _image_labels(self, items: list) -> tuple[np.ndarray, np.ndarray]:
        prob = self.heads.probabilities(items, self._names)
        valid = np.isfinite(prob).all(axis=1)
        return (np.nan_to_num(prob, nan=-1.0) >= self._threshold).astype(np.int64), valid.astype(np.int64)

    def update(self, batch: list[Scored]) -> None:
        if self._names is None:
            self._setup()
        for s in batch:
            if s.sample.image_path is None or s.sample.report is None:
                raise ValueError(f"{FAMILY}: reference sample {s.sample.id!r} needs both an image and a report for "
                                 "the real-pair brackets")
        gen_image, gen_valid = self._image_labels([s.output.image for s in batch])
        real_image, _ = self._image_labels([s.sample.image_path for s in batch])
        rows = {"gen_report": self._labels([s.output.report for s in batch]), "gen_image": gen_image,
                "real_report": self._labels([s.sample.report for s in batch]), "real_image": real_image,
                "shuffled_report": self._labels([self._shuffled_report(s.sample) for s in batch]), "gen_valid": gen_valid}
        for k, v in rows.items():
            self._rows[k].append(v)

    def stats(self) -> dict[str, np.ndarray]:
        self.heads.flush()
        L = len(self._names or ())
        out = {k: (np.concatenate(v) if v else np.zeros((0, L), np.int64)) for k, v in self._rows.items()}
        if not self._rows["gen_valid"]:
            out["gen_valid"] = np.zeros(0, np.int64)
        return out

    def _all(self, stats: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        ok = stats["gen_valid"].astype(bool)
        return {"generated": agreement(stats["gen_report"][ok], stats["gen_image"][ok]),
                "ceiling": agreement(stats["real_report"], stats["real_image"]),
                "floor": agreement(stats["shuffled_report"], stats["real_image"])}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        res = self._all(stats)
        out = {}
        for which, suffix in (("generated", ""), ("ceiling", "_ceiling"), ("floor", "_floor")):
            out[f"{FAMILY}.f1{suffix}"] = res[which]["f1_macro"]
            out[f"{FAMILY}.kappa{suffix}"] = res[which]["kappa_macro"]
        span = out[f"{FAMILY}.f1_ceiling"] - out[f"{FAMILY}.f1_floor"]
        out[f"{FAMILY}.f1_relative"] = (out[f"{FAMILY}.f1"] - out[f"{FAMILY}.f1_floor"]) / span if span > 0 else float("nan")
        return out

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of a (B, n) row-weight matrix (the bootstrap fast path)."""
        ok = stats["gen_valid"].astype(bool)
        res = {"": weighted_agreement(w[:, ok], stats["gen_report"][ok], stats["gen_image"][ok]),
               "_ceiling": weighted_agreement(w, stats["real_report"], stats["real_image"]),
               "_floor": weighted_agreement(w, stats["shuffled_report"], stats["real_image"])}
        out = {}
        for suffix, r in res.items():
            out[f"{FAMILY}.f1{suffix}"], out[f"{FAMILY}.kappa{suffix}"] = r
        span = out[f"{FAMILY}.f1_ceiling"] - out[f"{FAMILY}.f1_floor"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{FAMILY}.f1_relative"] = np.where(span > 0, (out[f"{FAMILY}.f1"] - out[f"{FAMILY}.f1_floor"]) / np.where(span > 0, span, 1), np.nan)
        return out

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Per generated pair: the labels read from its report and from its image, whether they agree
        per label, and the fraction that agree (null for an image the heads could not score)."""
        names = list(self._names or ())
        rep, img, ok = (np.asarray(stats[k]) for k in ("gen_report", "gen_image", "gen_valid"))
        if not names or rep.ndim != 2:
            return {}
        return {f"{FAMILY}.report_labels": [dict(zip(names, map(int, r))) for r in rep],
                f"{FAMILY}.image_labels": [dict(zip(names, map(int, i))) if v else None for i, v in zip(img, ok)],
                f"{FAMILY}.per_label": [{n: int(a == b) for n, a, b in zip(names, r, i)} if v else None
                                        for r, i, v in zip(rep, img, ok)],
                f"{FAMILY}.agreement": [float(np.mean(r == i)) if v else None for r, i, v in zip(rep, img, ok)]}

    def per_sample_direction(self, key: str) -> bool | None:
        return True if key == f"{FAMILY}.agreement" else None

    def extras(self) -> dict[str, Any]:
        st = self.stats()
        res = self._all(st)
        per_label = {which: [{"label": n, "f1": float(r["f1"][j]), "kappa": float(r["kappa"][j]),
                              "report_positives": int(r["positives_a"][j]), "image_positives": int(r["positives_b"][j])}
                             for j, n in enumerate(self._names or ())] for which, r in res.items()}
        return {"labels": list(self._names or ()), "mapping": self.mapping, "per_label": per_label,
                "missing_generated_images": int((st["gen_valid"] == 0).sum()), "thresholds": self._threshold_info,
                "labeler": self.labeler_spec.name, "extractor": self.heads.extractor_name,
                "notes": "ceiling = real image vs its own report; floor = real image vs a deranged real report "
                         "(same evaluated samples, seeded); a system is read by its position between the two"}


def factory(ctx: MetricContext) -> PairConsistency:
    """Cheap: checks the extractor is registered and a labeler serves the domain; loads nothing."""
    name, weights = encoder_choice(ctx.options, "label_extractor")
    check_extractor(FAMILY, name)
    spec = check_labeler(FAMILY, ctx.domain, ctx.options.get("labeler"))
    return PairConsistency(ImageEncoder(name, weights, ctx.domain, FAMILY), spec,
                           mapping=ctx.options.get("label_mapping", DEFAULT_MAPPING), train=ctx.train,
                           reference=ctx.reference, dataset=ctx.dataset, evaluated_split=getattr(ctx.task, "split", None),
                           seed=ctx.seed)


@hookimpl
def medbench_metrics():
    from medbench.metrics import common_options as co

    options = (co.LABEL_EXTRACTOR, co.LABEL_EXTRACTOR_WEIGHTS, co.EXTRACTOR, co.WEIGHTS, co.LABELER, co.LABEL_MAPPING)
    return [MetricSpec(FAMILY, factory, options=options, produces=(f"{FAMILY}.*",), requires=("image", "report"), kinds=("prompt->pair",),
                       description="joint-pair consistency: per-label F1 / Cohen's kappa between the generated report's "
                                   "labels and the generated image's labels, between real matched (ceiling) and "
                                   "shuffled (floor) brackets")]
