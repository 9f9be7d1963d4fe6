"""Checks a run's configuration once, before any work: every mistake the user can make in flags,
specs and options is refused here with one line (a UserError), and the options are replaced by
their typed, validated values, which then reach the factories in ``ctx.options``.

    from medbench.run_checks import check_run
    check_run(cfg)          # first thing in medbench.runner.execute(cfg); mutates cfg

What is checked: seed ≥ 0, batch size ≥ 1, bootstrap ≥ 0, n ≥ 1 or None (= every sample); --out
not a file; --store not a folder nor a file that is not a medbench store; --device (``auto`` →
cuda when available, else cpu; a CUDA device asked for on a machine without one is refused); the
model name (or ``outputs:DIR``), that it answers the task's request kind, its ``--model-opt``
against its declared options, ``--model-path`` where the model takes none; the dataset spec and
its ``--dataset-opt``; the task's metric families under the run's protocol and ``--metric-opt``
(each key declared by at least one family of the run); ``--train-dataset``. What needs the loaded
dataset (``n`` above what it has) is `check_sample_count`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medbench.errors import UserError
from medbench.options import Option, resolve, resolve_shared

# folder:PATH and manifest:FILE are read by medbench.data.resolve, not by a registered spec
FILE_DATASET_OPTIONS = (
    Option("name", str, None, "dataset name shown in run.json and reports (default: the spec)"),
    Option("max_report_chars", int, None, "longest report accepted (default 20000)", low=1),
)
# outputs:DIR is resolved by the runner, not registered (its name carries a path)
OUTPUTS_OPTIONS = (Option("max_report_chars", int, None, "longest report read from DIR (default 20000)", low=1),)
QUICK = Option("quick", bool, False, "the task's reduced setting (medbench run --quick)")
HARNESS_KEYS = ("quick",)  # set by the harness itself (--quick), accepted whatever the families declare


def check_run(cfg: Any) -> None:
    """Validate `cfg` (a medbench.runner.RunConfig) and type its options in place; UserError if not."""
    from medbench.tasks import check_task, for_protocol

    check_numbers(cfg.seed, cfg.batch_size, cfg.n_boot, cfg.n)
    check_out(Path(cfg.out))
    if cfg.store is not None:
        check_store(Path(cfg.store))
    cfg.device = resolve_device(cfg.device)
    cfg.task = for_protocol(cfg.task, cfg.protocol)
    check_task(cfg.task, cfg.protocol, keys=False)
    cfg.model_options = check_model(cfg.model, cfg.task.request, cfg.model_options, cfg.model_path)
    cfg.dataset_options = check_dataset(cfg.dataset, cfg.dataset_options, "--dataset-opt")
    cfg.metric_options = check_metric_options(cfg.task, cfg.protocol, cfg.metric_options)
    train = getattr(cfg, "train_dataset", None)
    if train:
        check_dataset(train, {}, "--train-dataset")


def check_numbers(seed: int, batch_size: int, n_boot: int, n: int | None) -> None:
    for flag, value, low in (("--seed", seed, 0), ("--batch-size", batch_size, 1), ("--bootstrap", n_boot, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UserError(f"{flag} {value!r}: must be an integer ≥ {low}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise UserError(f"--n {n!r}: must be an integer ≥ 1, or 'all' for every sample of the split")


def check_sample_count(n: int | None, available: int, dataset: str, split: str) -> None:
    """--n above what the dataset has is refused (never silently capped)."""
    if n is not None and n > available:
        raise UserError(f"--n {n}: dataset {dataset!r} has only {available} complete image-report pairs in split "
                        f"{split!r}; pass --n {available} or less, or --n all")


def check_out(out: Path) -> None:
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"--out {out}: {folder} is a file, not a folder; pass a folder for the runs")
            return


def check_store(path: Path) -> None:
    """Refused before any work: a folder, or an existing file that is not a usable medbench store."""
    from medbench.store import Store, check_store_file

    if check_store_file(path):
        Store(path)  # an existing file: opened (and checked) now, not after the run


def resolve_device(device: str | None) -> str:
    """``auto`` (or empty) → cuda when torch sees one, else cpu; cpu, cuda, cuda:N and mps checked."""
    device = (device or "auto").strip()
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device}: this machine has no CUDA device torch can use; "
                            "pass --device cpu (or auto, which picks cuda when there is one)")
        if m.group(1) is not None and int(m.group(1)) >= count:
            raise UserError(f"--device {device}: there are only {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})")
        return device
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError("--device mps: Apple MPS is not available on this machine; pass --device cpu")
        return device
    raise UserError(f"--device {device!r}: not a device; use auto, cpu, cuda, cuda:N or mps")


def _given_only(declared, given: dict[str, Any], owner: str, flag: str) -> dict[str, Any]:
    typed = resolve(declared, given, owner=owner, flag=flag)
    return {k: typed[k] for k in given}


def _harness(given: dict[str, Any], flag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    rest = dict(given)
    fixed = {}
    for key in HARNESS_KEYS:
        if key in rest:
            fixed[key] = _given_only((QUICK,), {key: rest.pop(key)}, "medbench", flag)[key]
    return rest, fixed


def check_model(model: str, kind: str, options: dict[str, Any], model_path: Path | None) -> dict[str, Any]:
    from medbench.registry import registry

    if not isinstance(model, str) or not model.strip():
        raise UserError(f"--model {model!r}: name a registered model (medbench list models) or outputs:DIR")
    name, sep, arg = model.partition(":")
    given, fixed = _harness(options or {}, "--model-opt")
    if name == "outputs":
        if not arg:
            raise UserError("--model outputs: names no folder; write outputs:DIR (the folder with your system's files)")
        if not Path(arg).expanduser().is_dir():
            raise UserError(f"--model outputs:{arg}: {arg} is not a folder"
                            + (" (it does not exist)" if not Path(arg).expanduser().exists() else ""))
        if model_path is not None:
            raise UserError("--model-path: outputs:DIR reads precomputed files and takes no weights")
        return _given_only(OUTPUTS_OPTIONS, given, "outputs:DIR", "--model-opt") | fixed
    spec = registry().get("models", name)
    if kind not in spec.kinds:
        raise UserError(f"--model {model}: it does not answer {kind} requests (it answers {', '.join(spec.kinds)})")
    if model_path is not None:
        if spec.uses_model_path is False:
            raise UserError(f"--model-path {model_path}: model {name!r} takes no weights (only models such as medim do)")
        if not Path(model_path).expanduser().exists():
            raise UserError(f"--model-path {model_path}: no such file or folder")
    return _given_only(spec.declared_options(arg or None), given, f"model {name!r}", "--model-opt") | fixed


def dataset_options_declared(spec: str) -> tuple[tuple[Option, ...], str]:
    """(declared options, owner) for a dataset spec: NAME, NAME:PATH, folder:PATH or manifest:FILE."""
    from medbench.registry import registry

    kind, sep, target = spec.partition(":")
    if sep and kind in ("folder", "manifest"):
        if not target:
            raise UserError(f"--dataset {spec}: names no path (write {kind}:PATH)")
        if not Path(target).expanduser().exists():
            raise UserError(f"--dataset {spec}: {target} does not exist")
        return FILE_DATASET_OPTIONS, f"{kind}: datasets"
    found = registry().get("datasets", kind if sep else spec)
    declared = tuple(o for o in found.options if not (sep and o.name == "path"))  # the path comes from NAME:PATH
    return declared, f"dataset {found.name!r}"


def check_dataset(spec: str, options: dict[str, Any], flag: str) -> dict[str, Any]:
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"{flag} {spec!r}: name a dataset (medbench list datasets), folder:PATH or manifest:FILE")
    declared, owner = dataset_options_declared(spec)
    given = dict(options or {})
    home = given.pop("home", None)  # the phantom cache folder (tests)
    typed = _given_only(declared, given, owner, "--dataset-opt")
    return typed | ({"home": home} if home is not None else {})


def check_metric_options(task, protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """Each --metric-opt key declared by at least one family of the run; typed values merged in one dict."""
    from medbench.tasks import task_families

    given, fixed = _harness(options or {}, "--metric-opt")
    groups = {name: spec.options for name, spec in task_families(task, protocol) if spec is not None}
    per_family = resolve_shared(groups, given, flag="--metric-opt")
    merged: dict[str, Any] = {}
    for values in per_family.values():
        for key in given:
            if key in values:
                merged.setdefault(key, values[key])
    return merged | fixed


def train_split(cfg: Any, dataset: Any) -> list:
    """The train samples the model and the families get: the evaluated dataset's own train split, or,
    with ``cfg.train_dataset`` (--train-dataset SPEC), the train split of that dataset (for datasets
    without one, such as MeDiM's flat folder dumps). Refused when the chosen source has none."""
    spec = getattr(cfg, "train_dataset", None)
    if not spec:
        return dataset.split("train")
    from medbench.data.resolve import load_dataset

    other = load_dataset(spec, {}, on_bad_sample=cfg.on_bad_sample, domain=cfg.domain)
    if other.domain != dataset.domain:
        raise UserError(f"--train-dataset {spec}: its domain is {other.domain!r}, the evaluated dataset's is {dataset.domain!r}")
    train = other.split("train")
    if not train:
        raise UserError(f"--train-dataset {spec}: it has no train split either (splits: "
                        f"{', '.join(sorted({s.split for s in other.samples})) or 'none'})")
    return train


def check_label_keys(dataset: Any) -> None:
    """Label keys outside the observation space of the domain's labeler are refused (a misspelled
    'Edemma' would otherwise be silently unused and its label-fidelity scores reported as real numbers)."""
    from medbench.labelers.plugin import labeler_spec_for

    try:
        known = set(labeler_spec_for(dataset.domain).factory().observations)
    except (KeyError, AttributeError):
        return  # no labeler for this domain (or a mixed dataset): the families that need one say so
    unknown: dict[str, list[str]] = {}
    for s in dataset.samples:
        for key in (s.labels or {}):
            if key not in known:
                unknown.setdefault(key, []).append(s.id)
    if unknown:
        shown = "; ".join(f"{k!r} (samples {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''})" for k, ids in unknown.items())
        raise UserError(f"dataset {dataset.name!r} ({dataset.source}): label keys outside the {dataset.domain} labeler's "
                        f"observations: {shown}; known: {', '.join(sorted(known))}")
