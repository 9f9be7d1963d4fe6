"""MeDiM diffusion: schedule, forward process, SUBS, training cases, and a tiny model overfitting a batch."""
import torch

from reference_model.backbone import MeDiMBackbone
from reference_model.config import MeDiMConfig
from reference_model.diffusion import LogLinearNoise, MaskedDiffusion, sample_t, subs_log_probs
from reference_model.tokens import TokenSpace
from reference_model.train import SyntheticPairs, collate


def small_cfg(**kw) -> MeDiMConfig:
    base = dict(hidden_size=48, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=96,
                text_vocab_size=30, image_codebook_size=16, image_grid=(3, 3), text_len=8)
    return MeDiMConfig(**{**base, **kw})


def test_loglinear_schedule():
    noise = LogLinearNoise(1e-3)
    t = torch.tensor([1e-3, 0.25, 0.5, 0.999])
    torch.testing.assert_close(noise.sigma(t), -torch.log(1 - 0.999 * t))
    torch.testing.assert_close(noise.move_chance(t), 0.999 * t)
    torch.testing.assert_close(noise.loss_weight(t), 1 / t)  # dsigma / expm1(sigma) = 1/t


def test_antithetic_t_is_stratified():
    t = sample_t(8, 1e-3, True, torch.Generator().manual_seed(0))
    strata = ((t - 1e-3) / (1 - 1e-3) * 8).floor().long().sort().values
    assert torch.equal(strata, torch.arange(8))
    assert t.min() >= 1e-3 and t.max() < 1


def test_subs_parameterisation():
    cfg = small_cfg()
    tok = TokenSpace(cfg)
    logits = torch.randn(2, tok.state_len, tok.vocab_size)
    xt = torch.full((2, tok.state_len), tok.mask_id)
    xt[0, 0] = 5
    logp = subs_log_probs(logits, xt, tok)
    probs = logp.exp()
    assert torch.allclose(probs.sum(-1), torch.ones(2, tok.state_len))
    assert probs[..., tok.mask_id].max() == 0
    assert probs[:, : tok.text_len, tok.text_vocab_size:].max() == 0  # text slots: text pieces only
    assert probs[:, tok.text_len:, : tok.image_offset].max() == 0  # image slots: codes only
    assert logp[0, 0, 5] == 0 and probs[0, 0].sum() == 1  # carry-over of the unmasked token


def test_training_cases_and_cond_dropout():
    cfg = small_cfg(p_t2i=0.3, p_i2t=0.3, p_prompt=0.2, p_cond_dropout=0.0)
    diff = MaskedDiffusion(cfg)
    tok = diff.tokens
    batch = collate(list(SyntheticPairs(cfg, n=400)), tok)
    noise = diff.draw_noise(400, torch.Generator().manual_seed(0))
    xt, weight, case = diff.corrupt(batch["state"], batch["text_mask"], batch["prompt_len"], noise)
    x0, masked = batch["state"], xt == tok.mask_id
    fractions = torch.bincount(case, minlength=4).float() / 400
    torch.testing.assert_close(fractions, torch.tensor([0.2, 0.3, 0.3, 0.2]), atol=0.07, rtol=0)
    assert not masked[case == 1, : tok.text_len].any()  # t2i: text clean
    assert not masked[case == 2, tok.text_len:].any()  # i2t: image clean
    for i in torch.nonzero(case == 3).flatten().tolist():
        assert not masked[i, : batch["prompt_len"][i]].any()
    assert torch.equal(xt[~masked], x0[~masked])
    # masking rate follows (1 - eps) t on the noised segment of joint samples
    joint = case == 0
    rate = masked[joint].float().mean(1)
    assert torch.corrcoef(torch.stack([rate, noise["t"][joint]]))[0, 1] > 0.9
    # condition dropout: the whole condition becomes [MASK] and is not a target
    diff2 = MaskedDiffusion(cfg.replace(p_cond_dropout=1.0))
    xt2, weight2, case2 = diff2.corrupt(x0, batch["text_mask"], batch["prompt_len"], noise)
    t2i = case2 == 1
    assert (xt2[t2i, : tok.text_len] == tok.mask_id).all() and (weight2[t2i, : tok.text_len] == 0).all()


def test_pad_supervision_option():
    cfg = small_cfg()
    batch = collate(list(SyntheticPairs(cfg, n=4)), TokenSpace(cfg))
    noise = MaskedDiffusion(cfg).draw_noise(4, torch.Generator().manual_seed(0))
    for supervise in (True, False):
        diff = MaskedDiffusion(cfg.replace(supervise_pad=supervise))
        _, weight, _ = diff.corrupt(batch["state"], batch["text_mask"], batch["prompt_len"], noise)
        pads = ~batch["text_mask"]
        assert (weight[:, : cfg.text_len][pads] > 0).all() == supervise


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = small_cfg(adaln_init="zero")
    model = MeDiMBackbone(cfg)
    diff = MaskedDiffusion(cfg)
    batch = collate(list(SyntheticPairs(cfg, n=4)), diff.tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    fixed = diff.draw_noise(4, torch.Generator().manual_seed(0))
    fixed["t"] = torch.full((4,), 0.5)
    fixed["u_case"] = torch.ones(4)  # joint noising
    losses = []
    for step in range(150):
        loss, _ = diff.loss(model, batch, fixed)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
