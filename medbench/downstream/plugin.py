"""Registers the ``downstream`` metric family and the built-in downstream models.

Downstream models (``medbench list downstream_models``):

    classifier   small CNN, multi-label, report-derived labels       -> AUROC (macro), F1 (macro)
    captioner    CNN + small transformer, word-level, greedy decoding -> BLEU-1..4, METEOR, CE-F1

A third-party package adds e.g. an R2Gen wrapper the same way (see `medbench.downstream` for the
factory contract) and names it in its task's ``options.downstream.models``.
"""
from __future__ import annotations

from medbench import hookimpl
from medbench.metrics.base import MetricContext, MetricUnavailable
from medbench.registry import DownstreamSpec, MetricSpec, registry


def _classifier(options: dict | None = None):
    from medbench.downstream.classifier import make_classifier

    return make_classifier(options)


def _captioner(options: dict | None = None):
    from medbench.downstream.captioner import make_captioner

    return make_captioner(options)


@hookimpl
def medbench_downstream_models():
    return [
        DownstreamSpec("classifier", _classifier,
                       "small CNN multi-label image classifier trained from scratch (report-derived labels)"),
        DownstreamSpec("captioner", _captioner,
                       "image->report generator trained from scratch: CNN encoder + 2-layer transformer, "
                       "word vocabulary from the training reports, greedy decoding"),
    ]


def make_downstream(ctx: MetricContext):
    """Cheap: reads the settings and resolves the downstream models; nothing trains before `stats()`."""
    from medbench.downstream.arms import Settings
    from medbench.downstream.metric import DownstreamAugmentation

    task_options = getattr(ctx.task, "options", {}) or {}
    quick = ctx.options.get("quick") is True
    settings = Settings.from_options(task_options, quick=quick, source=getattr(ctx.task, "source", "task"))
    models = {}
    for name in settings.models:
        try:
            spec = registry().get("downstream_models", name)
        except KeyError as e:
            raise MetricUnavailable(f"downstream: {e.args[0]}") from None
        models[name] = spec.factory(settings.model_options.get(name))  # cheap: nothing trains here
        if getattr(models[name], "kind", None) not in ("labels", "report"):
            raise ValueError(f"downstream model {name!r}: kind must be 'labels' or 'report', got {getattr(models[name], 'kind', None)!r}")
    if settings.meteor:
        from medbench.metrics.java_meteor import java_missing_reason

        if any(m.kind == "report" for m in models.values()) and (reason := java_missing_reason()):
            raise MetricUnavailable(f"downstream captioner METEOR: {reason} (or set options.downstream.meteor: false)")
    return DownstreamAugmentation(ctx, settings, models)


@hookimpl
def medbench_metrics():
    from medbench.options import Option

    return [MetricSpec("downstream", make_downstream, requires=("image", "report"), kinds=("prompt->pair",),
                       options=(Option("quick", bool, False, "the task's reduced setting (set by medbench run --quick)"),),
                       produces=("downstream.*",),
                       description="downstream utility: train a classifier and a captioner on real, real+generated, "
                                   "generated-only and mixed sets (same budget, several seeds), score on real test "
                                   "pairs; gains over real-only with paired tests")]
