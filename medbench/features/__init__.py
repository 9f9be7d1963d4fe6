"""Image feature extractors and the on-disk feature cache.

    from medbench.features import get_extractor, cached_features
    ex = get_extractor("phantom-encoder")            # or "inception-v3-compat", "hf:/models/rad-dino"
    feats = cached_features(ex, image_paths)         # (N, ex.dim) float64, computed once per image
"""
from __future__ import annotations

from medbench.features.base import FeatureExtractor
from medbench.features.cache import cached_features, cached_outputs, medbench_home

__all__ = ["FeatureExtractor", "cached_features", "cached_outputs", "get_extractor", "medbench_home"]


def get_extractor(name: str, weights: str | None = None) -> FeatureExtractor:
    """Build a registered extractor; ``hf:FOLDER`` is the generic Hugging Face one with FOLDER as weights."""
    from medbench.registry import registry

    if name.startswith("hf:"):
        name, weights = "hf", name[3:]
    return registry().get("extractors", name).factory(weights)
