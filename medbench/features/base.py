"""The feature-extractor contract: images in, float64 feature rows out, batch-size independent.

An extractor turns one PIL image into one input tensor (`preprocess`, pure and per image), and a
fixed-size batch of such tensors into named outputs (`forward_batch`). `embed` runs the network in
internal batches of exactly `batch_size` rows (the last one padded), grouped by input shape, so a
row never depends on which other images it was computed with::

    ex = registry().get("extractors", "phantom-encoder").factory(None)
    feats = ex.features([im1, im2])               # (2, ex.dim) float64
    outs = ex.embed([im1, im2])                   # {"features": ..., "logits:cxr": ...}

`preprocessing` describes the exact input pipeline (size, resize filter, channel handling, value
range, dtype) and is recorded in run.json; with `name` and `weights_sha256` it keys the cache.
"""
from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image


class FeatureExtractor(ABC):
    name: str = ""
    weights_sha256: str | None = None  # None if weight-free
    preprocessing: dict[str, Any] = {}
    dim: int = 0  # columns of the "features" output
    batch_size: int = 16  # fixed internal batch (results never depend on the caller's batching)
    label_names: dict[str, list[str]] = {}  # domain -> label names, for extractors with label heads

    def outputs(self) -> dict[str, int]:
        """Named outputs and their widths; "features" is the one the fidelity metrics use."""
        return {"features": self.dim}

    @abstractmethod
    def preprocess(self, image: Image.Image) -> "torch.Tensor":  # noqa: F821
        """One PIL image -> one input tensor (C, H, W), as declared in `preprocessing`."""

    @abstractmethod
    def forward_batch(self, batch: "torch.Tensor") -> dict[str, "torch.Tensor"]:  # noqa: F821
        """A batch of exactly `batch_size` preprocessed inputs -> {output name: (B, width)}."""

    # ---- derived: the caller-facing API -------------------------------------------------------

    def embed(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        """Every named output for `images`, float64, computed in fixed-size padded batches."""
        import torch

        widths = self.outputs()
        out = {k: np.zeros((len(images), w), dtype=np.float64) for k, w in widths.items()}
        for start in range(0, len(images), self.batch_size):
            chunk = [self.preprocess(im) for im in images[start : start + self.batch_size]]
            by_shape: dict[tuple, list[int]] = {}
            for i, t in enumerate(chunk):
                by_shape.setdefault(tuple(t.shape), []).append(i)
            for idx in by_shape.values():
                rows = [chunk[i] for i in idx]
                rows += [torch.zeros_like(rows[0])] * (self.batch_size - len(rows))  # pad: fixed batch shape
                with torch.no_grad():
                    res = self.forward_batch(torch.stack(rows))
                for k in widths:
                    vals = res[k][: len(idx)].detach().to("cpu", torch.float64).numpy()
                    out[k][[start + i for i in idx]] = vals
        return out

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, dim) float64 features."""
        return self.embed(images)["features"]

    def key(self) -> str:
        """Cache folder name: readable name + hash of (name, weights, preprocessing, outputs)."""
        ident = json.dumps([self.name, self.weights_sha256, self.preprocessing, self.outputs()], sort_keys=True)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)[-48:].strip("_")
        return f"{slug}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"

    def card(self) -> dict[str, Any]:
        """What run.json records about the extractor."""
        return {"name": self.name, "weights_sha256": self.weights_sha256, "preprocessing": self.preprocessing,
                "dim": self.dim, "key": self.key()}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; grayscale is replicated to three channels, 16-bit is rescaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if image.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        image = Image.fromarray(np.clip(np.rint(arr / hi * 255.0), 0, 255).astype(np.uint8), "L")
    if image.mode == "RGBA":
        bg = Image.new("RGB", image.size, (0, 0, 0))
        bg.paste(image, mask=image.split()[3])
        return bg
    return image.convert("RGB")


def iter_batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
