"""Report metrics as the report-generation literature computes them (protocol ``coco``, the default).

pycocoevalcap 1.2's pipeline: the PTB tokenizer (Stanford CoreNLP 3.4.1, lowercased, punctuation
dropped), then corpus BLEU-1..4 (BleuScorer, option 'closest'), METEOR 1.5 (Java), ROUGE-L (β=1.2,
mean per report) and CIDEr-D (pycocoevalcap Cider: clipped tf-idf, σ=6 length penalty, ×10, mean
per report). One reference per sample (the study's report).

Per-sample sufficient statistics make every number re-computable from resampled rows:
BLEU keeps clipped matches and guesses per n, hypothesis length and the 'closest' reference
length and redoes BleuScorer's corpus formula (epsilons included); METEOR keeps the jar's 23
statistics per segment and redoes the jar's aggregate (`medbench.metrics.java_meteor`); ROUGE-L and
CIDEr-D keep per-report scores. CIDEr-D's document frequencies come from the references of the
whole evaluated set, fixed at `stats()` time: a resample reuses them (it does not recompute IDF
over the resampled set). Texts are accumulated and scored once at `stats()`; the METEOR JVM is
started at the first `update` so it loads while generation goes on. Empty outputs are scored
(zero contribution) and counted. One-shot use::

    from medbench.metrics.text_coco import coco_scores
    coco_scores(refs, hyps)   # {"bleu1": .., "bleu4": .., "meteor": .., "rougeL": .., "cider": ..}
"""
from __future__ import annotations

import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.metrics.java_meteor import (MeteorJVM, take, segment_score, java_missing_reason, meteor_from_stats, meteor_from_weighted,
                                          parse_stats)
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap
from medbench.stats.weighted import wsum

FAMILY = "nlg.coco"
SCORES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rougeL", "cider")
N_GRAMS = 4
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines() separators; Java splits on some


# ----------------------------------------------------------------------------- PTB tokenizer

def ptb_tokenize(texts: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer on a list of texts, in one JVM call.

    Same jar, flags and punctuation filter as `PTBTokenizer.tokenize`; differences: the temporary
    file goes to the system temp dir (not into site-packages), every line-break character is
    replaced by a space (pycocoevalcap replaces only "\\n", and a "\\r" or U+2028 shifts every later
    caption onto the wrong image), and the output line count is checked.
    """
    from pycocoevalcap.tokenizer import ptbtokenizer as reference

    if not texts:
        return []
    jar = Path(reference.__file__).resolve().parent / reference.STANFORD_CORENLP_3_4_1_JAR
    clean = [t.translate({ord(c): " " for c in LINE_BREAKS}) for t in texts]
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write("\n".join(clean).encode())
    try:
        cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", f.name]
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.remove(f.name)
    if run.returncode != 0:
        raise RuntimeError(f"PTB tokenizer failed ({' '.join(cmd)}): {run.stderr.decode(errors='replace')[-2000:]}")
    lines = run.stdout.decode().split("\n")
    if len(lines) < len(texts):
        if any(t.strip() for t in clean[len(lines):]):
            raise RuntimeError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} texts")
        lines += [""] * (len(texts) - len(lines))
    return [" ".join(w for w in line.rstrip().split(" ") if w not in reference.PUNCTUATIONS) for line in lines[:len(texts)]]


# ----------------------------------------------------------------------------- BLEU

def bleu_row(hypothesis: str, reference: str) -> np.ndarray:
    """[testlen, reflen('closest'), guess_1..4, correct_1..4] via pycocoevalcap's own cook functions."""
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    comps = cook_test(hypothesis, cook_refs([reference], n=N_GRAMS), n=N_GRAMS)
    reflen = min((abs(l - comps["testlen"]), l) for l in comps["reflen"])[1]
    return np.array([comps["testlen"], reflen, *comps["guess"], *comps["correct"]], dtype=np.int64)


def bleu_from_rows(rows: np.ndarray) -> list[float]:
    """BleuScorer.compute_score's corpus BLEU-1..4 from summed per-sample counts."""
    small, tiny = 1e-9, 1e-15
    total = [int(v) for v in np.asarray(rows, dtype=np.int64).reshape(-1, 2 + 2 * N_GRAMS).sum(0)]
    testlen, reflen, guess, correct = total[0], total[1], total[2:2 + N_GRAMS], total[2 + N_GRAMS:]
    bleus, bleu = [], 1.0
    for k in range(N_GRAMS):
        bleu *= float(correct[k] + tiny) / (guess[k] + small)
        bleus.append(bleu ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        bleus = [b * math.exp(1 - 1 / ratio) for b in bleus]
    return bleus


# ----------------------------------------------------------------------------- the metric family

class CocoText(WeightedBootstrap, Metric):
    name = FAMILY
    variant = ("pycocoevalcap 1.2: PTB tokenizer; corpus BLEU-1..4 ('closest'); METEOR 1.5 jar (-l en -norm); "
               "ROUGE-L beta=1.2 mean; CIDEr-D (sigma=6, IDF from the evaluated references) mean")
    higher_is_better = {f"{FAMILY}.{s}": True for s in SCORES}

    def __init__(self, meteor: MeteorJVM | None = None, with_meteor: bool = True):
        """``meteor``: a JVM to share (not closed by `close`); by default one is started at the first update."""
        self.with_meteor = with_meteor
        self._meteor, self._owns_meteor = meteor, meteor is None
        self._refs: list[str] = []
        self._hyps: list[str] = []
        self._ids: list[str] = []
        self._stats: dict[str, np.ndarray] | None = None

    def add(self, reference: str, hypothesis: str | None, sample_id: str) -> None:
        if self.with_meteor and self._meteor is None:
            self._meteor = take()  # non-blocking: the JVM loads while we go on (or has loaded: start_spare)
        self._refs.append(reference)
        self._hyps.append(hypothesis or "")
        self._ids.append(sample_id)
        self._stats = None

    def update(self, batch: list[Scored]) -> None:
        for scored in batch:
            if scored.sample.report is None:
                raise ValueError(f"sample {scored.sample.id!r} has no reference report; text metrics need one")
            self.add(scored.sample.report, scored.output.report, scored.sample.id)

    def stats(self) -> dict[str, np.ndarray]:
        if self._stats is None:
            self._stats = self._score_all()
        return {k: v.copy() for k, v in self._stats.items()}

    def _score_all(self) -> dict[str, np.ndarray]:
        from pycocoevalcap.cider.cider_scorer import CiderScorer
        from pycocoevalcap.rouge.rouge import Rouge

        n = len(self._refs)
        tokens = ptb_tokenize(self._refs + self._hyps)
        refs, hyps = tokens[:n], tokens[n:]
        out = {
            "bleu": np.stack([bleu_row(h, r) for h, r in zip(hyps, refs)]) if n else np.zeros((0, 2 + 2 * N_GRAMS), np.int64),
            "rougeL": np.array([Rouge().calc_score([h], [r]) for h, r in zip(hyps, refs)], dtype=np.float64),
        }
        cider = CiderScorer(n=N_GRAMS, sigma=6.0)
        for h, r in zip(hyps, refs):
            cider += (h, [r])
        out["cider"] = np.asarray(cider.compute_score()[1], dtype=np.float64) if n and any(refs) else np.zeros(n)
        if self.with_meteor:
            longest = max((len(t) for t in hyps + refs), default=0)
            if longest > self._meteor.max_chars:  # a heap sized for these inputs (reports past the 20,000 cap)
                if not self._owns_meteor:
                    raise MetricUnavailable(f"{FAMILY}: a report of {longest} characters is longer than the shared METEOR "
                                            f"JVM accepts ({self._meteor.max_chars})")
                self._meteor.close()
                self._meteor = MeteorJVM(max_chars=longest)
            lines = []
            for h, r, sid in zip(hyps, refs, self._ids):
                try:
                    lines.append(self._meteor.stats_line(h, [r]))
                except TimeoutError as e:
                    raise MetricUnavailable(f"{FAMILY}: sample {sid!r}: {e}; its report (or the reference) is "
                                            f"pathological for METEOR's alignment search") from e
            out["meteor"] = np.stack([parse_stats(l) for l in lines]) if n else np.zeros((0, 23))
        return out

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        if len(stats["rougeL"]) == 0:
            return {f"{FAMILY}.{s}": float("nan") for s in SCORES if s != "meteor" or "meteor" in stats}
        values = dict(zip(("bleu1", "bleu2", "bleu3", "bleu4"), bleu_from_rows(stats["bleu"])))
        if "meteor" in stats:
            values["meteor"] = meteor_from_stats(stats["meteor"])
        values["rougeL"] = float(np.mean(np.asarray(stats["rougeL"])))
        values["cider"] = float(np.mean(np.asarray(stats["cider"])))
        return {f"{FAMILY}.{s}": float(values[s]) for s in SCORES if s in values}

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of a (B, n) row-weight matrix (the bootstrap fast path): corpus
        counts are weighted sums, then scored per resample."""
        if len(stats["rougeL"]) == 0:
            return {k: np.full(len(w), np.nan) for k in self.compute(stats)}
        bleu_totals = np.rint(wsum(w, stats["bleu"])).astype(np.int64)  # integer counts, exact
        values = {f"bleu{k + 1}": np.array([bleu_from_rows(t)[k] for t in bleu_totals]) for k in range(N_GRAMS)}
        if "meteor" in stats:
            values["meteor"] = meteor_from_weighted(stats["meteor"], w)
        n = w.sum(1)
        values["rougeL"] = wsum(w, stats["rougeL"]) / n
        values["cider"] = wsum(w, stats["cider"]) / n
        return {f"{FAMILY}.{s}": values[s] for s in SCORES if s in values}

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Sentence-level scores: BLEU-1..4 of each report alone (BleuScorer's per-sentence list),
        the jar's METEOR segment score, ROUGE-L and CIDEr-D per report."""
        out = {f"{FAMILY}.bleu{k + 1}_sentence": [bleu_from_rows(row)[k] for row in stats["bleu"]] for k in range(4)}
        if "meteor" in stats:
            out[f"{FAMILY}.meteor_segment"] = [segment_score(row) for row in stats["meteor"]]
        out[f"{FAMILY}.rougeL_sentence"] = [float(v) for v in stats["rougeL"]]
        out[f"{FAMILY}.cider_sentence"] = [float(v) for v in stats["cider"]]
        return out

    def per_sample_direction(self, key: str) -> bool | None:
        return True if key.startswith(FAMILY + ".") else None

    def extras(self) -> dict[str, Any]:
        empty = [i for i, h in zip(self._ids, self._hyps) if not h.strip()]
        return {"protocol": "coco", "n_scored": len(self._ids), "empty_outputs": len(empty),
                "empty_output_ids": empty, "spice": spice_missing_reason() or "available as nlg.coco.spice"}

    def close(self) -> None:
        if self._owns_meteor and self._meteor is not None:
            self._meteor.close()
            self._meteor = None


def coco_scores(refs: list[str], hyps: list[str], with_meteor: bool = True) -> dict[str, float]:
    """One-shot pycocoevalcap corpus scores for paired reference/generated reports.

    Returns {"bleu1".."bleu4", "meteor", "rougeL", "cider"} ("meteor" omitted with with_meteor=False,
    which avoids the ~20 s JVM start).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"coco_scores: {len(refs)} references but {len(hyps)} hypotheses")
    metric = CocoText(with_meteor=with_meteor)
    try:
        for i, (r, h) in enumerate(zip(refs, hyps)):
            metric.add(r, h, str(i))
        values = metric.compute(metric.stats())
    finally:
        metric.close()
    return {k.removeprefix(FAMILY + "."): v for k, v in values.items()}


# ----------------------------------------------------------------------------- SPICE

def spice_dir() -> Path:
    import pycocoevalcap.spice.spice as reference

    return Path(reference.__file__).resolve().parent


def spice_missing_reason() -> str | None:
    lib = spice_dir() / "lib"
    jars = [lib / "stanford-corenlp-3.6.0.jar", lib / "stanford-corenlp-3.6.0-models.jar"]
    if all(j.is_file() for j in jars):
        return java_missing_reason()
    return ("SPICE needs Stanford CoreNLP 3.6.0 models (downloaded on first use by pycocoevalcap); place "
            f"stanford-corenlp-3.6.0 jars in {lib} to enable (stanford-corenlp-3.6.0.jar and "
            "stanford-corenlp-3.6.0-models.jar from stanford-corenlp-full-2015-12-09.zip)")


class CocoSpice(Metric):
    """SPICE via pycocoevalcap's Spice on PTB-tokenized texts; mean of per-report 'All' F (as pycocoevalcap)."""

    name = f"{FAMILY}.spice"
    variant = "pycocoevalcap 1.2 SPICE-1.0 (CoreNLP 3.6.0), mean per report"
    higher_is_better = {f"{FAMILY}.spice": True}

    def __init__(self):
        self._refs: list[str] = []
        self._hyps: list[str] = []

    def update(self, batch: list[Scored]) -> None:
        for scored in batch:
            if scored.sample.report is None:
                raise ValueError(f"sample {scored.sample.id!r} has no reference report; text metrics need one")
            self._refs.append(scored.sample.report)
            self._hyps.append(scored.output.report or "")

    def stats(self) -> dict[str, np.ndarray]:
        from pycocoevalcap.spice.spice import Spice

        n = len(self._refs)
        tokens = ptb_tokenize(self._refs + self._hyps)
        keys = [f"{i:09d}" for i in range(n)]  # Spice sorts ids: zero-padding keeps update order
        _, scores = Spice().compute_score({k: [tokens[i]] for i, k in enumerate(keys)},
                                          {k: [tokens[n + i]] for i, k in enumerate(keys)})
        return {"spice": np.array([s["All"]["f"] for s in scores], dtype=np.float64)}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        return {f"{FAMILY}.spice": float(np.mean(stats["spice"]))}


def make_coco(ctx: MetricContext) -> CocoText:
    reason = java_missing_reason()
    if reason:
        raise MetricUnavailable(reason)
    return CocoText()


def make_spice(ctx: MetricContext) -> CocoSpice:
    reason = spice_missing_reason()
    if reason:
        raise MetricUnavailable(reason)
    return CocoSpice()


@hookimpl
def medbench_metrics():
    kinds = ("image->report", "prompt->pair")
    return [
        MetricSpec(name=FAMILY, factory=make_coco, requires=("report",), kinds=kinds, protocol="coco",
                   produces=tuple(f"{FAMILY}.{s}" for s in SCORES),
                   description="pycocoevalcap corpus BLEU-1..4, METEOR 1.5 (Java), ROUGE-L, CIDEr-D on "
                               "PTB-tokenized reports; empty outputs scored as zero and counted"),
        MetricSpec(name=f"{FAMILY}.spice", factory=make_spice, requires=("report",), kinds=kinds, protocol="coco",
                   produces=(f"{FAMILY}.spice",),
                   description="pycocoevalcap SPICE; unavailable unless the Stanford CoreNLP 3.6.0 jars are present"),
    ]
