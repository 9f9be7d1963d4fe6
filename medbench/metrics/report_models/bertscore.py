"""BERTScore through radeval's vendored bert-score 0.3.13 (patched for transformers 5), local model folder.

``nlg.bertscore`` is RadEval's ``bertscore``: distilbert-base-uncased, layer 5, no IDF, greedy-match
F1 per report, averaged; RadEval reports the baseline-rescaled F1. Both are given, named apart::

    nlg.bertscore.f1@distilbert-base-uncased-L5            raw F1 (mean over reports)
    nlg.bertscore.f1_rescaled@distilbert-base-uncased-L5   (F1 - b) / (1 - b), bert-score's en baseline, layer 5
    nlg.bertscore.precision@… / nlg.bertscore.recall@…      raw P and R

Rescaling is per report and affine, so means of per-report values are exact for the bootstrap.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medbench.metrics.base import Metric, MetricUnavailable, Scored
from medbench.metrics.report_models._radeval import LocalWeights, device_of, quiet_transformers, radeval_import, strict_from_pretrained
from medbench.metrics.report_models.weights_specs import BERTSCORE_DISTILBERT

# Pretraining heads in the published MLM checkpoints (not used by BERTScore), and the pooler they lack.
HEADS = ("vocab_transform", "vocab_layer_norm", "vocab_projector", "lm_head", "cls.")
NOT_STORED = ("pooler.",)


def check_checkpoint(folder: Path) -> None:
    """Refuse a checkpoint that would leave part of the encoder randomly initialised."""
    from transformers import AutoModel

    strict_from_pretrained(AutoModel, folder, head_prefixes=HEADS, not_stored=NOT_STORED)


def load_scorer(folder: Path, baseline_name: str, num_layers: int, *, device: str = "cpu", idf_sents=None,
                batch_size: int = 64):
    """radeval's BERTScorer on a local folder (rescaling applied by the caller from its baseline)."""
    vendor = radeval_import("radeval.metrics.bertscore._vendor")
    check_checkpoint(folder)
    baseline = Path(vendor.__file__).parent / "rescale_baseline" / "en" / f"{baseline_name}.tsv"
    with quiet_transformers():  # checked above; the package's own load would print the heads it drops
        return vendor.BERTScorer(model_type=str(folder), num_layers=num_layers, batch_size=batch_size, nthreads=1,
                                 all_layers=False, idf=idf_sents is not None, idf_sents=idf_sents, device=device,
                                 lang="en", rescale_with_baseline=False, baseline_path=str(baseline),
                                 use_fast_tokenizer=False)


def score_pairs(scorer, refs: list[str], hyps: list[str]) -> dict[str, np.ndarray]:
    """Per-report raw P, R, F1 and the baseline-rescaled F1 (bert-score's formula, float32). The batch's
    distinct sentences are embedded in one forward: bert-score orders them through a set, so with
    smaller batches which sentences share a padded batch (and the float32 noise) changed with Python's
    hash seed from one process to the next."""
    p, r, f = scorer.score(cands=hyps, refs=refs, verbose=False, batch_size=max(1, len(set(refs) | set(hyps))))
    b = scorer.baseline_vals  # (P, R, F) of the layer
    f_rescaled = (f - b[2]) / (1 - b[2])
    return {"precision": p.numpy().astype(np.float64), "recall": r.numpy().astype(np.float64),
            "f1": f.numpy().astype(np.float64), "f1_rescaled": f_rescaled.numpy().astype(np.float64)}


class BERTScore(LocalWeights, Metric):
    name = "nlg.bertscore"
    shard_rows = True  # medbench.row_shards: each rank scores its batches under torchrun
    QUANTITIES = ("precision", "recall", "f1", "f1_rescaled")

    def __init__(self, spec, model_label: str, num_layers: int, weights_root=None, device: str = "cpu", batch_size: int = 64):
        self.spec, self.model_label, self.num_layers = spec, model_label, num_layers
        self.weights_root, self.device, self.batch_size = weights_root, device, batch_size
        self.tag = f"{model_label}-L{num_layers}"
        self._scorer = None
        self._rows: dict[str, list[np.ndarray]] = {q: [] for q in self.QUANTITIES}
        self.higher_is_better = {self.key(q): True for q in self.QUANTITIES}
        self.variant = (f"bert-score 0.3.13 (radeval 2.2.1 vendored), {model_label} layer {num_layers}, no idf, "
                        "per-report greedy F1 averaged; rescaled with bert-score's en baseline")

    def key(self, q: str) -> str:
        return f"nlg.bertscore.{q}@{self.tag}"

    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = load_scorer(self.located(self.spec).folder, self.model_label, self.num_layers, device=self.device,
                                       batch_size=self.batch_size)
        return self._scorer

    def update(self, batch: list[Scored]) -> None:
        refs = [item.sample.report or "" for item in batch]
        hyps = [item.output.report or "" for item in batch]
        for q, v in score_pairs(self.scorer, refs, hyps).items():
            self._rows[q].append(v)

    def stats(self) -> dict[str, np.ndarray]:
        return {q: np.concatenate(v) if v else np.zeros(0) for q, v in self._rows.items()}

    def restore(self, stats):
        self._rows = {q: [np.asarray(stats[q], np.float64)] for q in self.QUANTITIES}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        return {self.key(q): float(stats[q].mean()) if len(stats[q]) else 0.0 for q in self.QUANTITIES}

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {self.key(q): np.asarray(stats[q], float).tolist() for q in self.QUANTITIES}


def bertscore_factory(ctx) -> BERTScore:
    """Cheap: the weights are checked (and the model loaded) at the first scored batch."""
    return BERTScore(BERTSCORE_DISTILBERT, "distilbert-base-uncased", 5, ctx.options.get("weights_root"), device_of(ctx))
