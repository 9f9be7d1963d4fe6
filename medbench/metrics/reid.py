"""Patient re-identification (family ``privacy.reid``): CheXGenBench's siamese re-ID score, from local weights.

CheXGenBench (metrics/privacy_metrics.py) trains a siamese network to tell whether two chest X-rays
belong to the same patient and scores each generated image against the real image of its prompt.
Its architecture is stated in that file and rebuilt here with the same module names, so its
checkpoint (a state dict) loads strictly: each branch is a torchvision ResNet-50 whose ``fc`` maps
2048 -> 128, followed by a sigmoid; the head is ``fc_end`` (128 -> 1) on ``|f(a) - f(b)|``, and the
score is ``sigmoid(head)``. Input: RGB, resized to 512x512 (Pillow bicubic, as CheXGenBench's
``Image.resize`` default), then torchvision ``Resize((224, 224))`` and ``ToTensor`` (values in
[0, 1], no normalisation)::

    privacy.reid.score@chexgenbench-siamese        mean re-ID score, generated image vs its sample's real image
    privacy.reid.rate@chexgenbench-siamese         share of generated images with score > 0.5 (re-identified)
    privacy.reid.score_floor@chexgenbench-siamese  real image vs another evaluated sample's real image (seeded
                                                   derangement): the score of an unrelated pair

CheXGenBench generates 10 images per prompt and reports the mean and max over them; medbench has one
image per sample (the mean over samples is its mean). With the task's split set to ``train`` the
prompts are training reports and this is CheXGenBench's protocol; on the test split it asks whether a
generated image re-identifies the held-out patient. Weights: <root>/chexgenbench-reid/siamese_resnet50.pth.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.metrics.pair_consistency import derangement
from medbench.registry import MetricSpec

FAMILY = "image.privacy.reid"
TAG = "chexgenbench-siamese"
BATCH = 16


def _siamese_class():
    import torch
    from torch import nn
    from torchvision.models.resnet import Bottleneck, ResNet

    class SiameseNetwork(nn.Module):
        """CheXGenBench's SiameseNetwork('ResNet-50', in_channels=3, n_features=128); `layers` shrinks it for tests."""

        def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), n_features: int = 128):
            super().__init__()
            self.model = ResNet(Bottleneck, list(layers))
            self.model.fc = nn.Linear(2048, n_features, bias=True)
            self.fc_end = nn.Linear(n_features, 1)

        def forward_once(self, x):
            return torch.sigmoid(self.model(x))

        def forward(self, a, b):
            return self.fc_end(torch.abs(self.forward_once(a) - self.forward_once(b)))

    return SiameseNetwork


def __getattr__(name: str):  # SiameseNetwork without importing torch at module import
    if name == "SiameseNetwork":
        return _siamese_class()
    raise AttributeError(name)


def load_siamese(path) -> Any:
    """The siamese network with the checkpoint's weights (torch.load weights_only=True, strict)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc_end.weight" not in state:
        raise ValueError(f"{path}: not a state dict of CheXGenBench's SiameseNetwork (no 'fc_end.weight')")
    layers = tuple(len({m.group(1) for k in state if (m := re.match(rf"model\.layer{i}\.(\d+)\.", k))}) for i in (1, 2, 3, 4))
    net = _siamese_class()(layers=layers, n_features=int(state["fc_end.weight"].shape[1]))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: does not fit CheXGenBench's SiameseNetwork ({str(e).splitlines()[0]})") from None
    return net.eval()


def reid_input(item) -> "torch.Tensor":  # noqa: F821
    """One image (PIL or path) -> (3, 224, 224) float32 in [0, 1], CheXGenBench's pipeline."""
    from PIL import Image
    from torchvision import transforms

    from medbench.features.base import to_rgb
    from medbench.features.cache import load_image

    im = to_rgb(load_image(item)).resize((512, 512), Image.BICUBIC)
    return transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])(im)


class ReID(Metric):
    name = FAMILY
    higher_is_better = {f"{FAMILY}.score@{TAG}": False, f"{FAMILY}.rate@{TAG}": False, f"{FAMILY}.score_floor@{TAG}": False}

    def __init__(self, weights_root: str | None = None, reference: list | None = None, seed: int = 0):
        self.weights_root, self.reference, self.seed = weights_root, list(reference or []), seed
        self.found = None  # located at the first update (rebuilding a stored run for compare needs no weights)
        self._net = None
        self._real_cache: dict[str, np.ndarray] = {}
        self._partner: dict[str, Any] | None = None
        self._rows: dict[str, list[np.ndarray]] = {"gen": [], "floor": []}

    variant = ("CheXGenBench SiameseNetwork (torchvision ResNet-50 branches, fc 2048->128 + sigmoid, fc_end on |diff|, "
               "sigmoid score); input RGB 512x512 bicubic -> Resize(224) -> ToTensor; generated image vs its sample's "
               "real image; floor: real vs a seeded derangement of the evaluated real images")

    @property
    def weights_sha256(self) -> dict[str, str]:
        return self.found.provenance() if self.found is not None else {}

    def net(self):
        if self._net is None:
            from medbench.features.field_weights import CHEXGENBENCH_REID, REID_FILE, find

            try:
                self.found = find(CHEXGENBENCH_REID, self.weights_root)
            except ValueError as e:  # WeightsError names the missing file
                raise MetricUnavailable(f"{FAMILY}: {e}") from e
            self._net = load_siamese(self.found.path(REID_FILE))
        return self._net

    def embed(self, items: list) -> np.ndarray:
        """(n, 128) branch outputs ``forward_once`` (the siamese network's per-image half), in batches."""
        import torch

        out = []
        for s in range(0, len(items), BATCH):
            with torch.no_grad():
                x = torch.stack([reid_input(it) for it in items[s:s + BATCH]])
                out.append(self.net().forward_once(x).to(torch.float64).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))

    def _real(self, paths: list) -> np.ndarray:
        """Branch outputs of real images, each computed once per run (they serve the score and the floor)."""
        todo = [p for p in dict.fromkeys(map(str, paths)) if p not in self._real_cache]
        for p, e in zip(todo, self.embed(todo)):
            self._real_cache[p] = e
        return np.stack([self._real_cache[str(p)] for p in paths])

    def head(self, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
        """sigmoid(fc_end(|ea - eb|)): the re-ID score of each pair of branch outputs."""
        import torch

        with torch.no_grad():
            d = torch.from_numpy(np.abs(ea - eb)).to(torch.float32)
            return torch.sigmoid(self.net().fc_end(d))[:, 0].to(torch.float64).numpy()

    def _partners(self) -> dict[str, Any]:
        if self._partner is None:
            if len(self.reference) < 2:
                raise MetricUnavailable(f"{FAMILY}: the unrelated-pair floor needs at least 2 evaluated samples")
            paths = [s.image_path for s in self.reference]
            self._partner = {s.id: paths[j] for s, j in zip(self.reference, derangement(len(paths), self.seed))}
        return self._partner

    def update(self, batch: list[Scored]) -> None:
        self.net()
        partner = self._partners()
        for s in batch:
            if s.sample.image_path is None or s.sample.id not in partner:
                raise ValueError(f"{FAMILY}: reference sample {s.sample.id!r} needs an image and must be among the "
                                 "evaluated samples (MetricContext.reference)")
        real = self._real([s.sample.image_path for s in batch])
        floor = self.head(real, self._real([partner[s.sample.id] for s in batch]))
        gen = np.full(len(batch), np.nan)
        ok = [i for i, s in enumerate(batch) if s.output.image is not None]
        if ok:
            gen[ok] = self.head(self.embed([batch[i].output.image for i in ok]), real[ok])
        self._rows["gen"].append(gen)
        self._rows["floor"].append(floor)

    def stats(self) -> dict[str, np.ndarray]:
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in self._rows.items()}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        g, f = stats["gen"][np.isfinite(stats["gen"])], stats["floor"][np.isfinite(stats["floor"])]
        nan = float("nan")
        return {f"{FAMILY}.score@{TAG}": float(g.mean()) if len(g) else nan,
                f"{FAMILY}.rate@{TAG}": float((g > 0.5).mean()) if len(g) else nan,
                f"{FAMILY}.score_floor@{TAG}": float(f.mean()) if len(f) else nan}

    def extras(self) -> dict[str, Any]:
        return {"weights": self.weights_sha256, "verified_weights": self.found.verified if self.found else None,
                "notes": "one generation per sample (CheXGenBench: 10 per prompt, mean and max); the threshold 0.5 is "
                         "the siamese network's decision point"}


def factory(ctx: MetricContext) -> ReID:
    return ReID(None, ctx.reference, ctx.seed)  # weights: the --weights root


@hookimpl
def medbench_metrics():
    return [MetricSpec(FAMILY, factory, requires=("image",), kinds=("report->image", "prompt->pair"),
                       description="CheXGenBench's patient re-identification score (siamese ResNet-50) of each generated "
                                   "image against its sample's real image, with an unrelated-pair floor; local weights")]
