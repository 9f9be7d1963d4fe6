"""samples.jsonl: one line per scored sample, with its inputs, outputs and every per-sample score.

Written by the runner into each run folder (schema in docs/runjson.md, versioned with run.json's
SCHEMA_VERSION). A line::

    {"schema_version": 2, "row": 0, "id": "cxr-p01-s0", "patient_id": "p01", "split": "test",
     "file_stem": "cxr-p01-s0", "request": "image->report",
     "inputs": {"report": null, "image_path": "/data/test/cxr-p01-s0.png", "prompt": null, "seed": 123},
     "reference": {"report": "...", "image_path": "...", "labels": {"Edema": 1}},
     "outputs": {"image_path": null, "report_path": "outputs/cxr-p01-s0.txt", "report": "...",
                 "image_sha256": null, "report_sha256": "...", "image_size": null, "image_mode": null,
                 "source": null},
     "conversions": [],
     "scores": {"nlg.coco.bleu4": 0.31, "clinical.agreement": 0.9}}

Usage::

    rows = read_samples(run_dir)                  # list of dicts, row order
    write_samples(run_dir, rows)                  # atomic (temp file + rename)
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from medbench.errors import UserError

SAMPLES_FILE = "samples.jsonl"
MAX_LINE_BYTES = 16 * 1024 * 1024  # a line holds one sample's texts and scores; longer is not ours


def jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts as JSON can hold them; NaN/inf become null."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_samples(run_dir: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(run_dir) / SAMPLES_FILE
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(jsonable(row), ensure_ascii=False, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_samples(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of a run folder's samples.jsonl (a UserError naming the file when absent or bad)."""
    path = Path(run_dir) / SAMPLES_FILE if Path(run_dir).is_dir() else Path(run_dir)
    if not path.is_file():
        raise UserError(f"{path}: no samples.jsonl here (runs before medbench schema 2 did not write one; rerun the task)")
    rows = []
    with open(path, "rb") as f:
        for number in range(1, 10**9):
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            if len(raw) > MAX_LINE_BYTES:
                raise UserError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes")
            try:
                rows.append(json.loads(raw))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise UserError(f"{path}:{number}: not valid JSON ({e})") from e
    return rows
