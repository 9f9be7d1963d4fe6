"""The unified token space and the sequence layout.

Vocabulary (one id space, tied embedding/LM head):

    [0, V_text)                    text pieces (the local BPE, incl. its pad/bos specials)
    V_text + 0 / 1 / 2             <boi> / <eoi> / <eos>
    V_text + 3                     [MASK] (the absorbing state)
    V_text + 4 ... + n_domains     one condition token per domain (if cfg.domain_token)
    image_offset + [0, K)          image VQ codes

Diffusion state (what is noised and scored), length T + N:  [ text (T) | image (N) ]
Backbone input (reference order, B.3):  <boi> image(N) <eoi> cond(C) text(T) <eos>
where cond is the domain token and/or the optional size string (cfg.size_cond_len ids).
"""
from __future__ import annotations

import torch

from reference_model.config import MeDiMConfig


class TokenSpace:
    def __init__(self, cfg: MeDiMConfig):
        self.cfg = cfg
        self.text_vocab_size = cfg.text_vocab_size
        self.text_len, self.image_len = cfg.text_len, cfg.image_len
        self.pad_id, self.bos_id = cfg.text_pad_id, cfg.text_bos_id
        v = cfg.text_vocab_size
        self.boi_id, self.eoi_id, self.eos_id, self.mask_id = v, v + 1, v + 2, v + 3
        self.domains = list(cfg.domains)
        self.domain_offset = v + 4
        self.image_offset = self.domain_offset + (len(self.domains) if cfg.domain_token else 0)
        self.codebook_size = cfg.image_codebook_size
        self.vocab_size = self.image_offset + self.codebook_size
        self.cond_len = (1 if cfg.domain_token else 0) + cfg.size_cond_len
        self.state_len = self.text_len + self.image_len
        self.seq_len = self.image_len + self.cond_len + self.text_len + 3

    # --- state <-> modalities --------------------------------------------------------------
    def make_state(self, text: torch.Tensor, image_codes: torch.Tensor) -> torch.Tensor:
        """text ids [B, T] (already in [0, V_text)) + raw VQ codes [B, N] -> state [B, T + N]."""
        if text.shape[-1] != self.text_len or image_codes.shape[-1] != self.image_len:
            raise ValueError(f"expected text length {self.text_len} and {self.image_len} image codes, "
                             f"got {text.shape[-1]} and {image_codes.shape[-1]}")
        if (image_codes < 0).any() or (image_codes >= self.codebook_size).any():
            raise ValueError(f"image codes must lie in [0, {self.codebook_size})")
        if (text < 0).any() or (text >= self.text_vocab_size).any():
            raise ValueError(f"text ids must lie in [0, {self.text_vocab_size})")
        return torch.cat([text.long(), image_codes.long() + self.image_offset], dim=-1)

    def split_state(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state -> (text ids, raw image codes). Out-of-segment ids (possible on the reference sampler
        path) become pad in text and are clamped to code 0..K-1 in the image, as the official decode."""
        text, image = state[..., : self.text_len], state[..., self.text_len:]
        text = torch.where(text < self.text_vocab_size, text, torch.full_like(text, self.pad_id))
        image = (image - self.image_offset).clamp(0, self.codebook_size - 1)
        return text, image

    def text_segment(self) -> slice:
        return slice(0, self.text_len)

    def image_segment(self) -> slice:
        return slice(self.text_len, self.state_len)

    def segment_vocab_mask(self, device=None) -> torch.Tensor:
        """[T + N, V] bool: which ids each state position may take (text pieces vs image codes)."""
        allowed = torch.zeros(self.state_len, self.vocab_size, dtype=torch.bool, device=device)
        allowed[: self.text_len, : self.text_vocab_size] = True
        allowed[self.text_len:, self.image_offset:] = True
        return allowed

    # --- condition tokens ------------------------------------------------------------------
    def domain_ids(self, domains: list[str]) -> torch.Tensor:
        for d in domains:
            if d not in self.domains:
                raise ValueError(f"unknown domain {d!r}; this MeDiM model knows {self.domains}")
        return torch.tensor([self.domain_offset + self.domains.index(d) for d in domains])

    def cond_ids(self, domains: list[str], size_ids: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C] condition ids: the domain token and/or the size-string ids (never masked, never scored)."""
        parts = []
        if self.cfg.domain_token:
            parts.append(self.domain_ids(domains)[:, None])
        if self.cfg.size_cond_len:
            if size_ids is None:
                raise ValueError("config.size_cond_len > 0 needs size_ids (see size_cond_text)")
            parts.append(size_ids.long())
        if not parts:
            return torch.zeros(len(domains), 0, dtype=torch.long)
        return torch.cat(parts, dim=1)

    def size_cond_ids(self, text_tokenizer, width: int, height: int) -> list[int]:
        """The reference's hidden cond string, tokenized with BOS and padded to size_cond_len.
        With cfg.compact_cond the string is the official literal ("... tensor([W]) ...", B.3) and is
        left-padded, so its last id sits next to the text (the official -1 text read-out sees it)."""
        if self.cfg.compact_cond:
            text = f"Image Size: Width is tensor([{width}]) Height is tensor([{height}])."
        else:
            text = f"Image Size: Width is {width} Height is {height}."
        ids = [text_tokenizer.bos_id] + text_tokenizer.encode(text)
        n = self.cfg.size_cond_len
        if self.cfg.compact_cond:
            if len(ids) > n:
                raise ValueError(f"the size string needs {len(ids)} tokens but size_cond_len is {n}")
            return [self.pad_id] * (n - len(ids)) + ids
        ids = ids[:n]
        return ids + [self.pad_id] * (n - len(ids))

    def cond_visible(self, cond: torch.Tensor) -> torch.Tensor:
        """[B, C] bool: which cond slots are real tokens. Only compact_cond hides the size string's pads."""
        visible = torch.ones_like(cond, dtype=torch.bool)
        if self.cfg.compact_cond and self.cfg.size_cond_len:
            start = 1 if self.cfg.domain_token else 0
            visible[:, start:] = cond[:, start:] != self.pad_id
        return visible

    def position_ids(self, cond: torch.Tensor) -> torch.Tensor | None:
        """[B, L] RoPE positions that skip hidden cond pads (compact_cond), else None (0..L-1)."""
        if not self.cfg.compact_cond:
            return None
        b = cond.shape[0]
        ones = torch.ones(b, 1, dtype=torch.long, device=cond.device)
        real = torch.cat([ones.expand(b, self.image_len + 2), self.cond_visible(cond).long(),
                          ones.expand(b, self.text_len + 1)], dim=1)
        return (real.cumsum(1) - 1).clamp_min(0)

    # --- backbone sequence -----------------------------------------------------------------
    def build_sequence(self, state: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state [B, T+N], cond [B, C] -> (input ids [B, L], 2-D key mask [B, L]).

        Key mask (A.3): a key is hidden iff it is an *unmasked* text pad; masked pads and everything else
        are attended. Query rows are never masked."""
        b = state.shape[0]
        text, image = state[:, : self.text_len], state[:, self.text_len:]
        col = lambda i: torch.full((b, 1), i, dtype=torch.long, device=state.device)  # noqa: E731
        ids = torch.cat([col(self.boi_id), image, col(self.eoi_id), cond.to(state.device), text,
                         col(self.eos_id)], dim=1)
        keys = torch.ones_like(ids, dtype=torch.bool)
        t0 = self.image_len + 2 + self.cond_len
        keys[:, t0: t0 + self.text_len] = text != self.pad_id
        if self.cfg.compact_cond:
            keys[:, self.image_len + 2: t0] = self.cond_visible(cond).to(state.device)
        return ids, keys

    def readout_positions(self, offset: str = "clean") -> torch.Tensor:
        """For each state position (text then image), the sequence position whose hidden state predicts it.
        'reference' reproduces the official slices: image at +1, text at -1 (A.5)."""
        t0 = self.image_len + 2 + self.cond_len
        text_pos = torch.arange(self.text_len) + t0
        image_pos = torch.arange(self.image_len) + 1
        if offset == "reference":
            text_pos, image_pos = text_pos - 1, image_pos + 1
        return torch.cat([text_pos, image_pos])
