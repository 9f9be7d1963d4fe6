"""`medbench run`: task -> dataset -> model -> outputs -> metrics -> run.json -> report/store.

Resumable: outputs are logged as they are produced (medbench.outputs), so a killed run started
again with the same arguments skips finished samples and ends with the same numbers. Under
``torchrun`` each rank generates its shard of the requests and rank 0 scores once.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from medbench.data.base import Dataset
from medbench.home import medbench_home
from medbench.metrics.base import MetricContext, Scored
from medbench.models.base import ModelContext
from medbench.outputs import OutputsFolder, check_output
from medbench.records import Request, Sample
from medbench.registry import registry
from medbench.runrecord import SCHEMA_VERSION, RunRecord, write_record
from medbench.tasks import TaskSpec

CORE_PACKAGES = ("medbench", "torch", "torchvision", "transformers", "torch-fidelity", "torchmetrics", "pycocoevalcap",
                 "nltk", "rouge", "scikit-learn", "pandas", "numpy", "pillow", "jinja2", "pluggy")


@dataclass
class RunConfig:
    task: TaskSpec
    model: str
    dataset: str
    out: Path
    seed: int
    n: int
    protocol: str
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_path: Path | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    metric_options: dict[str, Any] = field(default_factory=dict)
    on_bad_sample: str = "fail"
    domain: str | None = None
    batch_size: int = 16
    n_boot: int = 1000
    device: str = "cpu"
    store: Path | None = None
    report: bool = True

    def identity(self) -> dict[str, Any]:
        """Everything that determines the outputs and the numbers (the run id hashes it)."""
        return {"task": asdict(self.task), "model": self.model, "dataset": self.dataset, "seed": self.seed, "n": self.n,
                "protocol": self.protocol, "dataset_options": self.dataset_options, "model_options": self.model_options,
                "model_path": str(self.model_path) if self.model_path else None, "metric_options": self.metric_options,
                "on_bad_sample": self.on_bad_sample, "domain": self.domain, "n_boot": self.n_boot, "commit": git_commit()[0]}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)[:40].strip("-")


def run_id(cfg: RunConfig) -> str:
    digest = hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{cfg.task.name}-{_slug(cfg.model)}-{_slug(cfg.dataset)}-s{cfg.seed}-{digest}"


def git_commit() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in CORE_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def request_seed(seed: int, sample_id: str) -> int:
    """Per-sample seed: independent of batching, sharding and order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()[:4], "little")


def select_samples(samples: list[Sample], n: int) -> list[Sample]:
    """The first n complete pairs in a fixed hash order of their ids — the same for every model and
    seed, so runs on one dataset can be compared sample by sample."""
    pairs = [s for s in samples if s.image_path is not None and s.report]
    pairs.sort(key=lambda s: hashlib.sha256(s.id.encode()).hexdigest())
    return pairs[:n]


def make_request(task: TaskSpec, sample: Sample, seed: int) -> Request:
    kind = task.request
    return Request(kind=kind, sample_id=sample.id, seed=request_seed(seed, sample.id), domain=sample.domain,
                   report=sample.report if kind == "report->image" else None,
                   image=sample.load_image() if kind == "image->report" else None,
                   prompt=sample.prompt_text() if kind == "prompt->pair" else None)


def build_model(cfg: RunConfig, dataset: Dataset, test: list[Sample]):
    name, _, arg = cfg.model.partition(":")
    ctx = ModelContext(task=cfg.task, domain=dataset.domain, seed=cfg.seed, train=dataset.split("train"), test=test,
                       model_path=cfg.model_path, arg=arg or None, options=cfg.model_options, device=cfg.device,
                       image_size=int(cfg.dataset_options.get("size", 64)))
    if name == "outputs":
        from medbench.models.outputs_dir import OutputsDirModel

        return OutputsDirModel(ctx)
    spec = registry().get("models", name)
    if cfg.task.request not in spec.kinds:
        raise ValueError(f"model {name!r} does not support {cfg.task.request} requests (it supports {', '.join(spec.kinds)})")
    return spec.factory(ctx)


class LazyPairs:
    """(sample, request, output) triples read from the outputs folder batch by batch, so scoring
    never holds every image in memory."""

    def __init__(self, task: TaskSpec, samples: list[Sample], folder: OutputsFolder, seed: int):
        self.task, self.samples, self.folder, self.seed = task, samples, folder, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, sl: slice) -> list[Scored]:
        return [Scored(s, make_request(self.task, s, self.seed), self.folder.read(s, self.task.request)) for s in self.samples[sl]]


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as torch_dist

        if not torch_dist.is_initialized():
            torch_dist.init_process_group("gloo")
    return rank, world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as torch_dist

        torch_dist.barrier()


def generate(cfg: RunConfig, model, samples: list[Sample], folder: OutputsFolder, rank: int, world: int) -> None:
    done = folder.done()
    todo = [s for i, s in enumerate(samples) if i % world == rank and s.id not in done]
    if hasattr(model, "check"):
        model.check([make_request(cfg.task, s, cfg.seed) for s in todo])
    bar = tqdm(total=len(todo), desc=f"generate ({cfg.model})" + (f" rank {rank}" if world > 1 else ""), unit="sample")
    for i in range(0, len(todo), cfg.batch_size):
        batch = todo[i:i + cfg.batch_size]
        requests = [make_request(cfg.task, s, cfg.seed) for s in batch]
        outputs = model.generate(requests)
        if len(outputs) != len(requests):
            raise ValueError(f"model {cfg.model!r} returned {len(outputs)} outputs for {len(requests)} requests")
        for out, req in zip(outputs, requests):
            folder.write(check_output(out, req))
        bar.update(len(batch))
    bar.close()


def execute(cfg: RunConfig) -> tuple[Path, RunRecord | None]:
    """Run a task end to end; returns (run folder, record) — the record only on rank 0."""
    from medbench.data.resolve import load_dataset
    from medbench.scoring import build_families, score, select_families

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rank, world = _dist()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.dataset_options, on_bad_sample=cfg.on_bad_sample, domain=cfg.domain)
    samples = select_samples(dataset.split(cfg.task.split), cfg.n)
    if not samples:
        raise ValueError(f"dataset {cfg.dataset!r} has no complete image-report pairs in split {cfg.task.split!r}")
    seconds["load"] = time.perf_counter() - t0

    rid = run_id(cfg)
    run_dir = cfg.out / rid
    folder = OutputsFolder(run_dir / "outputs", rank)
    if rank == 0:
        (run_dir / "config.json").write_text(json.dumps(cfg.identity(), indent=1, default=str))
    hook = registry().hook()
    hook.medbench_run_start(config=cfg)

    t0 = time.perf_counter()
    model = build_model(cfg, dataset, samples)
    generate(cfg, model, samples, folder, rank, world)
    _barrier(world)
    seconds["generate"] = time.perf_counter() - t0
    if rank != 0:
        _barrier(world)
        return run_dir, None

    missing = [s.id for s in samples if s.id not in folder.done()]
    if missing:
        raise RuntimeError(f"{run_dir / 'outputs'}: outputs missing for {len(missing)} samples after generation: {missing[:20]}")
    ctx = MetricContext(task=cfg.task, domain=dataset.domain, protocol=cfg.protocol, seed=cfg.seed,
                        cache_dir=medbench_home(),
                        run_dir=run_dir, train=dataset.split("train"), reference=samples, options=cfg.metric_options,
                        device=cfg.device, dataset=dataset)
    specs, skipped = select_families(list(cfg.task.metrics), cfg.protocol, cfg.task.request)
    families, unavailable = build_families(specs, ctx)
    skipped += unavailable
    patients = [s.patient_id for s in samples]
    pairs = LazyPairs(cfg.task, samples, folder, cfg.seed)
    results, failed, timing = score(families, pairs, patients, n_boot=cfg.n_boot, seed=cfg.seed, run_dir=run_dir)
    seconds.update(timing)
    skipped += failed + [{"what": f"sample:{b.id}", "reason": f"{b.path}: {b.reason}"} for b in dataset.bad]

    metrics = {}
    weights = dict(getattr(model, "weights_sha256", {}) or {})
    for res in results:
        weights.update(getattr(res.metric, "weights_sha256", {}) or {})
        for name, value in res.values.items():
            lo, hi = res.cis.get(name, (None, None))
            metrics[name] = {"value": _finite(value), "ci_low": _finite(lo), "ci_high": _finite(hi),
                             "higher_is_better": bool(res.metric.higher_is_better[name]), "n": len(samples), "bootstrap": res.n_boot,
                             "family": res.family, "variant": res.metric.variant}
    commit, dirty = git_commit()
    record: RunRecord = {
        "schema_version": SCHEMA_VERSION, "run_id": rid, "task": cfg.task.name, "model": cfg.model, "dataset": cfg.dataset,
        "domain": dataset.domain, "split": cfg.task.split, "n": len(samples), "seed": cfg.seed, "protocol": cfg.protocol,
        "bootstrap": cfg.n_boot, "metrics": metrics, "primary_metric": cfg.task.primary_metric,
        "provenance": {"packages": package_versions(), "git_commit": commit, "git_dirty": dirty,
                       "dataset_sha256": dataset.manifest_sha256(), "weights_sha256": weights,
                       "outputs_sha256": folder.sha256(), "command": list(sys.argv), "started": started,
                       "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "seconds": {k: round(v, 3) for k, v in seconds.items()}, "world_size": world,
                       "python": sys.version.split()[0], "platform": platform.platform()},
        "skipped": skipped,
        "options": {"dataset": cfg.dataset_options, "model": cfg.model_options, "metric": cfg.metric_options,
                    "model_path": str(cfg.model_path) if cfg.model_path else None},
    }
    _write_sidecars(run_dir, samples)
    write_record(record, run_dir / "run.json")
    _finish(cfg, record, run_dir)
    _barrier(world)
    return run_dir, record


def _finite(x):
    import math

    return None if x is None or not math.isfinite(float(x)) else float(x)


def _write_sidecars(run_dir: Path, samples: list[Sample]) -> None:
    (run_dir / "samples.json").write_text(json.dumps({"ids": [s.id for s in samples], "patients": [s.patient_id for s in samples]}))
    with open(run_dir / "references.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps({"id": s.id, "patient_id": s.patient_id, "report": s.report, "prompt": s.prompt_text(),
                                "image_path": str(s.image_path) if s.image_path else None, "labels": s.labels}) + "\n")


def _finish(cfg: RunConfig, record: RunRecord, run_dir: Path) -> None:
    """Report, store and lifecycle hooks: failures here are warnings, the run itself is done."""
    import warnings

    if cfg.report:
        try:
            from medbench.report import write_report

            write_report(run_dir)
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"report.html was not written: {type(e).__name__}: {e}")
    if cfg.store is not None:
        from medbench.store import Store

        Store(cfg.store).add_run(record, run_dir)
    try:
        registry().hook().medbench_run_finish(config=cfg, record=record, run_dir=run_dir)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"a medbench_run_finish hook failed: {type(e).__name__}: {e}")
