"""Masked (absorbing-state) discrete diffusion, MDLM style: schedule, forward process, parameterisation
and loss as small swappable pieces.

    diff = MaskedDiffusion(cfg, tokens)
    noise = diff.draw_noise(global_batch, generator)           # all randomness of one step, per sample
    loss, stats = diff.loss(model, batch, noise)

All randomness is drawn per sample for the *global* batch and sliced per rank/micro-batch, so a run gives
the same numbers whatever the number of processes or the accumulation split.
"""
from __future__ import annotations

import torch

from reference_model.config import MeDiMConfig
from reference_model.tokens import TokenSpace

NEG = -1e6  # the reference's "minus infinity" (finite, so 0 * NEG never makes NaN)
CASES = ("joint", "t2i", "i2t", "prompt")


class LogLinearNoise:
    """sigma(t) = -log(1 - (1 - eps) t); move chance 1 - exp(-sigma) = (1 - eps) t (C.2)."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def dsigma(self, t: torch.Tensor) -> torch.Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def move_chance(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(-self.sigma(t))

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """MDLM ELBO weight dsigma / expm1(sigma) = 1/t."""
        return self.dsigma(t) / torch.expm1(self.sigma(t))


def sample_t(n: int, eps: float, antithetic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """t in [eps, 1): stratified over the batch (antithetic) as the reference's _sample_t."""
    u = torch.rand(n, generator=generator)
    if antithetic:
        u = (u / n + torch.arange(n) / n) % 1
    return (1 - eps) * u + eps


def subs_log_probs(logits: torch.Tensor, xt: torch.Tensor | None, tokens: TokenSpace,
                   allowed: torch.Tensor | None = None) -> torch.Tensor:
    """SUBS parameterisation (A.6): no [MASK] output, per-segment vocabulary, log-softmax, and carry-over
    of unmasked inputs (log p = 0 on the input token) when xt is given."""
    if allowed is None:
        allowed = tokens.segment_vocab_mask(logits.device)
    logits = logits.float().masked_fill(~allowed, NEG)
    logits[..., tokens.mask_id] = NEG
    logp = logits.log_softmax(-1)
    if xt is not None:
        unmasked = xt != tokens.mask_id
        carry = torch.full_like(logp, NEG).scatter_(-1, xt[..., None], 0.0)
        logp = torch.where(unmasked[..., None], carry, logp)
    return logp


class MaskedDiffusion:
    def __init__(self, cfg: MeDiMConfig, tokens: TokenSpace | None = None):
        self.cfg = cfg
        self.tokens = tokens or TokenSpace(cfg)
        self.noise = LogLinearNoise(cfg.noise_eps)

    # --- randomness of one optimizer step -----------------------------------------------------
    def draw_noise(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        return {"t": sample_t(batch_size, cfg.noise_eps, cfg.antithetic, generator),
                "u_mask": torch.rand(batch_size, self.tokens.state_len, generator=generator),
                "u_case": torch.rand(batch_size, generator=generator),
                "u_drop": torch.rand(batch_size, generator=generator)}

    def case_ids(self, u_case: torch.Tensor) -> torch.Tensor:
        """0 joint, 1 t2i (text clean), 2 i2t (image clean), 3 prompt (first prompt_len tokens clean)."""
        c = self.cfg
        edges = torch.tensor([c.p_t2i, c.p_t2i + c.p_i2t, c.p_t2i + c.p_i2t + c.p_prompt])
        case = torch.bucketize(u_case, edges, right=True) + 1
        return torch.where(case == 4, torch.zeros_like(case), case)

    def known_positions(self, case: torch.Tensor, prompt_len: torch.Tensor) -> torch.Tensor:
        """[B, T+N] bool: the clean condition of each training case."""
        tok = self.tokens
        pos = torch.arange(tok.state_len, device=case.device)[None]
        is_text = pos < tok.text_len
        case = case[:, None]
        return (((case == 1) & is_text) | ((case == 2) & ~is_text)
                | ((case == 3) & (pos < prompt_len.to(case.device)[:, None])))

    # --- forward process ----------------------------------------------------------------------
    def corrupt(self, x0: torch.Tensor, text_mask: torch.Tensor, prompt_len: torch.Tensor,
                noise: dict[str, torch.Tensor]):
        """x0 [B, T+N] -> (xt, per-position loss weight [B, T+N], case [B])."""
        cfg, tok = self.cfg, self.tokens
        dev = x0.device
        t = noise["t"].to(dev)
        masked = noise["u_mask"].to(dev) < self.noise.move_chance(t)[:, None]
        case = self.case_ids(noise["u_case"]).to(dev)
        known = self.known_positions(case, prompt_len)
        dropped = (noise["u_drop"].to(dev) < cfg.p_cond_dropout)[:, None] & known  # CFG condition dropout
        masked = (masked & ~known) | dropped
        xt = torch.where(masked, torch.full_like(x0, tok.mask_id), x0)
        # supervised positions: all image codes, real text tokens, and (supervise_pad) the pads that end a report
        text_weight = text_mask.float()
        if cfg.supervise_pad:
            text_weight = torch.where(text_mask, 1.0, cfg.pad_loss_weight).float()
        weight = torch.cat([text_weight, torch.ones(x0.shape[0], tok.image_len, device=dev)], dim=1)
        weight = weight.masked_fill(dropped, 0.0)  # a dropped condition is not a target
        return xt, weight, case

    # --- loss -----------------------------------------------------------------------------------
    def loss(self, model, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor]):
        """The mean of `per_sample_loss` over the samples, and the masked-token NLL."""
        per_sample, stats = self.per_sample_loss(model, batch, noise)
        return per_sample.mean(), stats

    def per_sample_loss(self, model, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor]):
        """Per sample  sum_i w(t) * nll_i * weight_i / sum_i weight_i  (elbo, w = 1/t) or
        sum_i nll_i * weight_i / sum_{i masked} weight_i  (flat): [B], and the masked-token NLL."""
        x0 = batch["state"]
        xt, weight, case = self.corrupt(x0, batch["text_mask"], batch["prompt_len"], noise)
        t = noise["t"].to(x0.device)
        logits = model(xt, self.noise.sigma(t), batch["cond"])
        logp = subs_log_probs(logits, xt, self.tokens)
        nll = -logp.gather(-1, x0[..., None]).squeeze(-1)  # 0 where carried over
        masked = xt == self.tokens.mask_id
        if self.cfg.loss_weighting == "elbo":
            per_sample = (nll * weight).sum(1) * self.noise.loss_weight(t) / weight.sum(1).clamp_min(1e-8)
        else:  # flat: every masked target counts once, whatever t (no 1/t spikes at small t)
            per_sample = (nll * weight).sum(1) / (weight * masked).sum(1).clamp_min(1e-8)
        return per_sample, {"nll_masked": (nll * masked).sum() / masked.sum().clamp_min(1)}
