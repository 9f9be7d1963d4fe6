"""Per-sample sections of the run report: the gallery, the worst cases and the samples CSV.

Everything is read from the run folder: ``samples.jsonl`` (docs/runjson.md: inputs, reference,
outputs and per-sample ``scores`` of every sample), with ``references.jsonl`` + ``outputs/`` as the
fallback for run folders written before schema 2. Nothing is recomputed here.

Label sets shown per sample: the reference labels (``reference.labels``) and every score whose key
mentions ``labels`` and whose value maps observations to 1 / 0 / -1 (e.g. ``clinical.generated_labels``,
``pair.consistency.image_labels``); extras ``per_sample`` entries (older folders) are read the same way.

    entries = sample_entries(run_dir, extras, warnings)
    cards = [card(run_dir, e, kind, image_uri) for e in entries[:12]]
    worst = worst_cases(entries, record, key="nlg.coco.rougeL", limit=10)
    write_samples_csv(run_dir, entries)              # -> run_dir/samples.csv (formulas neutralised)
"""
from __future__ import annotations

from medbench.safe_names import file_stem
import json
import math
from pathlib import Path
from typing import Any

LABEL_VALUES = (1, 0, -1)
SYMBOL = {1: "pos", 0: "neg", -1: "unc"}


def number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


# -- reading -----------------------------------------------------------------------------------

def read_jsonl(path: Path, warnings: list[str], limit_bytes: int = 256 * 1024 * 1024) -> list[dict[str, Any]]:
    """Lines of a JSONL file (bad lines are skipped with a warning); [] when absent or too large."""
    if not path.is_file():
        return []
    if path.stat().st_size > limit_bytes:
        warnings.append(f"{path.name}: larger than {limit_bytes >> 20} MiB; its sections are left out")
        return []
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    warnings.append(f"{path.name} line {i}: not valid JSON ({e}); skipped")
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    return rows


def sample_entries(run_dir: Path, extras: dict[str, Any], warnings: list[str]) -> list[dict[str, Any]]:
    """One entry per scored sample in the samples.jsonl shape (built from references.jsonl + outputs/ +
    extras ``per_sample`` for folders without samples.jsonl)."""
    rows = read_jsonl(run_dir / "samples.jsonl", warnings)
    if rows:
        return rows
    refs = read_jsonl(run_dir / "references.jsonl", warnings)
    per_sample: dict[str, dict[str, Any]] = {}
    for family, data in extras.items():
        entries = data.get("per_sample") if isinstance(data, dict) else None
        if isinstance(entries, list):
            entries = {str(e.get("id")): e for e in entries if isinstance(e, dict)}
        for sid, values in (entries or {}).items():
            if isinstance(values, dict):
                per_sample.setdefault(str(sid), {}).update({f"{family}.{k}": v for k, v in values.items() if k != "id"})
    out = []
    for ref in refs:
        sid = str(ref.get("id"))
        stem = file_stem(sid)  # ids that are not plain file names are stored under an encoded stem
        image, text = run_dir / "outputs" / f"{stem}.png", run_dir / "outputs" / f"{stem}.txt"
        out.append({"id": sid, "patient_id": ref.get("patient_id"),
                    "inputs": {"prompt": ref.get("prompt"), "report": ref.get("report"), "image_path": ref.get("image_path")},
                    "reference": {"report": ref.get("report"), "image_path": ref.get("image_path"), "labels": ref.get("labels")},
                    "outputs": {"image_path": f"outputs/{stem}.png" if image.exists() else None,
                                "report_path": f"outputs/{stem}.txt" if text.exists() else None},
                    "scores": per_sample.get(sid, {}), "conversions": []})
    return out


def output_text(run_dir: Path, entry: dict[str, Any], cap: int = 20_000) -> str | None:
    """The generated report: samples.jsonl's text, else the output file (first ``cap`` characters)."""
    outputs = entry.get("outputs") or {}
    if isinstance(outputs.get("report"), str):
        return outputs["report"][:cap]
    rel = outputs.get("report_path")
    if not rel:
        return None
    try:
        with open(run_dir / rel, encoding="utf-8", errors="replace") as f:
            return f.read(cap)
    except OSError:
        return None


# -- labels ------------------------------------------------------------------------------------

def _is_label_set(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v in LABEL_VALUES) for v in value.values())


NOT_LABELS = ("per_label", "head_scores", "disagreements")  # per-label agreement flags, probabilities, lists


def label_sets(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{title: {label: 1|0|-1|None}}: the reference labels, then every label-valued score. A score
    ``<family>.<side>_labels`` is titled ``<family>.<side>`` (``clinical.generated``,
    ``pair.consistency.image``); other label-valued scores whose key mentions ``label`` keep their key
    (``image.label_fidelity.predicted``); per-label agreement flags and head probabilities are not
    label sets."""
    sets: dict[str, dict[str, Any]] = {}
    ref = (entry.get("reference") or {}).get("labels")
    if _is_label_set(ref):
        sets["reference"] = ref

    def walk(key: str, value: Any) -> None:
        if key.endswith(NOT_LABELS):
            return
        if _is_label_set(value) and "label" in key:
            sets.setdefault(key.removesuffix("_labels").removesuffix(".labels"), value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{key}.{k}", v)

    for key, value in (entry.get("scores") or {}).items():
        walk(str(key), value)
    for title, value in (entry.get("labels_from_stats") or {}).items():
        sets.setdefault(title, value)
    return sets


def stats_label_sets(run_dir: Path, extras: dict[str, Any], n: int) -> list[dict[str, dict[str, int]]]:
    """Per-row label sets read from stored statistics, for run folders whose samples.jsonl has none:
    ``pair.consistency`` (``gen_image`` / ``gen_report`` 0/1 rows, columns in its extras ``labels``
    order, rows without a valid image left out) and ``clinical`` (``tp/fp/fn.pos`` rows, columns in
    its per-label order: generated = tp + fp, reference report = tp + fn). [] when nothing fits."""
    from safetensors.numpy import load_file

    rows: list[dict[str, dict[str, int]]] = [{} for _ in range(n)]

    def load(family: str) -> dict[str, Any] | None:
        try:
            return load_file(str(run_dir / "stats" / f"{family}.safetensors"))
        except (OSError, ValueError):
            return None

    pair, names = load("pair.consistency"), (extras.get("pair.consistency") or {}).get("labels")
    if pair is not None and isinstance(names, list) and all(pair.get(k) is not None for k in ("gen_image", "gen_report")):
        image, report = pair["gen_image"], pair["gen_report"]
        valid = pair.get("gen_valid", [1] * n)
        if image.shape == report.shape == (n, len(names)):
            for i in range(n):
                if valid[i]:
                    rows[i]["pair.consistency.image"] = {str(k): int(v) for k, v in zip(names, image[i])}
                rows[i]["pair.consistency.report"] = {str(k): int(v) for k, v in zip(names, report[i])}
    clinical = load("clinical")
    table = ((extras.get("clinical") or {}).get("per_label") or {}).get("pos")
    if clinical is not None and isinstance(table, list) and all(f"{c}.pos" in clinical for c in ("tp", "fp", "fn")):
        names = [str(r.get("label")) for r in table if isinstance(r, dict)]
        tp, fp, fn = (clinical[f"{c}.pos"] for c in ("tp", "fp", "fn"))
        if tp.shape == (n, len(names)):
            for i in range(n):
                rows[i]["clinical.generated"] = {k: int(tp[i, j] + fp[i, j] > 0) for j, k in enumerate(names)}
                rows[i]["clinical.reference"] = {k: int(tp[i, j] + fn[i, j] > 0) for j, k in enumerate(names)}
    return rows if any(rows) else []


def add_stats_labels(entries: list[dict[str, Any]], run_dir: Path, extras: dict[str, Any]) -> None:
    """Give entries without label-valued scores the label sets of `stats_label_sets` (``labels_from_stats``)."""
    if any(len(label_sets(e)) > 1 for e in entries):
        return
    for entry, sets in zip(entries, stats_label_sets(run_dir, extras, len(entries))):
        entry["labels_from_stats"] = sets


def _compared(titles: list[str], kind: str | None) -> tuple[str, str] | None:
    """Which two label sets a disagreement is about: for joint pairs the labels read off the generated
    image against those of the generated report (``<family>.image`` / ``<family>.report``); otherwise
    a family's generated (or predicted) labels against its own reference labels, else the dataset's."""
    def pair(first: str, second: str) -> tuple[str, str] | None:
        for t in titles:
            if t.endswith(first) and t[:-len(first)] + second in titles:
                return t, t[:-len(first)] + second
        return None

    found = pair(".image", ".report") if kind == "prompt->pair" else None
    found = found or pair(".generated", ".reference") or pair(".predicted", ".reference")
    if found is None:
        generated = next((t for t in titles if t.endswith((".generated", ".predicted"))), None)
        found = (generated, "reference") if generated and "reference" in titles else None
    return found


def label_table(sets: dict[str, dict[str, Any]], kind: str | None) -> dict[str, Any] | None:
    """Rows for labels positive or uncertain in any set; ``disagree`` where the compared sets differ
    (one says positive, the other does not)."""
    if not sets:
        return None
    compare = _compared(list(sets), kind)
    lead = (["reference"] if "reference" in sets else []) + [t for t in compare or () if t != "reference"]
    titles = lead + [t for t in sets if t not in lead]  # the dataset's labels, then the compared pair
    names = sorted({k for s in sets.values() for k, v in s.items() if v in (1, -1)})
    rows = []
    for name in names:
        cells = [SYMBOL.get(sets[t].get(name), "") for t in titles]
        disagree = bool(compare) and (sets[compare[0]].get(name) == 1) != (sets[compare[1]].get(name) == 1)
        rows.append({"label": name, "cells": cells, "disagree": disagree})
    return {"titles": titles, "rows": rows, "compare": compare,
            "n_disagree": sum(r["disagree"] for r in rows)}


# -- gallery and worst cases -------------------------------------------------------------------

def card(run_dir: Path, entry: dict[str, Any], kind: str | None, image_uri) -> dict[str, Any]:
    """What the gallery shows of one sample: condition, generated and reference side by side."""
    inputs, ref, outputs = entry.get("inputs") or {}, entry.get("reference") or {}, entry.get("outputs") or {}
    makes_image, makes_text = kind in ("report->image", "prompt->pair"), kind in ("image->report", "prompt->pair")
    gen_image = outputs.get("image_path")
    return {
        "id": str(entry.get("id")), "patient": entry.get("patient_id"),
        "condition_text": inputs.get("prompt") if kind == "prompt->pair" else inputs.get("report") if kind == "report->image" else None,
        "condition_image": image_uri(inputs.get("image_path")) if kind == "image->report" else None,
        "generated_image": image_uri(run_dir / gen_image) if makes_image and gen_image else None,
        "generated_text": output_text(run_dir, entry) if makes_text else None,
        "reference_image": image_uri(ref.get("image_path")) if makes_image else None,
        "reference_text": ref.get("report") if makes_text else None,
        "makes_image": makes_image, "makes_text": makes_text,
        "labels": label_table(label_sets(entry), kind),
        "conversions": [str(c) for c in entry.get("conversions") or []],
    }


def score_columns(entries: list[dict[str, Any]]) -> list[str]:
    """Score keys holding a number in at least one sample, in first-seen order."""
    seen: dict[str, None] = {}
    for e in entries:
        for k, v in (e.get("scores") or {}).items():
            if number(v) is not None:
                seen.setdefault(k, None)
    return list(seen)


def direction(record: dict[str, Any], key: str) -> bool | None:
    """higher_is_better of a per-sample column: run.json ``per_sample``, else the metric of that name."""
    info = (record.get("per_sample") or {}).get(key)
    if isinstance(info, dict) and isinstance(info.get("higher_is_better"), bool):
        return info["higher_is_better"]
    m = (record.get("metrics") or {}).get(key)
    return m.get("higher_is_better") if isinstance(m, dict) else None


def default_worst_key(record: dict[str, Any], columns: list[str]) -> str | None:
    """The column closest to the primary metric: the same name, else its per-sample form
    (``<primary>_sentence``), else one of its family with a direction, else any with a direction."""
    primary = record.get("primary_metric") or ""
    if primary in columns:
        return primary
    own = [c for c in columns if primary and c.startswith((primary + "_", primary + "."))]  # nlg.coco.bleu4_sentence
    if own:
        return own[0]
    family = ((record.get("metrics") or {}).get(primary) or {}).get("family") or ""
    ranked = [c for c in columns if family and c.startswith(family + ".") and direction(record, c) is not None]
    ranked += [c for c in columns if direction(record, c) is not None]
    return (ranked or columns or [None])[0]


def worst_cases(entries: list[dict[str, Any]], record: dict[str, Any], key: str | None, limit: int) -> dict[str, Any] | None:
    """The ``limit`` samples with the worst value of score ``key`` (direction from the run record;
    unknown directions are read as higher-is-better and the section says so)."""
    columns = score_columns(entries)
    key = key or default_worst_key(record, columns)
    if not key:
        return None
    higher = direction(record, key)
    valued = [(e, number((e.get("scores") or {}).get(key))) for e in entries]
    valued = [(e, v) for e, v in valued if v is not None]
    valued.sort(key=lambda ev: ev[1] if higher is not False else -ev[1])
    return {"key": key, "higher_is_better": higher, "columns": columns, "n_valued": len(valued),
            "rows": [{"entry": e, "value": v} for e, v in valued[:limit]], "known": key in columns}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists of scalars joined with '; '."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list):
        return {prefix: "; ".join(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value)}
    return {prefix: value}


def write_samples_csv(run_dir: Path, entries: list[dict[str, Any]]) -> Path | None:
    """``samples.csv``: one row per sample, every samples.jsonl field flattened; text that a spreadsheet
    would run as a formula is prefixed with ' (medbench.exports)."""
    from medbench.exports import csv_text

    if not entries:
        return None
    flat = [flatten({k: v for k, v in e.items() if k != "schema_version"}) for e in entries]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    path = run_dir / "samples.csv"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(csv_text([columns] + [[row.get(c) for c in columns] for row in flat]), encoding="utf-8", newline="")
    tmp.replace(path)
    return path
