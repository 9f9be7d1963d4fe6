"""MaskGIT confidence-unmasking sampler for MeDiM (D.1-D.3), batched and deterministic per request seed.

    sampler = MaskGITSampler(model, cfg)
    known = task_known_mask("t2i", tokens, batch_size)             # or "i2t", "prompted", "uncond"
    state = sampler.generate(x0, known, cond, seeds=[0, 1, ...])    # [B, T+N]; known positions kept from x0

Each row draws its randomness from its own torch.Generator(seed), and its schedule depends only on its own
number of unknown positions, so a request's result does not depend on the batch it came in.

Knobs (defaults from the config): steps and reveal schedule, temperature, r_temp (Gumbel noise on the
confidence, scaled by t), order ("left_to_right" reveals the leftmost masked positions instead of the most
confident), cfg_scale (w = cfg * (1 - t)), path and time (the reference's quirks), pad_bias (added to the text pad
logit: a length penalty) and remask_rounds / remask_frac (after the MaskGIT pass, re-mask the least confident
fraction of the generated tokens and reveal them again, ReMDM style). docs/decisions.md has the numbers.
"""
from __future__ import annotations

import math

import torch

from reference_model.config import MeDiMConfig
from reference_model.diffusion import LogLinearNoise, subs_log_probs
from reference_model.tokens import TokenSpace

T_FINAL = 1e-5  # the reference's last time point (noise_removal step)


def reveal_counts(n: int, steps: int, mode: str = "arccos") -> list[int]:
    """How many tokens to reveal at each step (the reference's adap_sche): proportional to the increments of
    the mask schedule, rounded, zeros set to 1, the remainder put on the last step. Sums to n exactly."""
    steps = max(1, min(steps, n))
    if n == 0:
        return []
    if steps == 1:
        return [n]
    r = torch.linspace(1, 0, steps, dtype=torch.float64)
    val = {"arccos": torch.arccos(r) / (math.pi / 2), "cosine": torch.cos(r * math.pi / 2), "linear": 1 - r}[mode]
    counts = (val / val.sum() * n).round().long()
    counts[counts == 0] = 1
    diff = n - int(counts.sum())
    if diff >= 0:
        counts[-1] += diff
    else:  # rounding overshoot (the reference could go negative here): take from the largest steps
        for _ in range(-diff):
            counts[int(counts.argmax())] -= 1
    return counts.tolist()


def task_known_mask(task: str, tokens: TokenSpace, batch_size: int, prompt_len=None) -> torch.Tensor:
    """Known (conditioning) positions of a task: t2i = all text slots, i2t = all image codes,
    prompted = the first prompt_len text tokens (per row), uncond = nothing."""
    pos = torch.arange(tokens.state_len)[None].expand(batch_size, -1)
    if task == "t2i":
        return pos < tokens.text_len
    if task == "i2t":
        return pos >= tokens.text_len
    if task == "prompted":
        if prompt_len is None:
            raise ValueError("task 'prompted' needs prompt_len")
        return pos < torch.as_tensor(prompt_len).view(-1, 1)
    if task == "uncond":
        return torch.zeros_like(pos, dtype=torch.bool)
    raise ValueError(f"unknown sampling task {task!r}; choose t2i, i2t, prompted or uncond")


def gumbel(shape, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=generator.device).clamp_(1e-20, 1 - 1e-7)
    return -torch.log(-torch.log(u))


class MaskGITSampler:
    def __init__(self, model, cfg: MeDiMConfig, tokens: TokenSpace | None = None):
        self.model, self.cfg = model, cfg
        self.tokens = tokens or TokenSpace(cfg)
        self.noise = LogLinearNoise(cfg.noise_eps)
        self.forward_passes = 0.0  # model evaluations per sample in the last generate() (CFG counts 2)

    @torch.no_grad()
    def generate(self, x0: torch.Tensor, known: torch.Tensor, cond: torch.Tensor, seeds: list[int],
                 steps: int | None = None, schedule: str | None = None, temperature: float | None = None,
                 r_temp: float | None = None, cfg_scale: float | None = None, path: str | None = None,
                 time: str | None = None, remask_rounds: int | None = None, remask_frac: float | None = None,
                 pad_bias: float | None = None, order: str | None = None, progress: bool = False) -> torch.Tensor:
        c, tok = self.cfg, self.tokens
        steps = steps or c.sample_steps
        schedule, path, time = schedule or c.reveal_schedule, path or c.sampler_path, time or c.sampler_time
        if time not in ("nominal", "mask_ratio"):
            raise ValueError(f"unknown sampler time {time!r}; choose nominal or mask_ratio")
        rounds = c.remask_rounds if remask_rounds is None else remask_rounds
        frac = c.remask_frac if remask_frac is None else remask_frac
        if rounds and not 0 < frac <= 1:
            raise ValueError(f"remask_frac must be in (0, 1], got {frac}")
        knobs = {"temperature": c.temperature if temperature is None else temperature,
                 "r_temp": c.r_temp if r_temp is None else r_temp,
                 "cfg_scale": c.cfg_scale if cfg_scale is None else cfg_scale, "path": path, "time": time,
                 "pad_bias": c.pad_bias if pad_bias is None else pad_bias, "order": order or c.sampler_order}
        if knobs["order"] not in ("confidence", "left_to_right"):
            raise ValueError(f"unknown reveal order {knobs['order']!r}; choose confidence or left_to_right")
        dev = next(self.model.parameters()).device
        b = x0.shape[0]
        if len(seeds) != b:
            raise ValueError(f"need one seed per row: {len(seeds)} seeds for a batch of {b}")
        known, cond, x0 = known.to(dev), cond.to(dev), x0.to(dev)
        gens = [torch.Generator(device=dev).manual_seed(int(s)) for s in seeds]
        x = torch.where(known, x0, torch.full_like(x0, tok.mask_id))
        conf = torch.zeros(x.shape, device=dev)  # log p of each revealed token when it was revealed
        self._evals = 0
        n_unknown = (~known).sum(1).tolist()
        x, conf = self._reveal(x, conf, known, x0, cond, gens, [reveal_counts(n, steps, schedule) for n in n_unknown],
                               n_unknown, **knobs)
        k = [math.ceil(frac * n) for n in n_unknown]
        counts = [reveal_counts(kr, max(1, round(steps * frac)), schedule) for kr in k]
        for _ in range(rounds):  # ReMDM-style correction: re-mask the least confident tokens, reveal them again
            rank = conf.masked_fill(known, math.inf).argsort(dim=1).argsort(dim=1)
            x = torch.where((rank < torch.tensor(k, device=dev)[:, None]) & ~known, torch.full_like(x, tok.mask_id), x)
            x, conf = self._reveal(x, conf, known, x0, cond, gens, counts, n_unknown, **knobs)
        self.forward_passes = self._evals / max(b, 1)
        return torch.where(known, x0, x)

    def _reveal(self, x, conf, known, x0, cond, gens, counts, n_unknown,
                temperature, r_temp, cfg_scale, path, time, pad_bias, order):
        """MaskGIT steps: at step i, row r reveals counts[r][i] of its masked positions (highest confidence
        after Gumbel noise scaled by r_temp * t); then the final noise-removal step for any leftovers."""
        tok, b, dev = self.tokens, x.shape[0], x.device
        mask = torch.full_like(x, tok.mask_id)
        allowed = tok.segment_vocab_mask(dev)
        n_unknown_t = torch.tensor(n_unknown, device=dev)
        row_steps = torch.tensor([len(cs) for cs in counts], device=dev)
        has_cond = known.any(1)
        for i in range(int(row_steps.max().item()) if b else 0):
            active = i < row_steps
            if time == "nominal":  # the reference's linear grid (quirk 17: not the true mask ratio)
                t = 1 - i * (1 - T_FINAL) / row_steps.clamp_min(1)
            else:  # the fraction of unknown positions still masked, i.e. the t the model was trained at
                still_masked = ((x == tok.mask_id) & ~known).sum(1)
                t = (still_masked / n_unknown_t.clamp_min(1)).clamp_min(T_FINAL)
            t = torch.where(active, t, torch.ones_like(t)).float()
            sigma = self.noise.sigma(t)
            w = torch.where(has_cond & active, cfg_scale * (1 - t), torch.zeros_like(t))
            if (w > 0).any():  # conditional and unconditional (condition -> [MASK]) branches in one batch
                x_u = torch.where(known, mask, x)
                both = self.model(torch.cat([x, x_u]), torch.cat([sigma, sigma]), torch.cat([cond, cond]))
                lc, lu = both[:b], both[b:]
                logits = (1 + w[:, None, None]) * lc - w[:, None, None] * lu
                self._evals += 2 * b
            else:
                logits = self.model(x, sigma, cond)
                self._evals += b
            if pad_bias:  # a length penalty: < 0 makes ending a report (a pad) less likely
                logits[:, :tok.text_len, tok.pad_id] += pad_bias
            logp = subs_log_probs(logits, None, tok, allowed)
            if path == "reference":  # unnormalised, unrestricted exp(logits) when CFG is off (D.1)
                raw = torch.nan_to_num(logits.float(), nan=0.0, posinf=0.0, neginf=0.0)
                logp = torch.where((w > 0)[:, None, None], logp, raw)
            still = x == tok.mask_id
            sampled, tok_logp = x.clone(), torch.zeros(x.shape, device=dev)
            for r, g in enumerate(gens):  # Gumbel-max token draws for the row's still-masked positions only
                pos = still[r].nonzero(as_tuple=True)[0]
                if len(pos):
                    lp = logp[r, pos]
                    pick = (lp / max(temperature, 1e-6) + gumbel(lp.shape, g)).argmax(-1)
                    sampled[r, pos], tok_logp[r, pos] = pick, lp.gather(-1, pick[:, None])[:, 0]
            noise_conf = torch.stack([gumbel(logp.shape[1], g) for g in gens])
            if order == "left_to_right":  # the leftmost masked positions first (text before image): any-order AR
                score = -torch.arange(x.shape[1], device=dev, dtype=torch.float)[None].expand(b, -1)
            else:
                score = tok_logp + r_temp * t[:, None] * noise_conf
            score = score.masked_fill(~still, -math.inf)
            k = torch.tensor([cs[i] if i < len(cs) else 0 for cs in counts], device=dev)
            k = torch.minimum(k, still.sum(1))
            rank = score.argsort(dim=1, descending=True).argsort(dim=1)
            reveal = (rank < k[:, None]) & still
            x = torch.where(known, x0, torch.where(reveal, sampled, x))
            conf = torch.where(reveal, tok_logp, conf)
        leftover = (x == tok.mask_id) & ~known
        if leftover.any():  # final noise removal: argmax of the SUBS log-probs at t = 1e-5
            t = torch.full((b,), T_FINAL, device=dev)
            logp = subs_log_probs(self.model(x, self.noise.sigma(t), cond), None, tok, allowed)
            best = logp.max(-1)
            x = torch.where(leftover, best.indices, x)
            conf = torch.where(leftover, best.values, conf)
            self._evals += b
        return x, conf
