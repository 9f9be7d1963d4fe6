"""T2I label fidelity (family ``image.label_fidelity``): does the generated image show the findings asked for?

Targets are the reference sample's labels (labels.jsonl; without them the domain labeler's reading of
the reference report), binarised under a stated mapping (default ``unc_pos``: 1 and -1 positive, 0 and
blank negative). The image side is the phantom encoder's label head for the domain (sigmoid
probabilities), over the encoder's labels that the labeler also emits. F1 uses one threshold per label,
fixed on real images that are never the evaluated ones (val split, else train; see image_labels.py)::

    image.label_fidelity.auroc_macro          mean per-label AUROC (labels with both classes present)
    image.label_fidelity.f1_macro             mean per-label F1 at the fixed thresholds (labels positive in
                                              targets or predictions; zero_division 0)
    image.label_fidelity.f1_micro             pooled F1 over all labels
    image.label_fidelity.*_ceiling            the same on the reference (real) images of the same samples

Per-sample statistics: ``target`` (n, L) 0/1, ``prob`` / ``real_prob`` (n, L) (NaN rows for a missing
image) and ``threshold`` (n, L) constant rows, so `compute` is a pure function of the rows.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, Scored
from medbench.metrics.image_labels import (DEFAULT_MAPPING, ImageEncoder, binarise, check_extractor, check_labeler,
                                           encoder_choice, fit_label_space, mapping_or_error, sample_labels)
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap
from medbench.stats.weighted import row_mean, wauroc, wsum

FAMILY = "image.label_fidelity"
VALUES = ("auroc_macro", "f1_macro", "f1_micro")


# ---- the math (pure functions of matrices) ------------------------------------------------------

def auroc_per_label(target: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Per-column ROC AUC (Mann-Whitney with average ranks for ties; equals sklearn's roc_auc_score);
    NaN where a column lacks positives or negatives. Rows with a NaN score are ignored."""
    from scipy.stats import rankdata

    target, prob = np.asarray(target), np.asarray(prob, dtype=float)
    out = np.full(target.shape[1], np.nan)
    for j in range(target.shape[1]):
        ok = np.isfinite(prob[:, j])
        y, p = target[ok, j], prob[ok, j]
        n_pos = int(y.sum())
        n_neg = len(y) - n_pos
        if n_pos and n_neg:
            ranks = rankdata(p)
            out[j] = (ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return out


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """2TP / (2TP + FP + FN), 0 where the denominator is 0 (sklearn zero_division=0)."""
    tp, fp, fn = (np.asarray(a, dtype=float) for a in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def macro(values: np.ndarray, keep: np.ndarray) -> float:
    keep = keep & np.isfinite(values)
    return float(values[keep].mean()) if keep.any() else float("nan")


def fidelity_values(target: np.ndarray, prob: np.ndarray, threshold: np.ndarray) -> dict[str, Any]:
    """AUROC / F1 per label and averaged, over rows with a finite score."""
    ok = np.isfinite(prob).all(axis=1)
    t, p = target[ok].astype(np.int64), prob[ok]
    pred = (p >= threshold[ok]).astype(np.int64)
    tp, fp, fn = (t & pred).sum(0), ((1 - t) & pred).sum(0), (t & (1 - pred)).sum(0)
    auroc, f1 = auroc_per_label(t, p), f1_from_counts(tp, fp, fn)
    present = (tp + fp + fn) > 0
    micro = float(f1_from_counts(tp.sum(), fp.sum(), fn.sum())) if len(t) else float("nan")
    return {"auroc": auroc, "f1": f1, "support": t.sum(0), "predicted": pred.sum(0), "n": int(ok.sum()),
            "auroc_macro": macro(auroc, np.ones_like(present)), "f1_macro": macro(f1, present) if len(t) else float("nan"),
            "f1_micro": micro}


def weighted_fidelity_values(w: np.ndarray, target: np.ndarray, prob: np.ndarray, threshold: np.ndarray) -> dict[str, np.ndarray]:
    """`fidelity_values`' averages for every resample of a (B, n) row-weight matrix."""
    ok = np.isfinite(prob).all(axis=1)
    w, t, p = w[:, ok], target[ok].astype(np.int64), prob[ok]
    pred = (p >= threshold[ok]).astype(np.int64)
    tp, fp, fn = wsum(w, t & pred), wsum(w, (1 - t) & pred), wsum(w, t & (1 - pred))  # (B, L)
    auroc = np.stack([wauroc(w, t[:, j], p[:, j]) for j in range(t.shape[1])], axis=1) if t.shape[1] else np.zeros((len(w), 0))
    f1 = f1_from_counts(tp, fp, fn)
    empty = w.sum(1) == 0
    micro = f1_from_counts(tp.sum(1), fp.sum(1), fn.sum(1))
    return {"auroc_macro": row_mean(auroc, np.ones_like(auroc, dtype=bool)),
            "f1_macro": np.where(empty, np.nan, row_mean(f1, (tp + fp + fn) > 0)),
            "f1_micro": np.where(empty, np.nan, micro)}


# ---- the metric -------------------------------------------------------------------------------

class LabelFidelity(WeightedBootstrap, Metric):
    name = FAMILY

    def __init__(self, heads: ImageEncoder, labeler_spec, mapping: str = DEFAULT_MAPPING, train: list | None = None,
                 dataset: Any = None, evaluated_split: str | None = None, seed: int = 0):
        self.heads, self.labeler_spec, self.mapping = heads, labeler_spec, mapping_or_error(mapping)
        self.train, self.dataset, self.evaluated_split, self.seed = list(train or []), dataset, evaluated_split, seed
        self.higher_is_better = {f"{FAMILY}.{v}{s}": True for v in VALUES for s in ("", "_ceiling")}
        self._labeler = self._names = self._threshold = None
        self._threshold_info: dict[str, Any] = {}
        self._rows: dict[str, list[np.ndarray]] = {"target": [], "prob": [], "real_prob": [], "threshold": []}

    @property
    def variant(self) -> str:
        return (f"image side: {self.heads.extractor_name} label head ({self.heads.domain}); targets: reference labels "
                f"(labeler {self.labeler_spec.name} on the reference report when absent), mapping {self.mapping} "
                f"({'1,-1' if self.mapping == 'unc_pos' else '1'} positive; 0, blank negative); F1 at per-label F1-optimal "
                f"thresholds fixed on real {self._threshold_info.get('split', 'val/train')} images; AUROC via average ranks")

    @property
    def weights_sha256(self) -> dict[str, str]:
        return self.heads.weights_sha256

    def _setup(self) -> None:
        """First update: labeler, label space, thresholds on held-out real images."""
        self._labeler, self._names, self._threshold, self._threshold_info = fit_label_space(
            FAMILY, self.heads, self.labeler_spec, self.train, self.dataset, self.evaluated_split, self.mapping, self.seed)

    def update(self, batch: list[Scored]) -> None:
        if self._names is None:
            self._setup()
        targets = binarise([sample_labels(s.sample, self._labeler) for s in batch], self._names, self.mapping)
        self._rows["target"].append(targets)
        self._rows["prob"].append(self.heads.probabilities([s.output.image for s in batch], self._names))
        self._rows["real_prob"].append(self.heads.probabilities([s.sample.image_path for s in batch], self._names))
        self._rows["threshold"].append(np.tile(self._threshold, (len(batch), 1)))

    def stats(self) -> dict[str, np.ndarray]:
        self.heads.flush()
        L = len(self._names or ())
        return {k: (np.concatenate(v) if v else np.zeros((0, L))) for k, v in self._rows.items()}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        out = {}
        for suffix, key in (("", "prob"), ("_ceiling", "real_prob")):
            vals = fidelity_values(stats["target"], stats[key], stats["threshold"])
            out.update({f"{FAMILY}.{v}{suffix}": vals[v] for v in VALUES})
        return out

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of a (B, n) row-weight matrix (the bootstrap fast path)."""
        out = {}
        for suffix, key in (("", "prob"), ("_ceiling", "real_prob")):
            vals = weighted_fidelity_values(w, stats["target"], stats[key], stats["threshold"])
            out.update({f"{FAMILY}.{v}{suffix}": vals[v] for v in VALUES})
        return out

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Per generated image: each head's probability, the labels it predicts (probability >=
        the head's threshold), the reference labels, and the fraction of labels that agree."""
        names = list(self._names or ())
        prob, target, thr = (np.asarray(stats[k]) for k in ("prob", "target", "threshold"))
        if not names or prob.ndim != 2:
            return {}
        pred = (np.nan_to_num(prob, nan=-1.0) >= thr).astype(int)
        return {f"{FAMILY}.head_scores": [{n: (float(p) if np.isfinite(p) else None) for n, p in zip(names, row)} for row in prob],
                f"{FAMILY}.predicted": [dict(zip(names, map(int, row))) for row in pred],
                f"{FAMILY}.reference": [dict(zip(names, map(int, row))) for row in target],
                f"{FAMILY}.agreement": [float(np.mean(p == t)) for p, t in zip(pred, target)]}

    def per_sample_direction(self, key: str) -> bool | None:
        return True if key == f"{FAMILY}.agreement" else None

    def extras(self) -> dict[str, Any]:
        """Per-label AUROC / F1 / support for generated and real images, and the thresholds."""
        st = self.stats()
        table = {}
        for which, key in (("generated", "prob"), ("real", "real_prob")):
            v = fidelity_values(st["target"], st[key], st["threshold"])
            table[which] = [{"label": n, "auroc": float(v["auroc"][j]), "f1": float(v["f1"][j]),
                             "support": int(v["support"][j]), "predicted": int(v["predicted"][j])}
                            for j, n in enumerate(self._names or ())]
            table[f"n_{which}"] = v["n"]
        return {"labels": list(self._names or ()), "mapping": self.mapping, "per_label": table,
                "thresholds": self._threshold_info, "extractor": self.heads.extractor_name,
                "labeler": self.labeler_spec.name,
                "notes": "macro AUROC over labels with both classes among the targets; macro F1 over labels positive in "
                         "targets or predictions; _ceiling = the same on the samples' real images"}


def factory(ctx: MetricContext) -> LabelFidelity:
    """Cheap: checks the extractor is registered and a labeler serves the domain; loads nothing."""
    name, weights = encoder_choice(ctx.options, "label_extractor")
    check_extractor(FAMILY, name)
    spec = check_labeler(FAMILY, ctx.domain, ctx.options.get("labeler"))
    return LabelFidelity(ImageEncoder(name, weights, ctx.domain, FAMILY), spec,
                         mapping=ctx.options.get("label_mapping", DEFAULT_MAPPING), train=ctx.train, dataset=ctx.dataset,
                         evaluated_split=getattr(ctx.task, "split", None), seed=ctx.seed)


@hookimpl
def medbench_metrics():
    from medbench.metrics import common_options as co

    options = (co.LABEL_EXTRACTOR, co.LABEL_EXTRACTOR_WEIGHTS, co.EXTRACTOR, co.WEIGHTS, co.LABELER, co.LABEL_MAPPING)
    return [MetricSpec(FAMILY, factory, options=options, produces=(f"{FAMILY}.*",), requires=("image",), kinds=("report->image", "prompt->pair"),
                       description="T2I label fidelity: per-label AUROC/F1 of the encoder's label heads on generated "
                                   "images against the reference labels, with the real-image ceiling")]
