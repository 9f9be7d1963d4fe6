"""`hf:<local folder>`: any Hugging Face vision encoder saved on disk (RAD-DINO, DINOv2, ViT...).

    ex = HFEncoder("/models/rad-dino")        # config.json + preprocessor_config.json + *.safetensors
    feats = ex.features(images)                # pooler output (the CLS embedding) or CLS token

Loads with AutoModel / AutoImageProcessor from the folder only (local_files_only=True), and only
safetensors weights (a folder with just pytorch_model.bin is refused: pickle). The weights hash is
a sha256 over the folder's config, preprocessor config and safetensors files. The image
processor's slow (PIL) implementation does resizing/normalisation; its settings are recorded in
`preprocessing`. Grayscale images are replicated to RGB before the processor.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from PIL import Image

from medbench.features.base import FeatureExtractor, sha256_file, to_rgb
from medbench.weights import WeightsError

HASHED = ("config.json", "preprocessor_config.json")
PROCESSOR_KEYS = ("image_processor_type", "size", "crop_size", "do_resize", "resample", "do_center_crop",
                  "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std", "do_convert_rgb")


def load_strict(folder) -> "torch.nn.Module":
    """AutoModel from a local folder (safetensors only); any missing, unexpected or mismatched
    state-dict key raises WeightsError (a user error: the family is skipped naming the folder); an encoder is
    never used half-loaded."""
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True, output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise WeightsError(f"{folder}: the safetensors weights do not match its config.json ({bad}); "
                         f"refusing a half-loaded model (save the encoder itself, e.g. AutoModel.save_pretrained)")
    return model.eval()


class HFEncoder(FeatureExtractor):
    batch_size = 16

    def __init__(self, folder: str | Path, pool: str = "auto"):
        self.folder = Path(folder).expanduser()
        self.name = f"hf:{self.folder.name}"  # the full path is in `preprocessing` and the card
        if pool not in ("auto", "pooler", "cls"):
            raise ValueError(f"pool must be auto, pooler or cls, not {pool!r}")
        self.pool = pool
        missing = [f for f in ("config.json", "preprocessor_config.json") if not (self.folder / f).is_file()]
        if not self.folder.is_dir() or missing:
            raise FileNotFoundError(f"{self.folder}: not a Hugging Face model folder (missing {', '.join(missing) or 'folder'}); "
                                    f"save the encoder there with save_pretrained (config.json, preprocessor_config.json, model.safetensors)")
        self.weight_files = sorted(self.folder.glob("*.safetensors"))
        if not self.weight_files:
            raise FileNotFoundError(f"{self.folder}: no *.safetensors weights (pickle-based .bin files are not loaded); "
                                    f"convert with model.save_pretrained(folder, safe_serialization=True)")
        config = json.loads((self.folder / "config.json").read_text())
        proc = json.loads((self.folder / "preprocessor_config.json").read_text())
        self.dim = int(config.get("hidden_size") or config.get("hidden_sizes", [0])[-1])
        self.preprocessing = {"folder": str(self.folder), "processor": {k: proc[k] for k in PROCESSOR_KEYS if k in proc},
                              "channels": "RGB; grayscale replicated to 3 channels before the processor",
                              "implementation": "transformers slow (PIL) image processor", "pool": pool,
                              "dtype": "float32"}
        self._sha: str | None = None
        self._model = self._processor = None

    @property
    def weights_sha256(self) -> str:
        if self._sha is None:
            h = hashlib.sha256()
            for f in [self.folder / n for n in HASHED] + self.weight_files:
                h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
            self._sha = h.hexdigest()
        return self._sha

    def _load(self):
        if self._model is None:
            from transformers import AutoImageProcessor

            self._processor = AutoImageProcessor.from_pretrained(self.folder, local_files_only=True, backend="pil")
            self._model = load_strict(self.folder)
        return self._model, self._processor

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        _, proc = self._load()
        return proc(images=to_rgb(image), return_tensors="pt")["pixel_values"][0].to(torch.float32)

    def forward_batch(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        model, _ = self._load()
        out = model(pixel_values=batch)
        pooled = getattr(out, "pooler_output", None)
        if self.pool == "cls" or (self.pool == "auto" and pooled is None):
            pooled = out.last_hidden_state[:, 0]
        elif pooled is None:
            raise ValueError(f"{self.folder}: the model has no pooler output; use pool='cls'")
        return {"features": pooled}
