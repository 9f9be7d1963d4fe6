"""Task specs: declarative YAML (data only, read with yaml.safe_load), validated against a schema.

A task says which dataset and split to evaluate on, what the model is given and must produce
(the request kind), which metric families score it, how many samples, which seeds, the default
text protocol and the primary metric for leaderboards. Example (tasks/joint_pairs.yaml)::

    name: joint_pairs
    description: prompt -> matched image + report
    dataset: cxr-phantom
    split: test
    request: prompt->pair
    metrics: [nlg, clinical, image.fidelity, pair_consistency, memorization]
    n: 200
    seeds: [0]
    protocol: coco
    primary_metric: pair.consistency.f1
"""
from __future__ import annotations

from dataclasses import dataclass, field
import importlib.util
from pathlib import Path
from typing import Any

import yaml

from medbench.records import REQUEST_KINDS, produces
from medbench.registry import hookimpl

PROTOCOLS = ("coco", "medim-paper")


class TaskError(ValueError):
    """A task spec that does not follow the schema; the message names the file and the field."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    dataset: str
    split: str
    request: str
    metrics: tuple[str, ...]
    n: int
    seeds: tuple[int, ...]
    protocol: str
    primary_metric: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # task-specific knobs (e.g. downstream arms)
    source: str = ""

    @property
    def given(self) -> tuple[str, ...]:
        return {"report->image": ("report",), "image->report": ("image",), "prompt->pair": ("prompt",)}[self.request]

    @property
    def produce(self) -> tuple[str, ...]:
        return produces(self.request)


_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {  # field -> (type, required)
    "name": (str, True), "description": (str, False), "dataset": (str, True), "split": (str, False),
    "request": (str, True), "metrics": (list, True), "n": (int, True), "seeds": (list, False),
    "protocol": (str, False), "primary_metric": (str, False), "options": (dict, False),
    "given": (list, False), "produce": (list, False),
}


def parse_task(data: Any, source: str = "<dict>") -> TaskSpec:
    """Validate a parsed YAML mapping; every problem is reported at once, naming the source."""
    if not isinstance(data, dict):
        raise TaskError(f"{source}: a task spec must be a mapping, got {type(data).__name__}")
    problems = [f"unknown field {k!r} (allowed: {', '.join(_FIELDS)})" for k in data if k not in _FIELDS]
    for key, (typ, required) in _FIELDS.items():
        if key not in data:
            if required:
                problems.append(f"missing required field {key!r}")
        elif not isinstance(data[key], typ) or (typ is int and isinstance(data[key], bool)):
            problems.append(f"field {key!r} must be {typ.__name__}, got {type(data[key]).__name__}")
    if not problems:
        if data["request"] not in REQUEST_KINDS:
            problems.append(f"request {data['request']!r} is not one of {', '.join(REQUEST_KINDS)}")
        if data["n"] < 1:
            problems.append("n must be ≥ 1")
        if not all(isinstance(m, str) for m in data["metrics"]):
            problems.append("metrics must be a list of metric family names")
        if not all(isinstance(s, int) for s in data.get("seeds", [0])):
            problems.append("seeds must be a list of integers")
        if data.get("protocol", "coco") not in PROTOCOLS:
            problems.append(f"protocol {data['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
        if data.get("split", "test") not in ("train", "val", "test"):
            problems.append("split must be train, val or test")
        if not problems and "produce" in data and tuple(data["produce"]) != produces(data["request"]):
            problems.append(f"produce {data['produce']} contradicts request {data['request']!r} ({list(produces(data['request']))})")
    if problems:
        raise TaskError(f"{source}: invalid task spec:\n  " + "\n  ".join(problems))
    return TaskSpec(name=data["name"], description=data.get("description", ""), dataset=data["dataset"],
                    split=data.get("split", "test"), request=data["request"], metrics=tuple(data["metrics"]),
                    n=data["n"], seeds=tuple(data.get("seeds", [0])), protocol=data.get("protocol", "coco"),
                    primary_metric=data.get("primary_metric"), options=data.get("options", {}), source=source)


def read_task_file(path: Path) -> TaskSpec:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TaskError(f"{path}: not valid YAML: {e}") from e
    return parse_task(data, str(path))


def task_name(entry: Path | dict | TaskSpec) -> str:
    return as_task(entry).name


def as_task(entry: Path | str | dict | TaskSpec) -> TaskSpec:
    if isinstance(entry, TaskSpec):
        return entry
    if isinstance(entry, dict):
        return parse_task(entry)
    return read_task_file(Path(entry))


def load_task(name_or_path: str) -> TaskSpec:
    """A registered task name, or a path to a YAML file."""
    if name_or_path.endswith((".yaml", ".yml")) and Path(name_or_path).exists():
        return read_task_file(Path(name_or_path))
    from medbench.registry import registry

    return as_task(registry().get("tasks", name_or_path))


def builtin_task_files() -> list[Path]:
    """The YAML files of the top-level ``tasks/`` folder (a data-only namespace package)."""
    here = Path(__file__).resolve().parents[1] / "tasks"
    spec = importlib.util.find_spec("tasks")
    folders = [here] if here.is_dir() else [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return sorted(p for folder in folders[:1] for p in folder.glob("*.yaml"))


@hookimpl
def medbench_tasks():
    return builtin_task_files()
