"""MeDiM backbone: shapes, bidirectionality, AdaLN-Zero identity, ablation flags, checkpointing."""
import pytest
import torch

from reference_model.backbone import MeDiMBackbone
from reference_model.config import MeDiMConfig, load_config
from reference_model.tokens import TokenSpace


def small_cfg(**kw) -> MeDiMConfig:
    base = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                text_vocab_size=40, image_codebook_size=24, image_grid=(3, 3), text_len=6, adaln_init="normal")
    return MeDiMConfig(**{**base, **kw})


def random_state(tokens: TokenSpace, b: int, gen: torch.Generator) -> torch.Tensor:
    text = torch.randint(2, tokens.text_vocab_size, (b, tokens.text_len), generator=gen)
    image = torch.randint(0, tokens.codebook_size, (b, tokens.image_len), generator=gen)
    return tokens.make_state(text, image)


@pytest.mark.parametrize("arch", ["llama", "gemma"])
def test_shapes_and_vocab(arch):
    torch.manual_seed(0)
    cfg = small_cfg(arch=arch)
    net = MeDiMBackbone(cfg).eval()
    tok = net.tokens
    assert tok.vocab_size == 40 + 4 + len(cfg.domains) + 24
    state = random_state(tok, 3, torch.Generator().manual_seed(0))
    logits = net(state, torch.rand(3), tok.cond_ids(["cxr", "path", "cxr"]))
    assert logits.shape == (3, cfg.text_len + cfg.image_len, tok.vocab_size)
    assert logits.dtype == torch.float32
    assert net.embed.weight.shape == (tok.vocab_size, cfg.hidden_size)


@pytest.mark.parametrize("arch", ["llama", "gemma"])
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_bidirectional_vs_causal(arch, impl):
    """Changing the last sequence token (text, at the end) changes the first image position's output
    when bidirectional, and not when the causal mask is kept."""
    for causal in (False, True):
        torch.manual_seed(0)
        net = MeDiMBackbone(small_cfg(arch=arch, causal=causal, attn_implementation=impl)).eval()
        tok = net.tokens
        state = random_state(tok, 1, torch.Generator().manual_seed(1))
        other = state.clone()
        other[0, tok.text_len - 1] = (state[0, tok.text_len - 1] + 1) % tok.text_vocab_size or 2
        cond = tok.cond_ids(["cxr"])
        with torch.no_grad():
            a, b = net(state, torch.tensor([0.5]), cond), net(other, torch.tensor([0.5]), cond)
        first_image = tok.text_len  # state index of image code 0 (sequence position 1)
        changed = not torch.allclose(a[0, first_image], b[0, first_image], atol=1e-6)
        assert changed == (not causal)


def test_unmasked_pad_is_hidden_key():
    """Key mask (spec A.3): unmasked pads are hidden keys, a masked pad is attended, and the output at real
    positions does not depend on what an unmasked pad's neighbours in the hidden set are."""
    torch.manual_seed(0)
    net = MeDiMBackbone(small_cfg()).eval()
    tok = net.tokens
    state = random_state(tok, 1, torch.Generator().manual_seed(2))
    state[0, 4:tok.text_len] = tok.pad_id
    ids, keys = tok.build_sequence(state, tok.cond_ids(["cxr"]))
    assert keys.sum() == ids.shape[1] - 2
    masked = state.clone()
    masked[0, 5] = tok.mask_id
    _, keys2 = tok.build_sequence(masked, tok.cond_ids(["cxr"]))
    assert keys2.sum() == ids.shape[1] - 1
    with torch.no_grad():
        a = net(state, torch.tensor([0.5]), tok.cond_ids(["cxr"]))
        b = net(masked, torch.tensor([0.5]), tok.cond_ids(["cxr"]))
    assert not torch.allclose(a[0, tok.text_len:], b[0, tok.text_len:])  # the masked pad is now visible


@pytest.mark.parametrize("arch", ["llama", "gemma"])
def test_adaln_zero_block_is_identity(arch):
    torch.manual_seed(0)
    net = MeDiMBackbone(small_cfg(arch=arch, adaln_init="zero"))
    layer = net.decoder.layers[0]
    x = torch.randn(2, 5, 32)
    cos_sin = net.decoder.rotary_emb(x, torch.arange(5)[None])
    cond = net.time_embed(torch.tensor([0.3, 2.0]))
    out = layer(x, attention_mask=None, position_embeddings=cos_sin, adaln_cond=cond)
    assert torch.equal(out, x)
    # the identity_gate variant is the plain pretrained block at init instead
    net2 = MeDiMBackbone(small_cfg(arch=arch, adaln_init="identity_gate"))
    out2 = net2.decoder.layers[0](x, attention_mask=None, position_embeddings=cos_sin, adaln_cond=cond)
    assert not torch.allclose(out2, x)


@pytest.mark.parametrize("mode", ["none", "add"])
def test_time_embedding_ablations(mode):
    torch.manual_seed(0)
    net = MeDiMBackbone(small_cfg(time_embedding=mode)).eval()
    tok = net.tokens
    state = random_state(tok, 1, torch.Generator().manual_seed(3))
    cond = tok.cond_ids(["path"])
    with torch.no_grad():
        a, b = net(state, torch.tensor([0.1]), cond), net(state, torch.tensor([3.0]), cond)
    assert torch.allclose(a, b) == (mode == "none")
    assert not any("adaLN" in n for n, _ in net.named_parameters())


def test_reference_logit_offset_reads_neighbours():
    tok = TokenSpace(small_cfg(logit_offset="reference"))
    clean, ref = tok.readout_positions("clean"), tok.readout_positions("reference")
    assert torch.equal(ref[: tok.text_len], clean[: tok.text_len] - 1)
    assert torch.equal(ref[tok.text_len:], clean[tok.text_len:] + 1)
    assert ref[-1] == tok.image_len + 1  # the last image code is read from <eoi>


def test_gradient_checkpointing_matches_and_trains_time_mlp():
    torch.manual_seed(0)
    nets = [MeDiMBackbone(small_cfg(gradient_checkpointing=gc)).train() for gc in (False, True)]
    nets[1].load_state_dict(nets[0].state_dict())
    tok = nets[0].tokens
    state = random_state(tok, 2, torch.Generator().manual_seed(4))
    grads = []
    for net in nets:
        net(state, torch.tensor([0.2, 1.0]), tok.cond_ids(["cxr", "path"])).logsumexp(-1).mean().backward()
        grads.append(net.time_embed.mlp[0].weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_paper_geometry_on_meta_device():
    cfg = load_config("medim-liquid-10l")
    with torch.device("meta"):
        net = MeDiMBackbone(cfg)
    assert net.tokens.vocab_size == 40196
    n = net.num_params()
    assert 3.3e9 < n < 3.6e9, n  # spec A.1: about 3.47 B


def test_truncated_pretrained_checkpoint(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=2))
    hf.save_pretrained(tmp_path)
    net = MeDiMBackbone(small_cfg(pretrained_path=str(tmp_path), num_layers=2))
    assert len(net.decoder.layers) == 2
    torch.testing.assert_close(net.decoder.layers[1].mlp.up_proj.weight, hf.model.layers[1].mlp.up_proj.weight)
    v = net.tokens.vocab_size  # the embedding keeps the checkpoint's first rows (spec A.2)
    assert net.embed.weight.shape[0] == v
    torch.testing.assert_close(net.embed.weight, hf.model.embed_tokens.weight[:v])
