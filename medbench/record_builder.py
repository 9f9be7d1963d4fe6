"""Assemble run.json (schema in medbench/runrecord.py, docs/runjson.md) and the rows of samples.jsonl
from a scored run: metric values with CIs, warnings, conversions, content identity, per-sample scores.

Called by the runner once scoring is done::

    record, details = build_record(cfg, run_id, dataset, samples, results, skipped, provenance, entries,
                                   headers, native, model_weights={}, config_sha256=digest)
    rows = sample_rows(cfg, samples, entries, details, folder)
"""
from __future__ import annotations

import math
import re
from typing import Any

from medbench.conversions import conversions_of, summarize
from medbench.runrecord import SCHEMA_VERSION, RunRecord
from medbench.safe_names import file_stem
from medbench.samples_log import jsonable


def _finite(x):
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _per_sample(results, n: int) -> tuple[dict[str, list], dict[str, dict]]:
    """Every family's per-sample columns of length n, and each column's family and direction."""
    columns, meta = {}, {}
    for res in results:
        try:
            values = res.metric.per_sample(res.stats)
        except Exception as e:  # noqa: BLE001 - a family's export must not lose the run's numbers
            values = {}
            res.warnings = getattr(res, "warnings", []) + [f"{res.family}: per-sample export failed: {type(e).__name__}: {e}"]
        for key, column in values.items():
            column = list(column)
            if len(column) != n:
                continue
            columns[key] = column
            meta[key] = {"family": res.family, "higher_is_better": res.metric.per_sample_direction(key)}
    return columns, meta


def _variant(res, report_protocol: str | None) -> str:
    """A family's variant; families that read report text also name the dataset's report protocol
    (section, de-identification placeholders, case), since papers differ exactly there."""
    if report_protocol and res.family.split(".")[0] in ("nlg", "clinical", "pair"):
        return f"{res.metric.variant}; reports: {report_protocol}"
    return res.metric.variant


def build_record(cfg, run_id: str, dataset, samples, results, skipped, provenance, entries, headers, native, *,
                 model_weights: dict[str, str], config_sha256: str,
                 model_settings: dict[str, Any] | None = None) -> tuple[RunRecord, dict[str, Any]]:
    metrics, warnings, weights = {}, [], dict(model_weights)
    report_protocol = ((getattr(dataset, "preprocessing", None) or {}).get("report") or {}).get("protocol")
    for res in results:
        weights.update(getattr(res.metric, "weights_sha256", {}) or {})
        for name, value in res.values.items():
            lo, hi = res.cis.get(name, (None, None))
            metrics[name] = {"value": _finite(value), "ci_low": _finite(lo), "ci_high": _finite(hi),
                             "higher_is_better": bool(res.metric.higher_is_better[name]), "n": len(samples), "bootstrap": res.n_boot,
                             "family": res.family, "variant": _variant(res, report_protocol)}
        try:
            messages = list(res.metric.warnings(res.stats, res.values))
        except Exception as e:  # noqa: BLE001
            messages = [f"warnings could not be computed: {type(e).__name__}: {e}"]
        for message in messages:
            head = re.split(r"[\s:]", message, maxsplit=1)[0]
            name = head if head in res.values else None
            warnings.append({"family": res.family, "metric": name, "message": message})
    columns, per_sample_meta = _per_sample(results, len(samples))
    for res in results:
        for message in getattr(res, "warnings", []):
            warnings.append({"family": res.family, "metric": None, "message": message})

    conversions = [conversions_of(entries[s.id], ref) for s, ref in zip(samples, headers)]
    summary = summarize(conversions, native)
    if summary["samples"]:
        counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
        warnings.append({"family": None, "metric": None,
                         "message": f"{summary['samples']} of {len(samples)} outputs were converted before scoring ({counts}); "
                                    f"see conversions in samples.jsonl"})
    warnings += dataset_warnings(headers, native)
    warnings += [{"family": None, "metric": None, "message": note} for note in getattr(dataset, "notes", [])]
    provenance = {**provenance, "weights_sha256": weights}
    record: RunRecord = {
        "schema_version": SCHEMA_VERSION, "status": "complete", "run_id": run_id, "name": getattr(cfg, "name", None), "task": cfg.task.name, "model": cfg.model,
        "dataset": cfg.dataset, "request": cfg.task.request, "domain": dataset.domain, "split": cfg.task.split, "n": len(samples), "seed": cfg.seed,
        "protocol": cfg.protocol, "bootstrap": cfg.n_boot, "metrics": metrics, "primary_metric": cfg.task.primary_metric,
        "provenance": provenance, "skipped": skipped,
        "options": {"dataset": cfg.dataset_options, "model": cfg.model_options, "metric": cfg.metric_options,
                    "model_path": str(cfg.model_path) if cfg.model_path else None},
        "warnings": warnings,
        "conversions": summary,
        "identity": {"model_content": jsonable(cfg.model_content), "config_sha256": config_sha256},
        "model_settings": jsonable(model_settings),
        "dataset_info": {"name": dataset.name, "source": dataset.source,
                         "image_size": list(native[0]) if native[0] else None, "image_mode": native[1],
                         "preprocessing": jsonable(getattr(dataset, "preprocessing", None) or {})},
        "per_sample": per_sample_meta,
    }
    return record, {"scores": columns, "conversions": conversions}


def dataset_warnings(headers, native) -> list[dict]:
    """The scored reference images differ in size or mode: models were asked for the most common one."""
    from collections import Counter

    known = [h for h in headers if h is not None]
    out = []
    for what, values, main in (("sizes", Counter(f"{h[0][0]}x{h[0][1]}" for h in known),
                                f"{native[0][0]}x{native[0][1]}" if native[0] else None),
                               ("modes", Counter(h[1] for h in known), native[1])):
        if len(values) > 1:
            shown = ", ".join(f"{k} ({v})" for k, v in values.most_common(5)) + (" ..." if len(values) > 5 else "")
            out.append({"family": None, "metric": None,
                        "message": f"the scored reference images have {len(values)} different {what}: {shown}; models were "
                                   f"asked for {main}, and the metrics resize/convert the others before comparing"})
    return out


def sample_rows(cfg, samples, entries, details, folder) -> list[dict[str, Any]]:
    """The samples.jsonl lines, in stats row order (schema in medbench/samples_log.py)."""
    from medbench.runner import request_seed

    kind, rows = cfg.task.request, []
    for i, s in enumerate(samples):
        entry, stem = entries[s.id], file_stem(s.id)
        image_out = entry.get("image_sha256") is not None
        report_out = entry.get("report_sha256") is not None
        report_text = folder.path(s.id, "report").read_text(encoding="utf-8") if report_out else None
        rows.append({
            "schema_version": SCHEMA_VERSION, "row": i, "id": s.id, "patient_id": s.patient_id, "split": s.split,
            "file_stem": stem, "request": kind,
            "inputs": {"report": s.report if kind == "report->image" else None,
                       "image_path": str(s.image_path) if kind == "image->report" and s.image_path else None,
                       "prompt": s.prompt_text() if kind == "prompt->pair" else None,
                       "seed": request_seed(cfg.seed, s.id)},
            "reference": {"report": s.report, "image_path": str(s.image_path) if s.image_path else None, "labels": s.labels},
            "outputs": {"image_path": f"outputs/{stem}.png" if image_out else None,
                        "report_path": f"outputs/{stem}.txt" if report_out else None,
                        "report": report_text, "image_sha256": entry.get("image_sha256"),
                        "report_sha256": entry.get("report_sha256"), "image_size": entry.get("image_size"),
                        "image_mode": entry.get("image_mode"), "source": entry.get("source")},
            "conversions": details["conversions"][i],
            "scores": {key: column[i] for key, column in details["scores"].items()},
        })
    return rows
