"""Image tokenizers for MeDiM: the protocol, a tiny trainable VQ model, and a safe loader.

MeDiM (spec §B.1) tokenises images with a frozen VQ model into a row-major grid of codes. At paper
scale that is the Chameleon VQGAN (512 px, f=16, 32x32 codes, K=8192: another issue). For the 64-px
phantoms we train our own small VQ-VAE (f=8 -> 8x8 = 64 codes, K=512) with this module:

    tok = load_image_tokenizer("reference_model/checkpoints/tiny-phantom")   # reads vq.json, checks sha256
    codes = tok.encode(images)     # FloatTensor[B,3,64,64] in [-1,1] -> LongTensor[B,64]
    recon = tok.decode(codes)      # LongTensor[B,64] -> FloatTensor[B,3,64,64] in [-1,1]

A checkpoint is a folder (or a vq.json path) holding a JSON card ``vq.json`` -- {"kind", "config",
"weights", "sha256", ...} -- and the safetensors file it names. ``kind`` picks the builder in
``IMAGE_TOKENIZERS``, so the Chameleon VQGAN slots in as one more entry.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from medbench.errors import UserError
from reference_model.vq_card import CARD_NAME, read_card, sha256_file  # noqa: F401 (re-exported)


@runtime_checkable
class ImageTokenizer(Protocol):
    """What MeDiM needs from an image tokenizer (agreed interface)."""

    codebook_size: int
    grid: tuple[int, int]  # (h, w): codes per image = h * w, flattened row-major
    image_size: int

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...  # [B,C,H,W] in [-1,1] -> Long[B, h*w]

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...  # Long[B, h*w] -> [B,C,H,W] in [-1,1]


# ----------------------------------------------------------------------------- the tiny VQ model


@dataclass
class VQConfig:
    image_size: int = 64
    channels: int = 3  # grayscale images are replicated to 3 channels
    widths: tuple[int, ...] = (32, 64)  # one stride-2 stage per width: f = 2 ** len(widths)
    embed_dim: int = 32  # codebook vector size
    codebook_size: int = 512
    beta: float = 0.25  # commitment weight
    ema_decay: float = 0.99  # EMA codebook updates (no codebook gradient)

    @property
    def factor(self) -> int:
        return 2 ** len(self.widths)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.factor
        return (side, side)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, cfg.widths[0] // 2, 3, padding=1)]
        ch = cfg.widths[0] // 2
        for i, w in enumerate(cfg.widths):  # each stage halves the resolution
            layers.append(nn.Conv2d(ch, w, 4, stride=2, padding=1))
            if i > 0:  # no residual block at the costly full-resolution-ish first stage
                layers.append(ResBlock(w))
            ch = w
        layers += [nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, cfg.embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        ch = cfg.widths[-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.embed_dim, ch, 3, padding=1), ResBlock(ch)]
        outs = list(reversed(cfg.widths))[1:] + [cfg.widths[0] // 2]
        for i, w in enumerate(outs):  # each stage doubles the resolution
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, w, 3, padding=1)]
            if i < len(outs) - 2:  # residual blocks only at the low resolutions, as in the encoder
                layers.append(ResBlock(w))
            ch = w
        layers += [nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, cfg.channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class EMAQuantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates (VQ-VAE-2) and dead-code restarts."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.decay, self.beta = cfg.ema_decay, cfg.beta
        self.register_buffer("codebook", torch.randn(cfg.codebook_size, cfg.embed_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(cfg.codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """flat [N, D] -> code index [N] (ties go to the lowest index: deterministic)."""
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)[None]
        return dist.argmin(1)

    def forward(self, z: torch.Tensor):
        """z [B,D,h,w] -> (straight-through quantised z, codes [B,h,w], commitment loss)."""
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        idx = self.nearest(flat)
        zq = self.codebook[idx]
        if self.training:
            self._ema_update(flat.detach(), idx)
        commit = self.beta * F.mse_loss(flat, zq.detach())
        zq = flat + (zq - flat).detach()  # straight-through estimator
        return zq.view(B, h, w, D).permute(0, 3, 1, 2), idx.view(B, h, w), commit

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor):
        onehot = F.one_hot(idx, self.codebook.shape[0]).type_as(flat)
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + self.codebook.shape[0] * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / count[:, None])

    @torch.no_grad()
    def restart_dead_codes(self, flat: torch.Tensor, generator: torch.Generator, threshold: float = 0.03) -> int:
        """Move codes whose EMA usage fell below `threshold` onto random encoder outputs."""
        dead = (self.ema_count < threshold).nonzero().flatten()
        if len(dead) == 0:
            return 0
        pick = torch.randint(0, flat.shape[0], (len(dead),), generator=generator)
        self.codebook[dead] = flat[pick]
        self.ema_sum[dead] = flat[pick]
        self.ema_count[dead] = 1.0
        return len(dead)


class TinyVQ(nn.Module):
    """A small VQ-VAE implementing `ImageTokenizer`."""

    kind = "tiny-vq"

    def __init__(self, cfg: VQConfig):
        super().__init__()
        if cfg.image_size % cfg.factor:
            raise ValueError(f"image_size {cfg.image_size} is not divisible by the downsampling factor {cfg.factor}")
        self.cfg = cfg
        self.encoder, self.quantizer, self.decoder = Encoder(cfg), EMAQuantizer(cfg), Decoder(cfg)
        self.codebook_size, self.grid, self.image_size = cfg.codebook_size, cfg.grid, cfg.image_size

    def forward(self, images: torch.Tensor):
        """Training pass: (reconstruction, codes [B,h,w], commitment loss, pre-quantisation latents)."""
        z = self.encoder(images)
        zq, codes, commit = self.quantizer(z)
        return self.decoder(zq), codes, commit, z

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, self.cfg.channels):
            raise ValueError(f"expected images [B,{self.cfg.channels},H,W] (or 1 channel), got {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, self.cfg.channels, -1, -1)
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got {tuple(images.shape[-2:])}")
        return images.float()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self._check_images(images.to(self.codebook_device)))
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        return self.quantizer.nearest(flat).view(images.shape[0], -1).long()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        h, w = self.grid
        if codes.ndim != 2 or codes.shape[1] != h * w:
            raise ValueError(f"expected codes [B,{h * w}], got {tuple(codes.shape)}")
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
        zq = self.quantizer.codebook[codes.to(self.codebook_device)]  # [B, h*w, D]
        zq = zq.view(codes.shape[0], h, w, -1).permute(0, 3, 1, 2)
        return self.decoder(zq).clamp(-1, 1)

    @property
    def codebook_device(self) -> torch.device:
        return self.quantizer.codebook.device


# ----------------------------------------------------------------------------- saving and loading


def save_tiny_vq(model: TinyVQ, folder: str | Path, extra: dict | None = None) -> Path:
    """Write vq.safetensors + vq.json (config, sha256 and anything in `extra`) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "vq.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"kind": TinyVQ.kind})
    card = {"kind": TinyVQ.kind, "config": asdict(model.cfg), "weights": weights.name, "sha256": sha256_file(weights)}
    card.update(extra or {})
    (folder / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
    return folder / CARD_NAME


def _build_tiny_vq(card: dict, weights: Path) -> TinyVQ:
    cfg = dict(card["config"])
    cfg["widths"] = tuple(cfg["widths"])
    model = TinyVQ(VQConfig(**cfg))
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: does not match the tiny-vq config in its card (missing {missing}, unexpected {unexpected})")
    return model.eval()


# kind -> builder(card, weights_path). The Chameleon VQGAN (paper scale) registers here as "chameleon-vqgan".
def _build_chameleon_vqgan(card: dict, weights: Path) -> ImageTokenizer:
    from reference_model.chameleon_vqgan import build_from_card  # paper scale: imported only when used

    return build_from_card(card, weights)


IMAGE_TOKENIZERS: dict[str, Callable[[dict, Path], ImageTokenizer]] = {"tiny-vq": _build_tiny_vq,
                                                                        "chameleon-vqgan": _build_chameleon_vqgan}


def load_image_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> ImageTokenizer:
    """Load an image tokenizer from its card (folder or vq.json), verifying the weights' sha256."""
    card, card_path = read_card(path)
    builder = IMAGE_TOKENIZERS.get(card["kind"])
    if builder is None:
        raise ValueError(f"{card_path}: unknown image tokenizer kind {card['kind']!r}; known: {sorted(IMAGE_TOKENIZERS)}")
    weights = card_path.parent / card["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"image tokenizer weights missing: place {card['weights']} (sha256 {card['sha256']}) at {weights}")
    digest = sha256_file(weights)
    if digest != card["sha256"]:
        raise UserError(f"{weights}: sha256 mismatch (file {digest}, {card_path.name} expects {card['sha256']}); "
                        f"the weights are corrupt or belong to another checkpoint")
    tok = builder(card, weights)
    tok.sha256 = digest  # identifies the tokenizer in token caches
    return tok.to(device) if isinstance(tok, nn.Module) else tok
