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

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@dataclass
class TrainSet:
    """One arm's training data. images: uint8 (n, C, H, W); labels: 0/1 (n, L), report-derived."""

    images: torch.Tensor
    reports: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]
    synthetic: np.ndarray  # bool (n,): which rows came from the model under test

    def __len__(self) -> int:
        return len(self.reports)


@runtime_checkable
class DownstreamModel(Protocol):
    name: str
    kind: str  # "report" or "labels"

    def fit_predict(self, train: TrainSet, test_images: torch.Tensor, *, seed: int, steps: int,
                    batch_size: int): ...
