"""Tiny random-initialised models of the real evaluator architectures, saved in the real file layouts.

Each writer puts one weights folder under `root` exactly as medbench.features.field_weights
describes it (the published files' names and formats), with the same classes shrunk:

    write_rad_dino(root)     transformers Dinov2Model (hidden 32, 2 layers, patch 14, 28 px) + BitImageProcessor
    write_xrv(root)          torchxrayvision DenseNet (growth 4, blocks (1, 1, 1, 1), 18 classes, 1 channel)
    write_biomedclip(root)   open_clip CustomTextCLIP: timm vit_tiny_patch16_224 + a 2-layer BERT, WordPiece vocab
    write_reid(root)         CheXGenBench's SiameseNetwork layout on a torchvision ResNet (Bottleneck, 1 block a stage)

and `pin_all(root)` accepts them as local (unverified) weights, as a user would with `medbench weights pin`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

RAD_DINO_MEAN, RAD_DINO_STD = [0.5307, 0.5307, 0.5307], [0.2583, 0.2583, 0.2583]  # rad-dino's preprocessor_config.json
WORDS = ("no pleural effusion pneumothorax focal consolidation heart size normal cardiomegaly enlarged mild moderate "
         "severe left right lung lungs clear there is are of the a and with without small large opacity edema "
         "pulmonary support devices nodule lobe lower upper possible likely").split()


def write_rad_dino(root: Path, seed: int = 0) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    folder = Path(root) / "rad-dino"
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=28, patch_size=14, layerscale_value=1.0)
    Dinov2Model(config).save_pretrained(folder, safe_serialization=True)
    BitImageProcessor(do_resize=True, size={"shortest_edge": 28}, resample=3, do_center_crop=True,
                      crop_size={"height": 28, "width": 28}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                      image_mean=RAD_DINO_MEAN, image_std=RAD_DINO_STD, do_convert_rgb=True).save_pretrained(folder)
    return folder


def tiny_xrv(seed: int = 0):
    import torchxrayvision as xrv

    torch.manual_seed(seed)
    return xrv.models.DenseNet(growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8, bn_size=2,
                               num_classes=18, in_channels=1).eval()


def write_xrv(root: Path, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    from medbench.features.field_weights import XRV_FILE

    model = tiny_xrv(seed)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    folder = Path(root) / "xrv-densenet121"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / XRV_FILE))
    return folder


def biomedclip_config() -> dict:
    return {"model_cfg": {"embed_dim": 16,
                          "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                                         "timm_pool": "", "timm_proj": "linear", "image_size": 224},
                          "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                                       "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                                       "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                                       "context_length": 256}},
            "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}


def write_biomedclip(root: Path, seed: int = 0) -> Path:
    """The hub repository's layout: open_clip_config.json, open_clip_pytorch_model.bin (a torch.save'd state
    dict), tokenizer files; plus text/config.json (the BERT config open_clip would fetch)."""
    from transformers import BertConfig

    from medbench.features.biomedclip import build_biomedclip
    from medbench.features.field_weights import BIOMEDCLIP_WEIGHTS

    folder = Path(root) / "biomedclip"
    (folder / "text").mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                                              "model_max_length": 256}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                                                                "cls_token": "[CLS]", "mask_token": "[MASK]"}))
    BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=256).save_pretrained(folder / "text")
    (folder / "open_clip_config.json").write_text(json.dumps(biomedclip_config(), indent=1))
    from open_clip.model import CustomTextCLIP

    cfg = biomedclip_config()["model_cfg"]
    cfg["text_cfg"] = dict(cfg["text_cfg"], hf_model_name=str(folder / "text"), hf_model_pretrained=False)
    torch.manual_seed(seed)
    model = CustomTextCLIP(**cfg)
    torch.save(model.state_dict(), folder / BIOMEDCLIP_WEIGHTS)
    build_biomedclip(folder)  # the written folder loads strictly
    return folder


def tiny_reid(seed: int = 0):
    from medbench.metrics.reid import SiameseNetwork

    torch.manual_seed(seed)
    return SiameseNetwork(layers=(1, 1, 1, 1)).eval()


def write_reid(root: Path, seed: int = 0) -> Path:
    from medbench.features.field_weights import REID_FILE

    folder = Path(root) / "chexgenbench-reid"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_reid(seed).state_dict(), folder / REID_FILE)
    return folder


def write_all(root: Path) -> Path:
    root = Path(root)
    write_rad_dino(root)
    write_xrv(root)
    write_biomedclip(root)
    write_reid(root)
    return root


def pin_all(root: Path) -> None:
    """Accept the tiny files as local weights (their hashes are not the published files')."""
    from medbench.features.field_weights import ALL
    from medbench.weights import pin

    for spec in ALL:
        if (Path(root) / spec.name).is_dir():
            pin(spec, root)


def blob_images(n: int, seed: int, bright: int, size: int = 64, mode: str = "L") -> list:
    """Gray images with a few bright discs (two sets differ in brightness); mode 'RGB' replicates channels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        img = rng.normal(60, 10, (size, size))
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(size // 6, size - size // 6, 2)
            r = int(rng.integers(size // 16, size // 6))
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += bright
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        out.append(im.convert(mode))
    return out
