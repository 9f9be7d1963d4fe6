"""MeDiM MaskGIT sampler vs autoregressive decoding with the same backbone made causal (KV cache).

    python benchmarks/sampler_bench.py [--config tiny-phantom] [--checkpoint DIR] [--batch 8]
                                       [--steps 4 8 16 32] [--task joint] [--device cpu] [--threads 1]

Both generate the same number of tokens (the whole text + image state for `joint`, the image for `t2i`) with
the same decoder geometry; the AR baseline is a plain transformers decoder with the causal mask, no AdaLN,
decoding one token per step with its KV cache (prefill = the condition). Untrained weights are fine for
throughput; pass --checkpoint to time the trained model. Prints a Markdown table: samples/s and forward
passes per sample (CFG counts two per step, as in the reference sampler).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from doc_block import write_block


def time_it(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def medim_runner(cfg, model, batch: int, steps: int, task: str, cfg_scale: float):
    from reference_model.sampler import MaskGITSampler, task_known_mask

    tok = model.tokens
    sampler = MaskGITSampler(model, cfg, tok)
    g = torch.Generator().manual_seed(0)
    text = torch.randint(4, tok.text_vocab_size, (batch, tok.text_len), generator=g)
    image = torch.randint(0, tok.codebook_size, (batch, tok.image_len), generator=g)
    x0 = tok.make_state(text, image)
    known = task_known_mask("t2i" if task == "t2i" else "uncond", tok, batch)
    cond = tok.cond_ids([cfg.domains[0]] * batch)
    seeds = list(range(batch))

    def run():
        sampler.generate(x0, known, cond, seeds, steps=steps, cfg_scale=cfg_scale)
    return run, sampler


def ar_runner(cfg, batch: int, task: str, device):
    """The same decoder made causal, no time conditioning, greedy decoding with a KV cache."""
    from reference_model.backbone import MeDiMBackbone

    torch.manual_seed(0)
    net = MeDiMBackbone(cfg.replace(causal=True, time_embedding="none", gradient_checkpointing=False)).to(device).eval()
    tok = net.tokens
    n_new = tok.image_len if task == "t2i" else tok.state_len
    prefix_len = 1 + tok.cond_len + (tok.text_len if task == "t2i" else 0)
    prefix = torch.randint(0, tok.text_vocab_size, (batch, prefix_len), device=device)

    @torch.no_grad()
    def run():
        out = net.decoder(input_ids=prefix, use_cache=True)
        cache, last = out.cache, out.last_hidden_state[:, -1:]
        for _ in range(n_new):
            nxt = torch.nn.functional.linear(last, net.embed.weight).argmax(-1)
            out = net.decoder(input_ids=nxt, cache=cache, use_cache=True)
            cache, last = out.cache, out.last_hidden_state
    return run, n_new


def main(argv=None):
    from reference_model.backbone import MeDiMBackbone
    from reference_model.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="tiny-phantom")
    p.add_argument("--checkpoint", default=None, help="folder with model.safetensors (+ config.json)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--task", choices=["joint", "t2i"], default="joint")
    p.add_argument("--cfg-scale", type=float, default=None, help="default: the config's (t2i only)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", type=Path, help="also write the table into this Markdown file's sampler_bench block")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(f"{args.checkpoint}/config.json" if args.checkpoint else args.config)
    torch.manual_seed(0)
    model = MeDiMBackbone(cfg).to(args.device).eval()
    if args.checkpoint:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(f"{args.checkpoint}/model.safetensors"))
    cfg_scale = (cfg.cfg_scale if args.cfg_scale is None else args.cfg_scale) if args.task == "t2i" else 0.0
    rows = []
    for steps in args.steps:
        run, sampler = medim_runner(cfg, model, args.batch, steps, args.task, cfg_scale)
        sec = time_it(run, args.repeats)
        rows.append((f"MeDiM MaskGIT, {steps} steps", args.batch / sec, sampler.forward_passes))
    run, n_new = ar_runner(cfg, args.batch, args.task, args.device)
    sec = time_it(run, args.repeats)
    rows.append((f"AR (same backbone, causal, KV cache), {n_new} tokens", args.batch / sec, n_new + 1))
    lines = [f"Config {cfg.name} ({model.num_params() / 1e6:.2f} M parameters, {args.checkpoint or 'untrained'}), "
             f"task {args.task}, batch {args.batch}, device {args.device}, threads {args.threads}, cfg {cfg_scale}; "
             f"MaskGIT reaches {rows[0][1] / rows[-1][1]:.1f}× ({args.steps[0]} steps) to "
             f"{rows[-2][1] / rows[-1][1]:.1f}× ({args.steps[-1]} steps) the AR samples/s.", "",
             "| sampler | samples/s | forward passes / sample | samples/s vs AR |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {sps:.2f} | {passes:.0f} | {sps / rows[-1][1]:.2f}× |" for name, sps, passes in rows]
    print("\n".join(lines))
    if args.write:
        write_block(args.write, "sampler_bench", "\n".join(lines))


if __name__ == "__main__":
    main()
