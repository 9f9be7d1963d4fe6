"""A small multi-label image classifier trained from scratch (the CheXGenBench-style utility probe).

Three conv blocks (conv-BN-ReLU-maxpool) and a linear head over the flattened map, binary
cross-entropy per label, AdamW with a cosine schedule. A fixed number of optimiser steps of a fixed
batch size (the arm's budget); batches are drawn epoch by epoch from a seeded permutation::

    clf = ImageClassifier(ClassifierConfig())
    probs = clf.fit_predict(train_set, test_images, seed=0, steps=300, batch_size=32)  # (N, L)
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from medbench.downstream.contract import TrainSet


@dataclass
class ClassifierConfig:
    width: int = 8  # channels of the first block (doubled per block)
    lr: float = 3e-3
    weight_decay: float = 1e-4

    @classmethod
    def from_options(cls, options: dict | None) -> "ClassifierConfig":
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(options or {}) - set(known))
        if unknown:
            raise ValueError(f"unknown classifier option(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: (int if k == "width" else float)(v) for k, v in (options or {}).items()})


class ConvNet(nn.Module):
    def __init__(self, channels: int, size: int, n_labels: int, width: int):
        super().__init__()
        layers, c = [], channels
        for i in range(3):
            layers += [nn.Conv2d(c, width << i, 3, padding=1), nn.BatchNorm2d(width << i), nn.ReLU(), nn.MaxPool2d(2)]
            c = width << i
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * (size // 8) ** 2, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, C, H, W) -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def batch_indices(n: int, steps: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """`steps` batches of `batch_size` row indices, walking seeded permutations epoch by epoch."""
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(-(-steps * batch_size // n))])
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def cosine_lr(step: int, steps: int, lr: float, warmup: int = 10) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + np.cos(np.pi * (step - warmup) / max(1, steps - warmup)))


class ImageClassifier:
    name = "classifier"
    kind = "labels"

    def __init__(self, config: ClassifierConfig | None = None):
        self.config = config or ClassifierConfig()

    def fit_predict(self, train: TrainSet, test_images: torch.Tensor, *, seed: int, steps: int,
                    batch_size: int) -> np.ndarray:
        if len(train) == 0:
            raise ValueError("classifier: empty training set")
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        _, channels, size, _ = train.images.shape
        net = ConvNet(channels, size, len(train.label_names), self.config.width)
        opt = torch.optim.AdamW(net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        x_all, y_all = to_float(train.images), torch.as_tensor(train.labels, dtype=torch.float32)
        net.train()
        for step, idx in enumerate(batch_indices(len(train), steps, batch_size, gen)):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, steps, self.config.lr)
            loss = F.binary_cross_entropy_with_logits(net(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            x_test = to_float(test_images)
            probs = torch.cat([torch.sigmoid(net(x_test[i:i + 256])) for i in range(0, len(x_test), 256)])
        return probs.numpy().astype(np.float64)


def make_classifier(options: dict | None = None) -> ImageClassifier:
    return ImageClassifier(ClassifierConfig.from_options(options))
