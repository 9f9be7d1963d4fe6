"""Expose any medbench FeatureExtractor to torch-fidelity, so `calculate_metrics` can be run on the
very same features (parity tests and benchmarks call torch-fidelity directly with it)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def register_with_torch_fidelity(extractor, name: str | None = None) -> str:
    """Register (once) a torch-fidelity feature extractor that feeds uint8 [B,3,H,W] batches through
    ``extractor.features``; returns its torch-fidelity name."""
    from torch_fidelity import register_feature_extractor
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    name = name or f"medbench-{extractor.name}"

    class Bridge(FeatureExtractorBase):
        target = None

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)

        @staticmethod
        def get_provided_features_list():
            return ("features",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "features"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, x):
            images = [Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())) for img in x]
            return (torch.from_numpy(Bridge.target.features(images)).float(),)

    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, Bridge)
    FEATURE_EXTRACTORS_REGISTRY[name].target = extractor
    return name


class UInt8Images(torch.utils.data.Dataset):
    """Image files or PIL images as the uint8 [3,H,W] tensors torch-fidelity reads."""

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        im = item if isinstance(item, Image.Image) else Image.open(item)
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
