"""MeDiM MaskGIT sampler: given tokens never change, seeds determine outputs, batch independence."""
import pytest
import torch

from reference_model.backbone import MeDiMBackbone
from reference_model.config import MeDiMConfig
from reference_model.sampler import MaskGITSampler, reveal_counts, task_known_mask
from reference_model.train import SyntheticPairs, collate


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = MeDiMConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                      text_vocab_size=30, image_codebook_size=16, image_grid=(3, 3), text_len=8,
                      adaln_init="normal", sample_steps=6)
    model = MeDiMBackbone(cfg).eval()
    batch = collate(list(SyntheticPairs(cfg, n=4)), model.tokens)
    return cfg, model, MaskGITSampler(model, cfg), batch


@pytest.mark.parametrize("mode", ["arccos", "cosine", "linear"])
def test_reveal_counts(mode):
    for n, steps in [(100, 10), (9, 6), (17, 128), (1, 4), (1024, 128)]:
        counts = reveal_counts(n, steps, mode)
        assert sum(counts) == n and min(counts) >= 1 and len(counts) == min(n, steps)
    assert reveal_counts(100, 10, "arccos")[0] == 1  # arccos starts with a single token


@pytest.mark.parametrize("task", ["t2i", "i2t", "prompted", "uncond"])
@pytest.mark.parametrize("path", ["normalized", "reference"])
def test_given_tokens_never_change(setup, task, path):
    cfg, model, sampler, batch = setup
    tok = model.tokens
    known = task_known_mask(task, tok, 4, prompt_len=batch["prompt_len"])
    out = sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3], path=path)
    assert torch.equal(out[known], batch["state"][known])
    assert not (out == tok.mask_id).any()
    if path == "normalized":
        text, image = out[:, : tok.text_len], out[:, tok.text_len:]
        assert (text < tok.text_vocab_size).all() and (image >= tok.image_offset).all()
    unknown = int((~known[0]).sum())
    steps = min(cfg.sample_steps, unknown)
    if task in ("t2i", "i2t"):  # CFG doubles every step but the first (w = cfg * (1 - t) = 0 at t = 1)
        expected = 2 * steps - 1
        assert sampler.forward_passes == expected


def test_same_seed_same_output_and_batch_independence(setup):
    cfg, model, sampler, batch = setup
    tok = model.tokens
    known = task_known_mask("t2i", tok, 4)
    a = sampler.generate(batch["state"], known, batch["cond"], seeds=[7, 8, 9, 10])
    b = sampler.generate(batch["state"], known, batch["cond"], seeds=[7, 8, 9, 10])
    assert torch.equal(a, b)
    c = sampler.generate(batch["state"], known, batch["cond"], seeds=[70, 80, 90, 100])
    assert not torch.equal(a, c)
    for i in range(4):  # each row alone, with its own seed, gives the same result as in the batch
        single = sampler.generate(batch["state"][i:i + 1], known[i:i + 1], batch["cond"][i:i + 1], seeds=[7 + i])
        assert torch.equal(single[0], a[i])
    pair = sampler.generate(batch["state"][[2, 0]], known[[2, 0]], batch["cond"][[2, 0]], seeds=[9, 7])
    assert torch.equal(pair, a[[2, 0]])


def test_mask_ratio_time_feeds_the_true_masked_fraction(setup):
    """time="mask_ratio" gives the model sigma(fraction of unknown positions still masked); "nominal" the linear grid."""
    cfg, model, sampler, batch = setup
    tok = model.tokens
    known = task_known_mask("t2i", tok, 4)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append((args[0][:4].clone(), args[1][:4].clone())))
    try:
        out = sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3], time="mask_ratio")
    finally:
        hook.remove()
    assert not (out == tok.mask_id).any() and torch.equal(out[known], batch["state"][known])
    unknown = (~known).sum(1)
    for x, sigma in seen[:-1]:  # the last call is the final noise-removal pass at t = 1e-5
        ratio = ((x == tok.mask_id) & ~known).sum(1) / unknown
        assert torch.allclose(sigma, sampler.noise.sigma(ratio.clamp_min(1e-5).float()))
    with pytest.raises(ValueError, match="nominal or mask_ratio"):
        sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3], time="linear")


def test_remask_rounds_revise_the_least_confident_tokens(setup):
    """Each correction round re-masks ceil(frac * unknown) generated positions and reveals them again: given
    tokens stay, nothing is left masked, seeds still decide, and the model sees exactly that many masks."""
    cfg, model, sampler, batch = setup
    tok = model.tokens
    known = task_known_mask("uncond", tok, 4)
    plain = sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3])
    passes = sampler.forward_passes
    seen: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        out = sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3], remask_rounds=2,
                               remask_frac=0.25)
    finally:
        hook.remove()
    assert not (out == tok.mask_id).any()
    assert torch.equal(out, sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3],
                                             remask_rounds=2, remask_frac=0.25))
    k = -(-tok.state_len // 4)  # ceil(0.25 * unknown positions)
    first_of_rounds = seen[int(passes):]
    rounds = [x for x in first_of_rounds if int((x == tok.mask_id).sum(1).max()) == k]
    assert len(rounds) == 2 and all(torch.equal((x == tok.mask_id).sum(1), torch.full((4,), k)) for x in rounds)
    assert sampler.forward_passes > passes and not torch.equal(out, plain)
    with pytest.raises(ValueError, match="remask_frac"):
        sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3], remask_rounds=1, remask_frac=0)


def test_pad_bias_sets_the_report_length(setup):
    """pad_bias shifts the text pad logit: strongly negative writes no pad, strongly positive only pads."""
    cfg, model, sampler, batch = setup
    tok = model.tokens
    known = task_known_mask("i2t", tok, 4)
    pads = [int((sampler.generate(batch["state"], known, batch["cond"], seeds=[0, 1, 2, 3], pad_bias=bias)
                 [:, :tok.text_len] == tok.pad_id).sum()) for bias in (-100.0, 0.0, 100.0)]
    assert pads[0] == 0 and pads[2] == 4 * tok.text_len and pads[0] <= pads[1] <= pads[2]
