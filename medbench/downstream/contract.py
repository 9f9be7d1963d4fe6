"""The downstream-model contract: the training set an arm hands a downstream model, and the model's protocol
(see `medbench.downstream` for how they are used)."""
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
