"""Registers the report-metric families and their weights manifests (entry point ``report-models``).

Factories are cheap and need no weights (compare and leaderboards rebuild families only to recompute stored
statistics); the weights are checked at the first scored batch, where a missing file raises MetricUnavailable
naming it (the run lists it in skipped[]). Heavy imports stay inside the family modules.
"""
from __future__ import annotations

from medbench import hookimpl
from medbench.registry import MetricSpec

TEXT = dict(requires=("report",), kinds=("image->report", "prompt->pair"))


def _lazy(module: str, factory: str):
    def build(ctx):
        import importlib

        return getattr(importlib.import_module(f"medbench.metrics.report_models.{module}"), factory)(ctx)

    build.__name__ = factory
    return build


@hookimpl
def medbench_metrics():
    return [
        MetricSpec("clinical.chexbert", _lazy("chexbert", "chexbert_factory"), **TEXT,
                   description="F1-CheXbert (radeval's CheXbert labeler, local weights): 5/14 labels, "
                               "micro/macro/weighted/example F1; named apart from the rule-based clinical.ce_f1"),
        MetricSpec("nlg.bertscore", _lazy("bertscore", "bertscore_factory"), **TEXT,
                   description="BERTScore, distilbert-base-uncased layer 5 (RadEval's), raw and baseline-rescaled"),
        MetricSpec("nlg.radgraph", _lazy("radgraph", "radgraph_factory"), **TEXT,
                   description="F1-RadGraph with RadGraph-XL (radeval's vendored radgraph): simple, partial, complete rewards"),
        MetricSpec("nlg.radcliq_v1", _lazy("radcliq", "radcliq_factory"), **TEXT,
                   description="RadCliQ-v1 composite (lower is better); nlg.radcliq_v1_inv = 1/RadCliQ-v1 as RadEval reports it"),
        MetricSpec("nlg.ratescore", _lazy("ratescore", "ratescore_factory"), **TEXT,
                   description="RaTEScore (radeval's RaTEScore: DeBERTa NER + BioLORD embeddings, local weights)"),
        MetricSpec("nlg.green", _lazy("green", "green_factory"), **TEXT,
                   description="GREEN (7B judge LLM, local weights): CUDA only, skipped on the CPU"),
    ]


@hookimpl
def medbench_weights():
    from medbench.metrics.report_models.weights_specs import ALL

    return list(ALL)
