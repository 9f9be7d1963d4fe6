"""One way to turn "run task T on model M" into a `RunConfig`, for the CLI and the Python API alike.

    cfg = make_run_config(task="i2t", model="retrieval", n=16, out="runs", store=None, report=False)
    run_dir, record = medbench.runner.execute(cfg)

Defaults are the task's (dataset, n, seed, protocol), and ``quick=True`` applies the task's reduced
setting exactly as ``medbench run --quick`` does. Option dicts are passed through as given (strings
from the CLI's ``K=V`` flags or typed values from Python); the runner validates them once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from medbench.errors import UserError

DEFAULT_STORE = Path("runs/medbench.sqlite")

RUN_KEYWORDS = ("protocol", "quick", "dataset_options", "model_options", "metric_options", "model_path", "on_bad_sample",
                "domain", "batch_size", "n_boot", "device", "report", "name", "train_dataset")


def make_run_config(*, task: Any, model: str, dataset: str | None = None, n: int | None = None, seed: int | None = None,
                    out: str | Path = "runs", protocol: str | None = None, quick: bool = False,
                    dataset_options: dict[str, Any] | None = None, model_options: dict[str, Any] | None = None,
                    metric_options: dict[str, Any] | None = None, model_path: str | Path | None = None,
                    on_bad_sample: str = "fail", domain: str | None = None, batch_size: int = 16, n_boot: int = 1000,
                    device: str = "cpu", store: str | Path | None = DEFAULT_STORE, report: bool = True,
                    name: str | None = None, train_dataset: str | None = None):
    """The RunConfig ``medbench run`` builds from the same flags (``store=None`` or ``""`` disables the store)."""
    from medbench.runner import RunConfig
    from medbench.tasks import TaskSpec, load_task

    spec = task if isinstance(task, TaskSpec) else load_task(str(task))
    reduced = spec.options.get("quick", {}) if quick else {}
    if not isinstance(model, str) or not model:
        raise UserError(f"model must be a non-empty string such as 'oracle' or 'outputs:DIR', got {model!r}")
    return RunConfig(task=spec, model=model, dataset=dataset or reduced.get("dataset", spec.dataset), out=Path(out),
                     seed=seed if seed is not None else spec.seeds[0], n=n if n is not None else reduced.get("n", spec.n),
                     protocol=protocol or spec.protocol, dataset_options=dict(dataset_options or {}),
                     model_path=Path(model_path) if model_path else None, model_options=dict(model_options or {}),
                     metric_options=dict(metric_options or {}) | ({"quick": "1"} if quick else {}),
                     on_bad_sample=on_bad_sample, domain=domain, batch_size=batch_size, n_boot=n_boot, device=device,
                     store=Path(store) if store else None, report=report,
                     name=name, train_dataset=train_dataset)
