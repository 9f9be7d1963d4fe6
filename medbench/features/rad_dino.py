"""`rad-dino` / `rad-dino-mean`: Microsoft's RAD-DINO chest X-ray encoder from local weights.

    ex = RadDino()                        # <weights root>/rad-dino/{config.json, preprocessor_config.json, model.safetensors}
    feats = ex.features(images)           # (N, 768) float64: the CLS embedding (pooler_output)
    RadDino(pool="mean").features(images) # variant rad-dino-mean: mean of the final-layernormed patch tokens

The network is transformers' Dinov2Model loaded from the folder only (safetensors; a missing or
unexpected state-dict key is an error, never a half-loaded model). `rad-dino` uses
``pooler_output`` — the final-layernormed CLS token — which is what CheXGenBench's
metrics/fid.py and privacy_metrics.py take (``outputs.pooler_output``).

Preprocessing is the folder's own image processor (BitImageProcessor for the published files: RGB,
shortest edge resized to 518 with bicubic, centre crop 518, x/255, normalised with RAD-DINO's
mean/std), run on the PIL image in its slow (PIL) implementation; grayscale is replicated to RGB
first (the processor's do_convert_rgb does the same). CheXGenBench instead feeds 299x299 float
tensors already scaled to [0, 1] (its torchmetrics pipeline), which the processor rescales by 1/255
a second time; medbench does not reproduce that double scaling (docs/image-metrics.md).
"""
from __future__ import annotations

import json

import torch
from PIL import Image

from medbench.features.base import FeatureExtractor, to_rgb
from medbench.features.field_weights import RAD_DINO, combined_sha256, find
from medbench.features.hf_encoder import PROCESSOR_KEYS, load_strict

POOLS = {"cls": "rad-dino", "mean": "rad-dino-mean"}


def load_dinov2(folder) -> "torch.nn.Module":
    """Dinov2Model from a local folder; any missing/unexpected/mismatched key raises ValueError."""
    model = load_strict(folder)
    if type(model).__name__ != "Dinov2Model":
        raise ValueError(f"{folder}/config.json describes {type(model).__name__}, not a Dinov2Model (RAD-DINO)")
    return model


class RadDino(FeatureExtractor):
    batch_size = 16

    def __init__(self, weights_root: str | None = None, pool: str = "cls"):
        if pool not in POOLS:
            raise ValueError(f"rad-dino pool must be one of {sorted(POOLS)}, not {pool!r}")
        self.pool = pool
        self.name = POOLS[pool]
        self.found = find(RAD_DINO, weights_root)  # WeightsError names the missing file
        self.folder = self.found.folder
        config = json.loads((self.folder / "config.json").read_text())
        proc = json.loads((self.folder / "preprocessor_config.json").read_text())
        self.dim = int(config["hidden_size"])
        self.weights_sha256 = combined_sha256(self.found)
        self.preprocessing = {
            "processor": {k: proc[k] for k in PROCESSOR_KEYS if k in proc},
            "implementation": "transformers slow (PIL) image processor of the weights folder",
            "channels": "RGB; grayscale replicated to 3 channels (16-bit rescaled to 8-bit first)",
            "pool": "pooler_output (final-layernormed CLS token; CheXGenBench's choice)" if pool == "cls"
                    else "mean of the final-layernormed patch tokens (CLS excluded)",
            "dtype": "float32"}
        self._model = self._processor = None

    def _load(self):
        if self._model is None:
            from transformers import AutoImageProcessor

            self._processor = AutoImageProcessor.from_pretrained(self.folder, local_files_only=True, backend="pil")
            self._model = load_dinov2(self.folder)
        return self._model, self._processor

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        _, proc = self._load()
        return proc(images=to_rgb(image), return_tensors="pt")["pixel_values"][0].to(torch.float32)

    def forward_batch(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        model, _ = self._load()
        out = model(pixel_values=batch)
        if self.pool == "cls":
            return {"features": out.pooler_output}
        return {"features": out.last_hidden_state[:, 1:].mean(dim=1)}

    def card(self) -> dict:
        return super().card() | {"weights": self.found.provenance()}
