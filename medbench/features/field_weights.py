"""Weights manifests of the field's image evaluators (RAD-DINO, XRV DenseNet-121, BiomedCLIP, the
CheXGenBench re-identification siamese network), contributed through the ``medbench_weights`` hook.

Each lives in one folder under the weights root (``$MEDBENCH_WEIGHTS``, else ``$MEDBENCH_HOME/weights``)::

    <root>/rad-dino/{config.json, preprocessor_config.json, model.safetensors}        hub: microsoft/rad-dino
    <root>/xrv-densenet121/densenet121-res224-all.safetensors                          torchxrayvision 'all'
    <root>/biomedclip/{open_clip_config.json, open_clip_pytorch_model.bin, tokenizer_config.json,
                       vocab.txt, text/config.json}                                     hub: microsoft/BiomedCLIP-...
    <root>/chexgenbench-reid/siamese_resnet50.pth                                      CheXGenBench's re-ID network

medbench does not know the published files' sha256 (nothing could be downloaded to hash them), so every
file is ``sha256=None``: accepted, hashed and recorded in run.json. This module imports no torch, so
`medbench list` stays fast. `find(spec, root)` is `medbench.weights.locate`.
"""
from __future__ import annotations

from medbench.weights import Located, WeightFile, WeightsSpec, locate

RAD_DINO = WeightsSpec(
    name="rad-dino",
    files=(WeightFile("config.json"), WeightFile("preprocessor_config.json"), WeightFile("model.safetensors")),
    licence="MIT (model card: research use only, not for clinical practice)",
    source="https://huggingface.co/microsoft/rad-dino (the three files of the repository's root, as they are)",
    description="RAD-DINO chest X-ray ViT-B/14 (transformers Dinov2Model); CheXGenBench's FID/KID/PRDC features",
    used_by=("extractor:rad-dino", "extractor:rad-dino-mean", "image.fidelity@rad-dino", "image.per_pathology", "image.privacy"),
)

XRV_FILE = "densenet121-res224-all.safetensors"
XRV_DENSENET121 = WeightsSpec(
    name="xrv-densenet121",
    files=(WeightFile(XRV_FILE),),
    licence="Apache-2.0 (torchxrayvision; weights licence not stated separately)",
    source=("torchxrayvision's release file nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-"
            "tr15-sc15-seed0-best.pt, converted once to a safetensors state dict (it is a pickled module: see "
            "docs/image-metrics.md for the one-line conversion)"),
    description="torchxrayvision DenseNet-121 'all' (18 pathologies, 224 px, [-1024, 1024] input); 1024-d features",
    used_by=("extractor:xrv-densenet121", "image.fidelity@xrv-densenet121"),
)

BIOMEDCLIP_WEIGHTS = "open_clip_pytorch_model.bin"
BIOMEDCLIP = WeightsSpec(
    name="biomedclip",
    files=(WeightFile("open_clip_config.json"), WeightFile(BIOMEDCLIP_WEIGHTS),
           WeightFile("tokenizer_config.json"), WeightFile("vocab.txt"), WeightFile("text/config.json")),
    licence="MIT",
    source=("https://huggingface.co/microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 (root files as they are); "
            "text/config.json is config.json of https://huggingface.co/microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract "
            "(open_clip would fetch it from the hub to build the text tower)"),
    description="BiomedCLIP (open_clip CustomTextCLIP: timm ViT-B/16 + PubMedBERT); image-text alignment, 512-d features",
    used_by=("extractor:biomedclip", "image.fidelity@biomedclip", "image.alignment"),
)

REID_FILE = "siamese_resnet50.pth"
CHEXGENBENCH_REID = WeightsSpec(
    name="chexgenbench-reid",
    files=(WeightFile(REID_FILE),),
    licence="Apache-2.0 (CheXGenBench code); the checkpoint's terms are its authors'",
    source=("the re-identification checkpoint CheXGenBench's metrics/privacy_metrics.py loads with --reid_ckpt (a "
            "state dict of its SiameseNetwork: ResNet-50, fc 2048->128, fc_end 128->1); CheXGenBench does not publish "
            "where to download it"),
    description="CheXGenBench patient re-identification siamese network (torchvision ResNet-50 branches)",
    used_by=("image.privacy.reid",),
)

ALL = (RAD_DINO, XRV_DENSENET121, BIOMEDCLIP, CHEXGENBENCH_REID)


def find(spec: WeightsSpec, root: str | None = None) -> Located:
    """`locate` with the standard root; raises WeightsError (a UserError/ValueError) naming the missing file."""
    return locate(spec, root)


def combined_sha256(found: Located) -> str:
    """One sha256 over every file of a located spec (name and digest per file), for cache keys."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(found.sha256):
        h.update(f"{name}\0{found.sha256[name]}\n".encode())
    return h.hexdigest()


def provenance_of(extractor) -> dict[str, str]:
    """run.json's weights entries for a built extractor: per file (marked when pinned) for the field's
    extractors, else {name: weights_sha256}; {} when nothing is loaded or it is weight-free."""
    if extractor is None:
        return {}
    found = getattr(extractor, "found", None)
    if found is not None:
        return found.provenance()
    return {extractor.name: extractor.weights_sha256} if extractor.weights_sha256 else {}
