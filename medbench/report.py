"""The run report: one self-contained ``report.html`` per run folder (CSS inline, images as data URIs).

    from medbench.report import write_report
    write_report("runs/2024-..-oracle")        # -> runs/2024-..-oracle/report.html
    medbench report RUN_DIR [--gallery 12]

Everything comes from the run folder (runrecord.py describes it): run.json, references.jsonl,
outputs/, extras/<family>.json. Absent pieces leave their section out with a note; nothing here
can fail a run. All text goes through jinja2 autoescaping and a Content-Security-Policy that
forbids scripts, so model output can never run in the page.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from medbench.runrecord import load_record

THUMB = 256  # longest side of gallery images, px


# -- templates ---------------------------------------------------------------------------------

def template_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "reports"
    if (here / "run.html.j2").exists():
        return here
    from importlib.resources import files

    return Path(str(files("reports")))


def fmt(x: Any) -> str:
    """A number for humans: 3 decimals below 10, fewer above; '–' for missing."""
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return "–" if x is None else str(x)
    if not math.isfinite(x):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    a = abs(x)
    return f"{x:.1f}" if a >= 100 else f"{x:.2f}" if a >= 10 else f"{x:.3f}"


def fmt_ci(value: Any, low: Any, high: Any) -> str:
    """``0.412 [0.398, 0.427]``."""
    if low is None or high is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.globals["fmt_ci"] = fmt_ci
    env.filters["arrow"] = lambda hib: "↑" if hib else "↓" if hib is not None else ""
    return env


# -- reading the run folder --------------------------------------------------------------------

def family_group(name: str, metric: dict[str, Any]) -> str:
    """The table group of a metric: its family, else the name up to the second dot (variant dropped)."""
    if metric.get("family"):
        return metric["family"]
    return ".".join(name.split("@")[0].split(".")[:2])


def read_jsonl(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                warnings.append(f"{path.name} line {i}: not valid JSON ({e}); skipped")
    return rows


def read_extras(run_dir: Path, warnings: list[str]) -> dict[str, Any]:
    extras = {}
    for path in sorted((run_dir / "extras").glob("*.json")):
        try:
            extras[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            warnings.append(f"extras/{path.name}: unreadable ({e}); its sections are left out")
    return extras


def image_uri(path: Path | str | None) -> str | None:
    """A PNG thumbnail of an image file as a data URI, or None when it cannot be read."""
    if not path:
        return None
    from PIL import Image

    from medbench.plots import png_data_uri

    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
    except (OSError, ValueError):
        return None
    im.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return png_data_uri(buf.getvalue())


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# -- sections ----------------------------------------------------------------------------------

LABEL_SETS = {  # extras per-sample key -> column title in the gallery
    "image_labels": "generated image", "report_labels": "generated report",
    "generated_labels": "generated", "reference_labels": "reference",
}


def per_sample_labels(extras: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    """{sample id: {label-set title: {label: 1|0|-1}}} gathered from every family's ``per_sample``."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for data in extras.values():
        entries = data.get("per_sample") if isinstance(data, dict) else None
        if isinstance(entries, dict):
            entries = [dict(v, id=k) for k, v in entries.items() if isinstance(v, dict)]
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or "id" not in entry:
                continue
            for key, title in LABEL_SETS.items():
                if isinstance(entry.get(key), dict):
                    out.setdefault(str(entry["id"]), {}).setdefault(title, entry[key])
    return out


def label_table(sets: dict[str, dict[str, Any]], compare: tuple[str, str]) -> dict[str, Any] | None:
    """Rows of labels positive or uncertain in any set; a row disagrees when the compared sets differ."""
    if not sets:
        return None
    titles = list(sets)
    names = sorted({k for s in sets.values() for k, v in s.items() if v in (1, -1, 1.0, -1.0)})
    sym = {1: "pos", 0: "neg", -1: "unc"}
    rows = []
    for name in names:
        cells = [sym.get(int(sets[t][name]), "") if isinstance(sets[t].get(name), (int, float)) else "" for t in titles]
        a, b = (sets.get(c, {}).get(name) for c in compare)
        comparable = all(c in sets for c in compare)
        rows.append({"label": name, "cells": cells, "disagree": comparable and (a == 1) != (b == 1)})
    return {"titles": titles, "rows": rows, "compare": compare if all(c in sets for c in compare) else None}


def request_kind(record: dict[str, Any], outputs: Path) -> str:
    """What the model was asked for, read off its outputs (cheap); the task spec when there are none."""
    has_png, has_txt = any(outputs.glob("*.png")), any(outputs.glob("*.txt"))
    if has_png or has_txt:
        return "prompt->pair" if has_png and has_txt else "report->image" if has_png else "image->report"
    try:
        from medbench.tasks import load_task

        return load_task(record["task"]).request
    except Exception:  # a task from a plugin that is not installed here
        return "prompt->pair"


def gallery(run_dir: Path, record: dict[str, Any], refs: list[dict[str, Any]], extras: dict[str, Any],
            limit: int) -> dict[str, Any]:
    outputs = run_dir / "outputs"
    kind = request_kind(record, outputs)
    labels = per_sample_labels(extras)
    compare = ("generated image", "generated report") if kind == "prompt->pair" else ("generated", "reference")
    cards = []
    for ref in refs[:limit]:
        sid = str(ref.get("id"))
        sets = dict(labels.get(sid, {}))
        if isinstance(ref.get("labels"), dict):
            sets.setdefault("ground truth", ref["labels"])
        cards.append({
            "id": sid, "patient": ref.get("patient_id"),
            "condition_text": ref.get("prompt") if kind == "prompt->pair" else ref.get("report") if kind == "report->image" else None,
            "condition_image": image_uri(ref.get("image_path")) if kind == "image->report" else None,
            "generated_image": image_uri(outputs / f"{sid}.png") if kind != "image->report" else None,
            "generated_text": read_text(outputs / f"{sid}.txt") if kind != "report->image" else None,
            "reference_image": image_uri(ref.get("image_path")) if kind != "image->report" else None,
            "reference_text": ref.get("report") if kind != "report->image" else None,
            "labels": label_table(sets, compare),
        })
    return {"kind": kind, "cards": cards, "total": len(refs)}


def per_label_sections(run_dir: Path, record: dict[str, Any], extras: dict[str, Any]) -> list[dict[str, Any]]:
    """A table (and an F1 plot) per family whose extras hold ``per_label``: a list of rows with
    "label", a {label: row} dict, or {mapping: [rows]} (e.g. clinical's "pos" / "unc_pos")."""
    from medbench.plots import per_label_bars

    sections = []
    for family, data in sorted(extras.items()):
        table = data.get("per_label") if isinstance(data, dict) else None
        if isinstance(table, dict) and table and all(isinstance(v, list) for v in table.values()):
            parts = [(mapping, rows) for mapping, rows in table.items()]
        else:
            parts = [(None, table)]
        for mapping, rows in parts:
            if isinstance(rows, list):
                rows = {str(r.get("label")): r for r in rows if isinstance(r, dict)}
            if not isinstance(rows, dict) or not rows:
                continue
            rows = {str(k): v for k, v in rows.items() if isinstance(v, dict)}
            names = list(rows)
            cis = [_ci(rows[n], "f1") for n in names]
            if any("f1" in r for r in rows.values()) and all(c == (None, None) for c in cis):
                cis = label_f1_cis(run_dir, record, family, mapping, len(names)) or cis
            columns = [c for c in dict.fromkeys(k for r in rows.values() for k in r) if c not in ("label", "f1_ci")
                       and all(isinstance(r.get(c), (int, float, list, type(None))) for r in rows.values())]
            has_ci = any(c != (None, None) for c in cis)
            body = [[label] + [_cell(rows[label].get(c)) for c in columns] + ([_cell(list(ci)) if ci[0] is not None else "–"] if has_ci else [])
                    for label, ci in zip(names, cis)]
            title = family + (f" · {mapping}" if mapping else "")
            plot = None
            if any("f1" in r for r in rows.values()):
                plot = per_label_bars(names, [_num(rows[n].get("f1")) for n in names], [c[0] for c in cis], [c[1] for c in cis],
                                      title=f"{title}: per-label F1" + (" with 95 % CI" if has_ci else ""))
            sections.append({"family": title, "columns": columns + (["f1 95 % CI"] if has_ci else []), "rows": body, "plot": plot})
    return sections


def label_f1_cis(run_dir: Path, record: dict[str, Any], family: str, mapping: str | None,
                 n_labels: int) -> list[tuple[float | None, float | None]] | None:
    """Per-label F1 CIs by patient bootstrap of the family's per-sample ``tp/fp/fn[.mapping]`` count
    rows (shape samples × labels, columns in per_label order); None when the stats do not fit."""
    import numpy as np

    from medbench.stats.bootstrap import resample_indices

    suffix = f".{mapping}" if mapping else ""
    try:
        from safetensors.numpy import load_file

        stats = load_file(str(run_dir / "stats" / f"{family}.safetensors"))
        patients = json.loads((run_dir / "samples.json").read_text())["patients"]
        tp, fp, fn = (np.asarray(stats[f"{c}{suffix}"], dtype=np.float64) for c in ("tp", "fp", "fn"))
    except (OSError, KeyError, ValueError):
        return None
    if not (tp.shape == fp.shape == fn.shape == (len(patients), n_labels)):
        return None
    draws = []
    for idx in resample_indices(patients, min(int(record.get("bootstrap") or 1000), 1000), int(record.get("seed", 0))):
        t, f_p, f_n = tp[idx].sum(0), fp[idx].sum(0), fn[idx].sum(0)
        denom = 2 * t + f_p + f_n
        draws.append(np.divide(2 * t, denom, out=np.zeros_like(t), where=denom > 0))
    lo, hi = np.percentile(np.asarray(draws), [2.5, 97.5], axis=0)
    return [(float(a), float(b)) for a, b in zip(lo, hi)]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _ci(row: dict[str, Any], key: str) -> tuple[float | None, float | None]:
    ci = row.get(f"{key}_ci")
    if isinstance(ci, list) and len(ci) == 2:
        return _num(ci[0]), _num(ci[1])
    return _num(row.get(f"{key}_ci_low")), _num(row.get(f"{key}_ci_high"))


def _cell(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    return fmt(x)


def fid_plot(metrics: dict[str, dict[str, Any]]) -> str | None:
    from medbench.plots import fid_with_floor

    rows = []
    for name, m in metrics.items():
        match = re.fullmatch(r"image\.fid@(.+)", name)
        if match:
            floor = metrics.get(f"image.fid_floor@{match.group(1)}", {})
            rows.append({"extractor": match.group(1), "fid": m.get("value"), "fid_ci": (m.get("ci_low"), m.get("ci_high")),
                         "floor": floor.get("value"), "floor_ci": (floor.get("ci_low"), floor.get("ci_high"))})
    return fid_with_floor(rows)


def memorization(run_dir: Path, record: dict[str, Any], extras: dict[str, Any], limit: int,
                 warnings: list[str]) -> list[dict[str, Any]]:
    data = extras.get("memorization")
    entries = data.get("neighbours") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    entries = sorted((e for e in entries if isinstance(e, dict) and "id" in e),
                     key=lambda e: _num(e.get("distance")) if _num(e.get("distance")) is not None else math.inf)[:limit]
    train_paths = _train_paths(record, entries, warnings)
    rows = []
    for e in entries:
        sid = str(e["id"])
        ids = [str(t) for t in (e.get("train_ids") or [])][:4]
        paths = e.get("train_image_paths") or [train_paths.get(t) for t in ids]
        rows.append({"id": sid, "distance": _num(e.get("distance")),
                     "generated": image_uri(run_dir / "outputs" / f"{sid}.png"),
                     "neighbours": [{"id": t, "image": image_uri(p)} for t, p in zip(ids, paths)]})
    return rows


def _train_paths(record: dict[str, Any], entries: list[dict[str, Any]], warnings: list[str]) -> dict[str, str]:
    """Image paths of the training neighbours, looked up in the run's dataset (when it loads here)."""
    if all(e.get("train_image_paths") for e in entries):
        return {}
    try:
        from medbench.data.resolve import load_unvalidated

        dataset = load_unvalidated(record["dataset"], (record.get("options") or {}).get("dataset"))
        return {s.id: str(s.image_path) for s in dataset.samples if s.image_path is not None}
    except Exception as e:  # the report must still render without the training images
        warnings.append(f"training images for the memorization gallery unavailable ({type(e).__name__}: {e})")
        return {}


def metric_groups(record: dict[str, Any]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, m in record.get("metrics", {}).items():
        groups.setdefault(family_group(name, m), []).append(dict(m, name=name, primary=name == record.get("primary_metric")))
    out = []
    for family, members in sorted(groups.items()):
        variants = {m.get("variant") or "" for m in members}
        shared = variants.pop() if len(variants) == 1 else None  # one variant for the family: say it once
        out.append({"family": family, "variant": shared, "metrics": sorted(members, key=lambda m: m["name"])})
    return out


# -- entry points ------------------------------------------------------------------------------

def report_context(run_dir: Path, gallery_size: int = 12) -> dict[str, Any]:
    run_dir = Path(run_dir)
    record = load_record(run_dir)
    warnings: list[str] = [str(w) for w in record.get("warnings", [])]
    refs = read_jsonl(run_dir / "references.jsonl", warnings)
    if not refs:
        warnings.append("references.jsonl is missing or empty: the sample gallery is left out")
    extras = read_extras(run_dir, warnings)
    metrics = record.get("metrics", {})
    primary = record.get("primary_metric")
    return {
        "record": record, "prov": record.get("provenance") or {}, "groups": metric_groups(record),
        "primary": primary, "primary_metric": metrics.get(primary) if primary else None,
        "gallery": gallery(run_dir, record, refs, extras, gallery_size) if refs else None,
        "per_label": per_label_sections(run_dir, record, extras), "fid_plot": fid_plot(metrics),
        "memorization": memorization(run_dir, record, extras, gallery_size, warnings),
        "skipped": record.get("skipped", []), "warnings": warnings,
    }


def write_report(run_dir: str | Path, *, gallery_size: int = 12) -> Path:
    """Render ``run_dir/report.html`` and return its path."""
    run_dir = Path(run_dir)
    html = environment().get_template("run.html.j2").render(**report_context(run_dir, gallery_size))
    out = run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def add_report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a finished run folder (holds run.json)")
    parser.add_argument("--gallery", type=int, default=12, help="samples shown in the galleries (default 12)")


def main_report(args: argparse.Namespace) -> int:
    path = write_report(args.run_dir, gallery_size=args.gallery)
    print(path)
    return 0
