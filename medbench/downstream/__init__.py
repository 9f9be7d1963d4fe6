"""Downstream augmentation: does training on generated pairs help a model trained on real pairs?

The task ``downstream_augmentation`` asks the model under test for K image-report pairs (prompts of a
generation pool disjoint from the test split), then the ``downstream`` metric family trains small
downstream models from scratch under several *arms* (real only, real + synthetic, synthetic only,
a mixing-ratio sweep), several seeds each, with the same optimisation budget, and scores them on
the real test split. See docs/downstream.md.

The downstream-model contract (plugins contribute these through ``medbench_downstream_models``)::

    DownstreamSpec(name="captioner", factory=make_captioner, description="...")
    model = factory(options)                 # options: the task's ``options.downstream_models[name]`` dict
    model.name, model.kind                   # kind: "report" (image -> report) or "labels" (image -> labels)
    preds = model.fit_predict(train, test_images, seed=0, steps=300, batch_size=32)
        # train: TrainSet; test_images: uint8 tensor (N, C, H, W)
        # kind "report": list[str] of N reports;  kind "labels": float array (N, L) of P(label) in
        # the column order of train.label_names

A model must train from scratch, use exactly ``steps`` optimiser steps of ``batch_size`` examples
(the budget is what makes arms comparable), and be a deterministic function of (train, seed).
"""
from __future__ import annotations


def __getattr__(name: str):
    """`TrainSet` and `DownstreamModel` live in `medbench.downstream.contract` (it imports torch; the plugin
    module, imported by every `medbench` command, must not)."""
    if name in ("TrainSet", "DownstreamModel"):
        from medbench.downstream import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'medbench.downstream' has no attribute {name!r}")
