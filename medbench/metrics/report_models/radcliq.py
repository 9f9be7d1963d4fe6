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
