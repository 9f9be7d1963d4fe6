"""Load an image + report folder: MeDiM's layout, also written by the phantom generator.

Two layouts::

    ROOT/train/<id>.png|.jpg|.jpeg  ROOT/train/<id>.txt  [ROOT/train/labels.jsonl]
    ROOT/val/...                     (any of train, val, test; MeDiM uses train and test)
    ROOT/test/...                    [ROOT/labels.jsonl: labels for every split]

    ROOT/<id>.png + ROOT/<id>.txt    a flat folder, read as the test split [ROOT/labels.jsonl]

labels.jsonl holds one JSON object per line: {"id", "patient_id"?, "domain"?, "labels"?:
{observation: 1|0|-1|null}, "prompt"?}; other keys are ignored. patient_id defaults to the id;
the domain comes from the line, else the `domain` argument, else "cxr".

Loading reads the small report files but does not decode images (`validate` does that). What
cannot become a Sample (a report that is not UTF-8, empty or too long; half a pair; a malformed
label line) is recorded in ``dataset.bad`` with its file and reason and left out.

Usage::

    ds = load_folder(Path("data/mimic"), name="mimic")
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

from medbench.data.base import BadSample, Dataset, dataset_domain
from medbench.data.validate import (IMAGE_SUFFIXES, MAX_LINE_BYTES, MAX_REPORT_CHARS, DatasetError, bounded_lines,
                                    normalize_labels, read_report)
from medbench.records import Sample

SPLITS = ("train", "val", "test")
LABELS_FILE = "labels.jsonl"
DEFAULT_DOMAIN = "cxr"
_ID_IN_BROKEN_LINE = re.compile(r'"id"\s*:\s*"([^"]+)"')


def load_folder(root: Path, *, name: str, domain: str | None = None,
                max_report_chars: int = MAX_REPORT_CHARS) -> Dataset:
    """Read ROOT in either layout into a Dataset (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected ROOT/train, ROOT/test... or a flat folder of stem.png + stem.txt)")
    split_dirs = [(split, root / split) for split in SPLITS if (root / split).is_dir()]
    flat = not split_dirs
    if flat:
        split_dirs = [("test", root)]
    else:
        stray = [stem for stem, (images, report) in _scan(root).items() if images and report]
        if stray:
            raise DatasetError(f"{root}: has split folders ({', '.join(s for s, _ in split_dirs)}) and also {len(stray)} "
                               f"image+report pair(s) directly in it (e.g. {sorted(stray)[0]}), which that layout ignores: "
                               f"move them into {root / 'test'} or remove the split folders to read {root} as a flat folder")

    bad: list[BadSample] = []
    labels = _LabelTable(bad)
    if (root / LABELS_FILE).is_file():
        labels.read(root / LABELS_FILE, scope=None)
    if not flat:
        for split, folder in split_dirs:
            if (folder / LABELS_FILE).is_file():
                labels.read(folder / LABELS_FILE, scope=split)

    samples: list[Sample] = []
    stems_by_split: dict[str, set[str]] = {}
    for split, folder in split_dirs:
        pairs = _scan(folder)
        stems_by_split[split] = set(pairs)
        for stem in sorted(pairs):
            images, report_file = pairs[stem]
            sample = _pair_to_sample(stem, split, images, report_file, labels, domain, max_report_chars, bad)
            if sample is not None:
                samples.append(sample)

    labels.report_orphans(stems_by_split)
    if not samples and not bad:
        raise DatasetError(f"{root}: no samples found (expected ROOT/train, ROOT/val, ROOT/test or a flat folder "
                           f"of <id>.png|.jpg|.jpeg with <id>.txt)")
    domain_of_set, notes = dataset_domain(samples, domain or DEFAULT_DOMAIN, f"{root}/*/labels.jsonl")
    return Dataset(name=name, domain=domain_of_set, samples=samples, source=f"folder:{root.resolve()}", bad=bad,
                   notes=notes)


def _scan(folder: Path) -> dict[str, tuple[list[Path], Path | None]]:
    """stem -> (image files, report file) for the files directly in `folder`."""
    images: dict[str, list[Path]] = defaultdict(list)
    reports: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name == LABELS_FILE:
                continue
            try:
                is_file = entry.is_file()
            except OSError:  # a symlink loop: reported below as a bad file, never a raw OSError
                is_file = entry.is_symlink()
            if not is_file:
                continue
            stem, suffix = os.path.splitext(entry.name)
            suffix = suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images[stem].append(folder / entry.name)
            elif suffix == ".txt":
                reports[stem] = folder / entry.name
    return {stem: (sorted(images.get(stem, [])), reports.get(stem)) for stem in set(images) | set(reports)}


def _pair_to_sample(stem, split, images, report_file, labels, domain, max_report_chars, bad) -> Sample | None:
    if len(images) > 1:
        bad.append(BadSample(stem, str(images[0]), f"duplicate id {stem!r}: several images for one id: "
                                                   f"{', '.join(p.name for p in images)}"))
        return None
    if report_file is None:
        bad.append(BadSample(stem, str(images[0]), f"image has no report: {stem}.txt is missing"))
        return None
    if not images:
        bad.append(BadSample(stem, str(report_file), f"report has no image: {stem}.png, .jpg or .jpeg is missing"))
        return None
    report, problem = read_report(report_file, max_report_chars)
    if problem:
        bad.append(BadSample(stem, str(report_file), problem))
        return None
    row = labels.row_for(stem, split)
    if row is None:  # the id's label line was broken or duplicated: already reported
        return None
    values, problem = normalize_labels(row.get("labels"))
    if not problem:
        problem = field_types_problem(row)
    if problem:
        bad.append(BadSample(stem, row["_where"], problem))
        return None
    return Sample(
        id=stem,
        patient_id=patient_of(row, stem),
        domain=str(row.get("domain") or domain or DEFAULT_DOMAIN),
        split=split,
        image_path=images[0],
        report=report,
        labels=values,
        prompt=row.get("prompt") or None,
    )


def field_types_problem(row: dict) -> str | None:
    """patient_id must be a string or an integer, prompt and domain strings: nothing is coerced
    (a list patient id is not turned into the string "['a', 'b']")."""
    pid = row.get("patient_id")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, (str, int))):
        return f"patient_id must be a string or an integer, got {type(pid).__name__} {pid!r}"
    for key in ("prompt", "domain"):
        if row.get(key) is not None and not isinstance(row[key], str):
            return f"{key} must be a string, got {type(row[key]).__name__} {row[key]!r}"
    return None


def patient_of(row: dict, sample_id: str) -> str:
    """The row's patient id (0 is an id like any other), else the sample id."""
    pid = row.get("patient_id")
    return sample_id if pid is None or pid == "" else str(pid)


class _LabelTable:
    """The rows of every labels.jsonl, by id, with where each came from (file:line)."""

    def __init__(self, bad: list[BadSample]):
        self.bad = bad
        self.rows: dict[str, dict] = {}  # id -> row (+ "_where", "_scope")
        self.broken: set[str] = set()  # ids whose label line is malformed or duplicated

    def read(self, path: Path, scope: str | None) -> None:
        for number, raw in bounded_lines(path):
            where = f"{path}:{number}"
            if raw is None:
                self.bad.append(BadSample("", where, f"labels line longer than {MAX_LINE_BYTES} bytes"))
                continue
            if not raw.strip():
                continue
            row, problem = _parse_label_line(raw)
            if problem:
                found = _ID_IN_BROKEN_LINE.search(raw.decode("utf-8", "replace"))
                sample_id = found.group(1) if found else ""
                self.bad.append(BadSample(sample_id, where, problem))
                if sample_id:
                    self.broken.add(sample_id)
                continue
            sample_id = row["id"]
            if sample_id in self.rows:
                first = self.rows[sample_id]["_where"]
                self.bad.append(BadSample(sample_id, where, f"duplicate labels line for id {sample_id!r} (first at {first})"))
                self.broken.add(sample_id)
                continue
            self.rows[sample_id] = {**row, "_where": where, "_scope": scope}

    def row_for(self, stem: str, split: str) -> dict | None:
        if stem in self.broken:
            return None
        row = self.rows.get(stem)
        if row is None or row["_scope"] not in (None, split):
            return {}
        row["_used"] = True
        return row

    def report_orphans(self, stems_by_split: dict[str, set[str]]) -> None:
        for sample_id, row in self.rows.items():
            if row.get("_used") or sample_id in self.broken:
                continue
            scope = row["_scope"]
            known = stems_by_split.get(scope, set()) if scope else set().union(*stems_by_split.values())
            if sample_id not in known:
                where = f"the {scope} split" if scope else "any split"
                self.bad.append(BadSample(sample_id, row["_where"], f"labels for id {sample_id!r} but no image or report file in {where}"))


def _parse_label_line(raw: bytes) -> tuple[dict | None, str | None]:
    try:
        row = json.loads(raw.decode("utf-8-sig"))  # a BOM (first line of a Windows-written file) is allowed
    except UnicodeDecodeError as e:
        return None, f"labels line is not UTF-8 (byte offset {e.start} in the line)"
    except json.JSONDecodeError as e:
        return None, f"malformed JSON: {e}"
    if not isinstance(row, dict):
        return None, f"a labels line must be a JSON object, got {type(row).__name__}"
    if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool) or row.get("id") == "":
        return None, 'labels line has no "id" (a non-empty string)'
    row["id"] = str(row["id"])
    return row, None
