"""MeDiM at paper scale, proven at reduced width with the real layer structure and token layout:
HF checkpoint truncation + embedding resize, the official release's key map and forward (against an
independent re-implementation of the official code), FSDP/torchrun resume, flat-folder token cache, GPU smoke
dry run."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from reference_model.backbone import MeDiMBackbone
from reference_model.config import load_config
from reference_model.official import (LlamaTextTokenizer, load_official_backbone, official_config,
                                      official_to_reference, reference_to_official)
from reference_model.pretrained import resized_embedding
from reference_model.tokens import TokenSpace

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(hidden_size=32, num_heads=2, num_kv_heads=2, head_dim=16, intermediate_size=64, num_layers=2)


def tiny_gemma(tmp_path, layers=5, vocab=300, seed=0):
    from transformers import GemmaConfig, GemmaForCausalLM
    torch.manual_seed(seed)
    hf = GemmaForCausalLM(GemmaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                      num_attention_heads=2, num_key_value_heads=2, head_dim=16, pad_token_id=0))
    hf.save_pretrained(tmp_path)
    return hf


def gemma_cfg(path, **kw):
    base = dict(arch="gemma", **SMALL, text_vocab_size=40, image_codebook_size=24, image_grid=(3, 3), text_len=6,
                pretrained_path=str(path))
    return load_config("tiny-phantom").replace(**{**base, **kw})


# ----------------------------------------------------------------------------- pretrained loader

def test_truncation_keeps_first_layers_exactly(tmp_path):
    hf = tiny_gemma(tmp_path, layers=5)
    net = MeDiMBackbone(gemma_cfg(tmp_path, num_layers=3))
    assert len(net.decoder.layers) == 3
    theirs = hf.model.state_dict()
    ours = net.decoder.state_dict()
    compared = 0
    for k, v in ours.items():
        if k.startswith("layers.") and "adaLN" not in k or k == "norm.weight":
            assert torch.equal(v, theirs[k]), k  # bit-exact
            compared += 1
    assert compared == 3 * 9 + 1  # q k v o, gate up down, 2 norms per layer + final norm
    for layer in net.decoder.layers:  # AdaLN added, zero-initialised (cfg.adaln_init = zero)
        assert layer.adaLN_modulation.weight.abs().sum() == 0
    assert net.embed.padding_idx is None  # row 0 trains


def test_embedding_slice_and_new_rows_are_seeded(tmp_path):
    hf = tiny_gemma(tmp_path, vocab=60)
    cfg = gemma_cfg(tmp_path, num_layers=2)
    v = TokenSpace(cfg).vocab_size
    assert v > 60
    a, b = MeDiMBackbone(cfg), MeDiMBackbone(cfg)
    old = hf.model.embed_tokens.weight
    assert torch.equal(a.embed.weight[:60], old)  # slice: rows 0..V_old-1 kept (the official quirk)
    assert torch.equal(a.embed.weight, b.embed.weight)  # new rows seeded
    new = a.embed.weight[60:]
    assert torch.allclose(new.mean(0), old.mean(0), atol=0.05) and not torch.equal(new[0], new[1])


def test_embedding_mean_and_remap_modes():
    cfg = gemma_cfg("unused", pretrained_path=None)
    tok = TokenSpace(cfg)
    old = torch.randn(500, 32, generator=torch.Generator().manual_seed(1)) + 3.0
    mean = resized_embedding(old, tok, "mean", noise=0.1, seed=0)
    assert torch.equal(mean[: tok.text_vocab_size], old[: tok.text_vocab_size])
    rest = mean[tok.text_vocab_size:]
    assert (rest - old.mean(0)).abs().max() < 0.1 * old.std(0).max() * 6  # mean + small noise
    remap = resized_embedding(old, tok, "remap", noise=0.1, seed=0, image_row_offset=400)
    assert torch.equal(remap[tok.image_offset:], old[400:400 + tok.codebook_size])
    assert torch.equal(remap[tok.text_vocab_size:tok.image_offset], rest[: tok.image_offset - tok.text_vocab_size])
    with pytest.raises(ValueError, match="remap"):
        resized_embedding(old, tok, "remap", image_row_offset=490)


def test_pretrained_geometry_mismatch_is_named(tmp_path):
    tiny_gemma(tmp_path)
    with pytest.raises(ValueError, match="intermediate_size"):
        MeDiMBackbone(gemma_cfg(tmp_path, intermediate_size=128))
    with pytest.raises(ValueError, match="cannot keep the first 9"):
        MeDiMBackbone(gemma_cfg(tmp_path, num_layers=9))


# ----------------------------------------------------------------------------- official release

def official_names(layers: int, hidden: int, heads: int, head_dim: int, inter: int, vocab: int) -> dict:
    """Key -> shape of the official release, written from models/gemma/modeling_gemma.py (GemmaForCausalLM with
    GemmaModel.time_embedder and GemmaDecoderLayer.adaLN_modulation), independent of reference_model."""
    keys = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
            "lm_head.weight": (vocab, hidden),
            "model.time_embedder.mlp.0.weight": (hidden, 256), "model.time_embedder.mlp.0.bias": (hidden,),
            "model.time_embedder.mlp.2.weight": (hidden, hidden), "model.time_embedder.mlp.2.bias": (hidden,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        keys.update({p + "self_attn.q_proj.weight": (heads * head_dim, hidden),
                     p + "self_attn.k_proj.weight": (heads * head_dim, hidden),
                     p + "self_attn.v_proj.weight": (heads * head_dim, hidden),
                     p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
                     p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                     p + "mlp.down_proj.weight": (hidden, inter),
                     p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
                     p + "adaLN_modulation.weight": (6 * hidden, hidden), p + "adaLN_modulation.bias": (6 * hidden,)})
    return keys


def synthetic_official(layers=2, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) * 0.2 for k, s in official_names(layers, 32, 2, 16, 64, 40196).items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"]  # tied
    return state


def official_small_cfg(**kw):
    return load_config("medim-official").replace(**{**SMALL, **kw})


def test_official_key_map_loads_synthetic_release_strictly():
    state = synthetic_official(layers=2)
    mapped = official_to_reference(state)
    cfg = official_config(mapped, official_small_cfg(num_layers=7))
    assert cfg.num_layers == 2 and TokenSpace(cfg).vocab_size == 40196 and TokenSpace(cfg).image_offset == 32004
    net = load_official_backbone(state, cfg)  # raises on any missing / unexpected / mis-shaped key
    assert set(net.state_dict()) == set(mapped)
    for k, v in mapped.items():
        assert torch.equal(net.state_dict()[k], v), k
    assert set(reference_to_official(net.state_dict())) == set(state) - {"lm_head.weight"}
    alias = {k.replace("time_embedder", "t_embedder"): v for k, v in state.items()}  # the alternative spelling
    assert set(official_to_reference(alias)) == set(mapped)
    tok = net.tokens  # a forward pass at the real layout: 1024 codes, 256 text slots, cond
    text = torch.zeros(1, 256, dtype=torch.long)
    text[0, :5] = torch.tensor([1, 450, 1967, 338, 29889])
    state_ids = tok.make_state(text, torch.randint(0, 8192, (1, 1024)))
    cond = torch.tensor([[0] * 30 + list(range(1, 11))])
    with torch.no_grad():
        logits = net(state_ids, torch.tensor([0.5]), cond)
    assert logits.shape == (1, 1280, 40196) and torch.isfinite(logits).all()


def test_official_key_map_rejects_unknown_and_untied():
    state = synthetic_official(layers=1)
    with pytest.raises(ValueError, match="unrecognised"):
        official_to_reference({**state, "model.vision_tower.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="tied"):
        official_to_reference({**state, "lm_head.weight": torch.zeros(40196, 32)})
    with pytest.raises(ValueError, match="missing"):
        load_official_backbone({k: v for k, v in state.items() if "adaLN" not in k}, official_small_cfg(num_layers=1))


@pytest.fixture(scope="module")
def llama_like_tokenizer(tmp_path_factory):
    """A real `tokenizers` BPE with Llama-2's special ids (<unk> 0, <s> 1, </s> 2), trained on a few strings."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Image Size: Width is tensor([2544]) Height is tensor([3056]).",
                             "No pleural effusion. The heart is enlarged."] * 4, trainer=trainer)
    path = tmp_path_factory.mktemp("llama") / "tokenizer.json"
    tok.save(str(path))
    loaded = LlamaTextTokenizer(path)
    loaded.path = path
    return loaded


def llama_like_tokenizer_path(tok) -> Path:
    return tok.path


def official_forward(sd: dict, ids: torch.Tensor, keys: torch.Tensor, sigma: torch.Tensor, heads: int,
                     head_dim: int, n_image: int, n_text: int, eps: float = 1e-6) -> torch.Tensor:
    """The official GemmaForCausalLM.forward (batch 1, no padding), re-implemented from its source in plain torch."""
    layers = len({k.split(".")[2] for k in sd if k.startswith("model.layers.")})
    emb = sd["model.embed_tokens.weight"]
    hidden = emb.shape[1]
    x = F.embedding(ids, emb) * torch.tensor(hidden ** 0.5)
    freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
    args = sigma[:, None].float() * freqs[None]
    t = torch.cat([torch.cos(args), torch.sin(args)], -1)
    t = F.linear(F.silu(F.linear(t, sd["model.time_embedder.mlp.0.weight"], sd["model.time_embedder.mlp.0.bias"])),
                 sd["model.time_embedder.mlp.2.weight"], sd["model.time_embedder.mlp.2.bias"])
    n = ids.shape[1]
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    ang = torch.arange(n).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = lambda v: torch.cat([-v[..., head_dim // 2:], v[..., : head_dim // 2]], -1)  # noqa: E731
    mask = torch.zeros(1, 1, n, n).masked_fill(keys[:, None, None, :] == 0, torch.finfo(torch.float32).min)
    rms = lambda v, w: v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps) * (1 + w)  # noqa: E731
    for i in range(layers):
        p = lambda name: sd[f"model.layers.{i}.{name}"]  # noqa: E731
        sa, ca, ga, sm, cm, gm = F.linear(t, p("adaLN_modulation.weight"), p("adaLN_modulation.bias")).chunk(6, dim=1)
        h = rms(x, p("input_layernorm.weight")) * (1 + ca[:, None]) + sa[:, None]
        q, k, v = (F.linear(h, p(f"self_attn.{m}_proj.weight")).view(1, n, heads, head_dim).transpose(1, 2)
                   for m in "qkv")
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        att = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(head_dim) + mask, -1) @ v
        x = x + ga[:, None] * F.linear(att.transpose(1, 2).reshape(1, n, -1), p("self_attn.o_proj.weight"))
        h = rms(x, p("post_attention_layernorm.weight")) * (1 + cm[:, None]) + sm[:, None]
        mlp = F.linear(F.gelu(F.linear(h, p("mlp.gate_proj.weight")), approximate="tanh") * F.linear(h, p("mlp.up_proj.weight")),
                       p("mlp.down_proj.weight"))
        x = x + gm[:, None] * mlp
    logits = F.linear(rms(x, sd["model.norm.weight"]), emb).float()
    return torch.cat([logits[:, n - n_text - 2: n - 2], logits[:, 2: 2 + n_image]], dim=1)


def test_compat_mode_reproduces_the_official_forward(llama_like_tokenizer):
    """Reduced image/text lengths (the official slices generalised), real vocabulary layout; two rows whose size
    strings differ in length, batched with padding, each equal to the official batch-1 computation."""
    torch.manual_seed(0)
    tok_llama = llama_like_tokenizer
    state = synthetic_official(layers=2)
    cfg = official_config(official_to_reference(state), official_small_cfg(image_grid=(2, 3), text_len=7))
    net = load_official_backbone(state, cfg).eval()
    tok = net.tokens
    text = torch.tensor([[1, 40, 41, 42, 0, 0, 0], [1, 50, 51, 52, 53, 54, 0]])
    x0 = tok.make_state(text, torch.randint(0, 8192, (2, 6)))
    xt = x0.clone()
    xt[0, [1, 8]] = tok.mask_id  # a masked text token and a masked image code
    xt[1, [6, 10, 11]] = tok.mask_id  # incl. a masked pad (attended) next to an unmasked pad (hidden)
    sizes = [(7, 3), (2544, 3056)]
    cond = torch.tensor([tok.size_cond_ids(tok_llama, w, h) for w, h in sizes])
    sigma = torch.tensor([0.3, 2.0])
    with torch.no_grad():
        ours = net(xt, sigma, cond)
    for r, (w, h) in enumerate(sizes):
        real = [1] + tok_llama.encode(f"Image Size: Width is tensor([{w}]) Height is tensor([{h}]).")
        assert cond[r, -len(real):].tolist() == real and (cond[r, :-len(real)] == 0).all()
        txt = xt[r, :7]
        ids = torch.cat([torch.tensor([32000]), xt[r, 7:], torch.tensor([32001]), torch.tensor(real), txt,
                         torch.tensor([32002])])[None]
        keys = torch.ones_like(ids)
        keys[0, -8:-1] = (txt != 0).long()  # the official key mask: text ids themselves
        want = official_forward(state, ids, keys, sigma[r:r + 1], heads=2, head_dim=16, n_image=6, n_text=7)
        torch.testing.assert_close(ours[r:r + 1], want, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- scale features

FSDP_CFG = {"name": "fsdp-test", "hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
            "intermediate_size": 64, "text_vocab_size": 30, "image_codebook_size": 16, "image_grid": [3, 3],
            "text_len": 8, "micro_batch_size": 2, "max_steps": 3, "warmup_steps": 2, "lr": 0.003, "log_every": 1,
            "ckpt_every": 1000, "gradient_checkpointing": True}


def _torchrun(cfg_path, out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "reference_model.train", "--config", str(cfg_path), "--out", str(out), "--fsdp", "--synthetic",
           "--threads", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-3000:]


def load_file_(path):
    from safetensors.torch import load_file
    return load_file(str(path))


def _losses(out):
    import json
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fsdp_torchrun_gloo_trains_and_resumes(tmp_path):
    """2 CPU processes, FSDP full shard (one unit per layer) + activation checkpointing: an interrupted run resumed
    from its gathered safetensors checkpoint continues exactly as the uninterrupted one."""
    import json
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(FSDP_CFG))
    _torchrun(cfg_path, tmp_path / "full")
    _torchrun(cfg_path, tmp_path / "part", "--max-steps", "2")
    assert sorted(p.name for p in (tmp_path / "part" / "checkpoint").iterdir()) == [
        "config.json", "model.safetensors", "optimizer-rank0.json", "optimizer-rank0.safetensors",
        "optimizer-rank1.json", "optimizer-rank1.safetensors", "rng.safetensors", "trainer.json"]
    _torchrun(cfg_path, tmp_path / "part", "--resume")
    full, part = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert len(full) == len(part) == 3 and full[-1] < full[0]
    assert part == pytest.approx(full, rel=1e-6, abs=1e-7)
    shard = load_file_(tmp_path / "part" / "checkpoint" / "optimizer-rank0.safetensors")
    avg = [k for k in shard if k.endswith(".exp_avg")]
    assert avg and not any(torch.equal(shard[k], shard[k + "_sq"]) for k in avg)  # no aliased moments
    from safetensors.torch import load_file
    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoint" / "model.safetensors"))
    assert set(a) == set(MeDiMBackbone(load_config(cfg_path)).state_dict())  # unwrapped names
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_own_storage_copies_only_shared_views():
    from reference_model.checkpoint import own_storage
    flat = torch.arange(6.0)
    got = own_storage({"a": flat[:3], "b": flat[3:], "c": torch.ones(2)})
    ptrs = {v.untyped_storage().data_ptr() for v in got.values()}
    assert len(ptrs) == 3 and torch.equal(got["b"], torch.tensor([3.0, 4.0, 5.0]))


def test_flat_folder_token_cache(tmp_path, llama_like_tokenizer):
    from PIL import Image

    from reference_model.flat_data import FlatTokenDataset, build_cache
    from reference_model.train import collate
    from reference_model.vq import load_image_tokenizer
    folder = tmp_path / "mimic"
    folder.mkdir()
    for i, (w, h) in enumerate([(64, 48), (40, 64), (64, 64)]):
        Image.new("L", (w, h), 40 * i).save(folder / f"p10_s{i}.jpg")
        (folder / f"p10_s{i}.txt").write_text("No pleural effusion. The heart is enlarged." if i else "Heart.")
    (folder / "orphan.jpg").write_bytes((folder / "p10_s0.jpg").read_bytes())  # no report: skipped
    vq = load_image_tokenizer(REPO / "reference_model" / "checkpoints" / "tiny-phantom")
    cfg = load_config("tiny-phantom").replace(text_vocab_size=300, text_len=12, size_cond_len=40, compact_cond=True,
                                              domain_token=False, image_grid=tuple(vq.grid),
                                              image_codebook_size=vq.codebook_size)
    shards = build_cache([(str(folder), "cxr", True)], vq, llama_like_tokenizer, cfg.text_len, tmp_path / "cache",
                         progress=False)
    stamp = shards[0].stat().st_mtime_ns
    build_cache([(str(folder), "cxr", True)], vq, llama_like_tokenizer, cfg.text_len, tmp_path / "cache",
                progress=False)
    assert shards[0].stat().st_mtime_ns == stamp  # up to date: not rebuilt
    ds = FlatTokenDataset(tmp_path / "cache", cfg, llama_like_tokenizer)
    assert len(ds) == 3
    ex = ds[1]
    assert ex["text"][0] == 1 and ex["text"].shape == (12,) and ex["domain"] == "cxr"
    assert ex["text_mask"].sum() == 12  # the MIMIC training prefix fills the slots
    assert ex["image"].shape == (vq.grid[0] * vq.grid[1],)
    tail = llama_like_tokenizer.encode("Image Size: Width is tensor([40]) Height is tensor([64]).")
    assert ex["size_ids"][-len(tail):].tolist() == tail  # the original size, before padding
    batch = collate([ds[i] for i in range(3)], TokenSpace(cfg))
    assert batch["cond"].shape == (3, 40) and batch["state"].shape == (3, 12 + cfg.image_len)


def test_gpu_smoke_dry_run(tmp_path):
    import json
    out = tmp_path / "smoke.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/gpu_smoke.sh", "--dry-run", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["train"]["steps"] == 3 and res["train"]["tokens_per_s"] > 0
    assert set(res["sampler"]) == {"2", "4"} and all(v["images_per_s"] > 0 for v in res["sampler"].values())
    assert res["ar_kv_cache"]["tokens"] == 16 and res["ar_kv_cache"]["images_per_s"] > 0


@pytest.mark.slow
def test_official_release_folder_answers_requests(tmp_path, llama_like_tokenizer):
    """A synthetic release folder (official key names, Chameleon VQGAN at the real 512 px / 32x32 / 8192-code
    layout but reduced width, a Llama-style tokenizer.json) served through OfficialMedimModel."""
    import json
    import shutil

    from PIL import Image
    from safetensors.torch import save_file

    from medbench.records import Request
    from reference_model.chameleon_vqgan import ChameleonVQGAN, ChameleonVQGANConfig
    from reference_model.official import OfficialMedimModel, is_official_release, write_manifest
    from reference_model.vq import sha256_file
    torch.manual_seed(0)
    vcfg = ChameleonVQGANConfig(embed_dim=8, n_embed=8192, z_channels=8, resolution=512, ch=32, ch_mult=(1, 1, 1, 1, 1),
                                num_res_blocks=1)
    save_file(ChameleonVQGAN(vcfg).state_dict(), str(tmp_path / "vqgan.safetensors"))
    (tmp_path / "vq.json").write_text(json.dumps({"kind": "chameleon-vqgan", "config": vcfg.to_dict(),
                                                  "weights": "vqgan.safetensors",
                                                  "sha256": sha256_file(tmp_path / "vqgan.safetensors")}))
    state = synthetic_official(layers=1)
    del state["lm_head.weight"]  # safetensors releases usually omit the tied copy
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copy(llama_like_tokenizer_path(llama_like_tokenizer), tmp_path / "tokenizer.json")
    (tmp_path / "medim-config.json").write_text(json.dumps({**json.loads(
        (REPO / "reference_model/configs/medim-official.json").read_text()), **SMALL}))
    assert is_official_release(tmp_path)
    with pytest.raises(FileNotFoundError, match="manifest"):
        OfficialMedimModel(tmp_path)
    write_manifest(tmp_path)
    model = OfficialMedimModel(tmp_path, options={"steps": "2", "size": "640x480"})
    out = model.generate([Request(kind="report->image", sample_id="a", seed=1, domain="cxr",
                                  report="No pleural effusion."),
                          Request(kind="image->report", sample_id="b", seed=2, domain="path",
                                  image=Image.new("RGB", (96, 64), (200, 100, 150)))])
    assert out[0].image.size == (512, 512) and out[0].image.mode == "L"
    assert isinstance(out[1].report, str)
    # the sampler options reach the sampler (one adapter for both checkpoints): same seed, other report
    request = Request(kind="image->report", sample_id="c", seed=3, domain="cxr", image=Image.new("L", (64, 64), 90))
    plain = model.generate([request])[0].report
    biased = OfficialMedimModel(tmp_path, options={"steps": "2", "pad_bias": "-50", "remask_rounds": "1"})
    assert biased.sampler_kwargs()["pad_bias"] == -50 and biased.sampler_kwargs()["remask_rounds"] == 1
    assert biased.generate([request])[0].report != plain
