"""The Chameleon VQGAN (MeDiM's paper-scale image tokenizer), key-compatible with the public `vqgan.ckpt`.

MeDiM tokenises 512-px RGB images with the VQGAN that Chameleon released and Liquid redistributes
(spec §B.1): a Taming-transformers `VQModel` (conv encoder, 8192 x 256 codebook, conv decoder) with
downsampling f = 16, so 512 px -> 32 x 32 = 1024 codes, flattened row-major.

This is our own implementation of that architecture. Its state-dict keys and shapes are exactly those
of the original checkpoint (tests/fixtures/chameleon_vqgan_keys.json is the contract), so converted
weights (``python -m reference_model.convert_vqgan``) load strictly:

    vq = load_chameleon_vqgan("checkpoints/chameleon-vqgan")          # vq.json + vqgan.safetensors
    x = preprocess_image(Image.open("cxr.jpg")).unsqueeze(0)         # MeDiM: pad to square, 512 px
    codes = vq.encode(x)                                            # Long[1, 1024] in [0, 8192)
    image = to_pil(vq.decode(codes)[0])                            # 512 x 512 RGB

Hyper-parameters come from the checkpoint's `vqgan.yaml` (``ChameleonVQGANConfig.from_yaml``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from medbench.errors import UserError
from reference_model.vq_card import read_card, sha256_file

MEDIM_PAD_COLOR = (122, 116, 104)  # MeDiM's expand2square fill (spec §B.1)

# ----------------------------------------------------------------------------- config


@dataclass
class ChameleonVQGANConfig:
    """`model.params` of vqgan.yaml: `embed_dim`, `n_embed` and the flattened `ddconfig`.

    Defaults are the public Chameleon / Liquid values (also transformers' ChameleonVQVAEConfig)."""

    embed_dim: int = 256  # codebook vector size
    n_embed: int = 8192  # codebook size
    double_z: bool = False
    z_channels: int = 256
    resolution: int = 512
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # one resolution level each; f = 2 ** (len - 1)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()  # attention inside levels at these resolutions (mid attention always)
    dropout: float = 0.0
    attn_type: str = "vanilla"  # "vanilla" (mid attention block) or "none"
    resamp_with_conv: bool = True

    # keys of `model.params` that only matter for training or loading, not for the architecture
    _IGNORED_PARAMS = ("ckpt_path", "lossconfig", "ignore_keys", "image_key", "colorize_nlabels", "monitor",
                       "scheduler_config", "lr_g_factor", "sane_index_shape", "base_learning_rate", "target")

    def __post_init__(self):
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.attn_resolutions = tuple(int(r) for r in self.attn_resolutions or ())
        if self.double_z:
            raise ValueError("double_z must be false for a VQ model (the quantiser takes z_channels features)")
        if not self.resamp_with_conv:
            raise ValueError("resamp_with_conv=false (pooling / conv-free upsampling) is not supported")
        if self.attn_type not in ("vanilla", "none"):
            raise ValueError(f"attn_type must be 'vanilla' or 'none', got {self.attn_type!r}")
        widths = {self.ch * m for m in self.ch_mult}
        if any(w % 32 for w in widths):
            raise ValueError(f"channel widths {sorted(widths)} must be multiples of 32 (GroupNorm with 32 groups)")
        if self.resolution % self.factor:
            raise ValueError(f"resolution {self.resolution} is not divisible by the downsampling factor {self.factor}")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.resolution // self.factor
        return (side, side)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "ChameleonVQGANConfig":
        """Accept the whole yaml ({"model": {"params": ...}}), `model.params`, or a flat dict (asdict form)."""
        if "model" in d:
            d = d["model"].get("params", d["model"])
        d = dict(d)
        if d.get("remap") is not None:
            raise ValueError(f"{source}: index remapping (remap={d['remap']!r}) is not supported")
        d.pop("remap", None)
        flat = {k: v for k, v in d.items() if k != "ddconfig" and k not in cls._IGNORED_PARAMS}
        ddconfig = dict(d.get("ddconfig") or {})
        if ddconfig.pop("use_linear_attn", False):
            raise ValueError(f"{source}: use_linear_attn is not supported (Chameleon uses vanilla attention)")
        flat.update(ddconfig)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ValueError(f"{source}: unknown VQGAN hyper-parameters {unknown}; known: {sorted(known)}")
        return cls(**flat)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ChameleonVQGANConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VQGAN config not found: place vqgan.yaml (from the Chameleon/Liquid release) at {path}")
        try:
            d = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping with model.params, got {type(d).__name__}")
        return cls.from_dict(d, source=str(path))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ch_mult"], d["attn_resolutions"] = list(self.ch_mult), list(self.attn_resolutions)
        return d


# ----------------------------------------------------------------------------- building blocks


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm-swish-conv twice, with a 1x1 `nin_shortcut` when the width changes (no time embedding)."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all h*w positions, q/k/v/proj_out as 1x1 convs."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = group_norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (proj(h).flatten(2).transpose(1, 2) for proj in (self.q, self.k, self.v))  # [B, HW, C]
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        return x + self.proj_out(out.transpose(1, 2).reshape(B, C, H, W))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero-padding right and bottom by one (Taming's asymmetric padding)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(blocks: list[nn.Module], attns: list[nn.Module]) -> nn.Module:
    """A resolution level with the original's attribute names: .block, .attn (+ .downsample / .upsample)."""
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attns)
    return level


def _middle(ch: int, cfg: ChameleonVQGANConfig) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(ch, ch, cfg.dropout)
    mid.attn_1 = AttnBlock(ch) if cfg.attn_type == "vanilla" else nn.Identity()
    mid.block_2 = ResnetBlock(ch, ch, cfg.dropout)
    return mid


# ----------------------------------------------------------------------------- encoder and decoder


class Encoder(nn.Module):
    """conv_in -> per level: num_res_blocks ResnetBlocks (+ attention), Downsample except the last
    -> mid (block, attention, block) -> GroupNorm, swish, conv_out to z_channels."""

    def __init__(self, cfg: ChameleonVQGANConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        ch, res = cfg.ch, cfg.resolution
        for i, mult in enumerate(cfg.ch_mult):
            out = cfg.ch * mult
            blocks = [ResnetBlock(ch if j == 0 else out, out, cfg.dropout) for j in range(cfg.num_res_blocks)]
            attns = [AttnBlock(out) for _ in blocks] if res in cfg.attn_resolutions else []
            level, ch = _level(blocks, attns), out
            if i < len(cfg.ch_mult) - 1:
                level.downsample, res = Downsample(ch), res // 2
            self.down.append(level)
        self.mid = _middle(ch, cfg)
        self.norm_out, self.conv_out = group_norm(ch), nn.Conv2d(ch, cfg.z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """The mirror image: conv_in from z_channels -> mid -> levels from coarsest to finest, each with
    num_res_blocks + 1 ResnetBlocks and an Upsample except the finest -> GroupNorm, swish, conv_out.
    `up[i]` is stored at the index of its resolution level (up.0 = full resolution), as the original."""

    def __init__(self, cfg: ChameleonVQGANConfig):
        super().__init__()
        ch, res = cfg.ch * cfg.ch_mult[-1], cfg.resolution // cfg.factor
        self.conv_in = nn.Conv2d(cfg.z_channels, ch, 3, padding=1)
        self.mid = _middle(ch, cfg)
        levels = []
        for i in reversed(range(len(cfg.ch_mult))):
            out = cfg.ch * cfg.ch_mult[i]
            blocks = [ResnetBlock(ch if j == 0 else out, out, cfg.dropout) for j in range(cfg.num_res_blocks + 1)]
            attns = [AttnBlock(out) for _ in blocks] if res in cfg.attn_resolutions else []
            level, ch = _level(blocks, attns), out
            if i > 0:
                level.upsample, res = Upsample(ch), res * 2
            levels.append(level)
        self.up = nn.ModuleList(reversed(levels))
        self.norm_out, self.conv_out = group_norm(ch), nn.Conv2d(ch, cfg.out_ch, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest codebook vector by squared Euclidean distance (inference only; the codebook is frozen)."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim, _weight=torch.empty(n_embed, embed_dim))
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)  # Taming's initialisation

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D, h, w] -> codes [B, h*w] (row-major)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.T
        return dist.argmin(1).view(z.shape[0], -1)

    def lookup(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes [B, h*w] -> z_q [B, D, h, w]."""
        return self.embedding(codes).view(codes.shape[0], *grid, -1).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- the tokenizer


class ChameleonVQGAN(nn.Module):
    """Implements reference_model.vq.ImageTokenizer; submodule names follow the original VQModel."""

    kind = "chameleon-vqgan"

    def __init__(self, cfg: ChameleonVQGANConfig | dict | None = None):
        super().__init__()
        cfg = cfg if isinstance(cfg, ChameleonVQGANConfig) else ChameleonVQGANConfig.from_dict(cfg or {})
        self.cfg = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
        self.codebook_size, self.grid, self.image_size = cfg.n_embed, cfg.grid, cfg.resolution

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents [B, embed_dim, h, w] (encoder + quant_conv)."""
        return self.quant_conv(self.encoder(images))

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, self.cfg.in_channels):
            raise ValueError(f"expected images [B,{self.cfg.in_channels},H,W] (or 1 channel), got {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, self.cfg.in_channels, -1, -1)
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got {tuple(images.shape[-2:])}; "
                             f"use preprocess_image() to pad and resize")
        return images.to(self.device, self.dtype)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Float[B,3,H,W] in [-1,1] -> Long[B, h*w] codes in [0, n_embed), row-major."""
        return self.quantize.nearest(self.latents(self._check_images(images))).long()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Long[B, h*w] -> Float[B,3,H,W], clamped to [-1,1] (as Chameleon does before making a PIL image)."""
        h, w = self.grid
        if codes.ndim != 2 or codes.shape[1] != h * w:
            raise ValueError(f"expected codes [B,{h * w}], got {tuple(codes.shape)}")
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
        z_q = self.quantize.lookup(codes.to(self.device).long(), self.grid)
        return self.decoder(self.post_quant_conv(z_q)).clamp(-1, 1)

    @property
    def device(self) -> torch.device:
        return self.quantize.embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.quantize.embedding.weight.dtype


# ----------------------------------------------------------------------------- images in and out


def preprocess_image(image: Image.Image, size: int = 512, pad_color: tuple[int, int, int] | None = MEDIM_PAD_COLOR,
                     whiten_transparency: bool = False) -> torch.Tensor:
    """PIL image -> Float[3, size, size] in [-1, 1].

    MeDiM (default, spec §B.1): RGB, pad to a centred square with `pad_color`, LANCZOS resize to `size`
    (its extra "shortest side + centre crop" step is then a no-op). Chameleon's own ImageTokenizer:
    ``pad_color=None, whiten_transparency=True`` -- alpha blended onto white, shortest side resized
    to `size` with LANCZOS, centre crop."""
    if whiten_transparency and image.mode != "RGB":
        rgba = np.asarray(image.convert("RGBA")).astype(np.float64)
        alpha = rgba[..., 3:] / 255.0
        image = Image.fromarray(((1 - alpha) * 255 + alpha * rgba[..., :3]).astype(np.uint8), "RGB")
    image = image.convert("RGB")
    w, h = image.size
    if pad_color is not None and w != h:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), tuple(pad_color))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image, (w, h) = canvas, (side, side)
    scale = size / min(w, h)
    new_size = (round(scale * w), round(scale * h))
    if new_size != (w, h):
        image = image.resize(new_size, Image.Resampling.LANCZOS)
    x0, y0 = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((x0, y0, x0 + size, y0 + size))
    pixels = np.asarray(image, dtype=np.float64) / 255.0 * 2 - 1
    return torch.from_numpy(pixels).permute(2, 0, 1).float()


def to_pil(image: torch.Tensor) -> Image.Image:
    """Float[3,H,W] in [-1,1] -> RGB PIL image (clamped, truncated to uint8 as Chameleon's pil_from_img_toks)."""
    x = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return Image.fromarray((x * 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------- loading converted weights

WEIGHTS_NAME = "vqgan.safetensors"


def build_from_card(card: dict, weights: Path) -> ChameleonVQGAN:
    """Builder for reference_model.vq.IMAGE_TOKENIZERS["chameleon-vqgan"]: strict load, eval mode, frozen."""
    from safetensors.torch import load_file

    cfg = ChameleonVQGANConfig.from_dict(card.get("config", {}), source=str(weights))
    with torch.device("meta"):  # no random init of 68.7 M parameters that are overwritten at once
        model = ChameleonVQGAN(cfg)
    state = load_file(str(weights))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = sorted(set(expected) ^ set(state)) + [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if problems:
        raise ValueError(f"{weights}: does not match the chameleon-vqgan config in its card "
                         f"({len(problems)} missing, unexpected or mis-shaped tensors, e.g. {problems[:5]})")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_chameleon_vqgan(path: str | Path, device: str | torch.device = "cpu") -> ChameleonVQGAN:
    """Load a folder written by `python -m reference_model.convert_vqgan` (its vq.json card, or the card path);
    the weights' sha256 must match the card."""
    card, card_path = read_card(path)
    if card["kind"] != ChameleonVQGAN.kind:
        raise ValueError(f"{card_path}: kind is {card['kind']!r}, expected {ChameleonVQGAN.kind!r}")
    weights = card_path.parent / card["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"VQGAN weights missing: place {card['weights']} (sha256 {card['sha256']}) at {weights}; "
                                f"write it with `python -m reference_model.convert_vqgan --ckpt vqgan.ckpt --yaml vqgan.yaml "
                                f"--out {card_path.parent}`")
    digest = sha256_file(weights)
    if digest != card["sha256"]:
        raise UserError(f"{weights}: sha256 mismatch (file {digest}, {card_path.name} expects {card['sha256']})")
    model = build_from_card(card, weights)
    model.sha256 = digest
    return model.to(device)
