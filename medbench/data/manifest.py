"""Load a JSONL or CSV manifest: one row per study, files relative to the manifest's folder.

Keys (JSONL) or columns (CSV):

    id            required, unique
    patient_id    defaults to the id
    split         train | val | test (default test)
    image         image file, relative to the manifest's folder (or absolute)
    report        the report text inline ...
    report_path   ... or a UTF-8 .txt file (relative like image); exactly one of the two
    labels        JSONL: an object {observation: 1|0|-1|null}; CSV: the same object as JSON text
    label:<obs>   CSV only: one column per observation, cells 1, 0, -1 (1.0... accepted) or blank
    prompt        optional short request text for prompted pair generation
    domain        defaults to the `domain` argument, else "cxr"

Other keys and columns are ignored. A row that cannot become a Sample is recorded in
``dataset.bad`` as ``MANIFEST:LINE: reason`` (or the image/report file it names) and left out.

Usage::

    ds = load_manifest(Path("data/iu.jsonl"))
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from medbench.data.base import BadSample, Dataset, dataset_domain
from medbench.data.folder import DEFAULT_DOMAIN, SPLITS, field_types_problem, patient_of
from medbench.data.validate import (MAX_LINE_BYTES, MAX_REPORT_CHARS, DatasetError, bounded_lines, file_problem,
                                    normalize_labels, read_report, report_problem)
from medbench.records import Sample

JSONL_SUFFIXES = (".jsonl", ".ndjson")
LABEL_PREFIX = "label:"


def load_manifest(path: Path, *, name: str | None = None, domain: str | None = None,
                  max_report_chars: int = MAX_REPORT_CHARS) -> Dataset:
    """Read a .jsonl/.ndjson or .csv manifest into a Dataset (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest file not found")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows(path)
    elif suffix == ".csv":
        rows = _csv_rows(path)
    else:
        raise DatasetError(f"{path}: unknown manifest format {suffix!r} (use .jsonl, .ndjson or .csv)")

    bad: list[BadSample] = []
    candidates: list[tuple[str, Sample]] = []
    for where, row, problem in rows:
        if problem:
            bad.append(BadSample(_guess_id(row), where, problem))
            continue
        sample = _row_to_sample(row, where, path.parent, domain, max_report_chars, bad)
        if sample is not None:
            candidates.append((where, sample))
    if not candidates and not bad:
        raise DatasetError(f"{path}: the manifest has no rows")

    lines_of_id: dict[str, list[str]] = defaultdict(list)
    for where, sample in candidates:
        lines_of_id[sample.id].append(where)
    samples = []
    for where, sample in candidates:
        lines = lines_of_id[sample.id]
        if len(lines) > 1:
            others = ", ".join(w for w in lines if w != where)
            bad.append(BadSample(sample.id, where, f"duplicate id {sample.id!r}: also at {others}"))
        else:
            samples.append(sample)
    domain_of_set, notes = dataset_domain(samples, domain or DEFAULT_DOMAIN, str(path))
    return Dataset(name=name or path.stem, domain=domain_of_set, samples=samples,
                   source=f"manifest:{path.resolve()}", bad=bad, notes=notes)


def _jsonl_rows(path: Path):
    for number, raw in bounded_lines(path):
        where = f"{path}:{number}"
        if raw is None:
            yield where, None, f"line longer than {MAX_LINE_BYTES} bytes"
            continue
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            yield where, None, f"line is not UTF-8 (byte offset {e.start} in the line)"
            continue
        except json.JSONDecodeError as e:
            yield where, None, f"malformed JSON: {e}"
            continue
        if not isinstance(row, dict):
            yield where, None, f"a manifest line must be a JSON object, got {type(row).__name__}"
            continue
        yield where, row, None


def _csv_rows(path: Path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if "id" not in header:
                raise DatasetError(f"{path}:1: the CSV header has no 'id' column (columns: {', '.join(header) or 'none'})")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    yield where, None, f"row has {len(header) + len(row[None])} cells, the header has {len(header)}"
                    continue
                yield where, _csv_to_row(row), None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: the manifest is not UTF-8 (byte offset {e.start})") from e
    except csv.Error as e:  # e.g. a cell over csv.field_size_limit(): refused, never read on without bound
        raise DatasetError(f"{path}: malformed CSV: {e}") from e


def _csv_to_row(cells: dict[str, str | None]) -> dict:
    """Empty cells mean absent; label:<obs> columns gather into labels; labels is JSON text."""
    row: dict = {}
    labels: dict[str, str] = {}
    for key, value in cells.items():
        value = (value or "").strip()
        if key.startswith(LABEL_PREFIX):
            labels[key[len(LABEL_PREFIX):]] = value
        elif value:
            row[key] = value
    if "labels" in row:
        try:
            row["labels"] = json.loads(row["labels"])
        except json.JSONDecodeError as e:
            row["_labels_error"] = f"labels cell is not a JSON object: {e}"
    if labels:
        row["labels"] = {**(row.get("labels") if isinstance(row.get("labels"), dict) else {}), **labels}
    return row


def _guess_id(row) -> str:
    return str(row.get("id", "")) if isinstance(row, dict) else ""


def _resolve(base: Path, value) -> Path:
    p = Path(str(value))
    return p if p.is_absolute() else base / p


def _row_to_sample(row: dict, where: str, base: Path, domain, max_report_chars, bad) -> Sample | None:
    sample_id = row.get("id")
    if isinstance(sample_id, bool) or not isinstance(sample_id, (str, int)) or str(sample_id).strip() == "":
        bad.append(BadSample("", where, 'row has no "id"'))
        return None
    sample_id = str(sample_id).strip()

    def fail(reason: str, at: str = where) -> None:
        bad.append(BadSample(sample_id, at, reason))

    split = row.get("split") or "test"
    if split not in SPLITS:
        return fail(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if not row.get("image"):
        return fail('row has no "image"')
    image = _resolve(base, row["image"])
    if problem := file_problem(image):
        return fail(f"image {problem} (listed at {where})", str(image))
    has_inline, has_file = row.get("report") is not None, bool(row.get("report_path"))
    if has_inline == has_file:
        return fail('give exactly one of "report" (inline text) and "report_path"')
    if has_file:
        report_file = _resolve(base, row["report_path"])
        if problem := file_problem(report_file):
            return fail(f"report {problem} (listed at {where})", str(report_file))
        report, problem = read_report(report_file, max_report_chars)
        if problem:
            return fail(problem, str(report_file))
    else:
        report = row["report"]
        if not isinstance(report, str):
            return fail(f'"report" must be a string, got {type(report).__name__}')
        report = report.strip()
        if problem := report_problem(report, max_report_chars):
            return fail(problem)
    if "_labels_error" in row:
        return fail(row["_labels_error"])
    labels, problem = normalize_labels(row.get("labels"))
    if problem or (problem := field_types_problem(row)):
        return fail(problem)
    return Sample(
        id=sample_id,
        patient_id=patient_of(row, sample_id),
        domain=str(row.get("domain") or domain or DEFAULT_DOMAIN),
        split=split,
        image_path=image,
        report=report,
        labels=labels,
        prompt=row.get("prompt") or None,
    )
