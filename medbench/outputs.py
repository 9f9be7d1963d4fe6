"""The run's outputs folder: generated files written as they come, and the resume log.

Each finished sample is written as ``<id>.png`` / ``<id>.txt`` (temp file + rename), then one line
``{"id", "image_sha256", "report_sha256"}`` is appended to ``index.rank<R>.jsonl`` and flushed. A run
killed at any point leaves at most one torn line, which is ignored: that sample is regenerated with
the same per-sample seed, so the resumed run ends with the same numbers.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from medbench.records import Output, Request, Sample, produces


class OutputError(ValueError):
    """A model output that cannot be accepted; the message names the sample and the problem."""


def as_pil(image, sample_id: str) -> Image.Image:
    """Accept a PIL image or a uint8 array/tensor (H×W, H×W×C or C×H×W with C in 1, 3)."""
    if isinstance(image, Image.Image):
        return image
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise OutputError(f"sample {sample_id!r}: generated image contains NaN/inf values")
        raise OutputError(f"sample {sample_id!r}: generated image array must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3) or min(arr.shape[:2]) < 1:
        raise OutputError(f"sample {sample_id!r}: generated image has unsupported shape {arr.shape}")
    return Image.fromarray(arr)


def check_output(out: Output, req: Request) -> Output:
    if out.sample_id != req.sample_id:
        raise OutputError(f"model answered sample {out.sample_id!r} where {req.sample_id!r} was requested (outputs must keep request order)")
    want = produces(req.kind)
    if "image" in want:
        if out.image is None:
            raise OutputError(f"sample {req.sample_id!r}: the model returned no image for a {req.kind} request")
        out.image = as_pil(out.image, req.sample_id)
    if "report" in want:
        if not isinstance(out.report, str):
            raise OutputError(f"sample {req.sample_id!r}: the model returned {type(out.report).__name__} instead of a report string")
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class OutputsFolder:
    def __init__(self, root: Path, rank: int = 0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rank = rank

    def done(self) -> dict[str, dict]:
        """Finished samples from every rank's log (torn lines ignored)."""
        entries: dict[str, dict] = {}
        for log in sorted(self.root.glob("index.rank*.jsonl")):
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and "id" in entry:
                    entries[entry["id"]] = entry
        return entries

    def write(self, out: Output) -> None:
        entry = {"id": out.sample_id, "image_sha256": None, "report_sha256": None}
        if out.image is not None:
            data = png_bytes(out.image)
            _atomic_write(self.root / f"{out.sample_id}.png", data)
            entry["image_sha256"] = hashlib.sha256(data).hexdigest()
        if out.report is not None:
            data = out.report.encode("utf-8")
            _atomic_write(self.root / f"{out.sample_id}.txt", data)
            entry["report_sha256"] = hashlib.sha256(data).hexdigest()
        with open(self.root / f"index.rank{self.rank}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, sample: Sample, kind: str) -> Output:
        out = Output(sample.id)
        want = produces(kind)
        if "image" in want:
            with Image.open(self.root / f"{sample.id}.png") as im:
                im.load()
                out.image = im.copy()
        if "report" in want:
            out.report = (self.root / f"{sample.id}.txt").read_text(encoding="utf-8")
        return out

    def sha256(self) -> str:
        h = hashlib.sha256()
        for sid, entry in sorted(self.done().items()):
            h.update(json.dumps(entry, sort_keys=True).encode())
        return h.hexdigest()
