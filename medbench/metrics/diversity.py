"""Image diversity (family ``image.diversity``): MS-SSIM between generated images meant to show the same thing.

RoentGen-style diversity asks whether a model draws different images for the same content. medbench
tasks generate one image per prompt, so "the same prompt" is widened to **the same label set**: the
evaluated samples are grouped by their set of positive labels (dataset labels, else the labeler's
reading of the report; value 1 counts), each sample of a group of two or more is paired with another
member of its group (a seeded derangement inside the group, in sample-id order), and the pair's
MS-SSIM is computed on the generated images and, as the bracket, on the same pair's real images::

    image.diversity.ms_ssim        mean MS-SSIM of generated pairs (lower = more diverse)
    image.diversity.ms_ssim_real   the same pairs' real images (what the data's own diversity looks like)
    image.diversity.ms_ssim_excess ms_ssim - ms_ssim_real (> 0: less diverse than real data, e.g. mode collapse)

MS-SSIM is torchmetrics' ``multiscale_structural_similarity_index_measure`` (5 scales, betas of Wang et al.
2003, Gaussian kernel 11, sigma 1.5, data_range 1, normalize='relu') on grayscale images resized to
``diversity_size`` (default 256, bicubic; MS-SSIM's 5 scales need more than 160 px) with values x/255.
Per-sample statistics ``gen`` and ``real`` (NaN for samples alone in their group or with a missing
generated image); a resample keeps each row's pair value, so its CIs take the weighted fast path. Images are kept as uint8 at that size until `stats()` (64 KB per image at 256 px).
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from PIL import Image

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.metrics.image_labels import binarise, check_labeler, sample_labels
from medbench.metrics.pair_consistency import derangement
from medbench.options import Option
from medbench.registry import MetricSpec
from medbench.stats.bootstrap import WeightedBootstrap
from medbench.stats.weighted import wmean

FAMILY = "image.diversity"
SIZE = 256
CHUNK = 32
OPTIONS = (Option("diversity_size", int, SIZE, "side the images are resized to for MS-SSIM", low=161, high=4096),)


def to_gray(item, size: int) -> np.ndarray:
    """A PIL image or path -> (size, size) uint8 grayscale, bicubic."""
    from medbench.features.base import to_rgb
    from medbench.features.cache import load_image

    im = to_rgb(load_image(item)).convert("L")
    return np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def ms_ssim_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) MS-SSIM of uint8 image pairs a[i], b[i] ((n, H, W) each), torchmetrics' functional, per pair."""
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    out = np.zeros(len(a))
    for s in range(0, len(a), CHUNK):
        x = torch.from_numpy(a[s:s + CHUNK]).to(torch.float32)[:, None] / 255.0
        y = torch.from_numpy(b[s:s + CHUNK]).to(torch.float32)[:, None] / 255.0
        out[s:s + len(x)] = ms_ssim(x, y, data_range=1.0, reduction="none").to(torch.float64).numpy()
    return out


def partners(groups: list[tuple], seed: int) -> np.ndarray:
    """Row -> partner row inside its group (a seeded derangement per group); -1 for a group of one."""
    out = np.full(len(groups), -1, np.int64)
    by_group: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    for g, rows in by_group.items():
        if len(rows) >= 2:
            salt = int.from_bytes(hashlib.sha256(repr(g).encode()).digest()[:4], "little")
            out[rows] = np.asarray(rows)[derangement(len(rows), seed + salt)]
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


class Diversity(WeightedBootstrap, Metric):
    name = FAMILY
    higher_is_better = {f"{FAMILY}.ms_ssim": False, f"{FAMILY}.ms_ssim_real": False, f"{FAMILY}.ms_ssim_excess": False}

    def __init__(self, labeler_spec, labels: tuple[str, ...], size: int = SIZE, seed: int = 0):
        self.labeler_spec, self.labels, self.size, self.seed = labeler_spec, tuple(labels), size, seed
        self._labeler = None
        self._ids: list[str] = []
        self._groups: list[tuple] = []
        self._gen: list[np.ndarray | None] = []
        self._real: list[np.ndarray] = []
        self._stats: dict[str, np.ndarray] | None = None

    @property
    def variant(self) -> str:
        return (f"pairs of evaluated samples sharing one positive-label set ({self.labeler_spec.name} labels, value 1), "
                f"seeded derangement per group; torchmetrics MS-SSIM (5 scales, kernel 11, sigma 1.5, data_range 1) on "
                f"grayscale {self.size}x{self.size} bicubic; bracket: the same pairs' real images")

    def update(self, batch: list[Scored]) -> None:
        if self._labeler is None:
            self._labeler = self.labeler_spec.factory()
        pos = binarise([sample_labels(s.sample, self._labeler) for s in batch], self.labels, "pos")
        for s, row in zip(batch, pos):
            if s.sample.image_path is None:
                raise ValueError(f"{FAMILY}: reference sample {s.sample.id!r} has no image for the real-data bracket")
            self._ids.append(s.sample.id)
            self._groups.append(tuple(lab for lab, v in zip(self.labels, row) if v))
            self._gen.append(None if s.output.image is None else to_gray(s.output.image, self.size))
            self._real.append(to_gray(s.sample.image_path, self.size))
        self._stats = None

    def stats(self) -> dict[str, np.ndarray]:
        if self._stats is None:
            n = len(self._ids)
            order = np.argsort(np.asarray(self._ids, dtype=object), kind="stable") if n else np.zeros(0, np.int64)
            mate = np.full(n, -1, np.int64)
            if n:  # partners chosen in sample-id order, so they do not depend on the batch order
                sorted_mate = partners([self._groups[i] for i in order], self.seed)
                mate[order] = np.where(sorted_mate >= 0, order[np.maximum(sorted_mate, 0)], -1)
            gen, real = np.full(n, np.nan), np.full(n, np.nan)
            both = [i for i in range(n) if mate[i] >= 0]
            if both:
                real[both] = ms_ssim_pairs(np.stack([self._real[i] for i in both]), np.stack([self._real[mate[i]] for i in both]))
            ok = [i for i in both if self._gen[i] is not None and self._gen[mate[i]] is not None]
            if ok:
                gen[ok] = ms_ssim_pairs(np.stack([self._gen[i] for i in ok]), np.stack([self._gen[mate[i]] for i in ok]))
            self._stats = {"gen": gen, "real": real, "partner": mate}
        return self._stats

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        ok = np.isfinite(stats["gen"]) & np.isfinite(stats["real"])
        g, r = _nanmean(stats["gen"][ok]), _nanmean(stats["real"][ok])
        return {f"{FAMILY}.ms_ssim": g, f"{FAMILY}.ms_ssim_real": r, f"{FAMILY}.ms_ssim_excess": g - r}

    def weighted_compute(self, stats: dict[str, np.ndarray], w: np.ndarray) -> dict[str, np.ndarray]:
        """`compute` for every row of a (B, n) resample-weight matrix: a weighted mean over the paired rows."""
        ok = np.isfinite(stats["gen"]) & np.isfinite(stats["real"])
        g = wmean(w[:, ok], stats["gen"][ok])
        r = wmean(w[:, ok], stats["real"][ok])
        return {f"{FAMILY}.ms_ssim": g, f"{FAMILY}.ms_ssim_real": r, f"{FAMILY}.ms_ssim_excess": g - r}

    def extras(self) -> dict[str, Any]:
        st = self.stats()
        sizes: dict[str, int] = {}
        for g in self._groups:
            key = " + ".join(g) or "(no positive label)"
            sizes[key] = sizes.get(key, 0) + 1
        return {"size": self.size, "pairs": int(np.isfinite(st["gen"]).sum()), "unpaired": int((st["partner"] < 0).sum()),
                "group_sizes": sizes, "notes": "one image per prompt, so pairs share a label set rather than a prompt; "
                                               "compare ms_ssim with ms_ssim_real, not with other datasets"}


def factory(ctx: MetricContext) -> Diversity:
    spec = check_labeler(FAMILY, ctx.domain, ctx.options.get("labeler"))
    try:
        labels = tuple(spec.factory().observations)
    except Exception as e:
        raise MetricUnavailable(f"{FAMILY}: labeler {spec.name!r} cannot start ({e})") from e
    return Diversity(spec, labels, size=int(ctx.options.get("diversity_size") or SIZE), seed=ctx.seed)


@hookimpl
def medbench_metrics():
    return [MetricSpec(FAMILY, factory, requires=("image",), kinds=("report->image", "prompt->pair"), options=OPTIONS,
                       description="diversity: MS-SSIM (torchmetrics) between generated images of samples sharing a label "
                                   "set, with the same pairs' real images as the bracket")]
