"""The run report: one self-contained ``report.html`` per run folder (CSS inline, images as data URIs).

    from medbench.report import write_report
    write_report("runs/2024-..-oracle")        # -> runs/2024-..-oracle/report.html
    medbench report RUN_DIR [--gallery 12] [--worst nlg.coco.rougeL] [--n-worst 10]

A pure function of the run folder (docs/runjson.md): run.json (metrics, request kind, warnings,
skipped, conversions), samples.jsonl (per-sample inputs, outputs, scores and labels; references.jsonl
+ outputs/ for older folders), extras/<family>.json (per-label tables, nearest neighbours). It never
reloads the dataset, never guesses from file suffixes and computes no statistics of its own; it
also writes samples.csv (samples.jsonl flattened, spreadsheet formulas neutralised). Absent pieces
leave their section out with a note; nothing here can fail a run. All text goes through jinja2 autoescaping and a Content-Security-Policy that
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

from medbench.safe_names import file_stem
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
    env.filters["sig"] = lambda x: fmt(x) if _num(x) is None else f"{x:.3g}"
    env.globals["fmt_ci"] = fmt_ci
    env.filters["arrow"] = lambda hib: "↑" if hib else "↓" if hib is not None else ""
    return env


# -- reading the run folder --------------------------------------------------------------------

def family_group(name: str, metric: dict[str, Any]) -> str:
    """The table group of a metric: its family, else the name up to the second dot (variant dropped)."""
    if metric.get("family"):
        return metric["family"]
    return ".".join(name.split("@")[0].split(".")[:2])


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


# -- sections ----------------------------------------------------------------------------------

def request_kind(run_dir: Path, record: dict[str, Any]) -> str | None:
    """What the model was asked for, as the run recorded it (run.json ``request``, else the task in
    config.json); None when neither says."""
    if record.get("request"):
        return str(record["request"])
    try:
        task = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("task") or {}
    except (OSError, ValueError):
        return None
    return task.get("request") if isinstance(task, dict) else None


def per_label_sections(extras: dict[str, Any]) -> list[dict[str, Any]]:
    """A table (and an F1 plot) per family whose extras hold ``per_label``: a list of rows with "label",
    a {label: row} dict, or {part: [rows]} (clinical's "pos" / "unc_pos", label fidelity's "generated" /
    "real" beside scalar counts such as "n_generated", which become the table's note). CIs are shown
    when the family recorded them (``f1_ci`` or ``f1_ci_low``/``f1_ci_high``); none are computed here."""
    from medbench.plots import per_label_bars

    sections = []
    for family, data in sorted(extras.items()):
        table = data.get("per_label") if isinstance(data, dict) else None
        if not table:
            continue
        if isinstance(table, dict) and any(isinstance(v, list) for v in table.values()):
            parts = [(part, rows) for part, rows in table.items() if isinstance(rows, list)]
            notes = [f"{k} = {fmt(v)}" for k, v in table.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        else:
            parts, notes = [(None, table)], []
        for part, rows in parts:
            if isinstance(rows, list):
                rows = {str(r.get("label")): r for r in rows if isinstance(r, dict) and "label" in r}
            rows = {str(k): v for k, v in rows.items() if isinstance(v, dict)} if isinstance(rows, dict) else {}
            columns = [c for c in dict.fromkeys(k for r in rows.values() for k in r)
                       if c not in ("label", "f1_ci", "f1_ci_low", "f1_ci_high")
                       and all(isinstance(r.get(c), (int, float, list, type(None))) for r in rows.values())]
            if not rows or not columns:
                continue
            names = list(rows)
            cis = [_ci(rows[n], "f1") for n in names]
            has_ci = any(c != (None, None) for c in cis)
            body = [[label] + [_cell(rows[label].get(c)) for c in columns] + ([_cell(list(ci)) if ci[0] is not None else "–"] if has_ci else [])
                    for label, ci in zip(names, cis)]
            title = family + (f" · {part}" if part else "")
            part_notes = [n for n in notes if part and part in n]
            plot = None
            if any(_num(r.get("f1")) is not None for r in rows.values()):
                plot = per_label_bars(names, [_num(rows[n].get("f1")) for n in names], [c[0] for c in cis], [c[1] for c in cis],
                                      title=f"{title}: per-label F1" + (" with 95 % CI" if has_ci else ""))
            sections.append({"family": title, "columns": columns + (["f1 95 % CI"] if has_ci else []), "rows": body,
                             "plot": plot, "notes": part_notes or notes})
    return sections


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


def memorization(run_dir: Path, extras: dict[str, Any], entries: list[dict[str, Any]], limit: int) -> dict[str, Any] | None:
    """The generated images closest to the training set, nearest first, each beside its nearest
    training neighbours and their distances (extras/memorization.json ``neighbours``: ``train_ids``,
    ``distances`` ascending, optional ``train_image_paths``)."""
    data = extras.get("memorization")
    neighbours = data.get("neighbours") if isinstance(data, dict) else None
    if not isinstance(neighbours, list):
        return None
    outputs = {str(e.get("id")): (e.get("outputs") or {}).get("image_path") for e in entries}

    def nearest(e: dict[str, Any]) -> float | None:
        d = e.get("distances")
        return _num(d[0]) if isinstance(d, list) and d else _num(e.get("distance"))

    ranked = sorted((e for e in neighbours if isinstance(e, dict) and "id" in e and nearest(e) is not None), key=nearest)
    rows = []
    for e in ranked[:limit]:
        sid = str(e["id"])
        ids = [str(t) for t in e.get("train_ids") or []][:3]
        dists = [_num(d) for d in (e.get("distances") or [e.get("distance")])][:len(ids) or 1]
        paths = list(e.get("train_image_paths") or [])
        stem = file_stem(sid)
        gen = outputs.get(sid) or (f"outputs/{stem}.png" if (run_dir / "outputs" / f"{stem}.png").exists() else None)
        rows.append({"id": sid, "distance": nearest(e), "generated": image_uri(run_dir / gen) if gen else None,
                     "neighbours": [{"id": t, "distance": dists[i] if i < len(dists) else None,
                                     "image": image_uri(paths[i]) if i < len(paths) else None} for i, t in enumerate(ids)]})
    return {"rows": rows, "metric": data.get("distance"), "extractor": data.get("extractor"),
            "real_p1": _num(data.get("real_p1")), "real_median": _num(data.get("real_median")),
            "total": len(ranked), "images_recorded": any(e.get("train_image_paths") for e in ranked)}


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

def conversions(record: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """What the harness changed in the scored outputs: run.json ``conversions`` and the samples' lists."""
    conv = record.get("conversions") if isinstance(record.get("conversions"), dict) else {}
    changed = [(str(e.get("id")), [str(c) for c in e.get("conversions") or []]) for e in entries if e.get("conversions")]
    return {"counts": conv.get("counts") if isinstance(conv.get("counts"), dict) else {}, "samples": changed[:200],
            "n_samples": len(changed), "reference": conv.get("reference"),
            "recorded": bool(conv) and conv.get("recorded", True) is not False}


def report_context(run_dir: Path, gallery_size: int = 12, worst_key: str | None = None, n_worst: int = 10) -> dict[str, Any]:
    """Everything the template shows, read from the run folder (nothing is recomputed)."""
    from medbench.report_samples import add_stats_labels, card, sample_entries, worst_cases

    run_dir = Path(run_dir)
    record = load_record(run_dir)
    warnings: list[dict[str, Any]] = [w if isinstance(w, dict) else {"message": str(w)} for w in record.get("warnings") or []]
    notes: list[str] = []  # problems met while rendering
    extras = read_extras(run_dir, notes)
    entries = sample_entries(run_dir, extras, notes)
    add_stats_labels(entries, run_dir, extras)
    if not entries:
        notes.append("samples.jsonl and references.jsonl are missing or empty: the sample gallery is left out")
    kind = request_kind(run_dir, record) or next((str(e["request"]) for e in entries[:1] if e.get("request")), None)
    if kind is None and entries:
        notes.append("the run records no request kind (run.json 'request' or config.json task): the gallery shows references only")
    metrics = record.get("metrics", {})
    primary = record.get("primary_metric")
    worst = worst_cases(entries, record, worst_key, n_worst) if entries else None
    if worst:
        worst["cards"] = [dict(card(run_dir, r["entry"], kind, image_uri), value=r["value"]) for r in worst["rows"]]
    if worst_key and worst and not worst["known"]:
        notes.append(f"worst cases: samples.jsonl has no numeric score {worst_key!r} (columns: {', '.join(worst['columns']) or 'none'})")
    return {
        "record": record, "prov": record.get("provenance") or {}, "groups": metric_groups(record),
        "primary": primary, "primary_metric": metrics.get(primary) if primary else None, "kind": kind,
        "display_name": record.get("name") or record.get("model"),
        "gallery": {"kind": kind, "total": len(entries), "cards": [card(run_dir, e, kind, image_uri) for e in entries[:gallery_size]]}
        if entries else None,
        "worst": worst if worst and worst["rows"] else None,
        "per_label": per_label_sections(extras), "fid_plot": fid_plot(metrics),
        "memorization": memorization(run_dir, extras, entries, gallery_size),
        "conversions": conversions(record, entries),
        "files": {name: (run_dir / name).exists() for name in ("samples.jsonl", "samples.csv", "run.json")},
        "skipped": record.get("skipped", []), "warnings": warnings, "notes": notes,
    }


def write_report(run_dir: str | Path, *, gallery_size: int = 12, worst_key: str | None = None, n_worst: int = 10) -> Path:
    """Render ``run_dir/report.html`` (and ``samples.csv`` beside samples.jsonl) and return its path."""
    from medbench.report_samples import sample_entries, write_samples_csv

    run_dir = Path(run_dir)
    write_samples_csv(run_dir, sample_entries(run_dir, read_extras(run_dir, []), []))
    context = report_context(run_dir, gallery_size, worst_key, n_worst)
    html = environment().get_template("run.html.j2").render(**context)
    out = run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def add_report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a finished run folder (holds run.json)")
    parser.add_argument("--gallery", type=int, default=12, help="samples shown in the galleries (default 12)")
    parser.add_argument("--worst", metavar="SCORE", help="per-sample score (a samples.jsonl 'scores' key) that ranks the "
                        "worst-cases section (default: the primary metric's, else the first with a direction)")
    parser.add_argument("--n-worst", type=int, default=10, help="samples in the worst-cases section (default 10)")


def main_report(args: argparse.Namespace) -> int:
    from medbench.errors import UserError

    for flag, value in (("--gallery", args.gallery), ("--n-worst", getattr(args, "n_worst", 10))):
        if value < 0:
            raise UserError(f"medbench report: {flag} must be ≥ 0, got {value}")
    path = write_report(args.run_dir, gallery_size=args.gallery, worst_key=getattr(args, "worst", None),
                        n_worst=getattr(args, "n_worst", 10))
    print(path)
    return 0
