"""Train MeDiM: single process, DDP or FSDP, with exact resume.

    python -m reference_model.train --config reference_model/configs/tiny-phantom.json [--out DIR] [--resume]
    torchrun --nproc-per-node 8 -m reference_model.train --config ... [--fsdp] [--peak-tflops 989]
             [--activation-checkpointing] [--compile]        (multi-node: docs/scale.md)

bf16 autocast on GPU, fp32 on CPU. All randomness of a step (t, masks, training cases, condition dropout) is
drawn for the global batch from a generator seeded by (seed, step), and rank r takes rows r, r+W, ... of the
global batch (the data stream order of reference_model.data.ResumableSampler), so 1 process and W processes
compute the same step, and resuming at step s continues exactly. A checkpoint is a folder (FSDP: the optimizer
state is one optimizer-rank<R>.safetensors + .json per rank, see docs/scale.md):
model.safetensors, optimizer.safetensors (optimizer tensors flattened) + trainer.json (step, scalars,
optimizer layout) + rng.safetensors (RNG states). No pickle anywhere.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tqdm import tqdm

from reference_model.autoregressive import NextToken
from reference_model.backbone import MeDiMBackbone
from reference_model.checkpoint import load_checkpoint, save_checkpoint
from reference_model.config import MeDiMConfig, load_config
from reference_model.diffusion import MaskedDiffusion
from reference_model.tokens import TokenSpace

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0,
                    "4090": 165.0, "V100": 125.0}
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- data

def build_dataset(cfg: MeDiMConfig, split: str = "train", progress: bool = True):
    """The token dataset named by cfg.data: {"datasets": [...], "tokenizer_dir": ..., "options": {...}}."""
    from reference_model.data import LAYOUTS, MedimTokenDataset, load_samples
    from reference_model.text_tokenizer import TextTokenizer
    from reference_model.vq import load_image_tokenizer

    d = cfg.data
    if "flat_cache" in d:  # a token cache built by reference_model.flat_data (MeDiM's flat folder layout)
        from reference_model.flat_data import FlatTokenDataset, load_text_tokenizer
        text_tok = load_text_tokenizer(d["text_tokenizer"], d.get("text_kind", "llama")) if cfg.size_cond_len else None
        return FlatTokenDataset(d["flat_cache"], cfg, text_tok)
    if "datasets" not in d or "tokenizer_dir" not in d:
        raise ValueError(f"config {cfg.name!r}: data needs 'datasets' and 'tokenizer_dir'")
    tok_dir = tokenizer_dir(cfg)
    image_tok = load_image_tokenizer(tok_dir)
    text_tok = TextTokenizer.from_file(tok_dir / d.get("text_tokenizer", "text-tokenizer.json"))
    check_tokenizers(cfg, image_tok, text_tok)
    samples = load_samples(d["datasets"], split, d.get("options"))
    return MedimTokenDataset(samples, image_tok, text_tok, cfg.text_len, layouts=d.get("layouts", LAYOUTS),
                             progress=progress)


def tokenizer_dir(cfg: MeDiMConfig) -> Path:
    if "tokenizer_dir" not in cfg.data:
        raise ValueError(f"config {cfg.name!r}: data needs 'tokenizer_dir'")
    tok_dir = Path(cfg.data["tokenizer_dir"])
    return tok_dir if tok_dir.is_absolute() else REPO / tok_dir


def init_image_embeddings_from_vq(model: MeDiMBackbone, cfg: MeDiMConfig) -> None:
    """Image-code rows of the (tied) embedding = the VQ codebook through a fixed random projection, centred and
    scaled to the embedding's std: codes that look alike start alike instead of as 512 arbitrary ids."""
    from reference_model.vq import load_image_tokenizer

    tok_dir = tokenizer_dir(cfg)
    codebook = getattr(getattr(load_image_tokenizer(tok_dir), "quantizer", None), "codebook", None)
    if codebook is None:
        raise ValueError(f"image_embedding_init='vq' needs a tokenizer with a quantizer codebook (tiny-vq); "
                         f"{tok_dir} has none")
    weight, tokens = model.embed.weight, model.tokens
    if codebook.shape[0] != tokens.codebook_size:
        raise ValueError(f"{tok_dir}: codebook has {codebook.shape[0]} codes, the config {tokens.codebook_size}")
    proj = torch.randn(codebook.shape[1], weight.shape[1], generator=torch.Generator().manual_seed(cfg.seed))
    rows = (codebook.float() - codebook.float().mean(0)) @ proj
    with torch.no_grad():
        image_rows = weight[tokens.image_offset:tokens.image_offset + tokens.codebook_size]
        image_rows.copy_(rows / rows.std() * image_rows.std())


def check_tokenizers(cfg: MeDiMConfig, image_tok, text_tok) -> None:
    got = (text_tok.vocab_size, text_tok.pad_id, text_tok.bos_id, image_tok.codebook_size, tuple(image_tok.grid))
    want = (cfg.text_vocab_size, cfg.text_pad_id, cfg.text_bos_id, cfg.image_codebook_size, tuple(cfg.image_grid))
    if got != want:
        raise ValueError(f"config {cfg.name!r} expects (text vocab, pad, bos, codebook, grid) = {want}, "
                         f"but the tokenizers give {got}")


class SyntheticPairs(torch.utils.data.Dataset):
    """Deterministic toy pairs for tests and smoke runs: the image codes are a function of the text."""

    def __init__(self, cfg: MeDiMConfig, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            length = int(torch.randint(4, cfg.text_len, (1,), generator=g))
            words = torch.randint(4, cfg.text_vocab_size, (length - 1,), generator=g)
            text = torch.full((cfg.text_len,), cfg.text_pad_id)
            text[0], text[1:length] = cfg.text_bos_id, words
            image = (words.sum() + torch.arange(cfg.image_len) * words[0]) % cfg.image_codebook_size
            self.items.append({"text": text, "text_mask": text != cfg.text_pad_id, "image": image,
                               "prompt_len": min(3, length), "domain": cfg.domains[i % len(cfg.domains)]})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate(examples: list[dict], tokens: TokenSpace) -> dict[str, torch.Tensor]:
    text = torch.stack([e["text"] for e in examples])
    size_ids = torch.stack([torch.as_tensor(e["size_ids"]) for e in examples]) if tokens.cfg.size_cond_len else None
    return {"state": tokens.make_state(text, torch.stack([e["image"] for e in examples])),
            "text_mask": torch.stack([e["text_mask"] for e in examples]),
            "prompt_len": torch.tensor([int(e["prompt_len"]) for e in examples]),
            "cond": tokens.cond_ids([e["domain"] for e in examples], size_ids)}


def stream_indices(n: int, seed: int, start: int, count: int) -> list[int]:
    """Positions [start, start+count) of the endless seeded stream (epoch e = randperm(n, seed + e))."""
    out, perms = [], {}
    for pos in range(start, start + count):
        e = pos // n
        if e not in perms:
            perms[e] = torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))
        out.append(int(perms[e][pos % n]))
    return out


# ----------------------------------------------------------------------------- schedule

def lr_at(step: int, cfg: MeDiMConfig) -> float:
    """Linear warmup, then cosine to min_lr (or cosine restarts T_0 * T_mult^k, as the reference)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    s = step - cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        frac = min(1.0, s / max(1, cfg.max_steps - cfg.warmup_steps))
    else:
        length = cfg.restart_t0
        while s >= length:
            s, length = s - length, length * cfg.restart_t_mult
        frac = s / length
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


# ----------------------------------------------------------------------------- training

def setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def peak_flops(device: torch.device, peak_tflops: float | None) -> float | None:
    if peak_tflops:
        return peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tf in PEAK_BF16_TFLOPS.items():
            if key in name:
                return tf * 1e12
    return None


def core_layers(model) -> torch.nn.ModuleList:
    """The decoder layers of a (possibly wrapped) MeDiMBackbone."""
    core = model.module if hasattr(model, "module") else model
    return core.decoder.layers


def train(cfg: MeDiMConfig, out_dir: str | Path, dataset=None, resume: bool = False, fsdp: bool = False,
          peak_tflops: float | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Train for cfg.max_steps (or cfg.max_minutes); returns the summary also written to out_dir."""
    rank, world, dev = setup_distributed()
    dev = torch.device(device) if device else dev
    out = Path(out_dir)
    ckpt_dir = out / "checkpoint"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    dataset = dataset if dataset is not None else build_dataset(cfg, progress=progress and rank == 0)
    tokens = TokenSpace(cfg)
    torch.manual_seed(cfg.seed)
    model = MeDiMBackbone(cfg)
    if cfg.image_embedding_init == "vq":
        init_image_embeddings_from_vq(model, cfg)
    model = model.to(dev)
    resuming = resume and (ckpt_dir / "trainer.json").is_file()
    if resuming and fsdp:  # into the plain module, before wrapping (FSDP then shards the resumed weights);
        # loading a full state dict into the wrapped use_orig_params module detaches the optimizer's params
        model.load_state_dict(load_file(str(ckpt_dir / "model.safetensors")))
    n_params = model.num_params()
    matrix_names = {n for n, p in model.named_parameters() if p.dim() >= 2}
    objective = MaskedDiffusion(cfg, tokens) if cfg.objective == "mdlm" else NextToken(cfg, tokens)
    if cfg.compile:  # per decoder layer, in place: state-dict keys unchanged, composes with FSDP/DDP
        for layer in core_layers(model):
            layer.compile()
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, ShardingStrategy
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy
        # one FSDP unit per decoder layer (+ the root for embedding, time MLP, final norm): only one layer's
        # full parameters are materialised at a time. device_id=cpu makes FSDP run on gloo without a GPU.
        model = FSDP(model, sharding_strategy=ShardingStrategy.FULL_SHARD, use_orig_params=True,
                     auto_wrap_policy=ModuleWrapPolicy({type(core_layers(model)[0])}), device_id=dev)
    elif world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    # decay on >= 2-D tensors, decided by name (FSDP's use_orig_params views are flat shards)
    named = [(n.replace("_fsdp_wrapped_module.", ""), p) for n, p in model.named_parameters()]
    decay = [p for n, p in named if n.removeprefix("module.") in matrix_names]
    no_decay = [p for n, p in named if n.removeprefix("module.") not in matrix_names]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas,
                                  fused=dev.type == "cuda")
    step = 0
    if resuming:
        step = load_checkpoint(ckpt_dir, model, optimizer, fsdp)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    global_batch = cfg.micro_batch_size * cfg.grad_accum * world
    tokens_per_step = global_batch * tokens.seq_len
    flops_per_step = 6 * n_params * tokens_per_step
    peak = peak_flops(dev, peak_tflops)
    log_path = out / "log.jsonl"
    bar = tqdm(total=cfg.max_steps, initial=step, desc="medim", disable=not progress or rank != 0)
    started, t_last, losses, history = time.time(), time.time(), [], []
    while step < cfg.max_steps:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        noise = objective.draw_noise(global_batch, gen)
        idx = stream_indices(len(dataset), cfg.seed, step * global_batch, global_batch)
        rows = list(range(rank, global_batch, world))  # this rank's rows of the global batch
        step_loss = torch.zeros((), device=dev)
        for m in range(cfg.grad_accum):
            mine = rows[m * cfg.micro_batch_size:(m + 1) * cfg.micro_batch_size]
            batch = {k: v.to(dev) for k, v in collate([dataset[idx[j]] for j in mine], tokens).items()}
            micro_noise = {k: v[mine] for k, v in noise.items()}
            sync = m == cfg.grad_accum - 1 or world == 1 or fsdp
            with (nullcontext() if sync else model.no_sync()), autocast:
                loss, _ = objective.loss(model, batch, micro_noise)
            (loss / cfg.grad_accum).backward()
            step_loss += loss.detach() / cfg.grad_accum
        if fsdp:
            grad_norm = model.clip_grad_norm_(cfg.grad_clip)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if torch.isfinite(grad_norm):  # the reference skips non-finite batches
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if world > 1:
            dist.all_reduce(step_loss)
            step_loss /= world
        losses.append(step_loss.item())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            now = time.time()
            dt, t_last = (now - t_last) / len(losses), now
            rec = {"step": step, "loss": sum(losses) / len(losses), "lr": lr, "grad_norm": float(grad_norm),
                   "tokens_per_s": tokens_per_step / dt, "s_per_step": dt,
                   "mfu": flops_per_step / dt / (peak * world) if peak else None}  # peak is per device
            history.append(rec)
            losses = []
            if rank == 0:
                with log_path.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}",
                                **({"mfu": f"{rec['mfu']:.1%}"} if peak else {}))
        stop = cfg.max_minutes is not None and (time.time() - started) / 60 >= cfg.max_minutes
        if world > 1:
            flag = torch.tensor([float(stop)], device=dev)
            dist.all_reduce(flag)
            stop = bool(flag.item())
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or stop:
            save_checkpoint(ckpt_dir, model, optimizer, cfg, step, fsdp, rank, world)
            if world > 1:
                dist.barrier()
        if stop:
            break
    bar.close()
    summary = {"config": cfg.name, "steps": step, "world_size": world, "global_batch": global_batch,
               "params": n_params, "minutes": (time.time() - started) / 60, "device": str(dev),
               "final_loss": history[-1]["loss"] if history else None, "log": history[-5:]}
    if rank == 0:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="config name or JSON path (reference_model/configs/)")
    p.add_argument("--out", default=None, help="output folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--fsdp", action="store_true", help="torch FSDP full shard instead of DDP")
    p.add_argument("--activation-checkpointing", action="store_true", help="recompute each layer in backward")
    p.add_argument("--compile", action="store_true", help="torch.compile every decoder layer")
    p.add_argument("--peak-tflops", type=float, default=None, help="accelerator peak for the MFU estimate")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--synthetic", action="store_true", help="train on SyntheticPairs (smoke test)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("max_minutes", args.max_minutes)) if v is not None}
    if args.activation_checkpointing:
        overrides["gradient_checkpointing"] = True
    if args.compile:
        overrides["compile"] = True
    cfg = cfg.replace(**overrides)
    dataset = SyntheticPairs(cfg, n=256, seed=cfg.seed) if args.synthetic else None
    summary = train(cfg, args.out or f"runs/{cfg.name}", dataset=dataset, resume=args.resume, fsdp=args.fsdp,
                    peak_tflops=args.peak_tflops)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "log"}))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
