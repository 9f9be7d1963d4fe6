"""PathGen-1.6M (H&E tiles from TCGA slides with generated captions) from the user's own copy.

PathGen ships captions and tile positions (``PathGen-1.6M.json``: ``wsi_id``, ``position`` [x, y],
``caption``, ``file_id``); the tiles are cut by the user from the TCGA slides. Three layouts are read:

    PATH/train/<stem>.png + <stem>.txt, PATH/test/...   MeDiM's split folders (its "pathgen setting")
    PATH/<wsi_id>_<x>_<y>.png + .txt                    what PathGen's own extraction script writes
    PATH/PathGen-1.6M.json + tiles                      captions from the JSON; tiles found as
                                                        <tiles>/<wsi_id>_<x>_<y>.png|.jpg or
                                                        <tiles>/<wsi_id>/<x>_<y>.png|.jpg

Patient = the TCGA case barcode (``TCGA-AA-3844`` of ``TCGA-AA-3844-01Z-00-DX1.<uuid>``): tiles of one
patient's slides resample together in the bootstrap and never straddle splits. Splits: PathGen itself
has none. ``split=folders`` (default) takes MeDiM's train/val/test folders, and reads a flat folder or
the JSON as test; ``split=patient-hash`` assigns each patient by sha256 of its barcode (``val_fraction``,
``test_fraction``), the same on every machine. No view filter applies to pathology tiles.

Usage::

    --dataset pathgen:/data/pathgen --dataset-opt split=patient-hash
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path

from medbench.data.base import BadSample, Dataset
from medbench.data.folder import load_folder
from medbench.data.local_copy import MAX_CHARS, PATH, open_root
from medbench.data.validate import DatasetError, report_problem
from medbench.options import Option
from medbench.records import Sample

JSON_NAME = "PathGen-1.6M.json"
TILE_SUFFIXES = (".png", ".jpg", ".jpeg")
_BARCODE = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})", re.I)
_STEM = re.compile(r"^(?P<wsi>.+)_(?P<x>\d+)_(?P<y>\d+)$")

OPTIONS = (
    PATH,
    Option("split", str, "folders", "folders (MeDiM's train/test folders; else all test) or patient-hash",
           choices=("folders", "patient-hash")),
    Option("val_fraction", float, 0.05, "patient-hash: share of patients in val", low=0.0, high=0.5),
    Option("test_fraction", float, 0.05, "patient-hash: share of patients in test", low=0.0, high=0.5),
    Option("tiles", Path, None, f"folder of tiles when PATH holds {JSON_NAME} (default: PATH/tiles, PATH/images or PATH)"),
    MAX_CHARS,
)


def patient_of(stem_or_wsi: str) -> str:
    """The TCGA case barcode at the start of a slide id or tile stem, else the slide id itself."""
    m = _BARCODE.match(stem_or_wsi)
    if m:
        return m.group(1).upper()
    parsed = _STEM.match(stem_or_wsi)
    return parsed.group("wsi") if parsed else stem_or_wsi


def hash_split(patient: str, val_fraction: float, test_fraction: float) -> str:
    u = int.from_bytes(hashlib.sha256(patient.encode()).digest()[:8], "big") / 2 ** 64
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def load_pathgen(options: dict | None = None) -> Dataset:
    """Read a PathGen copy in any of the three layouts (see the module docstring)."""
    opts, root = open_root(options, "pathgen", OPTIONS, f"tile + caption pairs, train/test folders or {JSON_NAME}")
    if (root / JSON_NAME).is_file():
        ds = _from_json(root, opts)
        layout = JSON_NAME
    else:
        ds = load_folder(root, name="pathgen", domain="path", max_report_chars=opts["max_report_chars"])
        layout = "split folders" if any((root / s).is_dir() for s in ("train", "val", "test")) else "flat folder"
    if opts["split"] == "patient-hash" and opts["val_fraction"] + opts["test_fraction"] >= 1:
        raise DatasetError("pathgen: val_fraction + test_fraction must be below 1")
    samples = []
    for s in ds.samples:
        patient = patient_of(s.id)
        split = hash_split(patient, opts["val_fraction"], opts["test_fraction"]) if opts["split"] == "patient-hash" else s.split
        samples.append(replace(s, patient_id=patient, domain="path", split=split))
    preprocessing = {"layout": layout, "split": opts["split"], "patient": "TCGA case barcode",
                     "report": {"protocol": "full", "note": "captions used as written"}}
    if opts["split"] == "patient-hash":
        preprocessing.update(val_fraction=opts["val_fraction"], test_fraction=opts["test_fraction"])
    return Dataset("pathgen", "path", samples, source=f"pathgen:{root.resolve()}", bad=ds.bad, preprocessing=preprocessing)


def _from_json(root: Path, opts: dict) -> Dataset:
    path = root / JSON_NAME
    tiles = Path(opts["tiles"]) if opts["tiles"] else next((d for d in (root / "tiles", root / "images") if d.is_dir()), root)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"pathgen: {path}: not a UTF-8 JSON list ({e})") from None
    if not isinstance(records, list):
        raise DatasetError(f"pathgen: {path}: expected a JSON list of {{wsi_id, position, caption}} records")
    present = _tile_index(tiles)
    samples, bad, seen = [], [], set()
    for i, r in enumerate(records):
        where = f"{path}[{i}]"
        wsi = r.get("wsi_id") or r.get("WSI_id") if isinstance(r, dict) else None
        pos = r.get("position") if isinstance(r, dict) else None
        if not wsi or not isinstance(pos, list) or len(pos) != 2:
            bad.append(BadSample("", where, "record needs wsi_id and position [x, y]"))
            continue
        stem = f"{wsi}_{pos[0]}_{pos[1]}"
        caption = r.get("caption")
        if not isinstance(caption, str) or (problem := report_problem(caption.strip(), opts["max_report_chars"])):
            bad.append(BadSample(stem, where, problem if isinstance(caption, str) else "record has no caption text"))
            continue
        if stem in seen:
            bad.append(BadSample(stem, where, f"duplicate tile {stem!r} (same slide and position)"))
            continue
        seen.add(stem)
        image = present.get(stem) or present.get(f"{wsi}/{pos[0]}_{pos[1]}")
        if image is None:
            bad.append(BadSample(stem, str(tiles / f"{stem}.png"), f"tile not found in {tiles} "
                                                                  f"(as {stem}.png|.jpg or {wsi}/{pos[0]}_{pos[1]}.png|.jpg)"))
            continue
        samples.append(Sample(id=stem, patient_id=stem, domain="path", split="test", image_path=image,
                              report=caption.strip()))
    return Dataset("pathgen", "path", samples, source=str(path), bad=bad)


def _tile_index(tiles: Path) -> dict[str, Path]:
    """'<stem>' and '<wsi>/<x>_<y>' -> tile file, from one walk of the tiles folder (two levels)."""
    index: dict[str, Path] = {}
    if not tiles.is_dir():
        return index
    with os.scandir(tiles) as top:
        for entry in top:
            if entry.is_dir():
                with os.scandir(entry.path) as inner:
                    for e in inner:
                        stem, suffix = os.path.splitext(e.name)
                        if suffix.lower() in TILE_SUFFIXES:
                            index.setdefault(f"{entry.name}/{stem}", Path(e.path))
            else:
                stem, suffix = os.path.splitext(entry.name)
                if suffix.lower() in TILE_SUFFIXES:
                    index.setdefault(stem, Path(entry.path))
    return index
