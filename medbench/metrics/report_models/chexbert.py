"""F1-CheXbert: the CheXbert labeler on reference and generated reports, F1 over CheXpert labels.

The labeler is radeval's own (`BaseBertLabeler` + `F1CheXbert.get_labels`, the code of the
`f1chexbert` package patched for transformers 5), built from local files instead of the hub:
BERT-base config and tokenizer from ``<weights>/chexbert/bert-base-uncased/`` and the heads +
backbone from ``chexbert.pth`` (torch.load(weights_only=True), strict keys). Labels use radeval's
``rrg`` mode: positive and uncertain -> 1; negative and blank -> 0.

Names (all higher-is-better)::

    clinical.chexbert.f1_micro5   clinical.chexbert.f1_macro5   clinical.chexbert.f1_weighted5   clinical.chexbert.f1_example5
    clinical.chexbert.f1_micro14  clinical.chexbert.f1_macro14  clinical.chexbert.f1_weighted14  clinical.chexbert.f1_example14

``5`` = Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion; ``14`` = the 13
conditions + No Finding. micro/macro/weighted are scikit-learn's classification_report averages
(what RadEval reports as f1chexbert_{5,all}_{micro,macro,weighted}_f1); example is its
"samples avg". zero_division = 0 everywhere, and macro includes every label (as sklearn does).
Stats are per-sample, per-label TP/FP/FN/TN rows, so bootstrap CIs resample exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medbench.metrics.base import Metric, MetricUnavailable, Scored
from medbench.metrics.report_models._radeval import LocalWeights, device_of, radeval_import
from medbench.metrics.report_models.weights_specs import CHEXBERT

CELLS = ("tp", "fp", "fn", "tn")
# radeval's F1CheXbert.TARGET_NAMES and TOP5 (a test checks they still agree)
LABELS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
          "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
          "Support Devices", "No Finding")
TOP5 = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
SUBSETS = {"5": [LABELS.index(n) for n in TOP5], "14": list(range(len(LABELS)))}
AVERAGES = ("micro", "macro", "weighted", "example")


def load_labeler(folder, device: str = "cpu", batch_size: int = 64):
    """radeval's F1CheXbert evaluator with its model and tokenizer from a local chexbert folder."""
    import torch
    from torch import nn
    from transformers import BertConfig, BertModel, BertTokenizer

    base = radeval_import("radeval.metrics._chexbert_base")
    f1c = radeval_import("radeval.metrics.f1chexbert.f1chexbert")
    bert_dir = folder / "bert-base-uncased"
    try:
        raw = torch.load(folder / "chexbert.pth", map_location="cpu", weights_only=True)["model_state_dict"]
    except (KeyError, TypeError) as e:
        raise MetricUnavailable(f"{folder / 'chexbert.pth'}: not a CheXbert checkpoint (no model_state_dict: {e})") from None
    state = {k.replace("module.", ""): v for k, v in raw.items()}
    config = BertConfig.from_pretrained(str(bert_dir), local_files_only=True)
    try:  # load_state_dict(strict=True) inside: missing or unexpected keys raise
        model = base.BaseBertLabeler(device=device, backbone=BertModel(config), num_4way_heads=13, state_dict=state).eval()
    except RuntimeError as e:
        raise MetricUnavailable(f"{folder / 'chexbert.pth'}: does not match the CheXbert architecture "
                                f"({str(e).splitlines()[0]}); refusing a half-loaded model") from None
    evaluator = f1c.F1CheXbert.__new__(f1c.F1CheXbert)
    nn.Module.__init__(evaluator)
    tokenizer = BertTokenizer.from_pretrained(str(bert_dir), local_files_only=True)
    evaluator._init_evaluator(model=model, tokenizer=tokenizer, device=device, batch_size=batch_size)
    return evaluator


def _ratio(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def f1_averages(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, float]:
    """sklearn classification_report F1 averages from (n, L) per-sample, per-label indicator rows."""
    T, P, N = tp.sum(0), fp.sum(0), fn.sum(0)
    per_label = _ratio(2 * T, 2 * T + P + N)
    support = T + N
    per_sample = _ratio(2 * tp.sum(1), 2 * tp.sum(1) + fp.sum(1) + fn.sum(1))
    return {"micro": float(_ratio(2 * T.sum(), 2 * T.sum() + P.sum() + N.sum())),
            "macro": float(per_label.mean()) if len(per_label) else 0.0,
            "weighted": float((per_label * support).sum() / support.sum()) if support.sum() > 0 else 0.0,
            "example": float(per_sample.mean()) if len(per_sample) else 0.0}


class CheXbertF1(LocalWeights, Metric):
    name = "clinical.chexbert"
    shard_rows = True  # medbench.row_shards: each rank scores its batches under torchrun

    weight_specs = (CHEXBERT,)

    def __init__(self, weights_root=None, device: str = "cpu", batch_size: int = 64):
        self.weights_root, self.device, self.batch_size = weights_root, device, batch_size
        self._evaluator = None
        self._rows: dict[str, list[np.ndarray]] = {c: [] for c in CELLS}
        self.higher_is_better = {n: True for n in self.metric_names()}
        self.variant = ("CheXbert (radeval 2.2.1 F1CheXbert, local weights), rrg mode (positive+uncertain -> 1); "
                        "sklearn averages, zero_division=0; 5 = CheXpert competition labels, 14 = 13 conditions + No Finding")

    @staticmethod
    def metric_names() -> list[str]:
        return [f"clinical.chexbert.f1_{avg}{k}" for k in ("5", "14") for avg in AVERAGES]

    @property
    def evaluator(self):
        if self._evaluator is None:
            self._evaluator = load_labeler(self.located(CHEXBERT).folder, self.device, self.batch_size)
        return self._evaluator

    def label(self, reports: list[str]) -> np.ndarray:
        """(n, 14) 0/1 labels in radeval's TARGET_NAMES order."""
        return np.asarray(self.evaluator.get_labels(reports, mode="rrg"), dtype=np.int64).reshape(len(reports), 14)

    def update(self, batch: list[Scored]) -> None:
        for item in batch:
            if item.sample.report is None:
                raise ValueError(f"{self.name}: sample {item.sample.id!r} has no reference report to label")
        ref = self.label([item.sample.report for item in batch])
        hyp = self.label([item.output.report or "" for item in batch])  # an empty output is labeled, not skipped
        for c, v in (("tp", ref & hyp), ("fp", (1 - ref) & hyp), ("fn", ref & (1 - hyp)), ("tn", (1 - ref) & (1 - hyp))):
            self._rows[c].append(v)

    def stats(self) -> dict[str, np.ndarray]:
        return {c: np.concatenate(v) if v else np.zeros((0, 14), np.int64) for c, v in self._rows.items()}

    def restore(self, stats):
        self._rows = {c: [np.asarray(stats[c], np.int64)] for c in CELLS}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        out = {}
        for k, idx in SUBSETS.items():
            avg = f1_averages(stats["tp"][:, idx], stats["fp"][:, idx], stats["fn"][:, idx])
            out.update({f"clinical.chexbert.f1_{a}{k}": avg[a] for a in AVERAGES})
        return out

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Per-sample example-based F1 over the 5 and the 14 labels."""
        out = {}
        for k, idx in SUBSETS.items():
            tp, fp, fn = (stats[c][:, idx].sum(1) for c in ("tp", "fp", "fn"))
            out[f"clinical.chexbert.f1_example{k}"] = _ratio(2 * tp, 2 * tp + fp + fn).tolist()
        return out

    def extras(self) -> dict[str, Any]:
        st = self.stats()
        T, P, N = (st[c].sum(0) for c in ("tp", "fp", "fn"))
        return {"labeler": "CheXbert (rrg mode)", "weights": self.weights_sha256,
                "per_label": [{"label": n, "support": int(T[i] + N[i]), "predicted": int(T[i] + P[i]),
                               "f1": float(_ratio(2 * T[i], 2 * T[i] + P[i] + N[i]))} for i, n in enumerate(LABELS)]}


def chexbert_factory(ctx) -> CheXbertF1:
    """Cheap: the weights are checked (and the model loaded) at the first scored batch."""
    return CheXbertF1(ctx.options.get("weights_root"), device_of(ctx))
