"""Scoring: feed (sample, output) pairs to metric families, keep their per-sample statistics,
attach bootstrap CIs, and rebuild a family later from a run folder (for compare).

Stats are stored per family as ``stats/<family>.safetensors`` (numeric arrays only) in the row
order of ``samples.json``; extras as ``extras/<family>.json``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from medbench.home import medbench_home
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.registry import MetricSpec, registry
from medbench.weights import WeightsError


@dataclass
class FamilyResult:
    family: str
    metric: Metric
    stats: dict[str, np.ndarray]
    values: dict[str, float]
    cis: dict[str, tuple[float | None, float | None]]
    n_boot: int = 0


def select_families(names: list[str], protocol: str, kind: str) -> tuple[list[MetricSpec], list[dict[str, str]]]:
    """Resolve a task's metric list: ``nlg`` means the text family of the run's protocol.

    An unknown name is an error, unless some plugin failed to load (it may be the one that
    provides it): then the family is skipped and the run record says why. A family that does not
    apply to the request kind (refused at task load, `tasks.check_task`) is skipped with its reason.
    """
    reg = registry()
    specs, skipped = [], []
    for name in names:
        resolved = f"{name}.{protocol}" if f"{name}.{protocol}" in reg.entries["metrics"] else name
        try:
            spec = reg.get("metrics", resolved)
        except KeyError as e:
            if not reg.failures:
                raise
            skipped.append({"what": f"metric:{resolved}", "reason": str(e)})
            continue
        if kind in spec.kinds:
            specs.append(spec)
        else:
            skipped.append({"what": f"metric:{resolved}", "reason": f"does not apply to {kind} requests "
                                                                   f"(it scores {', '.join(spec.kinds)})"})
    return specs, skipped


def build_families(specs: list[MetricSpec], ctx: MetricContext) -> tuple[list[Metric], list[dict[str, str]]]:
    metrics, skipped = [], []
    for spec in specs:
        try:
            metrics.append(spec.factory(ctx))
        except (MetricUnavailable, WeightsError) as e:  # the family cannot run here: skipped, with why
            skipped.append({"what": f"metric:{spec.name}", "reason": str(e)})
    return metrics, skipped


def score(metrics: list[Metric], pairs: list[Scored], patient_ids: list[str], *, n_boot: int, seed: int,
          batch_size: int = 64, run_dir: Path | None = None, world: int = 1
          ) -> tuple[list[FamilyResult], list[dict[str, str]], dict[str, float]]:
    """Run every family over the pairs, save stats/extras, and bootstrap CIs. Under torchrun (world > 1)
    `shard_rows` families take the rows every rank scored (medbench.row_shards)."""
    results, skipped, seconds = [], [], {"score": 0.0, "bootstrap": 0.0}
    for metric in metrics:
        t0 = time.perf_counter()
        try:
            if metric.shard_rows and world > 1 and run_dir is not None:
                from medbench.row_shards import gather_rows

                stats = gather_rows(metric, pairs, world, run_dir, batch_size)
            else:
                for i in tqdm(range(0, len(pairs), batch_size), desc=f"score {metric.name}", leave=False):
                    metric.update(pairs[i:i + batch_size])
                stats = metric.stats()
            values = metric.compute(stats)
        except (MetricUnavailable, WeightsError) as e:  # the family cannot run here: skipped, with why
            skipped.append({"what": f"metric:{metric.name}", "reason": str(e)})
            metric.close()
            continue
        finally:
            seconds["score"] += time.perf_counter() - t0
        t1 = time.perf_counter()
        reps = min(n_boot, metric.max_bootstrap or n_boot)
        cis = metric.confidence_intervals(stats, patient_ids, n_boot=reps, seed=seed) if reps else {}
        seconds["bootstrap"] += time.perf_counter() - t1
        if run_dir is not None:
            save_family(run_dir, metric, stats)
        metric.close()
        results.append(FamilyResult(metric.name, metric, stats, values, cis, reps))
    return results, skipped, seconds


def save_family(run_dir: Path, metric: Metric, stats: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    (run_dir / "stats").mkdir(exist_ok=True)
    (run_dir / "extras").mkdir(exist_ok=True)
    arrays = {}
    for k, v in stats.items():
        v = np.asarray(v)
        if v.dtype == object:
            raise TypeError(f"metric {metric.name!r}: stats[{k!r}] is not numeric; per-sample stats must be numeric arrays")
        arrays[k] = np.ascontiguousarray(v)
    save_file(arrays, str(run_dir / "stats" / f"{metric.name}.safetensors"))
    if metric.row_patients() is not None:
        (run_dir / "stats" / f"{metric.name}.rows.json").write_text(json.dumps({"patients": metric.row_patients()}))
    (run_dir / "extras" / f"{metric.name}.json").write_text(json.dumps(metric.extras(), indent=1, default=_jsonable))


def _jsonable(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def load_family(run_dir: Path, family: str) -> tuple[Metric, dict[str, np.ndarray], list[str], list[str]]:
    """Rebuild a family's metric (for its pure ``compute``) and load its stats from a run folder.

    Returns (metric, stats, sample ids, patient ids) with stats rows in sample-id order.
    """
    from safetensors.numpy import load_file

    from medbench.runrecord import load_record
    from medbench.tasks import load_task

    run_dir = Path(run_dir)
    record = load_record(run_dir)
    path = run_dir / "stats" / f"{family}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path}: this run has no stored statistics for metric family {family!r}")
    stats = load_file(str(path))
    samples = json.loads((run_dir / "samples.json").read_text())
    rows = run_dir / "stats" / f"{family}.rows.json"
    if rows.exists():  # rows are not the scored samples (e.g. downstream test samples)
        patients = json.loads(rows.read_text())["patients"]
        samples = {"ids": [f"row{i}" for i in range(len(patients))], "patients": patients}
    ctx = MetricContext(task=load_task(record["task"]), domain=record["domain"], protocol=record["protocol"],
                        seed=record["seed"], cache_dir=medbench_home(), run_dir=run_dir, options=record.get("options", {}).get("metric", {}))
    metric = registry().get("metrics", family).factory(ctx)
    return metric, stats, samples["ids"], samples["patients"]
