"""MeDiM's flat folder layout (one `<name>.jpg|png` + `<name>.txt` per pair, spec §E.3) as a token dataset whose
VQ codes and text ids are computed once and cached on disk (the official code re-encodes every image every step).

    python -m reference_model.flat_data --folder /data/pathgen/train:path --folder /data/mimic/train:cxr:mimic \\
        --image-tokenizer DIR --text-tokenizer tokenizer.json --text-kind llama --out /cache/medim-train
    torchrun --nproc-per-node 8 -m reference_model.flat_data ...     # shards encoded in parallel, one per rank
    ds = FlatTokenDataset("/cache/medim-train", cfg, text_tok)       # examples for reference_model.train.collate

The cache is a folder of shards `shard-NNNNN.safetensors` (image codes int16 [n, N], text ids int32 [n, T],
prompt_len, original W/H) + `shard-NNNNN.json` (the files it holds, their sizes and mtimes, the domain and the
tokenizers' sha256). A shard is rebuilt only when one of those changed. Text follows the official dataset
(§B.2): BOS + the report in one tokenizer call, right-padded with the pad id, truncated to T; prompt_len =
BOS + the report up to its first "."; MIMIC reports get the training prefix sentence when the folder says
`:mimic`. The original image size is kept for the optional size string (cfg.size_cond_len).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from tqdm import tqdm

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MIMIC_TRAIN_PREFIX = "The image is a radiograph of the chest, showing the thoracic cavity structures. "
SHARD = 4096


def scan_folder(folder: str | Path) -> list[Path]:
    """Image files that have a `.txt` report beside them, sorted by name (a stable order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"flat MeDiM folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [p for p in images if p.with_suffix(".txt").is_file()]
    if not pairs:
        raise ValueError(f"{folder}: no <name>.jpg|png + <name>.txt pairs")
    return pairs


def text_row(text_tok, report: str, text_len: int) -> tuple[list[int], int]:
    """(ids padded to text_len, prompt_len), as the official dataset tokenises a report."""
    report = report.strip()
    cut = report.find(".")
    head = report if cut < 0 else report[:cut]
    ids = ([text_tok.bos_id] + text_tok.encode(report))[:text_len]
    prompt_len = min(1 + len(text_tok.encode(head)), text_len)
    return ids + [text_tok.pad_id] * (text_len - len(ids)), prompt_len


def _stamp(paths: list[Path]) -> list[list]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns, p.with_suffix(".txt").stat().st_mtime_ns] for p in paths]


def build_cache(folders: list[tuple[str, str, bool]], image_tok, text_tok, text_len: int, out: str | Path,
                rank: int = 0, world: int = 1, progress: bool = True) -> list[Path]:
    """Encode (folder, domain, mimic_prefix) triples into shards under out; rank r builds shards r, r+W, ...
    Returns the shard paths in order (every rank returns all of them)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok_ids = {"image": getattr(image_tok, "sha256", None), "text": getattr(text_tok, "sha256", None)}
    jobs = []
    for folder, domain, prefix in folders:
        files = scan_folder(folder)
        for start in range(0, len(files), SHARD):
            jobs.append((folder, domain, prefix, files[start:start + SHARD]))
    shards = []
    for s, (folder, domain, prefix, files) in enumerate(jobs):
        path = out / f"shard-{s:05d}.safetensors"
        shards.append(path)
        if s % world != rank:
            continue
        meta = {"folder": str(Path(folder).resolve()), "domain": domain, "mimic_prefix": prefix, "text_len": text_len,
                "tokenizers": tok_ids, "files": _stamp(files)}
        meta_path = path.with_suffix(".json")
        if path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()) == meta:
            continue  # up to date
        from reference_model.data import encode_images

        codes = encode_images(files, image_tok, cache=None, progress=progress)
        rows = [text_row(text_tok, (MIMIC_TRAIN_PREFIX if prefix else "") + f.with_suffix(".txt").read_text(),
                         text_len) for f in tqdm(files, desc=f"tokenising shard {s}", disable=not progress)]
        sizes = []
        for f in files:
            with Image.open(f) as im:
                sizes.append(im.size)  # original (W, H), before padding
        tensors = {"image": codes.to(torch.int16), "text": torch.tensor([r[0] for r in rows], dtype=torch.int32),
                   "prompt_len": torch.tensor([r[1] for r in rows], dtype=torch.int32),
                   "size": torch.tensor(sizes, dtype=torch.int32)}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
        meta_path.write_text(json.dumps(meta) + "\n")
    return shards


class FlatTokenDataset(Dataset):
    """All shards of a cache folder as MeDiM training examples (dicts for reference_model.train.collate)."""

    def __init__(self, cache: str | Path, cfg, text_tok=None):
        from reference_model.tokens import TokenSpace

        paths = sorted(Path(cache).glob("shard-*.safetensors"))
        if not paths:
            raise FileNotFoundError(f"no token shards in {cache}: build them with python -m reference_model.flat_data")
        self.tokens = TokenSpace(cfg)
        self.text_tok = text_tok
        if cfg.size_cond_len and text_tok is None:
            raise ValueError("config.size_cond_len > 0: FlatTokenDataset needs the text tokenizer for the size string")
        parts, self.domains = [], []
        for p in paths:
            meta = json.loads(p.with_suffix(".json").read_text())
            if meta["text_len"] != cfg.text_len:
                raise ValueError(f"{p}: cached with text_len {meta['text_len']}, config wants {cfg.text_len}; rebuild")
            parts.append(load_file(str(p)))
            self.domains += [meta["domain"]] * len(meta["files"])
        self.data = {k: torch.cat([t[k] for t in parts]) for k in parts[0]}
        if self.data["image"].shape[1] != cfg.image_len:
            raise ValueError(f"{cache}: {self.data['image'].shape[1]} codes per image, config wants {cfg.image_len}")

    def __len__(self) -> int:
        return len(self.domains)

    def __getitem__(self, i: int) -> dict:
        text = self.data["text"][i].long()
        ex = {"text": text, "text_mask": text != self.tokens.pad_id, "image": self.data["image"][i].long(),
              "prompt_len": int(self.data["prompt_len"][i]), "domain": self.domains[i]}
        if self.tokens.cfg.size_cond_len:
            w, h = self.data["size"][i].tolist()
            ex["size_ids"] = torch.tensor(self.tokens.size_cond_ids(self.text_tok, w, h))
        return ex


def load_text_tokenizer(path: str | Path, kind: str):
    if kind == "llama":
        from reference_model.text_tokenizer import LlamaTextTokenizer
        return LlamaTextTokenizer(path)
    from reference_model.text_tokenizer import TextTokenizer
    return TextTokenizer.from_file(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Cache VQ codes + text ids of MeDiM flat folders (runs under torchrun).")
    ap.add_argument("--folder", action="append", required=True, help="DIR:DOMAIN[:mimic] (mimic adds the prefix)")
    ap.add_argument("--image-tokenizer", required=True, help="folder with vq.json (tiny VQ or Chameleon VQGAN)")
    ap.add_argument("--text-tokenizer", required=True, help="text-tokenizer.json (bpe) or Llama-2 tokenizer.json")
    ap.add_argument("--text-kind", choices=("bpe", "llama"), default="llama")
    ap.add_argument("--text-len", type=int, default=256)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    from reference_model.vq import load_image_tokenizer

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if a.device == "cuda" else a.device
    folders = [(f.split(":")[0], f.split(":")[1], f.endswith(":mimic")) for f in a.folder]
    shards = build_cache(folders, load_image_tokenizer(a.image_tokenizer, device=device),
                         load_text_tokenizer(a.text_tokenizer, a.text_kind), a.text_len, a.out, rank, world,
                         progress=rank == 0)
    print(json.dumps({"rank": rank, "shards": len(shards), "out": a.out}))


if __name__ == "__main__":
    main()
