"""Shared pieces of the ``NAME:PATH`` loaders that read a public dataset from the user's own copy:
the root folder check, declared options, CSV reading (plain or .gz) and the view filter.

Usage::

    opts, root = open_root(options, "mimic-cxr", MIMIC_OPTIONS, "mimic-cxr-2.0.0-split.csv.gz and files/")
    rows = read_csv(root, "mimic-cxr-2.0.0-split", dataset="mimic-cxr")
"""
from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from medbench.data.validate import MAX_REPORT_CHARS, DatasetError
from medbench.options import Option, resolve

PATH = Option("path", Path, None, "the folder holding your local copy (given as NAME:PATH)")
MAX_CHARS = Option("max_report_chars", int, MAX_REPORT_CHARS, "longest report accepted", low=1, high=10_000_000)
FRONTAL = ("PA", "AP")
SPLIT_NAMES = {"train": "train", "validate": "val", "valid": "val", "validation": "val", "val": "val", "test": "test"}


def open_root(options: dict | None, dataset: str, declared: tuple[Option, ...], expected: str) -> tuple[dict, Path]:
    """Typed options (defaults filled in, unknown keys refused) and the dataset's root folder."""
    given = {k: v for k, v in dict(options or {}).items() if v is not None}
    opts = resolve(declared, given, owner=f"dataset {dataset!r}", flag="--dataset-opt")
    if not opts.get("path"):
        raise DatasetError(f"{dataset} is read from your own local copy: write --dataset {dataset}:PATH, "
                           f"where PATH holds {expected}")
    root = Path(opts["path"]).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{dataset}: {root} is not a folder (expected it to hold {expected})")
    return opts, root


def find_csv(root: Path, stem: str) -> Path | None:
    return next((p for p in (root / f"{stem}.csv.gz", root / f"{stem}.csv") if p.is_file()), None)


def read_csv(path: Path, *, dataset: str, required: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a CSV (or .csv.gz) as dicts; a missing required column or bad encoding is a DatasetError."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            reader = csv.DictReader(text)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise DatasetError(f"{dataset}: {path}: no column(s) {', '.join(missing)} "
                                   f"(columns: {', '.join(header) or 'none'})")
            return list(reader)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error) as e:
        raise DatasetError(f"{dataset}: {path}: cannot be read as a UTF-8 CSV ({e})") from None


def view_filter(views: str, known: str = "PA, AP, LATERAL, LL, AP AXIAL...") -> set[str] | None:
    """'all' -> None (keep every image); 'frontal' -> {PA, AP}; else a comma list, upper-cased."""
    text = views.strip()
    if text.lower() == "all":
        return None
    if text.lower() == "frontal":
        return set(FRONTAL)
    chosen = {v.strip().upper() for v in text.split(",") if v.strip()}
    if not chosen:
        raise DatasetError(f"views must be 'all', 'frontal' or a comma list of view positions ({known}), got {views!r}")
    return chosen


def split_name(raw: str) -> str | None:
    return SPLIT_NAMES.get(raw.strip().lower())
