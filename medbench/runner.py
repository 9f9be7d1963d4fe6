"""`medbench run`: task -> dataset -> model -> outputs -> metrics -> run.json -> report/store.

Resumable: outputs are logged as they are produced (medbench.outputs), so a killed run started
again with the same arguments skips finished samples (after re-checking each one's sha256) and
ends with the same numbers. Under ``torchrun`` each rank generates its shard of the requests and
rank 0 scores once.

Nothing is written outside ``--out``: the run folder is ``<out>/<run_id>`` (slugs and a digest of
config.json, which holds the *content* digest of outputs:DIR / --model-path), and output files
are named by `medbench.safe_names.file_stem`. Beside run.json the runner writes status.json and
samples.jsonl (docs/runjson.md)::

    run_dir, record = execute(RunConfig(task=load_task("i2t"), model="oracle", dataset="cxr-phantom",
                                        out=Path("runs"), seed=0, n=16, protocol="coco"))
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

from medbench.conversions import image_header, native_size
from medbench.data.base import Dataset
from medbench.errors import UserError
from medbench.home import medbench_home
from medbench.metrics.base import MetricContext, Scored
from medbench.models.base import ModelContext
from medbench.outputs import OutputError, OutputsFolder, check_output, outputs_digest
from medbench.progress import note
from medbench.records import Request, Sample
from medbench.registry import registry
from medbench.run_status import RunStatus
from medbench.runrecord import RunRecord, write_record
from medbench.safe_names import case_collisions, case_insensitive, file_stem, inside, slug
from medbench.samples_log import write_samples
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
    train_dataset: str | None = None  # --train-dataset SPEC: the train split from another dataset
    name: str | None = None  # --name: a display name for reports and leaderboards (not part of the identity)

    model_content: dict | None = None  # content digest of outputs:DIR or --model-path (set by execute)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the outputs and the numbers (the run id hashes it). Models read
        from files enter by content (`model_content`), not by path: `outputs:DIR` by the digest of
        the files to be scored, ``--model-path`` by the sha256 of its weight files."""
        name, _, arg = self.model.partition(":")
        content = self.model_content
        return {"task": asdict(self.task), "model": name if content and name == "outputs" else self.model,
                "model_content": {k: content.get(k) for k in ("kind", "sha256", "missing")} if content else None,
                "dataset": self.dataset, "seed": self.seed, "n": self.n,
                "protocol": self.protocol, "dataset_options": self.dataset_options, "model_options": self.model_options,
                "model_path": None if content or not self.model_path else str(self.model_path),
                "metric_options": self.metric_options,
                "on_bad_sample": self.on_bad_sample, "domain": self.domain, "n_boot": self.n_boot,
                "train_dataset": self.train_dataset, "commit": git_commit()[0]}


def config_sha256(cfg: RunConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True, default=str).encode()).hexdigest()


def run_id(cfg: RunConfig) -> str:
    """``<task>-<model>-<dataset>-s<seed>-<digest>``: slugs (letters, digits, '-', '_'), so the run
    folder is always one plain name inside --out, whatever the task name or specs hold."""
    model = cfg.model if not cfg.model.startswith("outputs:") else "outputs-" + Path(cfg.model[8:]).name
    return f"{slug(cfg.task.name)}-{slug(model)}-{slug(cfg.dataset)}-s{cfg.seed}-{config_sha256(cfg)[:10]}"


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


def _task_default_n(cfg: RunConfig) -> int:
    quick = cfg.task.options.get("quick", {}) if cfg.metric_options.get("quick") else {}
    return quick.get("n", cfg.task.n)


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


def build_model(cfg: RunConfig, dataset: Dataset, test: list[Sample], image_size: int = 64,
                train: list[Sample] | None = None):
    name, _, arg = cfg.model.partition(":")
    train = dataset.split("train") if train is None else train
    ctx = ModelContext(task=cfg.task, domain=dataset.domain, seed=cfg.seed, train=train, test=test,
                       model_path=cfg.model_path, arg=arg or None, options=cfg.model_options, device=cfg.device,
                       image_size=image_size)
    if name == "outputs":
        from medbench.models.outputs_dir import OutputsDirModel

        return OutputsDirModel(ctx)
    spec = registry().get("models", name)
    if cfg.task.request not in spec.kinds:
        raise UserError(f"model {name!r} does not support {cfg.task.request} requests (it supports {', '.join(spec.kinds)})")
    return spec.factory(ctx)


def model_content(cfg: RunConfig, model, samples: list[Sample]) -> dict | None:
    """The content digest the run id depends on: the files outputs:DIR will have scored (validated
    here, every bad file listed), or the sha256 of the --model-path weights."""
    if hasattr(model, "identity"):
        return model.identity([_light_request(cfg, s) for s in samples])
    if cfg.model_path is not None:
        from medbench.identity import weights_digest

        return weights_digest(cfg.model_path)
    return None


def _light_request(cfg: RunConfig, sample: Sample) -> Request:
    """A request without its decoded image (enough to know which files answer it)."""
    return Request(kind=cfg.task.request, sample_id=sample.id, seed=request_seed(cfg.seed, sample.id), domain=sample.domain)


class LazyPairs:
    """(sample, request, output) triples read from the outputs folder batch by batch, so scoring
    never holds every image in memory. Each file is checked against its logged sha256 as it is
    read, and the hashes of what was scored are kept (`hashes`) for provenance."""

    def __init__(self, task: TaskSpec, samples: list[Sample], folder: OutputsFolder, seed: int, entries: dict[str, dict]):
        self.task, self.samples, self.folder, self.seed, self.entries = task, samples, folder, seed, entries
        self.hashes: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, sl: slice) -> list[Scored]:
        batch = []
        for s in self.samples[sl]:
            out, self.hashes[s.id] = self.folder.read(s, self.task.request, self.entries[s.id])
            batch.append(Scored(s, make_request(self.task, s, self.seed), out))
        return batch


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
    """Produce every output of this rank's shard that is not already logged with matching files.
    A logged output whose file was truncated, replaced or deleted is regenerated (and said so)."""
    mine = [s for i, s in enumerate(samples) if i % world == rank]
    done, stale = folder.verified(cfg.task.request, {s.id for s in mine})
    for problem in stale.values():
        print(f"medbench: {problem}: regenerating it", file=sys.stderr)
    todo = [s for s in mine if s.id not in done]
    if hasattr(model, "check") and not hasattr(model, "identity"):
        model.check([make_request(cfg.task, s, cfg.seed) for s in todo])
    sources = getattr(model, "sources", None)
    bar = tqdm(total=len(todo), desc=f"generate ({cfg.model})" + (f" rank {rank}" if world > 1 else ""), unit="sample")
    for i in range(0, len(todo), cfg.batch_size):
        batch = todo[i:i + cfg.batch_size]
        requests = [make_request(cfg.task, s, cfg.seed) for s in batch]
        outputs = model.generate(requests)
        if len(outputs) != len(requests):
            raise OutputError(f"model {cfg.model!r} returned {len(outputs)} outputs for {len(requests)} requests")
        for out, req in zip(outputs, requests):
            out = check_output(out, req)
            extra = {"image_alpha": _has_alpha(out.image)} if out.image is not None else {}
            if sources is not None:
                extra["source"] = sources.get(req.sample_id)
            folder.write(out, extra)
        bar.update(len(batch))
    bar.close()


def _has_alpha(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def execute(cfg: RunConfig) -> tuple[Path, RunRecord | None]:
    """Run a task end to end; returns (run folder, record) — the record only on rank 0.

    Nothing is created before the dataset, the model and its content digest are known (so a bad
    spec leaves no folder). Once the folder exists, status.json says running / complete / failed.
    """
    from medbench.data.resolve import load_dataset
    from medbench.run_checks import check_label_keys, check_run, check_sample_count, train_split

    check_run(cfg)  # flags, specs and options checked and typed once, before any work (medbench.run_checks)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rank, world = _dist()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.dataset_options, on_bad_sample=cfg.on_bad_sample, domain=cfg.domain)
    check_label_keys(dataset)
    pool = dataset.split(cfg.task.split)
    samples = select_samples(pool, cfg.n)
    if not samples:
        raise UserError(f"dataset {cfg.dataset!r} has no complete image-report pairs in split {cfg.task.split!r}")
    available = len(select_samples(pool, None))
    capped = cfg.n is not None and cfg.n > available and cfg.n == _task_default_n(cfg)
    if not capped:  # an --n the user chose above what the dataset has is refused; the task's default is capped
        check_sample_count(cfg.n, available, cfg.dataset, cfg.task.split)
    train = train_split(cfg, dataset)
    headers = [image_header(s.image_path) for s in samples]
    native = native_size(headers)
    seconds["load"] = time.perf_counter() - t0

    size = native[0] or (int(cfg.dataset_options.get("size", 64)),) * 2
    note(f"loading model {cfg.model} ...")
    model = build_model(cfg, dataset, samples, image_size=max(size), train=train)
    cfg.model_content = model_content(cfg, model, samples)
    rid = run_id(cfg)
    run_dir = cfg.out / rid
    clashes = case_collisions([s.id for s in samples])
    if clashes and case_insensitive(cfg.out):
        shown = "; ".join(" / ".join(repr(i) for i in g) for g in clashes[:10])
        raise UserError(f"--out {cfg.out} is on a case-insensitive file system and {len(clashes)} group(s) of sample ids "
                        f"differ only in case ({shown}): their outputs would overwrite each other; use a case-sensitive "
                        f"folder for --out")
    if not inside(cfg.out, run_dir) or run_dir.name != rid:
        raise RuntimeError(f"run id {rid!r} is not a plain folder name inside {cfg.out} (a bug in run_id)")
    status = RunStatus(run_dir, rid, started, enabled=rank == 0)
    folder = OutputsFolder(run_dir / "outputs", rank)
    status.start(config=cfg.identity())
    try:
        hook = registry().hook()
        hook.medbench_run_start(config=cfg)
        status.stage("generate")
        if rank == 0 and "nlg" in cfg.task.metrics and cfg.protocol == "coco":
            from medbench.metrics.java_meteor import start_spare

            start_spare()  # METEOR's JVM loads (~6 s) while the model generates
        t0 = time.perf_counter()
        generate(cfg, model, samples, folder, rank, world)
        _barrier(world)
        seconds["generate"] = time.perf_counter() - t0
        if world > 1:  # sharded feature pass (medbench.sharded): every rank embeds its shard, rank 0 scores
            from medbench.sharded import prefetch_run

            t0 = time.perf_counter()
            prefetch_run(cfg, dataset, samples, folder, rank, world,
                         lambda entries: LazyPairs(cfg.task, samples, folder, cfg.seed, entries), run_dir)
            _barrier(world)
            seconds["features_sharded"] = time.perf_counter() - t0
        if rank != 0:
            _barrier(world)
            return run_dir, None
        status.stage("score")
        record = _score_and_record(cfg, dataset, samples, folder, model, run_dir, rid, started, seconds, world,
                                   headers, native, train)
        status.complete()
    except BaseException as e:
        status.fail(e)
        raise
    _finish(cfg, record, run_dir)
    _barrier(world)
    return run_dir, record


def _score_and_record(cfg, dataset, samples, folder, model, run_dir, rid, started, seconds, world, headers, native,
                      train):
    from medbench.record_builder import build_record, sample_rows
    from medbench.scoring import build_families, score, select_families

    entries, stale = folder.verified(cfg.task.request)
    missing = [s.id for s in samples if s.id not in entries]
    if missing:
        why = "; ".join(stale[m] for m in missing if m in stale)[:2000]
        raise RuntimeError(f"{run_dir / 'outputs'}: outputs missing for {len(missing)} samples after generation: "
                           f"{missing[:20]}" + (f" ({why})" if why else ""))
    ctx = MetricContext(task=cfg.task, domain=dataset.domain, protocol=cfg.protocol, seed=cfg.seed,
                        cache_dir=medbench_home(),
                        run_dir=run_dir, train=train, reference=samples, options=cfg.metric_options,
                        device=cfg.device, dataset=dataset)
    specs, skipped = select_families(list(cfg.task.metrics), cfg.protocol, cfg.task.request)
    families, unavailable = build_families(specs, ctx)
    skipped += unavailable
    patients = [s.patient_id for s in samples]
    pairs = LazyPairs(cfg.task, samples, folder, cfg.seed, entries)
    results, failed, timing = score(families, pairs, patients, n_boot=cfg.n_boot, seed=cfg.seed, run_dir=run_dir,
                                    world=world)
    seconds.update(timing)
    skipped += failed + [{"what": f"sample:{b.id}", "reason": f"{b.path}: {b.reason}"} for b in dataset.bad]
    if len(pairs.hashes) < len(samples):  # no family read the outputs: hash them now, as they are
        for s in samples:
            if s.id not in pairs.hashes:
                pairs.hashes[s.id] = folder.read(s, cfg.task.request, entries[s.id])[1]
    commit, dirty = git_commit()
    provenance = {"packages": package_versions(), "git_commit": commit, "git_dirty": dirty,
                  "dataset_sha256": dataset.manifest_sha256(), "weights_sha256": {},
                  "outputs_sha256": outputs_digest(pairs.hashes), "command": list(sys.argv), "started": started,
                  "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "seconds": {k: round(v, 3) for k, v in seconds.items()}, "world_size": world,
                  "python": sys.version.split()[0], "platform": platform.platform()}
    row_shards = {r.family: r.metric.gathered_rows for r in results if r.metric.gathered_rows}
    if row_shards:  # under torchrun: the pair rows each rank scored for the model-based text families
        provenance["row_shards"] = row_shards
    record, per_sample = build_record(cfg, rid, dataset, samples, results, skipped, provenance, entries, headers, native,
                                      model_weights=dict(getattr(model, "weights_sha256", {}) or {}),
                                      model_settings=_model_settings(model),
                                      config_sha256=config_sha256(cfg))
    if len(samples) < _task_default_n(cfg) and cfg.n == _task_default_n(cfg):
        record["warnings"].append({"family": None, "metric": None, "message":
                                   f"the task's default n={cfg.n} is more than split {cfg.task.split!r} of {cfg.dataset!r} "
                                   f"has; {len(samples)} samples were scored (pass --n to choose)"})
    if cfg.train_dataset:
        record["options"]["train_dataset"] = cfg.train_dataset
    _write_sidecars(run_dir, samples)
    write_samples(run_dir, sample_rows(cfg, samples, entries, per_sample, folder))
    write_record(record, run_dir / "run.json")
    return record


def _model_settings(model) -> dict[str, Any] | None:
    """What the model says it did (its effective options, classes, prompts...), for run.json."""
    settings = getattr(model, "settings", None)
    return settings() if callable(settings) else settings


def _write_sidecars(run_dir: Path, samples: list[Sample]) -> None:
    (run_dir / "samples.json").write_text(json.dumps({"ids": [s.id for s in samples], "patients": [s.patient_id for s in samples]}))
    with open(run_dir / "references.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps({"id": s.id, "patient_id": s.patient_id, "report": s.report, "prompt": s.prompt_text(),
                                "image_path": str(s.image_path) if s.image_path else None, "labels": s.labels,
                                "file_stem": file_stem(s.id)}) + "\n")


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
