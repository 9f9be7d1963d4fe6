"""MeDiM at paper geometry on one GPU: training throughput/MFU/memory, MaskGIT sampling speed, and the same
backbone decoding autoregressively with a KV cache. Random init (no weights needed). Run via gpu_smoke.sh.

    python benchmarks/gpu_smoke.py [--steps 300] [--batch 4] [--peak-tflops 989] [--out smoke.json]
    python benchmarks/gpu_smoke.py --dry-run          # tiny geometry on CPU: exercises every code path

MFU = model FLOPs / s / peak, model FLOPs per token = 6 N (N = all parameters; the tied head is a real matmul)
+ 12 * layers * seq * attention width (fwd + bwd attention scores and values); activation recomputation is not
counted. Peak: --peak-tflops, else the dense bf16 figure for the GPU name (H100/H200 SXM: 989 TFLOP/s).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference_model.backbone import MeDiMBackbone  # noqa: E402
from reference_model.config import load_config  # noqa: E402
from reference_model.diffusion import MaskedDiffusion  # noqa: E402
from reference_model.sampler import MaskGITSampler, task_known_mask  # noqa: E402
from reference_model.train import PEAK_BF16_TFLOPS, SyntheticPairs, collate, peak_flops  # noqa: E402

DRY = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4, head_dim=16, intermediate_size=128,
           text_vocab_size=64, image_codebook_size=32, image_grid=(4, 4), text_len=8)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def peak_mem_gib(dev) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def train_bench(cfg, dev, steps: int, batch: int, budget_s: float, peak: float | None) -> dict:
    torch.manual_seed(0)
    with torch.device(dev):
        model = MeDiMBackbone(cfg)
    model.train()
    if cfg.compile:
        for layer in model.decoder.layers:
            layer.compile()
    n_params = model.num_params()
    diffusion = MaskedDiffusion(cfg, model.tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=cfg.betas, fused=dev.type == "cuda")
    data = SyntheticPairs(cfg, n=max(64, batch), seed=0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    seq = model.tokens.seq_len
    attn_width = cfg.num_heads * (cfg.head_dim or cfg.hidden_size // cfg.num_heads)
    flops_per_token = 6 * n_params + 12 * cfg.num_layers * seq * attn_width
    warmup, times, losses = min(3, steps - 1), [], []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    started = time.time()
    for step in range(steps):
        t0 = time.time()
        batch_ex = collate([data[(step * batch + i) % len(data)] for i in range(batch)], model.tokens)
        batch_ex = {k: v.to(dev) for k, v in batch_ex.items()}
        noise = diffusion.draw_noise(batch, torch.Generator().manual_seed(step))
        with autocast:
            loss, _ = diffusion.loss(model, batch_ex, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(dev)
        if step >= warmup:
            times.append(time.time() - t0)
        losses.append(loss.item())
        if time.time() - started > budget_s and len(times) >= 2:
            break
    dt = sum(times) / len(times)
    tokens_per_s = batch * seq / dt
    out = {"params": n_params, "seq_len": seq, "micro_batch": batch, "steps": len(losses), "timed_steps": len(times),
           "s_per_step": dt, "tokens_per_s": tokens_per_s, "model_tflops_per_s": tokens_per_s * flops_per_token / 1e12,
           "mfu": tokens_per_s * flops_per_token / peak if peak else None, "peak_mem_gib": peak_mem_gib(dev),
           "loss_first": losses[0], "loss_last": losses[-1], "activation_checkpointing": cfg.gradient_checkpointing}
    del opt
    return out, model


@torch.no_grad()
def sampler_bench(model, cfg, dev, steps_list, batch: int) -> dict:
    tok = model.tokens
    data = SyntheticPairs(cfg, n=batch, seed=1)
    ex = collate([data[i] for i in range(batch)], tok)
    known = task_known_mask("t2i", tok, batch)
    sampler = MaskGITSampler(model, cfg, tok)
    out = {}
    for steps in steps_list:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        sync(dev)
        t0 = time.time()
        state = sampler.generate(ex["state"], known, ex["cond"], seeds=list(range(batch)), steps=steps)
        sync(dev)
        dt = time.time() - t0
        assert state.shape == ex["state"].shape and (state != tok.mask_id).all()
        out[str(steps)] = {"batch": batch, "seconds": dt, "images_per_s": batch / dt,
                           "forward_passes_per_image": sampler.forward_passes, "peak_mem_gib": peak_mem_gib(dev)}
    return out


@torch.no_grad()
def ar_bench(model, cfg, dev, batch: int) -> dict:
    """The same backbone, made causal, generating the image codes one by one after the text with a KV cache."""
    from transformers import DynamicCache

    tok, dec = model.tokens, model.decoder
    dec.config.is_causal = True
    for layer in dec.layers:
        layer.self_attn.is_causal = True
    data = SyntheticPairs(cfg, n=batch, seed=2)
    text = torch.stack([data[i]["text"] for i in range(batch)]).to(dev)
    prefix = torch.cat([text, torch.full((batch, 1), tok.boi_id, device=dev)], dim=1)
    cond = model.time_embed(torch.zeros(batch, device=dev))  # AdaLN needs a conditioning vector; sigma = 0
    gen = torch.Generator(device=dev).manual_seed(0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync(dev)
    t0 = time.time()
    cache = DynamicCache(config=dec.config)
    ids, codes = prefix, []
    for _ in range(tok.image_len):
        h = dec(input_ids=ids, cache=cache, use_cache=True, adaln_cond=cond).last_hidden_state[:, -1]
        logits = F.linear(h, model.embed.weight).float()[:, tok.image_offset:]
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen) + tok.image_offset
        codes.append(nxt)
        ids = nxt
    sync(dev)
    dt = time.time() - t0
    dec.config.is_causal = cfg.causal
    for layer in dec.layers:
        layer.self_attn.is_causal = cfg.causal
    assert cache.get_seq_length() == prefix.shape[1] + tok.image_len - 1
    return {"batch": batch, "tokens": tok.image_len, "seconds": dt, "images_per_s": batch / dt,
            "tokens_per_s": batch * tok.image_len / dt, "peak_mem_gib": peak_mem_gib(dev)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny geometry on CPU (tests the code paths)")
    ap.add_argument("--config", default="medim-liquid-10l")
    ap.add_argument("--steps", type=int, default=300, help="training steps (stops early at --train-budget-s)")
    ap.add_argument("--batch", type=int, default=4, help="training micro-batch")
    ap.add_argument("--train-budget-s", type=float, default=200.0)
    ap.add_argument("--sample-batch", type=int, default=8)
    ap.add_argument("--sample-steps", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--no-activation-checkpointing", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None, help=f"default by GPU name: {PEAK_BF16_TFLOPS}")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    a = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = load_config(a.config)
    if a.dry_run:
        torch.set_num_threads(1)
        cfg, dev = cfg.replace(**DRY), torch.device("cpu")
        a.steps, a.batch, a.sample_batch, a.sample_steps = 3, 2, 2, [2, 4]
    elif not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return {}
    else:
        dev = torch.device("cuda", 0)
    cfg = cfg.replace(gradient_checkpointing=not a.no_activation_checkpointing, compile=a.compile)
    peak = peak_flops(dev, a.peak_tflops)
    result = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (dry run)",
              "config": cfg.name, "dtype": "bf16 autocast, fp32 master weights" if dev.type == "cuda" else "fp32",
              "peak_tflops": peak / 1e12 if peak else None}
    result["train"], model = train_bench(cfg, dev, a.steps, a.batch, a.train_budget_s, peak)
    print(json.dumps({"train": result["train"]}), flush=True)
    model.eval()
    if dev.type == "cuda":
        model.to(torch.bfloat16)  # inference in bf16 weights
    result["sampler"] = sampler_bench(model, cfg, dev, a.sample_steps, a.sample_batch)
    print(json.dumps({"sampler": result["sampler"]}), flush=True)
    result["ar_kv_cache"] = ar_bench(model, cfg, dev, a.sample_batch)
    print(json.dumps(result, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
