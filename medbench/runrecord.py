"""run.json: the versioned record of one run, documented key by key.

Written by the runner at the end of every run into ``<out>/<run_id>/run.json``; read by the
store, the report, the leaderboard and compare. Bump SCHEMA_VERSION on any incompatible change
and teach `load_record` to migrate older versions.

Beside run.json the run folder holds:
- ``outputs/``: what the model produced, ``<id>.png`` / ``<id>.txt``, and ``outputs/index.jsonl``
  (one line per finished sample, written after its files: the resume log);
- ``samples.json``: the scored sample ids and patient ids, in the order of every stats row;
- ``stats/<family>.safetensors``: per-sample sufficient statistics of each metric family;
- ``extras/<family>.json``: per-family detail for reports (per-label tables, galleries...);
- ``report.html``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

SCHEMA_VERSION = 1


class MetricValue(TypedDict):
    value: float  # the point estimate on all scored samples
    ci_low: float | None  # 95 % percentile-bootstrap CI over patients (None when not bootstrapped)
    ci_high: float | None
    higher_is_better: bool
    n: int  # samples that entered the value
    bootstrap: int  # patient resamples behind the CI (capped for expensive families, 0 = no CI)
    family: str  # the metric family (plugin) that produced it
    variant: str  # implementation / protocol / extractor description


class Skipped(TypedDict):
    what: str  # "metric:<family>" or "sample:<id>"
    reason: str


class Provenance(TypedDict):
    packages: dict[str, str]  # distribution -> version for the core packages
    git_commit: str | None  # commit of the medbench checkout (None when not a git checkout)
    git_dirty: bool | None
    dataset_sha256: str  # Dataset.manifest_sha256 of the loaded dataset
    weights_sha256: dict[str, str]  # file -> sha256 of every weight file used (model, extractors)
    outputs_sha256: str  # sha256 over outputs/index.jsonl lines sorted by id
    command: list[str]  # sys.argv
    started: str  # ISO-8601 UTC
    finished: str
    seconds: dict[str, float]  # timings: load, generate, score, bootstrap
    world_size: int
    python: str
    platform: str


class RunRecord(TypedDict):
    schema_version: int
    run_id: str
    task: str
    model: str
    dataset: str
    domain: str
    split: str
    n: int  # samples scored
    seed: int
    protocol: str
    bootstrap: int  # bootstrap resamples asked for (a family may cap it: see each metric's "bootstrap")
    metrics: dict[str, MetricValue]  # full metric name -> value
    primary_metric: str | None
    provenance: Provenance
    skipped: list[Skipped]
    options: dict[str, Any]  # model/dataset/metric options as given


def write_record(record: RunRecord, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False, allow_nan=False))
    tmp.replace(path)


def load_record(path: Path) -> RunRecord:
    """Read a run.json (a file or a run folder), migrating older schema versions."""
    path = Path(path)
    if path.is_dir():
        path = path / "run.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no run.json here (is this a finished run folder?)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: run.json schema_version {version!r} is not supported (this medbench reads {SCHEMA_VERSION})")
    return record
