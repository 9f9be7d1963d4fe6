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


def _rad_dino(weights: str | None = None):
    from medbench.features.rad_dino import RadDino

    return RadDino(weights, pool="cls")


def _rad_dino_mean(weights: str | None = None):
    from medbench.features.rad_dino import RadDino

    return RadDino(weights, pool="mean")


def _xrv(weights: str | None = None):
    from medbench.features.xrv_densenet import XRVDenseNet121

    return XRVDenseNet121(weights)


def _biomedclip(weights: str | None = None):
    from medbench.features.biomedclip import BiomedCLIP

    return BiomedCLIP(weights)


@hookimpl
def medbench_weights():
    from medbench.features.field_weights import ALL

    return list(ALL)


@hookimpl
def medbench_extractors():
    return [
        ExtractorSpec("phantom-encoder", _phantom, "Small CNN trained on the phantom train splits (bundled, 256-d, label heads)"),
        ExtractorSpec("inception-v3-compat", _inception, "torch-fidelity's TF-ported Inception-v3 (2048-d pool3 + logits); local weights"),
        ExtractorSpec("rad-dino", _rad_dino, "RAD-DINO (microsoft/rad-dino, Dinov2Model) CLS/pooler 768-d, CheXGenBench's "
                                             "FID features; local weights <root>/rad-dino (weights=ROOT overrides the root)"),
        ExtractorSpec("rad-dino-mean", _rad_dino_mean, "RAD-DINO mean of the patch tokens, 768-d; same weights as rad-dino"),
        ExtractorSpec("xrv-densenet121", _xrv, "torchxrayvision DenseNet-121 'all' features2 1024-d, its own 224 px "
                                               "[-1024, 1024] preprocessing; local weights <root>/xrv-densenet121"),
        ExtractorSpec("biomedclip", _biomedclip, "BiomedCLIP (open_clip) image embedding 512-d (+ text tower for "
                                                 "alignment); local weights <root>/biomedclip"),
        ExtractorSpec("hf", _hf, "A Hugging Face vision encoder from a local folder (RAD-DINO style); use hf:FOLDER"),
    ]
