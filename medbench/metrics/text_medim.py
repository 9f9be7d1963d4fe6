"""Report metrics exactly as the MeDiM paper scored them (protocol ``medim-paper``).

Reproduces UCSC-VLAA/MeDiM:report_metric.py, per report, then averaged:

* texts are stripped; tokens = lowercase, "." -> " .", split on single spaces, empty tokens dropped;
* BLEU-1..4: nltk ``sentence_bleu`` with the single reference, ``SmoothingFunction().method1`` and
  cumulative weights [1], [1/2]*2, [1/3]*3, [1/4]*4;
* METEOR: nltk ``single_meteor_score(reference_tokens, hypothesis_tokens)`` with WordNet 3.0
  (see `medbench.metrics.wordnet`) -- about 1.8x the Java METEOR 1.5 of protocol ``coco``;
* ROUGE-L: F of the PyPI ``rouge`` 1.0.1 package, ``get_scores(hyp.lower(), ref.lower())``.

Differences from the script, and the switch that removes them: the script *skips* empty outputs and
samples on which ``rouge`` raises (for every metric). medbench scores an empty output 0 on every
metric and a ``rouge`` failure 0 on ROUGE-L, and counts both in `extras()`. With the option
``skip_empty=True`` (``MetricContext.options["skip_empty"]``) both are skipped as in the paper and the
skipped sample ids are listed. Usage::

    m = MedimPaperText(skip_empty=False)
    m.update(batch); values = m.compute(m.stats())     # {"nlg.medim-paper.bleu1": ..., ...}
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, Scored
from medbench.options import Option
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap

FAMILY = "nlg.medim-paper"
SCORES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rougeL")
BLEU_WEIGHTS = ([1], [0.5, 0.5], [1 / 3] * 3, [0.25] * 4)  # as written in report_metric.py


def prep_report(text: str) -> list[str]:
    """MeDiM's prep_reports for one text."""
    return [tok for tok in str(text).lower().replace(".", " .").split(" ") if tok != ""]


def reference_text(scored: Scored) -> str:
    if scored.sample.report is None:
        raise ValueError(f"sample {scored.sample.id!r} has no reference report; text metrics need one")
    return scored.sample.report


class MedimPaperText(WeightedBootstrap, Metric):
    name = FAMILY
    variant = ("MeDiM report_metric.py: nltk sentence_bleu(method1) + nltk single_meteor_score (WordNet 3.0) "
               "+ rouge==1.0.1 ROUGE-L F, averaged per report")
    higher_is_better = {f"{FAMILY}.{s}": True for s in SCORES}

    def __init__(self, skip_empty: bool = False):
        self.skip_empty = skip_empty
        self.variant = self.variant + (" (skip_empty: paper's skipping)" if skip_empty else " (empty scored 0)")
        self._rows: list[tuple[float, ...]] = []  # bleu1..4, meteor, rougeL, included
        self._ids: list[str] = []
        self._empty: list[str] = []
        self._rouge_failed: list[str] = []
        self._tools = None

    def _load(self):
        """nltk, WordNet and rouge -- on first update, not in the factory."""
        if self._tools is None:
            from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
            from nltk.translate.meteor_score import single_meteor_score
            from rouge import Rouge

            from medbench.metrics.wordnet import ensure_wordnet

            ensure_wordnet()
            self._tools = (sentence_bleu, SmoothingFunction().method1, single_meteor_score, Rouge())
        return self._tools

    def score_pair(self, reference: str, hypothesis: str) -> tuple[tuple[float, ...], str | None]:
        """One report's row (bleu1..4, meteor, rougeL, included) and what happened ('empty', 'rouge' or None)."""
        sentence_bleu, smoothie, single_meteor_score, rouge = self._load()
        golden, response = reference.strip(), hypothesis.strip()
        if response == "":
            return (0.0,) * 6 + (0.0 if self.skip_empty else 1.0,), "empty"
        hyp_tokens, ref_tokens = prep_report(response), prep_report(golden)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bleus = [sentence_bleu([ref_tokens], hyp_tokens, weights=w, smoothing_function=smoothie) for w in BLEU_WEIGHTS]
        event = None
        try:
            rouge_l = rouge.get_scores(response.lower(), golden.lower())[0]["rouge-l"]["f"]
        except Exception:  # the paper skipped such samples for every metric
            rouge_l, event = 0.0, "rouge"
            if self.skip_empty:
                return (0.0,) * 7, event
        meteor = single_meteor_score(hypothesis=hyp_tokens, reference=ref_tokens)
        return (*map(float, bleus), float(meteor), float(rouge_l), 1.0), event

    def update(self, batch: list[Scored]) -> None:
        for scored in batch:
            row, event = self.score_pair(reference_text(scored), scored.output.report or "")
            self._rows.append(row)
            self._ids.append(scored.sample.id)
            if event == "empty":
                self._empty.append(scored.sample.id)
            elif event == "rouge":
                self._rouge_failed.append(scored.sample.id)

    def stats(self) -> dict[str, np.ndarray]:
        table = np.asarray(self._rows, dtype=np.float64).reshape(-1, len(SCORES) + 1)
        out = {s: table[:, i].copy() for i, s in enumerate(SCORES)}
        out["included"] = table[:, -1].copy()
        return out

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        keep = np.asarray(stats["included"]) > 0
        if not keep.any():
            return {f"{FAMILY}.{s}": float("nan") for s in SCORES}
        # the script's np.mean over a Python list of the kept rows, in order
        return {f"{FAMILY}.{s}": float(np.mean(np.asarray(stats[s])[keep])) for s in SCORES}

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of a (B, n) row-weight matrix (the bootstrap fast path)."""
        keep = np.asarray(stats["included"]) > 0
        wk = w[:, keep]
        n = wk.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {f"{FAMILY}.{s}": np.where(n > 0, (wk @ np.asarray(stats[s], dtype=np.float64)[keep]) / n, np.nan)
                    for s in SCORES}

    def extras(self) -> dict[str, Any]:
        skipped = [i for i, r in zip(self._ids, self._rows) if r[-1] == 0.0]
        return {
            "protocol": "medim-paper",
            "n_scored": len(self._ids) - len(skipped),
            "empty_outputs": len(self._empty),
            "empty_output_ids": list(self._empty),
            "rouge_failures": len(self._rouge_failed),
            "rouge_failure_ids": list(self._rouge_failed),
            "skip_empty": self.skip_empty,
            "skipped_ids": skipped,
        }


def make_medim_paper(ctx: MetricContext) -> MedimPaperText:
    return MedimPaperText(skip_empty=ctx.options.get("skip_empty") is True)


@hookimpl
def medbench_metrics():
    return [MetricSpec(
        name=FAMILY, factory=make_medim_paper, requires=("report",), kinds=("image->report", "prompt->pair"),
        protocol="medim-paper", produces=tuple(f"{FAMILY}.{s}" for s in SCORES),
        options=(Option("skip_empty", bool, False, "skip empty generated reports, as the paper's script did"),),
        description="BLEU-1..4 / METEOR / ROUGE-L exactly as MeDiM's report_metric.py (nltk sentence BLEU "
                    "method1, nltk METEOR, rouge 1.0.1), averaged per report; option skip_empty reproduces "
                    "the paper's skipping of empty outputs")]
