"""Built-in extractors, registered through the `medbench` entry-point group like any plugin."""
from __future__ import annotations

from medbench import hookimpl
from medbench.registry import ExtractorSpec


def _phantom(weights: str | None = None):
    from medbench.features.phantom_encoder import load_phantom_encoder

    return load_phantom_encoder(weights)


def _inception(weights: str | None = None):
    from medbench.features.inception import InceptionV3Compat

    return InceptionV3Compat(weights)


def _hf(weights: str | None = None):
    from medbench.features.hf_encoder import HFEncoder

    if not weights:
        raise FileNotFoundError("extractor 'hf' needs a local model folder: --extractor hf:FOLDER (or --weights FOLDER)")
    return HFEncoder(weights)


@hookimpl
def medbench_extractors():
    return [
        ExtractorSpec("phantom-encoder", _phantom, "Small CNN trained on the phantom train splits (bundled, 256-d, label heads)"),
        ExtractorSpec("inception-v3-compat", _inception, "torch-fidelity's TF-ported Inception-v3 (2048-d pool3 + logits); local weights"),
        ExtractorSpec("hf", _hf, "A Hugging Face vision encoder from a local folder (RAD-DINO style); use hf:FOLDER"),
    ]
