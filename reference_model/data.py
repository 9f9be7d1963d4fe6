"""MeDiM's token data pipeline: medbench samples -> padded text ids + cached VQ codes.

    samples = load_samples(["cxr-phantom", "path-phantom"], "train")
    ds = MedimTokenDataset(samples, image_tok, text_tok, text_len=128)   # encodes images once (cached)
    loader = DataLoader(ds, batch_size=8, sampler=ResumableSampler(len(ds), seed=0, start=step * 8))

Each example is a dict: ``text`` Long[T] (BOS + ids, right-padded with pad, truncated), ``text_mask``
Bool[T] (True on real tokens), ``image`` Long[N] (raw VQ codes 0..K-1), ``prompt_len`` int (tokens,
BOS included, that form the prompt), ``domain`` str.

Two text layouts (docs/decisions.md):
- ``report``: ``<s> report`` with prompt_len = BOS + the report up to its first "." (MeDiM, spec §B.2);
- ``prompted``: ``<s> prompt </s> report`` for samples that carry their own prompt (the phantoms do);
  prompt_len covers ``<s> prompt </s>``. Prompted pair generation fixes those tokens and samples the rest.
Every sample appears once per layout it supports, so ``len(ds)`` = samples + samples with a prompt.

Unlike the official code, which re-encodes every image every step, VQ codes are computed once per
(tokenizer sha256, image sha256) and kept in ``$MEDBENCH_HOME/vq-codes/<tokenizer>.safetensors``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from medbench.records import Sample

PAD_COLOUR = (122, 116, 104)  # MeDiM's expand2square fill (spec §B.1)
LAYOUTS = ("report", "prompted")


# ----------------------------------------------------------------------------- samples


def load_samples(datasets: Sequence[str], split: str, options: dict | None = None) -> list[Sample]:
    """The `split` samples of several registered medbench datasets, concatenated in the given order."""
    from medbench.registry import registry

    samples: list[Sample] = []
    for name in datasets:
        try:
            ds = registry().get("datasets", name).load(dict(options or {}))
        except KeyError:
            if not name.endswith("-phantom"):
                raise
            ds = _phantom_direct(name.removesuffix("-phantom"), options or {})
        got = ds.split(split)
        if not got:
            raise ValueError(f"dataset {name!r} has no {split!r} samples")
        samples += got
    return samples


def _phantom_direct(domain: str, options: dict):
    """The phantom read straight from its folder layout (used only while its plugin is not registered)."""
    from medbench.data.folder import load_folder
    from medbench.data.phantom import ensure_phantom

    root = ensure_phantom(domain, **{k: v for k, v in options.items() if k in ("size", "n_train", "n_val", "n_test", "seed")})
    return load_folder(root, name=f"{domain}-phantom", domain=domain)


# ----------------------------------------------------------------------------- images


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> Float[3,size,size] in [-1,1]: RGB (grey replicated), padded to square, resized."""
    image = image.convert("RGB")
    w, h = image.size
    if w != h:  # centre on a square canvas of MeDiM's fill colour
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), PAD_COLOUR)
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return x / 127.5 - 1.0


def tensor_to_image(x: torch.Tensor, domain: str) -> Image.Image:
    """Float[3,H,W] in [-1,1] -> PIL: mode 'L' (channel mean) for cxr, RGB otherwise."""
    x = x.detach().float().cpu().clamp(-1, 1)
    if domain == "cxr":
        x = x.mean(0, keepdim=True)
    pixels = ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels[..., 0].copy() if domain == "cxr" else pixels)  # uint8 HxW -> L, HxWx3 -> RGB


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def medbench_home() -> Path:
    return Path(os.environ.get("MEDBENCH_HOME") or Path.home() / ".cache" / "medbench").expanduser()


class CodeCache:
    """VQ codes keyed by image sha256, one safetensors file per image tokenizer (keyed by its sha256)."""

    def __init__(self, tokenizer_sha: str, root: str | Path | None = None):
        self.path = Path(root or medbench_home() / "vq-codes") / f"{tokenizer_sha[:24]}.safetensors"
        self.codes: dict[str, torch.Tensor] = load_file(str(self.path)) if self.path.is_file() else {}
        self.hits = self.misses = 0
        self._dirty = False

    def get(self, image_sha: str) -> torch.Tensor | None:
        got = self.codes.get(image_sha)
        self.hits += got is not None
        self.misses += got is None
        return got

    def put(self, image_sha: str, codes: torch.Tensor) -> None:
        self.codes[image_sha] = codes.to(torch.int16 if codes.max() < 2**15 else torch.int32).contiguous()
        self._dirty = True

    def save(self) -> None:
        """Merge with what is on disk (another process may have added codes) and replace atomically."""
        if not self._dirty:
            return
        merged = load_file(str(self.path)) if self.path.is_file() else {}
        merged.update(self.codes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        save_file(merged, str(tmp))
        os.replace(tmp, self.path)
        self.codes, self._dirty = merged, False


@torch.no_grad()
def encode_images(paths: Sequence[Path], tokenizer, cache: CodeCache | None, batch_size: int = 64,
                  progress: bool = True) -> torch.Tensor:
    """Long[N, h*w] VQ codes for image files, reading the cache first and filling it after."""
    shas = [file_sha256(p) for p in paths]
    out: list[torch.Tensor | None] = [cache.get(s) if cache else None for s in shas]
    todo = [i for i, c in enumerate(out) if c is None]
    for start in tqdm(range(0, len(todo), batch_size), desc="VQ-encoding images", unit="batch",
                      disable=not progress or not todo):
        idx = todo[start:start + batch_size]
        batch = []
        for i in idx:
            with Image.open(paths[i]) as im:
                batch.append(image_to_tensor(im, tokenizer.image_size))
        codes = tokenizer.encode(torch.stack(batch)).cpu()
        for i, c in zip(idx, codes):
            out[i] = c
            if cache:
                cache.put(shas[i], c)
    if cache:
        cache.save()
    return torch.stack([c.long() for c in out]) if out else torch.empty(0, tokenizer.grid[0] * tokenizer.grid[1], dtype=torch.long)


# ----------------------------------------------------------------------------- text


def first_sentence(report: str) -> str:
    """MeDiM's prompt: the report up to (not including) its first "." (whole report if none)."""
    cut = report.find(".")
    return report if cut < 0 else report[:cut]


def layout_ids(text_tok, report: str, prompt: str | None, layout: str) -> tuple[list[int], int]:
    """(ids starting with BOS, prompt_len) before padding; the prompt part is encoded on its own, so
    prompt_len is exact whatever the BPE merges across the boundary."""
    report = report.strip()
    if layout == "report":
        head = first_sentence(report)
        ids = [text_tok.bos_id] + text_tok.encode(head) + text_tok.encode(report[len(head):])
        return ids, 1 + len(text_tok.encode(head))
    if layout == "prompted":
        if not prompt:
            raise ValueError("the 'prompted' layout needs a prompt")
        head = [text_tok.bos_id] + text_tok.encode(prompt.strip()) + [text_tok.eos_id]
        return head + text_tok.encode(report), len(head)
    raise ValueError(f"unknown text layout {layout!r}; choose one of {LAYOUTS}")


def pad_text(ids: list[int], text_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad with pad_id (or truncate) to text_len: (Long[T] ids, Bool[T] mask of real tokens)."""
    ids = ids[:text_len]
    mask = torch.zeros(text_len, dtype=torch.bool)
    mask[: len(ids)] = True
    return torch.tensor(ids + [pad_id] * (text_len - len(ids)), dtype=torch.long), mask


def report_from_ids(text_tok, ids: Sequence[int]) -> str:
    """The report part of generated text ids: everything after the last ``</s>`` (prompted layout)."""
    ids = [int(i) for i in ids]
    if text_tok.eos_id in ids:
        ids = ids[len(ids) - ids[::-1].index(text_tok.eos_id):]
    return text_tok.decode(ids).strip()


# ----------------------------------------------------------------------------- dataset and order


class MedimTokenDataset(Dataset):
    """Map-style dataset of padded MeDiM training examples over medbench samples (any domains mixed)."""

    def __init__(self, samples: Sequence[Sample], image_tok, text_tok, text_len: int,
                 layouts: Sequence[str] = LAYOUTS, cache_root: str | Path | None = None, use_cache: bool = True,
                 progress: bool = True):
        bad = [s.id for s in samples if s.image_path is None or not s.report]
        if bad:
            raise ValueError(f"MeDiM training needs image + report pairs; these samples lack one: {bad[:5]}")
        if unknown := set(layouts) - set(LAYOUTS):
            raise ValueError(f"unknown text layouts {sorted(unknown)}; choose from {LAYOUTS}")
        self.samples, self.text_len = list(samples), text_len
        self.pad_id = text_tok.pad_id
        sha = getattr(image_tok, "sha256", None)
        cache = CodeCache(sha, cache_root) if use_cache and sha else None
        self.codes = encode_images([s.image_path for s in self.samples], image_tok, cache, progress=progress)
        self.cache_stats = (cache.hits, cache.misses) if cache else (0, len(self.samples))
        # (sample index, layout) per item; text is tokenised once here
        self.items: list[tuple[int, list[int], int]] = []
        for layout in layouts:
            for i, s in enumerate(self.samples):
                if layout == "prompted" and not s.prompt:
                    continue
                ids, prompt_len = layout_ids(text_tok, s.report, s.prompt, layout)
                self.items.append((i, ids, prompt_len))
        self.truncated = sum(len(ids) > text_len for _, ids, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict:
        i, ids, prompt_len = self.items[k]
        text, mask = pad_text(ids, self.text_len, self.pad_id)
        return {"text": text, "text_mask": mask, "image": self.codes[i].clone(),
                "prompt_len": min(prompt_len, self.text_len), "domain": self.samples[i].domain}


class ResumableSampler(Sampler[int]):
    """Endless, seeded stream of dataset indices: epoch e is ``randperm(n, seed + e)``.

    ``start`` is the number of examples (over all ranks) already consumed, so resuming at
    ``start = step * global_batch`` continues the exact same order; rank r of world w takes every
    w-th position of the stream.
    """

    def __init__(self, n: int, seed: int = 0, start: int = 0, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise ValueError("ResumableSampler needs a non-empty dataset")
        self.n, self.seed, self.start, self.rank, self.world_size = n, seed, start, rank, world_size

    def _perm(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __iter__(self) -> Iterator[int]:
        pos = self.start + (self.rank - self.start) % self.world_size  # first position this rank owns
        epoch, perm = pos // self.n, self._perm(pos // self.n)
        while True:
            if pos // self.n != epoch:
                epoch, perm = pos // self.n, self._perm(pos // self.n)
            yield int(perm[pos % self.n])
            pos += self.world_size
