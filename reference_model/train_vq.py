"""Train the tiny VQ image tokenizer on the phantom train splits of both domains.

    python -m reference_model.train_vq --out reference_model/checkpoints/tiny-phantom/
    python -m reference_model.train_vq --out /tmp/vq --minutes 1 --preview /tmp/vq/preview.png

Writes OUT/vq.safetensors and OUT/vq.json (config, seed, data, training settings, validation
reconstruction MSE, codebook usage). CPU, fp32, a fixed number of threads; deterministic under
--seed for a given thread count. Laterality matters (left/right effusion), so there are no flips.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from reference_model.data import image_to_tensor, load_samples, tensor_to_image
from reference_model.vq import TinyVQ, VQConfig, save_tiny_vq


def load_pixels(samples, size: int) -> torch.Tensor:
    """uint8[N,3,size,size] of the samples' images (a few MB for 64-px phantoms)."""
    out = torch.empty(len(samples), 3, size, size, dtype=torch.uint8)
    for i, s in enumerate(tqdm(samples, desc="reading images", unit="img", leave=False)):
        with Image.open(s.image_path) as im:
            out[i] = ((image_to_tensor(im, size) + 1) * 127.5).round().to(torch.uint8)
    return out


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


@torch.no_grad()
def evaluate(model: TinyVQ, pixels: torch.Tensor) -> dict:
    """Reconstruction MSE (in [-1,1] units) through encode/decode, and codebook usage."""
    model.eval()
    mse, used = 0.0, torch.zeros(model.codebook_size, dtype=torch.bool)
    for start in range(0, len(pixels), 128):
        x = to_float(pixels[start:start + 128])
        codes = model.encode(x)
        used[codes.unique()] = True
        mse += F.mse_loss(model.decode(codes), x, reduction="sum").item()
    model.train()
    return {"recon_mse": mse / pixels.numel(), "codebook_usage": int(used.sum())}


def save_preview(model: TinyVQ, pixels: torch.Tensor, domains: list[str], path: Path) -> None:
    """A grid: originals on odd rows, their reconstructions below them."""
    model.eval()
    x = to_float(pixels)
    recon = model.decode(model.encode(x))
    n, size = len(x), x.shape[-1]
    cols = 8
    rows = math.ceil(n / cols)
    grid = Image.new("RGB", (cols * size, 2 * rows * size))
    for i in range(n):
        r, c = divmod(i, cols)
        grid.paste(tensor_to_image(x[i], domains[i]).convert("RGB"), (c * size, 2 * r * size))
        grid.paste(tensor_to_image(recon[i], domains[i]).convert("RGB"), (c * size, (2 * r + 1) * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(path)
    model.train()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the tiny VQ image tokenizer on phantom train splits.")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--datasets", nargs="+", default=["cxr-phantom", "path-phantom"])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--widths", type=int, nargs="+", default=list(VQConfig.widths))
    ap.add_argument("--embed-dim", type=int, default=VQConfig.embed_dim)
    ap.add_argument("--codebook-size", type=int, default=VQConfig.codebook_size)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=30.0, help="stop early after this much wall-clock")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preview", type=Path, default=None, help="write an originals-vs-reconstructions PNG here")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    options = {"size": a.size}
    train = load_samples(a.datasets, "train", options)
    val = load_samples(a.datasets, "val", options) or load_samples(a.datasets, "test", options)
    train_px, val_px = load_pixels(train, a.size), load_pixels(val, a.size)
    print(f"train images: {len(train_px)}, val images: {len(val_px)}")

    cfg = VQConfig(image_size=a.size, widths=tuple(a.widths), embed_dim=a.embed_dim, codebook_size=a.codebook_size)
    model = TinyVQ(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(a.seed)
    # initialise the codebook on encoder outputs so no code starts dead
    with torch.no_grad():
        z = model.encoder(to_float(train_px[torch.randperm(len(train_px), generator=gen)[:256]]))
        flat = z.permute(0, 2, 3, 1).reshape(-1, cfg.embed_dim)
        pick = torch.randperm(len(flat), generator=gen)[: cfg.codebook_size]
        model.quantizer.codebook.copy_(flat[pick])
        model.quantizer.ema_sum.copy_(flat[pick])

    t0, step, restarted = time.time(), 0, 0
    bar = tqdm(total=a.steps, desc="training VQ", unit="step")
    for step in range(1, a.steps + 1):
        lr = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))  # cosine to 0
        for g in opt.param_groups:
            g["lr"] = lr
        x = to_float(train_px[torch.randint(0, len(train_px), (a.batch_size,), generator=gen)])
        recon, codes, commit, z = model(x)
        rec = F.mse_loss(recon, x)
        loss = rec + commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0:
            restarted += model.quantizer.restart_dead_codes(z.detach().permute(0, 2, 3, 1).reshape(-1, cfg.embed_dim), gen)
            bar.set_postfix(mse=f"{rec.item():.4f}", commit=f"{commit.item():.4f}", restarted=restarted)
        bar.update()
        if (time.time() - t0) / 60 > a.minutes:
            print(f"stopping at step {step}: --minutes {a.minutes} reached")
            break
    bar.close()

    metrics = evaluate(model, val_px)
    print(f"val reconstruction MSE {metrics['recon_mse']:.5f}, codebook usage {metrics['codebook_usage']}/{cfg.codebook_size}")
    extra = {
        "seed": a.seed,
        "data": {"datasets": a.datasets, "split": "train", "options": options, "n_train": len(train_px),
                 "eval_split": "val", "n_eval": len(val_px)},
        "train": {"steps": step, "batch_size": a.batch_size, "lr": a.lr, "schedule": "cosine", "threads": a.threads,
                  "loss": "mse + beta * commitment, EMA codebook, dead-code restarts every 25 steps",
                  "minutes": round((time.time() - t0) / 60, 2), "torch": torch.__version__},
        "eval": metrics,
        "command": "python -m reference_model.train_vq " + " ".join(argv or __import__("sys").argv[1:]),
    }
    card = save_tiny_vq(model, a.out, extra)
    print(f"wrote {card} and {card.parent / 'vq.safetensors'}")
    if a.preview:
        k = 16
        idx = [i * len(val) // k for i in range(k)]
        save_preview(model.eval(), val_px[idx], [val[i].domain for i in idx], a.preview)
        print(f"preview: {a.preview}")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
