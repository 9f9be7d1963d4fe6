"""The phantom encoder: a small CNN trained on the phantom train splits, for FID features and labels.

One trunk for both phantom domains (cxr grayscale is replicated to RGB, so one input format),
a 256-d penultimate embedding (the FID/KID/PRDC features) and one multi-label head per domain
(``heads.cxr``, ``heads.path``): the label spaces differ, and a cxr image never carries a
pathology label, so a union head would only learn the domain. Usage::

    enc = load_phantom_encoder()                       # bundled weights, sha256-checked
    feats = enc.features(images)                       # (N, 256)
    probs = enc.predict_proba(images, "cxr")           # (N, len(enc.label_names["cxr"]))

Preprocessing: PIL -> RGB (grayscale replicated) -> 64x64 PIL bicubic -> float32 in [0, 1] ->
(x - 0.5) / 0.5. Trained by `python -m medbench.features.train_phantom_encoder`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from medbench.features.base import FeatureExtractor, sha256_file, to_rgb

WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED_WEIGHTS = WEIGHTS_DIR / "phantom-encoder.safetensors"
BUNDLED_CARD = WEIGHTS_DIR / "phantom-encoder.json"


@dataclass
class PhantomEncoderConfig:
    image_size: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 256)
    labels: dict[str, list[str]] = field(default_factory=dict)  # domain -> label names (head order)


def conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PhantomEncoderNet(nn.Module):
    """One stride-2 conv per width (64 -> 4 pixels), an extra conv at the 8x8 stage; average pool."""

    def __init__(self, cfg: PhantomEncoderConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 3
        for w in cfg.widths:
            layers.append(conv_bn(cin, w, 2))
            if w == cfg.widths[-2]:
                layers.append(conv_bn(w, w, 1))
            cin = w
        self.trunk = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.heads = nn.ModuleDict({d: nn.Linear(cin, len(names)) for d, names in cfg.labels.items()})

    @property
    def dim(self) -> int:
        return self.cfg.widths[-1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised input -> (B, dim) penultimate features."""
        return self.pool(self.trunk(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.embed(x)
        out = {"features": z}
        out.update({f"logits:{d}": head(z) for d, head in self.heads.items()})
        return out


def preprocess_image(image: Image.Image, size: int = 64) -> torch.Tensor:
    """PIL (any mode) -> (3, size, size) float32, normalised to [-1, 1]."""
    rgb = to_rgb(image)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BICUBIC)
    return uint8_to_input(torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1))


def uint8_to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) in [0, 255] -> float32 in [-1, 1] (shared with the torch-fidelity wrapper)."""
    return (x.to(torch.float32) / 255.0 - 0.5) / 0.5


class PhantomEncoder(FeatureExtractor):
    name = "phantom-encoder"
    batch_size = 32

    def __init__(self, net: PhantomEncoderNet, weights_sha256: str | None):
        self.net = net.eval()
        self.weights_sha256 = weights_sha256
        self.dim = net.dim
        self.label_names = {d: list(v) for d, v in net.cfg.labels.items()}
        s = net.cfg.image_size
        self.preprocessing = {"size": [s, s], "resize": "PIL bicubic (skipped when already that size)",
                              "channels": "RGB; grayscale replicated to 3 channels", "value_range": "[-1, 1] ((x/255 - 0.5) / 0.5)",
                              "dtype": "float32"}

    def outputs(self) -> dict[str, int]:
        out = {"features": self.dim}
        out.update({f"logits:{d}": len(v) for d, v in self.label_names.items()})
        return out

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return preprocess_image(image, self.net.cfg.image_size)

    def forward_batch(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(batch)

    def predict_proba(self, images: Sequence[Image.Image], domain: str) -> np.ndarray:
        """(N, len(label_names[domain])) sigmoid probabilities of the domain's findings."""
        if domain not in self.label_names:
            raise KeyError(f"phantom-encoder has no head for domain {domain!r}; heads: {sorted(self.label_names)}")
        logits = self.embed(images)[f"logits:{domain}"]
        return 1.0 / (1.0 + np.exp(-logits))


# ---- weights: safetensors + a JSON card with the sha256 ------------------------------------------

def save_weights(net: PhantomEncoderNet, path: Path, card: dict) -> str:
    """Write safetensors (config in metadata) and the card beside it (sha256 filled in)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = asdict(net.cfg)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(cfg)})
    path.chmod(0o644)
    digest = sha256_file(path)
    card = {**card, "config": cfg, "weights_file": path.name, "sha256": digest}
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return digest


def load_phantom_encoder(weights: str | Path | None = None) -> PhantomEncoder:
    """Load the bundled (or given) weights; the bundled file must match the card's sha256."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(weights) if weights else BUNDLED_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"phantom-encoder weights not found: {path}. Train them with "
            f"`python -m medbench.features.train_phantom_encoder --out {BUNDLED_WEIGHTS}` (or pass --weights FILE)")
    digest = sha256_file(path)
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        expected = json.loads(card_path.read_text()).get("sha256")
        if expected and expected != digest:
            raise ValueError(f"{path}: sha256 {digest} does not match {card_path.name} ({expected}); "
                             f"the weights file is corrupt or was replaced — retrain or restore it")
    elif weights is None:
        raise FileNotFoundError(f"{card_path}: the card of the bundled phantom-encoder weights is missing")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a phantom-encoder safetensors file (no 'config' metadata)")
    raw = json.loads(meta["config"])
    cfg = PhantomEncoderConfig(image_size=raw["image_size"], widths=tuple(raw["widths"]), labels=raw["labels"])
    net = PhantomEncoderNet(cfg)
    net.load_state_dict(load_file(str(path)))
    return PhantomEncoder(net, digest)
