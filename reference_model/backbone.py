"""The MeDiM backbone: a transformers Llama/Gemma decoder made bidirectional, with a sigma(t) embedding
injected by per-block AdaLN, and a tied LM head read out at the diffusion-state positions.

    from reference_model.backbone import MeDiMBackbone
    net = MeDiMBackbone(cfg)                      # from the config, or cfg.pretrained_path (truncated)
    logits = net(state, sigma, cond)              # [B, T+N] ids, [B] sigma, [B, C] cond -> [B, T+N, V] fp32

Bidirectional attention: `config.is_causal = False` (transformers 5.x builds a padding-only mask on
sdpa/eager) and every attention module's `is_causal` flag follows it, so the mask-free sdpa fast path is
not silently causal. Key padding comes through the 2-D attention mask (TokenSpace.build_sequence).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from reference_model.config import MeDiMConfig
from reference_model.pretrained import ARCHS, load_pretrained_decoder
from reference_model.tokens import TokenSpace


class TimestepEmbedder(nn.Module):
    """sigma -> 256-d sinusoid [cos | sin] -> Linear -> SiLU -> Linear (DiT style; A.4)."""

    def __init__(self, hidden_size: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    @staticmethod
    def sinusoid(sigma: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
        args = sigma.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        emb = self.sinusoid(sigma, self.freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def adaln_layer_class(base: type) -> type:
    """Subclass a transformers decoder layer with AdaLN: shift/scale/gate for attention and MLP, computed
    from the time embedding passed through forward kwargs as `adaln_cond` ([B, H])."""

    class AdaLNDecoderLayer(base):
        def __init__(self, config, layer_idx: int):
            super().__init__(config, layer_idx)
            self.adaLN_modulation = nn.Linear(config.hidden_size, 6 * config.hidden_size)  # no SiLU (as reference)
            self.identity_gate = bool(getattr(config, "medim_identity_gate", False))

        def forward(self, hidden_states, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                    position_embeddings=None, adaln_cond=None, **kwargs):
            if adaln_cond is None:
                raise ValueError("AdaLN decoder layer needs adaln_cond (the time embedding)")
            mods = self.adaLN_modulation(adaln_cond)[:, None, :].to(hidden_states.dtype)
            shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods.chunk(6, dim=-1)
            if self.identity_gate:
                gate_a, gate_m = 1 + gate_a, 1 + gate_m
            h = self.input_layernorm(hidden_states) * (1 + scale_a) + shift_a
            h, _ = self.self_attn(hidden_states=h, attention_mask=attention_mask, position_ids=position_ids,
                                  cache=cache, use_cache=use_cache, position_embeddings=position_embeddings, **kwargs)
            hidden_states = hidden_states + gate_a * h
            h = self.post_attention_layernorm(hidden_states) * (1 + scale_m) + shift_m
            return hidden_states + gate_m * self.mlp(h)

    AdaLNDecoderLayer.__name__ = AdaLNDecoderLayer.__qualname__ = f"AdaLN{base.__name__}"
    return AdaLNDecoderLayer


def hf_config(cfg: MeDiMConfig, vocab_size: int, max_positions: int):
    config_cls = ARCHS[cfg.arch][0]
    extra = {"hidden_activation": "gelu_pytorch_tanh"} if cfg.arch == "gemma" else {}
    hf = config_cls(vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                    num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                    num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim or cfg.hidden_size // cfg.num_heads,
                    max_position_embeddings=max(max_positions, 64), rms_norm_eps=cfg.rms_norm_eps,
                    rope_theta=cfg.rope_theta, tie_word_embeddings=True, pad_token_id=None, **extra)
    hf._attn_implementation = cfg.attn_implementation
    return hf


class MeDiMBackbone(nn.Module):
    def __init__(self, cfg: MeDiMConfig):
        super().__init__()
        self.cfg = cfg
        self.tokens = TokenSpace(cfg)
        if cfg.pretrained_path:
            self.decoder = load_pretrained_decoder(cfg, self.tokens)  # reference_model/pretrained.py
        else:
            self.decoder = ARCHS[cfg.arch][1](hf_config(cfg, self.tokens.vocab_size, self.tokens.seq_len))
        dec_cfg = self.decoder.config
        dec_cfg.is_causal = cfg.causal
        dec_cfg.medim_identity_gate = cfg.adaln_init == "identity_gate"
        if cfg.time_embedding == "adaln":
            self._install_adaln_layers()
        for layer in self.decoder.layers:
            layer.self_attn.is_causal = cfg.causal
        hidden = dec_cfg.hidden_size
        if cfg.time_embedding != "none":
            self.time_embed = TimestepEmbedder(hidden, cfg.time_freq_dim)
        if cfg.time_embedding == "add":  # "w/o AdaLN": weighted addition into the token representations
            self.time_weight = nn.Parameter(torch.ones(()))
        self.register_buffer("readout", self.tokens.readout_positions(cfg.logit_offset), persistent=False)
        self.register_buffer("vocab_allowed", self.tokens.segment_vocab_mask(), persistent=False)
        if cfg.gradient_checkpointing:
            # non-reentrant, so gradients reach adaln_cond passed as a keyword argument
            enable = getattr(self.decoder, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def _install_adaln_layers(self):
        cls = adaln_layer_class(ARCHS[self.cfg.arch][2])
        new_layers = []
        for i, old in enumerate(self.decoder.layers):
            layer = cls(self.decoder.config, i).to(device=old.input_layernorm.weight.device,
                                                   dtype=old.input_layernorm.weight.dtype)
            if old.input_layernorm.weight.device.type != "meta":
                missing, unexpected = layer.load_state_dict(old.state_dict(), strict=False)
                assert not unexpected and all(k.startswith("adaLN_modulation") for k in missing), (missing, unexpected)
                self._init_adaln(layer.adaLN_modulation)
            new_layers.append(layer)
        self.decoder.layers = nn.ModuleList(new_layers)

    def _init_adaln(self, linear: nn.Linear):
        if self.cfg.adaln_init == "normal":  # what the reference's from_pretrained path produces at runtime
            nn.init.normal_(linear.weight, std=0.02)
        else:  # "zero" (AdaLN-Zero, the paper's intent) and "identity_gate" (1 + gate, zero init)
            nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)

    @property
    def embed(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed.weight.numel() if non_embedding else n

    def forward(self, state: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """state [B, T+N] ids (with [MASK]), sigma [B], cond [B, C] -> raw logits [B, T+N, V] in fp32."""
        ids, keys = self.tokens.build_sequence(state, cond)
        kwargs = {}
        if self.cfg.time_embedding == "adaln":
            kwargs["adaln_cond"] = self.time_embed(sigma)
        if self.cfg.time_embedding == "add":
            emb = self.embed(ids) + self.time_weight * self.time_embed(sigma)[:, None, :].to(self.embed.weight.dtype)
            kwargs["inputs_embeds"] = emb
        else:
            kwargs["input_ids"] = ids
        positions = self.tokens.position_ids(cond)  # None unless compact_cond (official variable-length cond)
        if positions is not None:
            kwargs["position_ids"] = positions.to(ids.device)
        hidden = self.decoder(attention_mask=keys.long(), use_cache=False, **kwargs).last_hidden_state
        hidden = hidden[:, self.readout]
        return F.linear(hidden, self.embed.weight).float()  # tied LM head
