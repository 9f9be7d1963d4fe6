"""Start MeDiM from a local Hugging Face checkpoint of its backbone (Liquid-7B = Gemma-7B architecture, or any
Llama/Gemma decoder): keep the first N layers, fit the embedding to the unified vocabulary.

    cfg = load_config("medim-liquid-10l").replace(pretrained_path="/models/Liquid_V1_7B")
    net = MeDiMBackbone(cfg)        # calls load_pretrained_decoder, then adds the time embedder and AdaLN

Nothing is downloaded: the folder must hold config.json and *.safetensors (sharded or not, CausalLM or base
model naming). Weights are loaded in fp32 (training keeps fp32 master weights).

Truncation (spec A.1): layers 0..N-1 are kept bit-exactly, later layers are never read; the final norm is
the checkpoint's own (trained to follow its last layer, as in the official README recipe). An untied
`lm_head` in the checkpoint is dropped: MeDiM's head is tied to the embedding.

Embedding (`cfg.embedding_init`; V = unified vocabulary, V_text = text pieces, V_old = pretrained rows):
- ``slice`` (default, the official quirk, A.2): rows 0..V-1 of the pretrained table, whatever they meant
  there (for Liquid: Gemma text rows under Llama-2 ids, and image codes on Gemma text rows).
- ``mean``: rows 0..V_text-1 are kept (useful when the text tokenizer is the checkpoint's own); every other
  row (<boi>/<eoi>/<eos>, [MASK], domain tokens, image codes) is a *new row*.
- ``remap``: as ``mean``, but image code k takes pretrained row ``pretrained_image_row_offset + k`` (Liquid's
  learned VQ-code rows start at 256000), so the image prior of the MLLM is kept.
New rows (and, for ``slice``, any row beyond V_old) are ``mean + embedding_noise * std * N(0, 1)`` with the
per-dimension mean/std of all pretrained rows and a generator seeded by ``cfg.seed``: close to the
distribution of real rows, distinct from each other, reproducible.

The time embedder and AdaLN are added by MeDiMBackbone, initialised by ``cfg.adaln_init``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from transformers import GemmaConfig, GemmaModel, LlamaConfig, LlamaModel
from transformers.models.gemma.modeling_gemma import GemmaDecoderLayer
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from reference_model.config import MeDiMConfig
from reference_model.tokens import TokenSpace

# arch -> (HF config class, base decoder class, decoder layer class); MeDiMBackbone subclasses the layer with AdaLN
ARCHS = {"llama": (LlamaConfig, LlamaModel, LlamaDecoderLayer), "gemma": (GemmaConfig, GemmaModel, GemmaDecoderLayer)}

GEOMETRY = {  # MeDiMConfig field -> transformers config attribute that must agree
    "hidden_size": "hidden_size", "num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
    "intermediate_size": "intermediate_size",
}


def read_pretrained_config(cfg: MeDiMConfig):
    """The checkpoint's transformers config, checked against cfg (architecture, width, heads, depth)."""
    from transformers import AutoConfig

    path = Path(cfg.pretrained_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"pretrained_path {str(path)!r}: expected a local transformers checkpoint folder "
                                "with config.json and *.safetensors (e.g. Junfeng5/Liquid_V1_7B, downloaded by you)")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"pretrained_path {str(path)!r}: no *.safetensors weights in the folder")
    hf = AutoConfig.from_pretrained(path, local_files_only=True)
    if hf.model_type != cfg.arch:
        raise ValueError(f"{path}/config.json has model_type {hf.model_type!r} but config.arch is {cfg.arch!r}")
    for ours, theirs in GEOMETRY.items():
        if getattr(hf, theirs, getattr(cfg, ours)) != getattr(cfg, ours):
            raise ValueError(f"{path}/config.json: {theirs}={getattr(hf, theirs)} but config.{ours}={getattr(cfg, ours)}")
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    if head_dim != (cfg.head_dim or cfg.hidden_size // cfg.num_heads):
        raise ValueError(f"{path}/config.json: head_dim {head_dim} does not match the MeDiM config")
    if cfg.num_layers > hf.num_hidden_layers:
        raise ValueError(f"{path} has {hf.num_hidden_layers} layers; cannot keep the first {cfg.num_layers}")
    return hf


def new_rows(old: torch.Tensor, n: int, noise: float, seed: int) -> torch.Tensor:
    """n rows drawn around the pretrained rows: mean + noise * std * N(0, 1), seeded."""
    old = old.float()
    mean, std = old.mean(0), old.std(0)
    g = torch.Generator().manual_seed(seed)
    return mean + noise * std * torch.randn(n, old.shape[1], generator=g)


def resized_embedding(old: torch.Tensor, tokens: TokenSpace, mode: str = "slice", noise: float = 0.1,
                      seed: int = 0, image_row_offset: int | None = None) -> torch.Tensor:
    """[V_old, H] pretrained table -> [V, H] table of the unified vocabulary (see the module docstring)."""
    v, v_old = tokens.vocab_size, old.shape[0]
    table = new_rows(old, v, noise, seed)
    if mode == "slice":
        keep = min(v, v_old)
        table[:keep] = old[:keep].float()
        return table
    if mode not in ("mean", "remap"):
        raise ValueError(f"unknown embedding_init {mode!r}; choose slice, mean or remap")
    keep = min(tokens.text_vocab_size, v_old)
    table[:keep] = old[:keep].float()
    if mode == "remap":
        k = tokens.codebook_size
        if image_row_offset is None or image_row_offset + k > v_old:
            raise ValueError(f"embedding_init='remap' needs rows [{image_row_offset}, {image_row_offset}+{k}) in a "
                             f"pretrained table of {v_old} rows")
        table[tokens.image_offset:] = old[image_row_offset: image_row_offset + k].float()
    return table


def load_pretrained_decoder(cfg: MeDiMConfig, tokens: TokenSpace | None = None) -> nn.Module:
    """The checkpoint's base decoder (LlamaModel/GemmaModel), first cfg.num_layers layers, fp32, with the
    embedding resized to the unified vocabulary by cfg.embedding_init."""
    tokens = tokens or TokenSpace(cfg)
    hf = read_pretrained_config(cfg)
    hf.num_hidden_layers = cfg.num_layers  # layers >= N are unexpected keys: never loaded
    if cfg.arch == "gemma" and getattr(hf, "hidden_act", None) in (None, "gelu"):
        hf.hidden_act = "gelu_pytorch_tanh"  # what Gemma (and the official MeDiM code) run
    model = ARCHS[cfg.arch][1].from_pretrained(cfg.pretrained_path, config=hf, local_files_only=True,
                                               dtype=torch.float32, attn_implementation=cfg.attn_implementation)
    if len(model.layers) != cfg.num_layers:
        raise RuntimeError(f"expected {cfg.num_layers} layers after truncation, got {len(model.layers)}")
    old = model.embed_tokens.weight.detach().clone()
    table = resized_embedding(old, tokens, cfg.embedding_init, cfg.embedding_noise, cfg.seed,
                              cfg.pretrained_image_row_offset)
    model.resize_token_embeddings(tokens.vocab_size, mean_resizing=False)
    emb = model.embed_tokens
    with torch.no_grad():
        emb.weight.copy_(table)
    emb.padding_idx = None  # every row trains (the official padding_idx=0 froze row 0's gradient)
    model.config.pad_token_id = None
    return model
