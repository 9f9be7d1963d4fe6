"""Train the phantom encoder on the train splits of both phantom datasets (CPU, minutes).

    python -m medbench.features.train_phantom_encoder --out medbench/features/weights/phantom-encoder.safetensors

Data: `medbench.data.phantom.generate.ensure_phantom(domain, size, n_train, seed)` (or --data
DOMAIN=FOLDER for an existing folder in the same layout: <split>/<id>.png + labels.jsonl).
Targets: label 1 -> positive, 0 or blank -> negative, -1 (uncertain) -> masked out of the loss.
One head per domain; the loss is the mean BCE over the domains present in a batch. The JSON
card beside the weights records the command, seed, data parameters (incl. the generator's source
digest in the phantom folder name) and validation and test AUROC per label (test: reported only).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from medbench.features.phantom_encoder import (BUNDLED_WEIGHTS, PhantomEncoderConfig, PhantomEncoderNet,
                                               save_weights, to_rgb, uint8_to_input)

DOMAINS = ("cxr", "path")


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    image_size: int = 64
    n_train: int = 4000  # per domain, passed to the phantom generator (its default)
    threads: int = 1


@dataclass
class DomainData:
    """One domain's images (uint8, N x 3 x S x S), targets and loss mask (N x L), label names."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    labels: list[str]


# ---- data ------------------------------------------------------------------------------------

def read_split(root: Path, split: str) -> list[dict]:
    """Records of one split with an absolute image path, from <root>/<split>/labels.jsonl (or <root>/labels.jsonl)."""
    f = root / split / "labels.jsonl"
    rows = []
    if f.is_file():
        lines = f.read_text().splitlines()
    elif (root / "labels.jsonl").is_file():
        f = root / "labels.jsonl"
        lines = f.read_text().splitlines()
    else:
        raise FileNotFoundError(f"{root}: no {split}/labels.jsonl or labels.jsonl")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}:{n}: not valid JSON ({e})") from e
        if rec.get("split", split) != split:
            continue
        rec["image"] = root / split / f"{rec['id']}.png"
        rows.append(rec)
    if not rows:
        raise ValueError(f"{f}: no records for split {split!r}")
    return rows


def load_domain(records: list[dict], size: int, labels: list[str] | None = None) -> DomainData:
    if labels is None:  # every label name that is ever positive in this split
        labels = sorted({k for r in records for k, v in (r.get("labels") or {}).items() if v == 1})
    x = torch.zeros(len(records), 3, size, size, dtype=torch.uint8)
    y = torch.zeros(len(records), len(labels))
    mask = torch.ones(len(records), len(labels))
    for i, rec in enumerate(records):
        with Image.open(rec["image"]) as im:
            rgb = to_rgb(im)
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BICUBIC)
        x[i] = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
        lab = rec.get("labels") or {}
        for j, name in enumerate(labels):
            v = lab.get(name)
            y[i, j] = 1.0 if v == 1 else 0.0
            mask[i, j] = 0.0 if v == -1 else 1.0
    return DomainData(x, y, mask, labels)


# ---- training --------------------------------------------------------------------------------

def train_encoder(train: dict[str, DomainData], cfg: TrainConfig, progress: bool = True) -> PhantomEncoderNet:
    """Multi-label training with one head per domain; deterministic under cfg.seed."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = PhantomEncoderNet(PhantomEncoderConfig(image_size=cfg.image_size, labels={d: v.labels for d, v in train.items()}))
    domains = list(train)
    owner = torch.cat([torch.full((len(train[d].x),), i) for i, d in enumerate(domains)])
    local = torch.cat([torch.arange(len(train[d].x)) for d in domains])
    steps_per_epoch = (len(owner) + cfg.batch_size - 1) // cfg.batch_size
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    net.train()
    bar = tqdm(total=cfg.epochs * steps_per_epoch, disable=not progress, desc="train phantom-encoder")
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(owner), generator=gen)
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            parts = [(d, local[idx[owner[idx] == i]]) for i, d in enumerate(domains)]
            parts = [(d, rows) for d, rows in parts if len(rows)]
            x = torch.cat([uint8_to_input(train[d].x[rows]) for d, rows in parts])
            z = net.embed(x)
            loss, start = 0.0, 0
            for d, rows in parts:
                logits = net.heads[d](z[start : start + len(rows)])
                start += len(rows)
                w = train[d].mask[rows]
                bce = F.binary_cross_entropy_with_logits(logits, train[d].y[rows], weight=w, reduction="sum")
                loss = loss + bce / w.sum().clamp(min=1.0)
            loss = loss / len(parts)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
    bar.close()
    return net.eval()


@torch.no_grad()
def predict(net: PhantomEncoderNet, data: DomainData, domain: str, batch: int = 256) -> np.ndarray:
    net.eval()
    out = [torch.sigmoid(net.heads[domain](net.embed(uint8_to_input(data.x[i : i + batch]))))
           for i in range(0, len(data.x), batch)]
    return torch.cat(out).numpy()


def auroc_per_label(net: PhantomEncoderNet, data: DomainData, domain: str) -> dict[str, float | None]:
    """Validation AUROC per label (None where the split lacks positives or negatives)."""
    from sklearn.metrics import roc_auc_score

    p = predict(net, data, domain)
    res: dict[str, float | None] = {}
    for j, name in enumerate(data.labels):
        keep = data.mask[:, j].numpy() > 0
        y = data.y[keep, j].numpy()
        res[name] = float(roc_auc_score(y, p[keep, j])) if 0 < y.sum() < len(y) else None
    return res


def phantom_params(root: Path) -> dict | None:
    """The generator's parameters (incl. generator_version) from <root>/phantom.json, if present."""
    meta = root / "phantom.json"
    return {k: v for k, v in json.loads(meta.read_text()).items() if k != "notice"} if meta.is_file() else None


# ---- command line ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=BUNDLED_WEIGHTS)
    ap.add_argument("--data", action="append", default=[], metavar="DOMAIN=FOLDER",
                    help="use an existing phantom folder instead of the generator (repeatable)")
    for f, v in asdict(TrainConfig()).items():
        ap.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    args = ap.parse_args(argv)
    cfg = TrainConfig(**{f: getattr(args, f) for f in asdict(TrainConfig())})
    torch.set_num_threads(cfg.threads)
    roots = dict(item.split("=", 1) for item in args.data)
    if not roots:
        from medbench.data.phantom.generate import ensure_phantom

        roots = {d: ensure_phantom(d, size=cfg.image_size, n_train=cfg.n_train, seed=0) for d in DOMAINS}
    t0 = time.time()
    train, val, test = {}, {}, {}
    for d, root in roots.items():
        train[d] = load_domain(read_split(Path(root), "train"), cfg.image_size)
        val[d] = load_domain(read_split(Path(root), "val"), cfg.image_size, labels=train[d].labels)
        test[d] = load_domain(read_split(Path(root), "test"), cfg.image_size, labels=train[d].labels)
        print(f"{d}: {len(train[d].x)} train / {len(val[d].x)} val images, labels {train[d].labels}", file=sys.stderr)
    net = train_encoder(train, cfg)
    aurocs = {d: auroc_per_label(net, val[d], d) for d in train}
    test_aurocs = {d: auroc_per_label(net, test[d], d) for d in train}  # reported, never used for selection
    card = {
        "name": "phantom-encoder",
        "description": "Small CNN trained on synthetic phantom data only (not clinical data): 256-d features for "
                       "FID/KID/PRDC and one multi-label head per phantom domain.",
        "command": "python -m medbench.features.train_phantom_encoder " + " ".join(argv if argv is not None else sys.argv[1:]),
        "train_config": asdict(cfg),
        "data": {d: {"root": str(r), "generator": "medbench.data.phantom.generate.ensure_phantom" if not args.data else None,
                     "generator_seed": 0, "n_train_images": len(train[d].x), "n_val_images": len(val[d].x),
                     "phantom_params": phantom_params(Path(r))}
                 for d, r in roots.items()},
        "n_parameters": sum(p.numel() for p in net.parameters()),
        "val_auroc": aurocs,
        "test_auroc": test_aurocs,
        "train_seconds": round(time.time() - t0, 1),
        "torch_version": torch.__version__,
    }
    digest = save_weights(net, args.out, card)
    print(json.dumps({"out": str(args.out), "sha256": digest, "val_auroc": aurocs, "test_auroc": test_aurocs}, indent=1))


if __name__ == "__main__":
    main()
