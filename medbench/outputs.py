"""The run's outputs folder: generated files written as they come, and the resume log.

Each finished sample is written as ``<stem>.png`` / ``<stem>.txt`` (temp file + rename), where
``stem = medbench.safe_names.file_stem(id)`` (the id itself unless it is not a safe file name),
then one line ``{"id", "file_stem", "image_sha256", "report_sha256", "image_size", "image_mode",
"source"}`` is appended to ``index.rank<R>.jsonl`` and flushed. A run killed at any point leaves at
most one torn line: it is ignored (a newline is written before the next entry, so it never glues
onto it) and that sample is regenerated with the same per-sample seed.

On resume every logged output is checked against the sha256 recorded when it was written
(`verified`): a truncated, replaced or deleted file is regenerated. Reading for scoring checks the
bytes again, so provenance (`digest`) certifies exactly the files that were scored::

    folder = OutputsFolder(run_dir / "outputs")
    good, stale = folder.verified("image->report")
    folder.write(output)
    out, hashes = folder.read(sample, "image->report")
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from medbench.data.validate import IMAGE_MODES, MAX_REPORT_CHARS, file_problem
from medbench.errors import UserError
from medbench.records import Output, Request, Sample, produces
from medbench.safe_names import file_stem

MAX_LOG_LINE = 64 * 1024  # a resume-log entry is ~300 bytes; longer lines are not ours and are ignored
SUFFIX = {"image": ".png", "report": ".txt"}


class OutputError(UserError):
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


def check_output(out: Output, req: Request, max_report_chars: int = MAX_REPORT_CHARS) -> Output:
    """Refuse what cannot be scored as it is: wrong sample, missing modality, an image mode other
    than 8-bit L/RGB/RGBA/LA/P (16-bit, CMYK, float are never rescaled silently), a report that is
    not a string, holds NUL bytes or is longer than `max_report_chars` (named before scoring)."""
    if out.sample_id != req.sample_id:
        raise OutputError(f"model answered sample {out.sample_id!r} where {req.sample_id!r} was requested (outputs must keep request order)")
    want = produces(req.kind)
    if "image" in want:
        if out.image is None:
            raise OutputError(f"sample {req.sample_id!r}: the model returned no image for a {req.kind} request")
        out.image = as_pil(out.image, req.sample_id)
        if out.image.mode not in IMAGE_MODES:
            raise OutputError(f"sample {req.sample_id!r}: generated image has mode {out.image.mode!r}; "
                              f"return 8-bit {', '.join(IMAGE_MODES)} (medbench never rescales bit depth silently)")
        if min(out.image.size) < 1:
            raise OutputError(f"sample {req.sample_id!r}: generated image has zero size {out.image.size}")
    if "report" in want:
        if not isinstance(out.report, str):
            raise OutputError(f"sample {req.sample_id!r}: the model returned {type(out.report).__name__} instead of a report string")
        if "\x00" in out.report:
            raise OutputError(f"sample {req.sample_id!r}: generated report contains NUL characters")
        if len(out.report) > max_report_chars:
            raise OutputError(f"sample {req.sample_id!r}: generated report is {len(out.report)} characters long "
                              f"(limit {max_report_chars}); it is refused before scoring")
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OutputsFolder:
    def __init__(self, root: Path, rank: int = 0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rank = rank

    def path(self, sample_id: str, modality: str) -> Path:
        """Where a sample's image ("image") or report ("report") is written."""
        return self.root / f"{file_stem(sample_id)}{SUFFIX[modality]}"

    def done(self) -> dict[str, dict]:
        """Logged samples from every rank's log, the last entry of an id winning (torn lines ignored)."""
        entries: dict[str, dict] = {}
        for log in sorted(self.root.glob("index.rank*.jsonl")):
            if file_problem(log):
                continue
            with open(log, "rb") as f:
                while raw := f.readline(MAX_LOG_LINE + 1):
                    if len(raw) > MAX_LOG_LINE:
                        while (rest := f.readline(MAX_LOG_LINE)) and not rest.endswith(b"\n"):
                            pass
                        continue
                    try:
                        entry = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue
                    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                        entries[entry["id"]] = entry
        return entries

    def check_entry(self, entry: dict, kind: str) -> str | None:
        """Why a logged sample's files no longer match their recorded sha256 (None: they do)."""
        for modality in produces(kind):
            recorded = entry.get(f"{modality}_sha256")
            path = self.path(entry["id"], modality)
            if recorded is None:
                return f"{path}: no {modality} recorded in the resume log"
            if problem := file_problem(path, self.root):
                return f"{path}: {problem}"
            data = path.read_bytes()
            if sha256_bytes(data) != recorded:
                return f"{path}: changed since it was written (sha256 {sha256_bytes(data)[:12]}..., logged {recorded[:12]}...)"
        return None

    def verified(self, kind: str, ids: set[str] | None = None) -> tuple[dict[str, dict], dict[str, str]]:
        """(entries whose files match the log, {id: why not} for those that must be regenerated).
        `ids` limits the check to those samples (a rank's shard)."""
        good, stale = {}, {}
        for sid, entry in self.done().items():
            if ids is not None and sid not in ids:
                continue
            problem = self.check_entry(entry, kind)
            if problem:
                stale[sid] = problem
            else:
                good[sid] = entry
        return good, stale

    def write(self, out: Output, extra: dict | None = None) -> dict:
        """Write a checked output's files, then log them; returns the log entry."""
        entry = {"id": out.sample_id, "file_stem": file_stem(out.sample_id), "image_sha256": None, "report_sha256": None,
                 "image_size": None, "image_mode": None, **(extra or {})}
        if out.image is not None:
            data = png_bytes(out.image)
            _atomic_write(self.path(out.sample_id, "image"), data)
            entry.update(image_sha256=sha256_bytes(data), image_size=list(out.image.size), image_mode=out.image.mode)
        if out.report is not None:
            data = out.report.encode("utf-8")
            _atomic_write(self.path(out.sample_id, "report"), data)
            entry["report_sha256"] = sha256_bytes(data)
        log = self.root / f"index.rank{self.rank}.jsonl"
        with open(log, "ab+") as f:
            torn = False
            if f.seek(0, os.SEEK_END) > 0:  # a killed run may have left a line without its newline
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            f.write((b"\n" if torn else b"") + json.dumps(entry).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    def read(self, sample: Sample, kind: str, entry: dict | None = None) -> tuple[Output, dict[str, str]]:
        """A sample's output as scored, and the sha256 of each file read. When `entry` (its log line)
        is given, bytes that differ from the logged sha256 are refused naming the file."""
        out, hashes = Output(sample.id), {}
        for modality in produces(kind):
            path = self.path(sample.id, modality)
            if problem := file_problem(path, self.root):
                raise OutputError(f"{path}: {problem} (sample {sample.id!r}); rerun the same command to regenerate it")
            data = path.read_bytes()
            hashes[modality] = digest = sha256_bytes(data)
            if entry is not None and entry.get(f"{modality}_sha256") != digest:
                raise OutputError(f"{path}: changed after it was written (sample {sample.id!r}); rerun the same command to regenerate it")
            if modality == "image":
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    out.image = im.copy()
            else:
                out.report = data.decode("utf-8")
        return out, hashes


def outputs_digest(hashes: dict[str, dict[str, str]]) -> str:
    """provenance.outputs_sha256: sha256 over (id, image sha256, report sha256) in id order."""
    h = hashlib.sha256()
    for sid in sorted(hashes):
        h.update(json.dumps([sid, hashes[sid].get("image"), hashes[sid].get("report")]).encode())
    return h.hexdigest()
