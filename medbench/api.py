"""The Python API: the runs, scores and comparisons of the CLI, for notebooks and other tools.

    import medbench
    run = medbench.evaluate(task="i2t", model="retrieval", n=50, out="runs", store=None)
    run.primary                    # ("nlg.coco.bleu4", {"value": .., "ci_low": .., "ci_high": .., ...})
    run["clinical.ce_f1.micro14.pos"]["value"]

    s = medbench.score_reports(["No effusion.", ...], ["No pleural effusion.", ...], metrics=("nlg", "clinical"))
    s["nlg.coco.bleu4"]            # {"value", "ci_low", "ci_high", "higher_is_better", "n", "family", "variant"}
    s.per_sample["nlg.coco.rougeL"]

    s = medbench.score_images(real=["a.png", ...], generated=[pil_image, "b.png", ...])
    table = medbench.compare("runs/A", "runs/B")     # list of compare.Row (Δ, paired CI, p)

`score_reports` / `score_images` build Samples, Requests and Outputs in memory and run the same metric
families, in the same batches, with the same patient bootstrap as `medbench run` (medbench.scoring):
on the same pairs and patient ids they give the same numbers. One METEOR JVM serves every call in a
process (started at the first METEOR score, stopped at exit). Full guide: docs/api.md.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from medbench.errors import UserError
from medbench.run_config import DEFAULT_STORE, RUN_KEYWORDS, make_run_config

_METEOR = None  # the process's METEOR JVM (java_meteor.MeteorJVM), started on first use


# -- results -----------------------------------------------------------------------------------

@dataclass
class Scores:
    """Metric values with 95 % CIs (``values[name]``: value, ci_low, ci_high, higher_is_better, n, bootstrap,
    family, variant), per-sample values (``per_sample[key]``: one per input pair) and skipped families."""

    values: dict[str, dict[str, Any]]
    per_sample: dict[str, list] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in self.values:
            raise KeyError(f"{name!r} was not computed; computed: {', '.join(self.values) or 'none'}")
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def table(self) -> list[tuple[str, float | None, float | None, float | None]]:
        """(name, value, ci_low, ci_high) rows, for printing or a DataFrame."""
        return [(k, v["value"], v["ci_low"], v["ci_high"]) for k, v in self.values.items()]


@dataclass
class RunResult:
    """A finished run: its folder and its run.json record."""

    run_dir: Path
    record: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.record.get("metrics", {})

    @property
    def primary(self) -> tuple[str | None, dict[str, Any] | None]:
        name = self.record.get("primary_metric")
        return name, self.metrics.get(name) if name else None

    @property
    def report_path(self) -> Path | None:
        path = self.run_dir / "report.html"
        return path if path.exists() else None

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in self.metrics:
            raise KeyError(f"{name!r} is not in {self.run_dir / 'run.json'}; metrics: {', '.join(self.metrics) or 'none'}")
        return self.metrics[name]

    def samples(self) -> list[dict[str, Any]]:
        """samples.jsonl: one dict per scored sample (inputs, outputs, per-sample scores)."""
        from medbench.samples_log import read_samples

        return read_samples(self.run_dir)


# -- evaluate ----------------------------------------------------------------------------------

def evaluate(task: Any, model: str, dataset: str | None = None, n: int | str | None = None, seed: int | None = None,
             out: str | Path = "runs", *, store: str | Path | None = DEFAULT_STORE, allow_missing_primary: bool = False,
             **options: Any) -> RunResult:
    """Run a task end to end, exactly as ``medbench run`` does: the same checks before any work, the same
    RunConfig (`make_run_config`, which the CLI's flags map onto), run folder and numbers, and the same
    store rule (a run whose primary metric is missing is not stored unless ``allow_missing_primary``).

    ``n``: a count or "all". ``store``: the results store (None disables). ``options``: the other run
    flags by their Python names: protocol, quick, dataset_options, model_options, metric_options (dicts),
    model_path, on_bad_sample, domain, batch_size, n_boot (``--bootstrap``), device (default "auto"),
    report.
    """
    from medbench.run_checks import check_numbers, check_out, check_store
    from medbench.runner import execute

    unknown = sorted(set(options) - set(RUN_KEYWORDS) - {"store"})
    if unknown:
        raise UserError(f"medbench.evaluate: unknown option(s) {', '.join(unknown)} (allowed: {', '.join(RUN_KEYWORDS)}, "
                        "allow_missing_primary)")
    options.setdefault("device", "auto")
    if n == "all":
        n_all, n = True, None
    elif n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise UserError(f"medbench.evaluate: n must be a whole number or 'all', got {n!r}")
    else:
        n_all = False
    check_numbers(seed or 0, options.get("batch_size", 16), options.get("n_boot", 1000), n)
    check_out(Path(out))
    if store:
        check_store(Path(store))
    cfg = make_run_config(task=task, model=model, dataset=dataset, n=n, seed=seed, out=out, store=None, **options)
    if n_all:
        cfg.n = None  # every complete pair of the split, as `--n all`
    run_dir, record = execute(cfg)
    if record is None:  # a non-zero rank under torchrun: rank 0 holds the record
        from medbench.runrecord import load_record

        record = load_record(run_dir) if (run_dir / "run.json").exists() else {}
    record = dict(record)
    if store and record:
        from medbench.console import primary_missing
        from medbench.store import Store

        missing = primary_missing(record)
        if missing and not allow_missing_primary:
            raise UserError(f"{missing}; the run was not stored (pass allow_missing_primary=True to accept it); "
                            f"run folder: {run_dir}")
        Store(store).add_run(record, run_dir)
    return RunResult(Path(run_dir), record)


# -- scoring plain lists -----------------------------------------------------------------------

def shared_meteor():
    """The process's METEOR 1.5 JVM (pycocoevalcap's command line), started once and reused."""
    global _METEOR
    from medbench.metrics.java_meteor import MeteorJVM

    if _METEOR is None or _METEOR.process.poll() is not None:
        _METEOR = MeteorJVM()
    return _METEOR


def _share_meteor(metric):
    """The coco text family with the process's JVM instead of one of its own (same class, same numbers)."""
    from medbench.metrics.text_coco import CocoText

    if type(metric) is CocoText and metric.with_meteor:
        metric.close()
        return CocoText(meteor=shared_meteor(), with_meteor=True)
    return metric


def _task(name: str, request: str, metrics: Sequence[str], n: int, seed: int, protocol: str):
    from medbench.tasks import TaskSpec

    return TaskSpec(name=name, description="in-memory scoring (medbench.api)", dataset="in-memory", split="test",
                    request=request, metrics=tuple(metrics), n=max(n, 1), seeds=(seed,), protocol=protocol)


def _patients(patient_ids: Sequence[str] | None, n: int, what: str) -> list[str]:
    if patient_ids is None:
        return [f"sample-{i}" for i in range(n)]  # every pair its own patient
    if len(patient_ids) != n:
        raise UserError(f"{what}: {len(patient_ids)} patient_ids for {n} pairs (give one per pair, or None)")
    return [str(p) for p in patient_ids]


def _metric_value(value: float, ci: tuple[Any, Any], res, name: str, n: int) -> dict[str, Any]:
    def finite(x):
        return None if x is None or not math.isfinite(float(x)) else float(x)

    return {"value": finite(value), "ci_low": finite(ci[0]), "ci_high": finite(ci[1]),
            "higher_is_better": bool(res.metric.higher_is_better[name]), "n": n, "bootstrap": res.n_boot,
            "family": res.family, "variant": res.metric.variant}


def _run_families(task, pairs, patients: list[str], *, domain: str, options: dict[str, Any], n_boot: int, seed: int,
                  reference: list, train: list | None = None) -> Scores:
    """select -> build -> score -> bootstrap, as `runner.execute` does it."""
    from medbench.home import medbench_home
    from medbench.metrics.base import MetricContext
    from medbench.scoring import build_families, score, select_families

    if n_boot < 0:
        raise UserError(f"n_boot must be ≥ 0, got {n_boot}")
    try:
        specs, skipped = select_families(list(task.metrics), task.protocol, task.request)
    except KeyError as e:
        raise UserError(f"unknown metric family: {str(e).strip(chr(34))}") from None
    ctx = MetricContext(task=task, domain=domain, protocol=task.protocol, seed=seed, cache_dir=medbench_home(),
                        reference=reference, train=list(train or []), options=dict(options))
    families, unavailable = build_families(specs, ctx)
    families = [_share_meteor(m) for m in families]
    results, failed, _ = score(families, pairs, patients, n_boot=n_boot, seed=seed, run_dir=None)
    values, per_sample = {}, {}
    for res in results:
        for name, value in res.values.items():
            values[name] = _metric_value(value, res.cis.get(name, (None, None)), res, name, len(pairs))
        per_sample.update(res.metric.per_sample(res.stats))
    return Scores(values, per_sample, skipped + unavailable + failed)


def score_reports(references: Sequence[str], hypotheses: Sequence[str | None], metrics: Sequence[str] = ("nlg", "clinical"),
                  protocol: str = "coco", patient_ids: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                  domain: str = "cxr", options: dict[str, Any] | None = None) -> Scores:
    """Score generated reports against references with the runner's text/clinical families.

    ``metrics``: family names as in a task (``nlg`` = the protocol's text family, ``clinical``, ...);
    ``protocol``: ``coco`` (pycocoevalcap) or ``medim-paper``; ``patient_ids``: one per pair, for the
    patient bootstrap (default: each pair its own patient). ``None`` or "" hypotheses are scored as
    empty reports (zero), as in a run.
    """
    from medbench.metrics.base import Scored
    from medbench.records import Output, Request, Sample

    if len(references) != len(hypotheses):
        raise UserError(f"score_reports: {len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise UserError("score_reports: no pairs to score")
    bad = [i for i, r in enumerate(references) if not isinstance(r, str) or not r.strip()]
    if bad:
        raise UserError(f"score_reports: references {bad[:10]} are empty or not text (every pair needs a reference report)")
    patients = _patients(patient_ids, len(references), "score_reports")
    pairs, samples = [], []
    for i, (ref, hyp) in enumerate(zip(references, hypotheses)):
        sample = Sample(id=f"sample-{i}", patient_id=patients[i], domain=domain, split="test", image_path=None, report=ref)
        request = Request(kind="image->report", sample_id=sample.id, seed=seed, domain=domain)
        samples.append(sample)
        pairs.append(Scored(sample, request, Output(sample.id, report=hyp or "")))
    task = _task("api.score_reports", "image->report", metrics, len(pairs), seed, protocol)
    return _run_families(task, pairs, patients, domain=domain, options=options or {}, n_boot=n_boot, seed=seed,
                         reference=samples)


class _LazyImagePairs:
    """(sample, request, output) triples whose generated images are opened batch by batch."""

    def __init__(self, samples, generated, seed: int):
        self.samples, self.generated, self.seed = samples, generated, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, sl: slice):
        from medbench.metrics.base import Scored
        from medbench.records import Output, Request

        out = []
        for s, g in zip(self.samples[sl], self.generated[sl]):
            out.append(Scored(s, Request(kind="report->image", sample_id=s.id, seed=self.seed, domain=s.domain),
                              Output(s.id, image=_open_image(g))))
        return out


def _open_image(item):
    from PIL import Image

    if item is None or isinstance(item, Image.Image):
        return item
    path = Path(item)
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read this image ({e})") from None


def score_images(real: Sequence[Any], generated: Sequence[Any], extractor: str = "phantom-encoder",
                 metrics: Sequence[str] = ("image.fidelity",), weights: str | None = None,
                 patient_ids: Sequence[str] | None = None, n_boot: int = 200, seed: int = 0, domain: str = "cxr",
                 options: dict[str, Any] | None = None) -> Scores:
    """FID/KID/precision/recall/density/coverage (+ the real-vs-real floor) of generated images against
    real ones, with the runner's image family and feature cache. ``real``/``generated``: file paths or
    PIL images, paired by position (pairing only matters for the patient bootstrap).
    ``extractor``: a registered feature extractor (``medbench list extractors``), ``weights`` its local
    weights when it needs them. The image family caps resamples at 200 (as in a run)."""
    if len(real) != len(generated):
        raise UserError(f"score_images: {len(real)} real but {len(generated)} generated images")
    if not real:
        raise UserError("score_images: no images to score")
    from PIL import Image

    from medbench.records import Sample

    patients = _patients(patient_ids, len(real), "score_images")
    with tempfile.TemporaryDirectory(prefix="medbench-real-") as tmp:
        paths = []
        for i, item in enumerate(real):
            if isinstance(item, Image.Image):  # the family reads real images from files: save them losslessly
                item.save(Path(tmp) / f"real-{i}.png")
                paths.append(Path(tmp) / f"real-{i}.png")
            elif Path(item).is_file():
                paths.append(Path(item))
            else:
                raise UserError(f"score_images: real image {i} ({item!r}) is neither a PIL image nor an existing file")
        samples = [Sample(id=f"sample-{i}", patient_id=patients[i], domain=domain, split="test", image_path=p, report=None)
                   for i, p in enumerate(paths)]
        opts = {"extractor": extractor, **({"weights": weights} if weights else {}), **(options or {})}
        task = _task("api.score_images", "report->image", metrics, len(samples), seed, "coco")
        return _run_families(task, _LazyImagePairs(samples, list(generated), seed), patients, domain=domain,
                             options=opts, n_boot=n_boot, seed=seed, reference=samples)


# -- compare -----------------------------------------------------------------------------------

def compare(run_a: str | Path, run_b: str | Path, *, n_perm: int = 1000, n_boot: int = 1000, seed: int = 0,
            store: str | Path | None = None) -> list:
    """The paired table of ``medbench compare A B``: one `medbench.compare.Row` per metric (Δ = b − a,
    paired CI, permutation p), from two run folders or ``store:KEY=VALUE`` queries."""
    from medbench.compare import compare_runs, resolve_side
    from medbench.store import DEFAULT_STORE

    where = store or DEFAULT_STORE
    return compare_runs(resolve_side(str(run_a), where), resolve_side(str(run_b), where), n_perm=n_perm, n_boot=n_boot, seed=seed)
