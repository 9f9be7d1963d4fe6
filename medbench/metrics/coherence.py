"""Report coherence (family ``report.coherence``): does a report contradict itself?

The run domain's labeler (CheXpert-rule (surface) for ``cxr``; option ``labeler`` names another)
reads every report mention by mention (``labeler.mentions(report)`` -> (sentence, mention, label),
label 1 positive / 0 negative / -1 uncertain). A report is *contradictory* when one observation
(other than "No Finding") has at least one positive and at least one negative mention, e.g.
"There is a small pleural effusion. No pleural effusion." Uncertain mentions never contradict.

    report.coherence.contradiction_rate             share of generated reports that are contradictory (lower is better)
    report.coherence.contradiction_rate_reference   the same on the reference reports: the bracket, since real
                                                    reports can say "no left effusion; small right effusion"

Per-sample statistics are 0/1 rows (``generated``, ``reference``) plus the (n, L) matrix of
contradicted observations of each generated report (``generated_observations``), so a bootstrap
resample moves the rate and its bracket together. An empty output has no mentions: coherent.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap
from medbench.stats.weighted import wmean

FAMILY = "report.coherence"
RATE, REFERENCE = f"{FAMILY}.contradiction_rate", f"{FAMILY}.contradiction_rate_reference"
EXCLUDED = ("No Finding",)


def contradicted(mentions) -> list[str]:
    """Observations with both a positive (1) and a negative (0) mention, in first-mention order."""
    seen: dict[str, set[int]] = {}
    for _, mention, label in mentions:
        if mention.observation not in EXCLUDED:
            seen.setdefault(mention.observation, set()).add(label)
    return [obs for obs, labels in seen.items() if {0, 1} <= labels]


class ReportCoherence(WeightedBootstrap, Metric):
    name = FAMILY
    higher_is_better = {RATE: False, REFERENCE: False}

    def __init__(self, labeler_spec, labeler):
        self.labeler_spec, self.labeler = labeler_spec, labeler
        self.observations = tuple(o for o in labeler.observations if o not in EXCLUDED)
        self.variant = (f"labeler={labeler_spec.name} ({getattr(labeler_spec, 'description', '')}); a report is "
                        "contradictory when one observation (No Finding excluded) has a positive and a negative "
                        "mention; uncertain mentions ignored; reference reports as the bracket")
        self._rows: dict[str, list[np.ndarray]] = {"generated": [], "reference": [], "generated_observations": []}

    def _row(self, report: str) -> np.ndarray:
        found = contradicted(self.labeler.mentions(report))
        return np.array([o in found for o in self.observations], dtype=np.int64)

    def update(self, batch: list[Scored]) -> None:
        for item in batch:
            if item.sample.report is None:
                raise ValueError(f"{FAMILY}: sample {item.sample.id!r} has no reference report")
            gen, ref = self._row(item.output.report or ""), self._row(item.sample.report)
            self._rows["generated_observations"].append(gen[None])
            self._rows["generated"].append(np.array([int(gen.any())]))
            self._rows["reference"].append(np.array([int(ref.any())]))

    def stats(self) -> dict[str, np.ndarray]:
        empty = {"generated_observations": np.zeros((0, len(self.observations)), np.int64)}
        return {k: np.concatenate(v) if v else empty.get(k, np.zeros(0, np.int64)) for k, v in self._rows.items()}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        rate = lambda x: float(np.mean(x)) if len(x) else float("nan")  # noqa: E731
        return {RATE: rate(stats["generated"]), REFERENCE: rate(stats["reference"])}

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of a (B, n) row-weight matrix (the bootstrap fast path)."""
        return {RATE: wmean(w, stats["generated"]), REFERENCE: wmean(w, stats["reference"])}

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Per sample: the observations its generated report both affirms and negates."""
        return {f"{FAMILY}.contradicted": [[o for o, hit in zip(self.observations, row) if hit]
                                           for row in np.asarray(stats["generated_observations"])]}

    def per_sample_direction(self, key: str) -> bool | None:
        return None

    def extras(self) -> dict[str, Any]:
        counts = self.stats()["generated_observations"].sum(axis=0)
        return {"labeler": self.labeler_spec.name, "excluded": list(EXCLUDED),
                "contradicted_reports_per_observation": {o: int(c) for o, c in zip(self.observations, counts)}}


def coherence_factory(ctx: MetricContext) -> ReportCoherence:
    from medbench.labelers.plugin import labeler_spec_for

    try:
        spec = labeler_spec_for(ctx.domain, ctx.options.get("labeler"))
    except KeyError as e:
        raise MetricUnavailable(f"{FAMILY}: {e.args[0]}") from None
    labeler = spec.factory()
    if not callable(getattr(labeler, "mentions", None)):
        raise MetricUnavailable(f"{FAMILY}: labeler {spec.name!r} has no mention-level output (mentions()), "
                                "so it cannot tell a contradicted observation")
    return ReportCoherence(spec, labeler)


@hookimpl
def medbench_metrics():
    from medbench.metrics.common_options import LABELER

    return [MetricSpec(FAMILY, coherence_factory, requires=("report",), kinds=("image->report", "prompt->pair"),
                       options=(LABELER,), produces=(f"{FAMILY}.*",),
                       description="report coherence: share of reports where the labeler finds one observation "
                                   "both affirmed and negated (generated, and reference as the bracket)")]
