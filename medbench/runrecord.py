"""run.json: the versioned record of one run, documented key by key (and in docs/runjson.md).

Written by the runner at the end of every completed run into ``<out>/<run_id>/run.json``; read by
the store, the report, the leaderboard and compare. Bump SCHEMA_VERSION on any incompatible change
and teach `load_record` to migrate older versions (`migrate_v1` is the model).

Beside run.json the run folder holds:
- ``status.json``: running / complete / failed (medbench.run_status);
- ``outputs/``: what the model produced, ``<stem>.png`` / ``<stem>.txt`` (stem =
  medbench.safe_names.file_stem(id)), and ``outputs/index.rank<R>.jsonl`` (one line per finished
  sample with the sha256 of its files, written after them: the resume log);
- ``samples.json``: the scored sample ids and patient ids, in the order of every stats row;
- ``samples.jsonl``: one line per scored sample: inputs, outputs, conversions, per-sample scores
  (medbench.samples_log);
- ``stats/<family>.safetensors``: per-sample sufficient statistics of each metric family;
- ``extras/<family>.json``: per-family detail for reports (per-label tables, galleries...);
- ``report.html`` (only when this run wrote it).

Usage::

    record = load_record(run_dir)        # any supported version, migrated to SCHEMA_VERSION
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict

SCHEMA_VERSION = 2
SUPPORTED = (1, 2)
MAX_RECORD_BYTES = 256 * 1024 * 1024


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
    outputs_sha256: str  # sha256 over (id, image sha256, report sha256) of the bytes scored, in id order (v1: log lines)
    command: list[str]  # sys.argv
    started: str  # ISO-8601 UTC
    finished: str
    seconds: dict[str, float]  # timings: load, generate, score, bootstrap
    world_size: int
    row_shards: NotRequired[dict[str, dict[str, int]]]  # torchrun: family -> {"rank<r>": pair rows that rank scored}
    python: str
    platform: str


class Warning(TypedDict):
    family: str | None  # the family that raised it (None: the harness)
    metric: str | None  # the metric it concerns, when one
    message: str


class Conversions(TypedDict):
    counts: dict[str, int]  # kind of change ("resize", "alpha", "mode") -> samples
    samples: int | None  # samples with any change (None: not recorded, a migrated v1 record)
    reference: dict | None  # {"size": [w, h] | None, "mode": str | None}: the dataset's images
    recorded: bool  # False on migrated v1 records


class Identity(TypedDict):
    model_content: dict | None  # {"kind": "outputs-dir"|"weights", "sha256", "files"}: what the run id hashes
    config_sha256: str | None  # sha256 of config.json's content (the run id's digest is its first 10 digits)


class DatasetInfo(TypedDict):
    name: str
    source: str | None
    image_size: list[int] | None  # [w, h]: the dataset's most common image size, given to models
    image_mode: str | None
    preprocessing: dict[str, Any]  # the dataset's recorded protocol (report sections, DICOM pipeline ...)


class RunRecord(TypedDict):
    schema_version: int
    run_id: str
    name: str | None  # v2: --name, a display name (not part of the identity)
    task: str
    model: str
    dataset: str
    request: str  # v2: the task's request kind (report->image, image->report, prompt->pair)
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
    # schema 2
    status: str  # "complete"
    warnings: list[Warning]  # unreliable numbers and harness notes
    conversions: Conversions  # what the harness changed in scored outputs (per sample: samples.jsonl)
    identity: Identity
    model_settings: dict[str, Any] | None  # v2: the model's own account of its effective settings (adapters)
    dataset_info: DatasetInfo
    per_sample: dict[str, dict[str, Any]]  # samples.jsonl score key -> {"family", "higher_is_better"}


def write_record(record: RunRecord, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False, allow_nan=False))
    tmp.replace(path)


def migrate_v1(record: dict) -> dict:
    """A v1 record in the v2 layout: the new keys with the values v1 implied (docs/runjson.md)."""
    out = dict(record)
    out.update(schema_version=2, migrated_from=1)
    out.setdefault("status", "complete")  # v1 wrote run.json only at the very end of a run
    out.setdefault("name", None)
    out.setdefault("warnings", [])
    out.setdefault("conversions", {"counts": {}, "samples": None, "reference": None, "recorded": False})
    out.setdefault("identity", {"model_content": None, "config_sha256": None})
    out.setdefault("dataset_info", {"name": record.get("dataset"), "source": None, "image_size": None,
                                    "image_mode": None, "preprocessing": {}})
    out.setdefault("per_sample", {})
    out.setdefault("model_settings", None)
    out.setdefault("request", None)  # v1 did not record it; config.json's task has it
    return out


MIGRATIONS = {1: migrate_v1}


def load_record(path: Path) -> RunRecord:
    """Read a run.json (a file or a run folder), migrating older schema versions in memory."""
    from medbench.errors import UserError

    path = Path(path)
    if path.is_dir():
        path = path / "run.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no run.json here (is this a finished run folder?)")
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes is too large for a run.json (limit {MAX_RECORD_BYTES})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(record, dict):
        raise UserError(f"{path}: run.json must hold a JSON object")
    version = record.get("schema_version")
    if version not in SUPPORTED:
        raise UserError(f"{path}: run.json schema_version {version!r} is not supported "
                        f"(this medbench reads {', '.join(map(str, SUPPORTED))}; a newer medbench wrote it?)")
    while record["schema_version"] != SCHEMA_VERSION:
        record = MIGRATIONS[record["schema_version"]](record)
    if record.get("request") is None:  # a migrated v1 record: the request kind is in config.json's task
        try:
            task = json.loads((path.parent / "config.json").read_text(encoding="utf-8")).get("task") or {}
            record["request"] = task.get("request") if isinstance(task, dict) else None
        except (OSError, ValueError):
            pass
    return record
