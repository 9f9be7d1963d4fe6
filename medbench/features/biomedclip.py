"""`biomedclip`: Microsoft's BiomedCLIP (open_clip) from a local folder laid out as its hub repository.

    ex = BiomedCLIP()                      # <weights root>/biomedclip/ (see medbench.features.field_weights)
    img = ex.features(images)              # (N, 512) float64: encode_image, not normalised (FID/KID features)
    txt = ex.text_features(["No pleural effusion."])   # (M, 512) encode_text, not normalised
    cos = cosine(ex.features(images), txt) # (N,) cosine of each image with its text

The model is open_clip's own CustomTextCLIP built from the folder's open_clip_config.json
(``model_cfg``) and loaded strictly with open_clip's `load_checkpoint` (torch.load weights_only=True;
its state-dict conversions, then ``load_state_dict(strict=True)``). Two settings differ from
``open_clip.create_model('local-dir:...')`` only in where things come from, not in the network:
the text tower's transformers config is read from ``text/config.json`` in the folder (open_clip
would fetch it from the hub by the name in ``hf_model_name``), and no tower loads pretrained
base weights (the checkpoint holds all of them).

Preprocessing is open_clip's eval transform for the folder's ``preprocess_cfg`` (the published
files: resize shortest side to 224 bicubic, centre crop 224, RGB, ToTensor, normalise with the
OpenAI CLIP mean/std). Text: open_clip's HFTokenizer on the folder's tokenizer files (BiomedCLIP:
PubMedBERT uncased WordPiece, context length 256, truncated).
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from medbench.features.base import FeatureExtractor, to_rgb
from medbench.features.field_weights import BIOMEDCLIP, BIOMEDCLIP_WEIGHTS, combined_sha256, find


def build_biomedclip(folder) -> tuple["torch.nn.Module", dict, dict]:
    """(CustomTextCLIP with the folder's weights, model_cfg, preprocess_cfg); strict, offline."""
    from open_clip.factory import load_checkpoint
    from open_clip.model import CustomTextCLIP
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    raw = json.loads((folder / "open_clip_config.json").read_text())
    if "model_cfg" not in raw:
        raise ValueError(f"{folder / 'open_clip_config.json'}: no 'model_cfg' (not an open_clip hub config)")
    cfg = copy.deepcopy(raw["model_cfg"])
    text = cfg.get("text_cfg", {})
    if "hf_model_name" not in text:
        raise ValueError(f"{folder / 'open_clip_config.json'}: text_cfg has no hf_model_name (not BiomedCLIP-style)")
    text["hf_model_name"] = str(folder / "text")  # the BERT config, locally
    text["hf_model_pretrained"] = False
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    cfg.pop("custom_text", None)
    model = CustomTextCLIP(**cfg)
    try:
        load_checkpoint(model, str(folder / BIOMEDCLIP_WEIGHTS), strict=True, weights_only=True)
    except RuntimeError as e:
        raise ValueError(f"{folder / BIOMEDCLIP_WEIGHTS}: does not fit open_clip_config.json ({str(e).splitlines()[0]}); "
                         "refusing a half-loaded model") from None
    pre = merge_preprocess_dict(asdict(PreprocessCfg()), raw.get("preprocess_cfg", {}))
    pre["size"] = model.visual.image_size
    return model.eval(), cfg, pre


class BiomedCLIP(FeatureExtractor):
    name = "biomedclip"
    batch_size = 16

    def __init__(self, weights_root: str | None = None):
        self.found = find(BIOMEDCLIP, weights_root)
        self.folder = self.found.folder
        raw = json.loads((self.folder / "open_clip_config.json").read_text())
        self.dim = int(raw.get("model_cfg", {}).get("embed_dim", 0))
        self.context_length = int(raw.get("model_cfg", {}).get("text_cfg", {}).get("context_length", 77))
        self.weights_sha256 = combined_sha256(self.found)
        self.preprocessing = {"image": {"library": "open_clip image_transform (eval)", **raw.get("preprocess_cfg", {}),
                                        "defaults": "resize_mode shortest, bicubic, centre crop to the vision tower size"},
                              "text": f"open_clip HFTokenizer on the folder's tokenizer files, context {self.context_length}",
                              "features": "encode_image (projected, not normalised)", "dtype": "float32"}
        self._model = self._transform = self._tokenizer = None

    def _load(self):
        if self._model is None:
            from open_clip.tokenizer import HFTokenizer
            from open_clip.transform import PreprocessCfg, image_transform_v2

            self._model, _, pre = build_biomedclip(self.folder)
            fields = {k: v for k, v in pre.items() if k in PreprocessCfg.__dataclass_fields__}
            self._transform = image_transform_v2(PreprocessCfg(**fields), is_train=False)
            self._tokenizer = HFTokenizer(str(self.folder), context_length=self.context_length)
        return self._model

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        self._load()
        return self._transform(to_rgb(image)).to(torch.float32)

    def forward_batch(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self._load().encode_image(batch)}

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float64 text embeddings (not normalised), in fixed batches of `batch_size`."""
        model = self._load()
        out = np.zeros((len(texts), self.dim))
        for s in range(0, len(texts), self.batch_size):
            chunk = list(texts[s:s + self.batch_size])
            tokens = self._tokenizer(chunk + [""] * (self.batch_size - len(chunk)))  # fixed batch shape
            with torch.no_grad():
                out[s:s + len(chunk)] = model.encode_text(tokens)[: len(chunk)].to(torch.float64).numpy()
        return out

    def card(self) -> dict:
        return super().card() | {"weights": self.found.provenance()}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) matrices (open_clip normalises the same way)."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)
