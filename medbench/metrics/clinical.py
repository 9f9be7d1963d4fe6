"""Clinical efficacy (CE): precision / recall / F1 of labels extracted from generated vs reference reports.

The same labeler (the run domain's: CheXpert-rule (surface) for ``cxr``, path-attributes for
``path``) labels the reference report and the generated report of every sample. Labels are binarised
under two mappings, both reported because they change numbers a lot:

- ``pos``      positive-only, as R2Gen's compute_ce: 1 -> 1; 0, -1, blank -> 0;
- ``unc_pos``  uncertain-as-positive, as CheXbert's "rrg" mode: 1, -1 -> 1; 0, blank -> 0.

Averages: ``micro14``/``macro14`` over the 14 CheXpert observations and ``micro5``/``macro5`` over
the 5 competition labels (Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion); for
other domains ``micro_all``/``macro_all`` over all the labeler's observations.

Zero-division policy: a ratio with a zero denominator is 0 (scikit-learn ``zero_division=0``).
Macro averages include only labels that are positive in the reference or the generated reports of
the (re)sampled set; labels positive in neither are excluded instead of counted as 0 (which would
deflate macro-F1). When no label qualifies, macro values are 0.

Per-sample statistics are per-label TP/FP/FN/TN rows, so bootstrap resampling is exact::

    m = factory(ctx); m.update(batch); st = m.stats(); m.compute(st)
    # {'clinical.ce_f1.micro14.pos': ..., 'clinical.ce_f1.macro5.unc_pos': ..., ...}
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap
from medbench.stats.weighted import wsum

COMPETITION5 = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
MAPPINGS = {"pos": (1,), "unc_pos": (1, -1)}  # label values that count as positive
CELLS = ("tp", "fp", "fn", "tn")
QUANTITIES = ("precision", "recall", "f1")


def binarise(labels: list[dict[str, int]], observations: tuple[str, ...], mapping: str) -> np.ndarray:
    """(n, L) 0/1 matrix of label dicts under a mapping ('pos' or 'unc_pos'); blank counts as 0."""
    hot = MAPPINGS[mapping]
    return np.array([[int(d.get(o) in hot) for o in observations] for d in labels], dtype=np.int64).reshape(len(labels), len(observations))


def confusion_rows(ref: np.ndarray, hyp: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample, per-label TP/FP/FN/TN indicator rows from binary (n, L) matrices."""
    return {"tp": ref & hyp, "fp": (1 - ref) & hyp, "fn": ref & (1 - hyp), "tn": (1 - ref) & (1 - hyp)}


def _ratio(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def per_label(tp, fp, fn) -> dict[str, np.ndarray]:
    """Per-label precision, recall, F1 from summed counts (zero_division = 0)."""
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"precision": p, "recall": r, "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def averages(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, dict[str, float]]:
    """{'micro'|'macro': {precision, recall, f1}} over the given labels (summed count vectors)."""
    T, F_P, F_N = tp.sum(), fp.sum(), fn.sum()
    micro = {"precision": float(_ratio(T, T + F_P)), "recall": float(_ratio(T, T + F_N)),
             "f1": float(_ratio(2 * T, 2 * T + F_P + F_N))}
    present = (tp + fp + fn) > 0  # positive in reference or generated reports
    pl = per_label(tp, fp, fn)
    macro = {q: float(pl[q][present].mean()) if present.any() else 0.0 for q in QUANTITIES}
    return {"micro": micro, "macro": macro}


class ClinicalEfficacy(WeightedBootstrap, Metric):
    name = "clinical"

    def __init__(self, labeler_spec, label_sets: dict[str, tuple[str, ...]], observations: tuple[str, ...]):
        self.labeler_spec = labeler_spec
        self.label_sets = label_sets  # suffix -> observations, e.g. {"14": (...), "5": (...)}
        self.observations = observations
        self._labeler = None
        self._rows: dict[str, list[np.ndarray]] = {f"{c}.{m}": [] for m in MAPPINGS for c in CELLS}
        self.variant = (f"labeler={labeler_spec.name} ({getattr(labeler_spec, 'description', '')}); same labeler on "
                        "reference and generated report; mappings pos (R2Gen) and unc_pos (CheXbert rrg); "
                        "zero_division=0; macro over labels positive in reference or generated reports")
        self.higher_is_better = {n: True for n in self.metric_names()}

    def metric_names(self) -> list[str]:
        return [f"clinical.ce_{q}.{avg}{suffix}.{m}" for q in QUANTITIES for suffix in self.label_sets
                for avg in ("micro", "macro") for m in MAPPINGS]

    @property
    def labeler(self):
        if self._labeler is None:
            self._labeler = self.labeler_spec.factory()
            got = tuple(self._labeler.observations)
            missing = [o for o in self.observations if o not in got]
            if missing:
                raise ValueError(f"labeler {self.labeler_spec.name!r} does not emit {missing}")
        return self._labeler

    def update(self, batch: list[Scored]) -> None:
        refs, hyps = [], []
        for item in batch:
            if item.sample.report is None:
                raise ValueError(f"clinical: sample {item.sample.id!r} has no reference report to label")
            refs.append(self.labeler.label(item.sample.report))
            hyps.append(self.labeler.label(item.output.report or ""))  # an empty output is labeled, not skipped
        for m in MAPPINGS:
            cells = confusion_rows(binarise(refs, self.observations, m), binarise(hyps, self.observations, m))
            for c in CELLS:
                self._rows[f"{c}.{m}"].append(cells[c])

    def stats(self) -> dict[str, np.ndarray]:
        L = len(self.observations)
        return {k: (np.concatenate(v) if v else np.zeros((0, L), np.int64)) for k, v in self._rows.items()}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        out = {}
        for m in MAPPINGS:
            sums = {c: stats[f"{c}.{m}"].sum(axis=0) for c in CELLS}
            for suffix, obs in self.label_sets.items():
                idx = [self.observations.index(o) for o in obs]
                avg = averages(sums["tp"][idx], sums["fp"][idx], sums["fn"][idx])
                for kind in ("micro", "macro"):
                    for q in QUANTITIES:
                        out[f"clinical.ce_{q}.{kind}{suffix}.{m}"] = avg[kind][q]
        return out

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of a (B, n) row-weight matrix (the bootstrap fast path)."""
        out = {}
        for m in MAPPINGS:
            sums = {c: wsum(w, stats[f"{c}.{m}"]) for c in ("tp", "fp", "fn")}  # (B, L)
            for suffix, obs in self.label_sets.items():
                idx = [self.observations.index(o) for o in obs]
                tp, fp, fn = (sums[c][:, idx] for c in ("tp", "fp", "fn"))
                T, F_P, F_N = tp.sum(1), fp.sum(1), fn.sum(1)
                micro = {"precision": _ratio(T, T + F_P), "recall": _ratio(T, T + F_N), "f1": _ratio(2 * T, 2 * T + F_P + F_N)}
                present = (tp + fp + fn) > 0
                pl, k = per_label(tp, fp, fn), present.sum(1)
                macro = {q: _ratio((pl[q] * present).sum(1), k) for q in QUANTITIES}
                for kind, avg in (("micro", micro), ("macro", macro)):
                    for q in QUANTITIES:
                        out[f"clinical.ce_{q}.{kind}{suffix}.{m}"] = avg[q]
        return out

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Per report: the labeler's reference and generated labels (positive = 1, mapping "pos"),
        the observations where they disagree, and the fraction of observations that agree."""
        tp, fp, fn = (np.asarray(stats[f"{c}.pos"]) for c in ("tp", "fp", "fn"))
        ref, hyp = tp + fn, tp + fp
        obs = list(self.observations)
        return {"clinical.reference_labels": [dict(zip(obs, map(int, r))) for r in ref],
                "clinical.generated_labels": [dict(zip(obs, map(int, h))) for h in hyp],
                "clinical.disagreements": [[o for o, a, b in zip(obs, r, h) if a != b] for r, h in zip(ref, hyp)],
                "clinical.agreement": [float(np.mean(r == h)) if len(obs) else None for r, h in zip(ref, hyp)]}

    def per_sample_direction(self, key: str) -> bool | None:
        return True if key == "clinical.agreement" else self.higher_is_better.get(key)

    def extras(self) -> dict[str, Any]:
        """Per-label table (support = reference positives) under both mappings, for the report."""
        st = self.stats()
        table = {}
        for m in MAPPINGS:
            sums = {c: st[f"{c}.{m}"].sum(axis=0) for c in CELLS}
            pl = per_label(sums["tp"], sums["fp"], sums["fn"])
            table[m] = [{"label": o, "support": int(sums["tp"][i] + sums["fn"][i]),
                         "predicted": int(sums["tp"][i] + sums["fp"][i]),
                         **{c: int(sums[c][i]) for c in CELLS}, **{q: float(pl[q][i]) for q in QUANTITIES}}
                        for i, o in enumerate(self.observations)]
        return {"labeler": self.labeler_spec.name, "per_label": table, "label_sets": {k: list(v) for k, v in self.label_sets.items()},
                "zero_division": 0, "macro_excludes": "labels positive in neither reference nor generated reports"}


def clinical_factory(ctx: MetricContext) -> ClinicalEfficacy:
    """Cheap: resolves the labeler spec for the run's domain; the labeler is built on first update."""
    from medbench.labelers.plugin import labeler_spec_for

    try:
        spec = labeler_spec_for(ctx.domain, ctx.options.get("labeler"))
    except KeyError as e:
        raise MetricUnavailable(f"clinical: {e.args[0]}") from None
    if spec.domain == "cxr":
        from medbench.labelers.chexpert_phrases import OBSERVATIONS

        return ClinicalEfficacy(spec, {"14": OBSERVATIONS, "5": COMPETITION5}, OBSERVATIONS)
    observations = tuple(spec.factory().observations)  # non-cxr labelers: the observation list names the columns
    return ClinicalEfficacy(spec, {"_all": observations}, observations)


@hookimpl
def medbench_metrics():
    from medbench.metrics.common_options import LABELER

    return [MetricSpec("clinical", clinical_factory, requires=("report",), kinds=("image->report", "prompt->pair"),
                       options=(LABELER,), produces=("clinical.*",),
                       description="clinical efficacy: CE precision/recall/F1 of report-labeler labels, "
                                   "micro/macro, positive-only and uncertain-as-positive")]
