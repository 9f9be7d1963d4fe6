"""The autoregressive control of the diagnosis: both orders, causal targets, decoding that keeps known positions,
batch invariance, the flat loss weighting, and the medim adapter answering with an AR checkpoint."""
import pytest
import torch

from reference_model.autoregressive import ARSampler, NextToken, sequence
from reference_model.backbone import MeDiMBackbone
from reference_model.config import MeDiMConfig
from reference_model.diffusion import MaskedDiffusion
from reference_model.sampler import task_known_mask
from reference_model.tokens import TokenSpace
from reference_model.train import SyntheticPairs, collate


def ar_cfg(**kw) -> MeDiMConfig:
    base = dict(hidden_size=48, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=96, text_vocab_size=30,
                image_codebook_size=16, image_grid=(3, 3), text_len=8, objective="ar", causal=True,
                time_embedding="none")
    return MeDiMConfig(**{**base, **kw})


def test_both_orders_place_every_state_position_once():
    cfg = ar_cfg()
    tok = TokenSpace(cfg)
    batch = collate(list(SyntheticPairs(cfg, n=2)), tok)
    state = batch["state"]
    ids, pos = sequence(tok, state[:, :tok.text_len], state[:, tok.text_len:], batch["cond"], torch.tensor([True, False]))
    for r in range(2):
        slots = pos[r] >= 0
        assert sorted(pos[r][slots].tolist()) == list(range(tok.state_len))
        assert (ids[r][slots] == state[r][pos[r][slots]]).all()
    assert ids[0, 0] == batch["cond"][0, 0] and ids[0, 1 + tok.text_len] == tok.boi_id  # text first
    assert ids[1, 0] == tok.boi_id and ids[1, 1 + tok.image_len] == tok.eoi_id  # image first


def test_objective_needs_a_causal_model_without_time():
    with pytest.raises(ValueError, match="causal"):
        NextToken(ar_cfg(causal=False))


def test_tiny_model_overfits_one_batch_in_both_orders():
    torch.manual_seed(0)
    cfg = ar_cfg()
    model, objective = MeDiMBackbone(cfg), NextToken(cfg)
    batch = collate(list(SyntheticPairs(cfg, n=4)), objective.tokens)
    noise = objective.draw_noise(4, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss, _ = objective.loss(model, batch, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


def test_causal_logits_do_not_see_the_future():
    from reference_model.autoregressive import causal_logits

    torch.manual_seed(0)
    model = MeDiMBackbone(ar_cfg()).eval()
    ids = torch.randint(0, 30, (1, 12))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 30
    torch.testing.assert_close(causal_logits(model, ids)[:, :-1], causal_logits(model, changed)[:, :-1])


@pytest.mark.parametrize("task", ["t2i", "i2t", "prompted"])
def test_sampler_keeps_known_positions_and_is_batch_invariant(task):
    torch.manual_seed(0)
    cfg = ar_cfg()
    model = MeDiMBackbone(cfg).eval()
    tok = model.tokens
    x0 = collate(list(SyntheticPairs(cfg, n=3)), tok)["state"]
    cond = tok.cond_ids(["cxr"] * 3)
    known = task_known_mask(task, tok, 3, torch.tensor([3, 3, 3]))
    out = ARSampler(model, cfg).generate(x0, known, cond, seeds=[5, 6, 7])
    assert (out[known] == x0[known]).all()
    text, image = out[:, :tok.text_len], out[:, tok.text_len:]
    assert (text < tok.text_vocab_size).all() and (image >= tok.image_offset).all()
    alone = ARSampler(model, cfg).generate(x0[1:2], known[1:2], cond[1:2], seeds=[6])
    assert torch.equal(out[1:2], alone)


def test_sampler_refuses_maskgit_knobs():
    cfg = ar_cfg()
    model = MeDiMBackbone(cfg).eval()
    tok = model.tokens
    x0 = collate(list(SyntheticPairs(cfg, n=1)), tok)["state"]
    with pytest.raises(ValueError, match="steps"):
        ARSampler(model, cfg).generate(x0, task_known_mask("i2t", tok, 1), tok.cond_ids(["cxr"]), seeds=[0], steps=8)


def test_flat_weighting_is_the_mean_over_masked_targets():
    cfg = MeDiMConfig(hidden_size=48, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=96,
                      text_vocab_size=30, image_codebook_size=16, image_grid=(3, 3), text_len=8,
                      loss_weighting="flat", p_t2i=0, p_i2t=0, p_prompt=0, p_cond_dropout=0, supervise_pad=False)
    torch.manual_seed(0)
    model, diff = MeDiMBackbone(cfg), MaskedDiffusion(cfg)
    batch = collate(list(SyntheticPairs(cfg, n=4)), diff.tokens)
    noise = diff.draw_noise(4, torch.Generator().manual_seed(1))
    loss, _ = diff.loss(model, batch, noise)
    xt, weight, _ = diff.corrupt(batch["state"], batch["text_mask"], batch["prompt_len"], noise)
    from reference_model.diffusion import subs_log_probs

    logp = subs_log_probs(model(xt, diff.noise.sigma(noise["t"]), batch["cond"]), xt, diff.tokens)
    nll = -logp.gather(-1, batch["state"][..., None]).squeeze(-1)
    scored = (xt == diff.tokens.mask_id) & (weight > 0)
    expected = torch.stack([nll[r][scored[r]].mean() for r in range(4)]).mean()
    torch.testing.assert_close(loss, expected)


def test_left_to_right_order_reveals_the_leftmost_masked_positions():
    from reference_model.sampler import MaskGITSampler

    torch.manual_seed(0)
    cfg = MeDiMConfig(hidden_size=48, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=96,
                      text_vocab_size=30, image_codebook_size=16, image_grid=(3, 3), text_len=8, cfg_scale=0.0)
    model = MeDiMBackbone(cfg).eval()
    tok = model.tokens
    seen = []
    forward = model.forward
    model.forward = lambda state, sigma, cond: (seen.append(state.clone()), forward(state, sigma, cond))[1]
    x0 = collate(list(SyntheticPairs(cfg, n=1)), tok)["state"]
    known = task_known_mask("i2t", tok, 1)
    MaskGITSampler(model, cfg, tok).generate(x0, known, tok.cond_ids(["cxr"]), seeds=[0], steps=tok.text_len,
                                             order="left_to_right")
    for step, state in enumerate(seen):  # before step i, text slots 0..i-1 are revealed and the rest masked
        masked = (state[0, :tok.text_len] == tok.mask_id).tolist()
        assert masked == [False] * step + [True] * (tok.text_len - step)
    assert len(seen) == tok.text_len
