"""RadCliQ-v1: the fixed linear composite of Yu et al. 2023 (rajpurkarlab/CXR-Report-Metric).

Per report: standardise (RadGraph entity+relation F1, BERTScore distilroberta-base L5 rescaled with
IDF from the references, SembScore = CheXbert CLS cosine, BLEU-2) with the published scaler, then
the published linear weights. The score estimates the number of radiologist-reported errors:
**lower is better**. RadEval reports 1/mean(RadCliQ-v1) (higher is better); medbench gives that
only under its own name::

    nlg.radcliq_v1        mean per-report RadCliQ-v1 (lower is better; ReXrank's "RadCliQ-v1")
    nlg.radcliq_v1_inv    1 / nlg.radcliq_v1 (RadEval's "radcliq_v1"; higher is better)

`composite` is the function; the constants are radeval 2.2.1's (radeval/metrics/RadCliQv1/radcliq.py,
inferred from CXR-Report-Metric's radcliq-v1.pkl), and a test checks them against radeval's
CompositeMetric.predict on the same component scores.
"""
from __future__ import annotations

import numpy as np

from medbench.metrics.base import Metric, MetricUnavailable, Scored
from medbench.metrics.report_models._radeval import LocalWeights, device_of, radeval_import

COLUMNS = ("radgraph", "bertscore", "semb_score", "bleu_score")
MEAN = np.array([0.53792312, 0.61757256, 0.76479421, 0.44738335])
SCALE = np.array([0.30282584, 0.22430938, 0.25394391, 0.29892717])
COEFS = np.array([-3.77083683e-01, -3.70300100e-01, -2.52616218e-01, 4.31504841e-12])
INTERCEPT = 2.46655256e-10


def composite(components: dict[str, np.ndarray]) -> np.ndarray:
    """Per-report RadCliQ-v1 from per-report component scores (keys COLUMNS)."""
    x = np.column_stack([np.asarray(components[c], dtype=np.float64) for c in COLUMNS])
    return ((x - MEAN) / SCALE) @ COEFS + INTERCEPT


def summary(per_report: np.ndarray) -> dict[str, float]:
    mean = float(np.mean(per_report)) if len(per_report) else float("nan")
    return {"nlg.radcliq_v1": mean, "nlg.radcliq_v1_inv": 1.0 / mean if mean else float("nan")}


class RadCliQv1(LocalWeights, Metric):
    """The RadCliQ-v1 family: per-report components through the packages (radeval's Bleu(n=2),
    BERTScorer distilroberta-base L5 rescaled with IDF over the evaluated references, CheXbert CLS
    embeddings, RadGraph (original model) entity/relation sets and radeval's compute_f1), then
    `composite`. The IDF table is context (the run's reference reports), not resampled."""

    name = "nlg.radcliq_v1"
    shard_rows = True  # medbench.row_shards: each rank scores its batches under torchrun
    higher_is_better = {"nlg.radcliq_v1": False, "nlg.radcliq_v1_inv": True}
    variant = ("RadCliQ-v1 (CXR-Report-Metric linear model as in radeval 2.2.1): RadGraph (radgraph) entity+relation F1, "
               "BERTScore distilroberta-base L5 rescaled with IDF over the evaluated references, SembScore (CheXbert), "
               "BLEU-2 (radeval Bleu); per-report scores averaged; lower is better")

    def __init__(self, weights_root, idf_refs: list[str], device: str = "cpu"):
        from medbench.metrics.report_models.weights_specs import BERTSCORE_DISTILROBERTA, CHEXBERT, RADGRAPH

        self.weight_specs = (CHEXBERT, BERTSCORE_DISTILROBERTA, RADGRAPH)
        self.weights_root, self.idf_refs, self.device = weights_root, list(idf_refs), device
        self._parts = None
        self._rows: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}

    def parts(self):
        if self._parts is None:
            from medbench.metrics.report_models import bertscore, chexbert, radgraph

            chexbert_w, roberta_w, radgraph_w = (self.located(s) for s in self.weight_specs)
            if not self.idf_refs:
                raise MetricUnavailable("nlg.radcliq_v1: no reference reports for the BERTScore IDF table")
            core = radeval_import("radeval.metrics.radgraph._vendor.core")
            self._parts = {
                "bleu": radeval_import("radeval.metrics.bleu.bleu").Bleu(n=2),
                "f1": radeval_import("radeval.metrics.RadCliQv1.radcliq"),
                "bert": bertscore.load_scorer(roberta_w.folder, "distilroberta-base", 5, device=self.device,
                                              idf_sents=self.idf_refs),
                "chexbert": chexbert.load_labeler(chexbert_w.folder, self.device),
                "radgraph": core.RadGraph(model_type="radgraph", cuda=0 if self.device.startswith("cuda") else -1,
                                          model_cache_dir=str(radgraph.prepare_archive(radgraph_w, "radgraph"))),
            }
        return self._parts

    def components(self, refs: list[str], hyps: list[str]) -> dict[str, np.ndarray]:
        from medbench.metrics.report_models.bertscore import score_pairs

        p = self.parts()
        bert = score_pairs(p["bert"], refs, hyps)["f1_rescaled"]  # one forward per batch: reproducible
        gt, pred = p["radgraph"](refs), p["radgraph"](hyps)
        f1, ent, rel = p["f1"].compute_f1, p["f1"].extract_entities, p["f1"].extract_relations
        rad = [(f1(ent(gt.get(str(i), {})), ent(pred.get(str(i), {}))) + f1(rel(gt.get(str(i), {})), rel(pred.get(str(i), {})))) / 2
               for i in range(len(refs))]
        e_ref, e_hyp = np.vstack(p["chexbert"].get_embeddings(refs)), np.vstack(p["chexbert"].get_embeddings(hyps))
        dot = np.einsum("nd,nd->n", e_ref, e_hyp)
        norms = np.linalg.norm(e_ref, axis=1) * np.linalg.norm(e_hyp, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            semb = np.where(norms > 0, dot / norms, 0.0)
        bleu = p["bleu"](refs, hyps)[1]
        return {"radgraph": np.asarray(rad, float), "bertscore": bert.astype(float), "semb_score": semb.astype(float),
                "bleu_score": np.asarray(bleu, float)}

    def update(self, batch: list[Scored]) -> None:
        refs = [item.sample.report or "" for item in batch]
        hyps = [item.output.report or "" for item in batch]
        for c, v in self.components(refs, hyps).items():
            self._rows[c].append(v)

    def stats(self) -> dict[str, np.ndarray]:
        st = {c: np.concatenate(v) if v else np.zeros(0) for c, v in self._rows.items()}
        st["radcliq_v1"] = composite(st) if len(st["radgraph"]) else np.zeros(0)
        return st

    def restore(self, stats):
        self._rows = {c: [np.asarray(stats[c], np.float64)] for c in COLUMNS}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        return summary(stats["radcliq_v1"])

    def per_sample(self, stats):
        return {"nlg.radcliq_v1": stats["radcliq_v1"].tolist(), **{f"nlg.radcliq_v1.{c}": stats[c].tolist() for c in COLUMNS}}


def radcliq_factory(ctx) -> RadCliQv1:
    """Cheap: the weights are checked (and the models loaded) at the first scored batch."""
    refs = [s.report or "" for s in (ctx.reference or [])]
    return RadCliQv1(ctx.options.get("weights_root"), idf_refs=refs, device=device_of(ctx))
