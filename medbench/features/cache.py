"""On-disk feature cache: each image's features are computed once per extractor, ever.

Rows are keyed by a sha256 of the image: of the file bytes for a path, of (mode, size, pixels)
for an in-memory PIL image (deterministic, unlike PNG encoders across Pillow versions). They live
under ``$MEDBENCH_HOME/features/<extractor.key()>/`` (MEDBENCH_HOME defaults to
~/.cache/medbench) as safetensors shards holding a ``keys`` tensor (n, 32) uint8 and one float64
tensor per named output. Shards are written to a temp file and renamed, so concurrent runs never
see a half-written shard; two runs computing the same image just store it twice::

    feats = cached_features(extractor, (s.image_path for s in samples))      # (N, dim)
    outs = cached_outputs(extractor, images)   # {"features": ..., "logits:cxr": ...}

Images are streamed: at most `batch_size` decoded images are held at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from tqdm import tqdm

from medbench.home import medbench_home
from medbench.features.base import FeatureExtractor

FLUSH_ROWS = 4096  # rows per shard written




def image_key(item: Image.Image | Path | str) -> bytes:
    """32-byte sha256 identifying an image (file bytes for paths, pixels for PIL images)."""
    h = hashlib.sha256()
    if isinstance(item, Image.Image):
        h.update(b"pixels\0" + f"{item.mode}:{item.size[0]}x{item.size[1]}\0".encode())
        h.update(item.tobytes())
    else:
        h.update(b"file\0")
        with open(item, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return h.digest()


def load_image(item: Image.Image | Path | str) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    try:
        with Image.open(item) as im:
            im.load()
            return im.copy()
    except Exception as e:  # a clear error naming the file, never a silent black image
        raise ValueError(f"{item}: cannot be read as an image ({e})") from e


class FeatureCache:
    """The shards of one extractor: an in-memory index key -> (shard, row), and atomic writes."""

    def __init__(self, extractor: FeatureExtractor, root: Path | None = None):
        self.extractor = extractor
        self.dir = Path(root or medbench_home() / "features") / extractor.key()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index: dict[bytes, tuple[Path, int]] = {}
        self._buffer: dict[bytes, dict[str, np.ndarray]] = {}  # computed, not yet written
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            self._index_shard(shard)
        card = self.dir / "extractor.json"
        if not card.exists():
            self._atomic_write_bytes(card, json.dumps(extractor.card(), indent=1, sort_keys=True).encode())

    def _index_shard(self, shard: Path) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(shard), framework="numpy") as f:
                keys = f.get_tensor("keys")
        except Exception as e:
            raise ValueError(f"{shard}: unreadable feature-cache shard ({e}); delete it to recompute") from e
        for i, k in enumerate(keys):
            self.index.setdefault(k.tobytes(), (shard, i))

    def _atomic_write_bytes(self, path: Path, data: bytes) -> None:
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def write(self, keys: list[bytes], rows: dict[str, np.ndarray]) -> None:
        """Store one shard of freshly computed rows."""
        from safetensors.numpy import save

        if not keys:
            return
        tensors = {"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32).copy()}
        tensors.update({name: np.ascontiguousarray(v, dtype=np.float64) for name, v in rows.items()})
        shard = self.dir / f"shard-{uuid.uuid4().hex}.safetensors"
        self._atomic_write_bytes(shard, save(tensors, metadata={"extractor": self.extractor.key()}))
        for i, k in enumerate(keys):
            self.index.setdefault(k, (shard, i))

    def read(self, keys: list[bytes]) -> dict[str, np.ndarray]:
        """Rows for keys stored on disk, in order (one shard opened at a time)."""
        from safetensors import safe_open

        widths = self.extractor.outputs()
        out = {k: np.zeros((len(keys), w), dtype=np.float64) for k, w in widths.items()}
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for pos, k in enumerate(keys):
            shard, row = self.index[k]
            by_shard.setdefault(shard, []).append((pos, row))
        for shard, pairs in by_shard.items():
            pos, rows = map(list, zip(*pairs))
            with safe_open(str(shard), framework="numpy") as f:
                for name in widths:
                    out[name][pos] = f.get_tensor(name)[rows]
        return out

    def outputs(self, images: Iterable[Image.Image | Path | str], *, batch_size: int = 64,
                progress: bool = True) -> dict[str, np.ndarray]:
        """Every named output for `images` (in order), computing only misses; new rows are buffered
        and written in shards of FLUSH_ROWS (call `flush` when done)."""
        widths = self.extractor.outputs()
        keys: list[bytes] = []
        pending: dict[bytes, Image.Image] = {}

        def compute_pending() -> None:
            if pending:
                res = self.extractor.embed(list(pending.values()))
                for i, k in enumerate(pending):
                    self._buffer[k] = {name: res[name][i] for name in widths}
                pending.clear()
            if len(self._buffer) >= FLUSH_ROWS:
                self.flush()

        total = len(images) if hasattr(images, "__len__") else None
        for item in tqdm(images, total=total, disable=not progress, desc=f"features {self.extractor.name}", unit="img"):
            k = image_key(item)
            keys.append(k)
            if k in self.index or k in self._buffer or k in pending:
                continue
            pending[k] = load_image(item)
            if len(pending) >= batch_size:
                compute_pending()
        compute_pending()

        out = {name: np.zeros((len(keys), w), dtype=np.float64) for name, w in widths.items()}
        buffered = [i for i, k in enumerate(keys) if k in self._buffer]
        for i in buffered:
            for name in widths:
                out[name][i] = self._buffer[keys[i]][name]
        stored = [i for i, k in enumerate(keys) if k not in self._buffer]
        if stored:
            rows = self.read([keys[i] for i in stored])
            for name in widths:
                out[name][stored] = rows[name]
        return out

    def flush(self) -> None:
        """Write buffered rows as one shard."""
        if self._buffer:
            widths = self.extractor.outputs()
            keys = list(self._buffer)
            self.write(keys, {n: np.stack([self._buffer[k][n] for k in keys]) for n in widths})
            self._buffer.clear()


def cached_outputs(extractor: FeatureExtractor, images: Iterable[Image.Image | Path | str], *, batch_size: int = 64,
                   progress: bool = True, root: Path | None = None) -> dict[str, np.ndarray]:
    """Every named output of `extractor` for `images` (in order), computing only cache misses."""
    cache = FeatureCache(extractor, root)
    try:
        return cache.outputs(images, batch_size=batch_size, progress=progress)
    finally:
        cache.flush()


def cached_features(extractor: FeatureExtractor, images: Iterable[Image.Image | Path | str], *, batch_size: int = 64,
                    progress: bool = True, root: Path | None = None) -> np.ndarray:
    """(N, extractor.dim) float64 features for `images`, cached on disk by image content."""
    return cached_outputs(extractor, images, batch_size=batch_size, progress=progress, root=root)["features"]
