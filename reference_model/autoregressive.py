"""The autoregressive control of the MeDiM diagnosis (issue 19): the same backbone with its causal mask and no
time embedding, trained by next-token prediction on the same pairs, and decoded token by token.

    cfg = load_config("tiny-phantom-ar")                 # objective "ar", causal, time_embedding "none"
    objective = NextToken(cfg, tokens)                   # the trainer's interface, as MaskedDiffusion
    loss, stats = objective.loss(model, batch, objective.draw_noise(batch_size, generator))
    state = ARSampler(model, cfg).generate(x0, known, cond, seeds)   # MaskGITSampler's interface

Each sample is read in one of two orders, chosen per sample from the step's generator (p = 1/2 each):

    text first:   cond text(T) <boi> image(N) <eoi>       prompt -> report -> image, report -> image
    image first:  <boi> image(N) <eoi> cond text(T)        image -> report

Every text slot (pads included: the first pad ends the report, as MDLM's supervise_pad) and every image code is a
target; each target's vocabulary is its segment's (text pieces or image codes). The per-sample mean over targets is
averaged over the batch, so the loss splits over accumulation steps like MDLM's. One process only: the logits are
read from the decoder directly, not through a DDP wrapper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reference_model.config import MeDiMConfig
from reference_model.diffusion import NEG
from reference_model.sampler import gumbel
from reference_model.tokens import TokenSpace


def sequence(tokens: TokenSpace, text: torch.Tensor, image: torch.Tensor, cond: torch.Tensor,
             text_first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids [B, L], state position of each sequence slot or -1 [B, L]) for rows in either order.

    text [B, T] ids, image [B, N] ids already offset into the unified vocabulary, cond [B, C], text_first [B] bool.
    """
    b, dev = text.shape[0], text.device
    col = lambda i: torch.full((b, 1), i, dtype=torch.long, device=dev)  # noqa: E731
    none = lambda n: torch.full((b, n), -1, dtype=torch.long, device=dev)  # noqa: E731
    t_pos = torch.arange(tokens.text_len, device=dev).expand(b, -1)
    i_pos = torch.arange(tokens.text_len, tokens.state_len, device=dev).expand(b, -1)
    c = cond.shape[1]
    first = torch.cat([cond, text, col(tokens.boi_id), image, col(tokens.eoi_id)], 1)
    first_pos = torch.cat([none(c), t_pos, none(1), i_pos, none(1)], 1)
    second = torch.cat([col(tokens.boi_id), image, col(tokens.eoi_id), cond, text], 1)
    second_pos = torch.cat([none(1), i_pos, none(1 + c), t_pos], 1)
    pick = text_first.to(dev)[:, None]
    return torch.where(pick, first, second), torch.where(pick, first_pos, second_pos)


def causal_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """Raw logits [B, L, V] (fp32) of the backbone's causal decoder on a token sequence."""
    if hasattr(model, "module"):
        raise ValueError("the autoregressive objective trains in one process (no DDP/FSDP wrapper)")
    hidden = model.decoder(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
    return F.linear(hidden, model.embed.weight).float()


class NextToken:
    def __init__(self, cfg: MeDiMConfig, tokens: TokenSpace | None = None):
        if not cfg.causal or cfg.time_embedding != "none":
            raise ValueError(f"config {cfg.name!r}: objective 'ar' needs causal=true and time_embedding='none'")
        self.cfg = cfg
        self.tokens = tokens or TokenSpace(cfg)

    def draw_noise(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"text_first": torch.rand(batch_size, generator=generator) < 0.5}

    def loss(self, model, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor]):
        tok = self.tokens
        state = batch["state"]
        ids, pos = sequence(tok, state[:, :tok.text_len], state[:, tok.text_len:], batch["cond"].to(state.device),
                            noise["text_first"])
        logits = causal_logits(model, ids)[:, :-1]
        target, target_pos = ids[:, 1:], pos[:, 1:]
        allowed = tok.segment_vocab_mask(state.device)[target_pos.clamp_min(0)]
        logp = logits.masked_fill(~allowed, NEG).log_softmax(-1)
        nll = -logp.gather(-1, target[..., None]).squeeze(-1)
        scored = (target_pos >= 0).float()
        per_sample = (nll * scored).sum(1) / scored.sum(1)
        return per_sample.mean(), {"nll": (nll * scored).sum() / scored.sum()}


class ARSampler:
    """Left-to-right decoding of the unknown state positions; known positions are kept. Image known: image-first
    order (the report is decoded after it); otherwise text first (known prompt, then the report, then the image)."""

    def __init__(self, model, cfg: MeDiMConfig, tokens: TokenSpace | None = None):
        self.model, self.cfg = model, cfg
        self.tokens = tokens or TokenSpace(cfg)

    @torch.no_grad()
    def generate(self, x0: torch.Tensor, known: torch.Tensor, cond: torch.Tensor, seeds: list[int],
                 temperature: float | None = None, pad_bias: float | None = None, progress: bool = False,
                 **unused) -> torch.Tensor:
        set_knobs = sorted(k for k, v in unused.items() if v is not None and (k, v) != ("order", "left_to_right"))
        if set_knobs:
            raise ValueError(f"the autoregressive sampler has no {', '.join(set_knobs)} (it takes temperature and "
                             f"pad_bias)")
        tok, c = self.tokens, self.cfg
        temperature = c.temperature if temperature is None else temperature
        pad_bias = c.pad_bias if pad_bias is None else pad_bias
        dev = next(self.model.parameters()).device
        x, known, cond = x0.to(dev).clone(), known.to(dev), cond.to(dev)
        gens = [torch.Generator(device=dev).manual_seed(int(s)) for s in seeds]
        text_first = ~known[:, tok.text_len:].all(1)
        ids, pos = sequence(tok, x[:, :tok.text_len], x[:, tok.text_len:], cond, text_first)
        allowed = tok.segment_vocab_mask(dev)
        for j in range(1, ids.shape[1]):  # slot j is predicted from slots < j (no KV cache: the model is tiny)
            p = pos[:, j]
            todo = (p >= 0) & ~known.gather(1, p.clamp_min(0)[:, None])[:, 0]
            if not todo.any():
                continue
            logits = causal_logits(self.model, ids[:, :j])[:, -1]
            logits = logits.masked_fill(~allowed[p.clamp_min(0)], NEG)
            logits[:, tok.pad_id] += torch.where(p < tok.text_len, pad_bias, 0.0)
            noise = torch.stack([gumbel((logits.shape[1],), g) for g in gens])
            pick = (logits.log_softmax(-1) / max(temperature, 1e-6) + noise * (temperature > 0)).argmax(-1)
            ids[:, j] = torch.where(todo, pick, ids[:, j])
        state = torch.empty_like(x)
        for r in range(x.shape[0]):
            slots = pos[r] >= 0
            state[r, pos[r][slots]] = ids[r][slots]
        return torch.where(known, x, state)
