"""The run summary a person reads in the terminal: a headline, then every metric grouped by family.

    joint_pairs · model oracle · dataset cxr-phantom · n=16 · seed 0 · protocol coco
    ▶ primary  pair.consistency.f1            0.9040  [0.8571, 0.9512]  ↑
      key      nlg.coco.bleu4                 1.0000  [1.0000, 1.0000]  ↑
      ...
    skipped    nlg.coco.spice: Stanford CoreNLP jars not found ...

    nlg.coco
      nlg.coco.bleu1                          1.0000  [1.0000, 1.0000]  ↑
    ...

`summary_lines(record, key_metrics)` returns the lines (tested without a terminal); `summary_json`
the machine-readable form printed by ``medbench run --json``.
"""
from __future__ import annotations

import fnmatch
import math
from typing import Any, Iterable

BIG, SMALL = 1e5, 1e-3  # outside [SMALL, BIG) a value is printed in scientific notation


def fmt(value: float | None) -> str:
    """Four decimals, or scientific notation for very large or very small magnitudes; 'n/a' for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    mag = abs(value)
    if mag != 0 and (mag >= BIG or mag < SMALL):
        return f"{value:.3e}"
    return f"{value:.4f}"


def _ci(m: dict[str, Any]) -> str:
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return ""
    return f"[{fmt(m['ci_low'])}, {fmt(m['ci_high'])}]"


def _arrow(m: dict[str, Any]) -> str:
    return "↑" if m.get("higher_is_better") else "↓"


def expand(patterns: Iterable[str], names: list[str]) -> list[str]:
    """Metric names matching the task's key_metrics (fnmatch patterns), in pattern then record order."""
    out: list[str] = []
    for pattern in patterns:
        out += [n for n in names if fnmatch.fnmatchcase(n, pattern) and n not in out]
    return out


def family_of(name: str, m: dict[str, Any]) -> str:
    return m.get("family") or name.rsplit(".", 1)[0]


def summary_lines(record: dict[str, Any], key_metrics: Iterable[str] = (), train_note: str | None = None,
                  plugin_failures: Iterable[tuple[str, str, str]] = ()) -> list[str]:
    """The headline and the grouped table. ``plugin_failures``: the registry's (plugin, dist, error)."""
    metrics: dict[str, dict[str, Any]] = record.get("metrics") or {}
    names = list(metrics)
    width = max([len(n) for n in names] + [24])
    row = lambda label, name, m: f"{label:<10} {name:<{width}}  {fmt(m.get('value')):>10}  {_ci(m):>22}  {_arrow(m)}"  # noqa: E731
    lines = [f"{record.get('task')} · model {record.get('model')} · dataset {record.get('dataset')} · n={record.get('n')} · "
             f"seed {record.get('seed')} · protocol {record.get('protocol')}"]
    primary = record.get("primary_metric")
    if primary:
        if primary in metrics and metrics[primary].get("value") is not None:
            lines.append(row("▶ primary", primary, metrics[primary]))
        else:
            lines.append(f"{'▶ primary':<10} {primary:<{width}}  {'MISSING':>10}  (see skipped below)")
    for name in expand(key_metrics, names):
        if name != primary:
            lines.append(row("  key", name, metrics[name]))
    if train_note:
        lines.append(f"{'  train':<10} {train_note}")
    skipped = record.get("skipped") or []
    families = [s for s in skipped if not str(s.get("what", "")).startswith("sample:")]
    for s in families:
        lines.append(f"{'  skipped':<10} {s.get('what', '').removeprefix('metric:')}: {s.get('reason', '')}")
    for plugin, dist, error in plugin_failures:
        last = (error.strip().splitlines() or ["?"])[-1]
        lines.append(f"{'  plugin':<10} {plugin} ({dist}) failed to load and was left out: {last}")
    bad = len(skipped) - len(families)
    if bad:
        lines.append(f"{'  skipped':<10} {bad} bad sample(s) left out (--on-bad-sample skip); listed in run.json skipped[]")
    for w in record.get("warnings") or []:
        text = w.get("message", "") if isinstance(w, dict) else str(w)
        lines.append(f"{'  warning':<10} {text}")
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(family_of(name, metrics[name]), []).append(name)
    for family, members in groups.items():
        lines += ["", family]
        lines += [row("", n, metrics[n]) + ("  ◀ primary" if n == primary else "") for n in members]
    return lines


def summary_json(record: dict[str, Any], run_dir: Any, key_metrics: Iterable[str] = ()) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    primary = record.get("primary_metric")
    return {"run_id": record.get("run_id"), "run_dir": str(run_dir), "task": record.get("task"), "model": record.get("model"),
            "dataset": record.get("dataset"), "n": record.get("n"), "seed": record.get("seed"),
            "protocol": record.get("protocol"),
            "primary_metric": {"name": primary, **(metrics.get(primary) or {"value": None})} if primary else None,
            "key_metrics": expand(key_metrics, list(metrics)), "metrics": metrics, "skipped": record.get("skipped") or [],
            "warnings": record.get("warnings") or []}


def primary_missing(record: dict[str, Any]) -> str | None:
    """Why the task's primary metric has no value (None when it has one, or the task names none)."""
    primary = record.get("primary_metric")
    if not primary:
        return None
    m = (record.get("metrics") or {}).get(primary)
    if m is not None and m.get("value") is not None:
        return None
    family = next((s for s in record.get("skipped") or [] if _could_produce(str(s.get("what", "")).removeprefix("metric:"), primary)),
                  None)
    why = f"its family was skipped: {family['reason']}" if family else ("it is NaN (undefined on these samples)" if m is not None
                                                                        else "no family of the run produced it")
    return f"the task's primary metric {primary} is missing: {why}"


def _could_produce(family: str, metric: str) -> bool:
    from medbench.registry import registry

    entry = registry().entries["metrics"].get(family)
    if entry is not None and entry.spec.produces:
        return entry.spec.can_produce(metric)
    return metric.startswith(family + ".") or metric.startswith(family + "@")
