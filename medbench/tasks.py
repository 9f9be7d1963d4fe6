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
    key_metrics: [nlg.coco.bleu4, clinical.ce_f1.micro14.pos, image.fid@phantom-encoder]

`parse_task` checks the schema (duplicate keys, types, names that are safe as file names);
`load_task` also checks the task against the registered metric families (each exists and applies
to the request kind, the primary and key metrics are ones they can produce) and refuses a user
YAML whose name shadows a registered task.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medbench.errors import UserError
from medbench.records import REQUEST_KINDS, produces
from medbench.registry import hookimpl

PROTOCOLS = ("coco", "medim-paper")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")  # a task name becomes part of file names


class TaskError(UserError):
    """A task spec that does not follow the schema; the message names the file and the field."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice (lines {seen[key]} and {line})",
                                                        key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


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
    key_metrics: tuple[str, ...] = ()  # shown in the console headline beside the primary metric
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
    "protocol": (str, False), "primary_metric": (str, False), "key_metrics": (list, False), "options": (dict, False),
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
        if not SAFE_NAME.match(data["name"]):
            problems.append(f"name {data['name']!r} must be 1-64 letters, digits, '_', '.', '+' or '-' "
                            "(it becomes part of run folder names), starting with a letter or digit")
        if not all(isinstance(m, str) for m in data.get("key_metrics", [])):
            problems.append("key_metrics must be a list of metric names")
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
        raise TaskError(f"{source}: invalid task spec: " + "; ".join(problems))
    return TaskSpec(name=data["name"], description=data.get("description", ""), dataset=data["dataset"],
                    split=data.get("split", "test"), request=data["request"], metrics=tuple(data["metrics"]),
                    n=data["n"], seeds=tuple(data.get("seeds", [0])), protocol=data.get("protocol", "coco"),
                    primary_metric=data.get("primary_metric"), key_metrics=tuple(data.get("key_metrics", [])),
                    options=data.get("options", {}), source=source)


def read_task_file(path: Path) -> TaskSpec:
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: task file not found" + (" (it is a folder)" if path.is_dir() else "")
                        + "; give a registered task (medbench list tasks) or the path of a task YAML")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as e:
        raise TaskError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise TaskError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    return parse_task(data, str(path))


def task_name(entry: Path | dict | TaskSpec) -> str:
    return as_task(entry).name


def as_task(entry: Path | str | dict | TaskSpec) -> TaskSpec:
    if isinstance(entry, TaskSpec):
        return entry
    if isinstance(entry, dict):
        return parse_task(entry)
    return read_task_file(Path(entry))


def load_task(name_or_path: str, check: bool = True) -> TaskSpec:
    """A registered task name, or a path to a YAML file; checked against the registry (`check_task`)."""
    from medbench.registry import registry

    reg = registry()
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or Path(name_or_path).is_file():
        task = read_task_file(Path(name_or_path))
        builtin = reg.entries["tasks"].get(task.name)
        if builtin is not None and not _same_file(builtin.spec, name_or_path):
            raise TaskError(f"{name_or_path}: task name {task.name!r} is already a registered task "
                            f"(from {builtin.plugin!r}); give your task another name so its runs are not mixed with it")
    else:
        task = as_task(reg.get("tasks", name_or_path))
    if check:
        check_task(task)
    return task


def for_protocol(task: TaskSpec, protocol: str | None) -> TaskSpec:
    """The task under another text protocol: its ``nlg.<protocol>.`` primary and key metrics follow
    (i2t's ``nlg.coco.bleu4`` becomes ``nlg.medim-paper.bleu4``)."""
    import dataclasses

    if not protocol or protocol == task.protocol:
        return task
    old, new = f"nlg.{task.protocol}.", f"nlg.{protocol}."
    swap = lambda m: new + m[len(old):] if m and m.startswith(old) else m  # noqa: E731
    return dataclasses.replace(task, protocol=protocol, primary_metric=swap(task.primary_metric),
                               key_metrics=tuple(swap(k) for k in task.key_metrics))


def _same_file(spec: Any, path: str) -> bool:
    return isinstance(spec, (str, Path)) and Path(spec).resolve() == Path(path).resolve()


def task_families(task: TaskSpec, protocol: str | None = None) -> list[tuple[str, Any]]:
    """(name as resolved, MetricSpec or None when no plugin registers it) for each metric of the task;
    ``nlg`` means the text family of the protocol."""
    from medbench.registry import registry

    table = registry().entries["metrics"]
    protocol = protocol or task.protocol
    out = []
    for name in task.metrics:
        resolved = f"{name}.{protocol}" if f"{name}.{protocol}" in table else name
        out.append((resolved, table[resolved].spec if resolved in table else None))
    return out


def check_task(task: TaskSpec, protocol: str | None = None, keys: bool = True) -> None:
    """Every metric family exists (unless a plugin failed to load: the run records it as skipped),
    applies to the request kind, and can produce the primary (and with ``keys`` the key) metrics."""
    from medbench.registry import registry

    reg = registry()
    source = task.source or task.name
    specs = []
    for name, spec in task_families(task, protocol):
        if spec is None:
            if not reg.failures:
                raise TaskError(f"{source}: metrics: {reg.unknown_message('metrics', name)}")
            continue
        if task.request not in spec.kinds:
            raise TaskError(f"{source}: metric family {name!r} does not apply to {task.request} requests "
                            f"(it scores {', '.join(spec.kinds)}); remove it or change request")
        specs.append(spec)
    declared = [s for s in specs if s.produces]
    if len(declared) < len(specs):
        return  # a family that does not declare its metric names: checked after scoring instead
    for what, metric in [("primary_metric", task.primary_metric)] + [("key_metrics", k) for k in task.key_metrics if keys]:
        if metric and not any(s.can_produce(metric) for s in declared):
            raise TaskError(f"{source}: {what} {metric!r} is not produced by any metric family of this task "
                            f"({', '.join(s.name for s in declared)}); see `medbench list metrics`")


def builtin_task_files() -> list[Path]:
    """The YAML files of the top-level ``tasks/`` folder (a data-only namespace package)."""
    here = Path(__file__).resolve().parents[1] / "tasks"
    spec = importlib.util.find_spec("tasks")
    folders = [here] if here.is_dir() else [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return sorted(p for folder in folders[:1] for p in folder.glob("*.yaml"))


@hookimpl
def medbench_tasks():
    return builtin_task_files()
