"""Fabricate finished run folders (run.json per RunRecord, samples, stats, extras, outputs) for the
report / store / leaderboard / compare tests, without running a model.

Values come from a small real metric family (`ToyFamily`: per-sample correctness and a score),
its pure compute and the real patient bootstrap, so CIs and paired tests behave as in real runs.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from safetensors.numpy import load_file, save_file

from medbench.metrics.base import Metric
from medbench.runrecord import SCHEMA_VERSION, write_record
from medbench.stats.bootstrap import bootstrap_ci

XSS = 'Heart size normal. <script>document.title="pwned";document.body.setAttribute("data-xss","1")</script> ' \
      '<img src=x onerror="document.body.setAttribute(\'data-xss\',\'2\')"> No effusion.'
LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion", "Pneumothorax", "No Finding"]


class ToyFamily(Metric):
    """A real (tiny) metric family: accuracy, error rate and mean score from per-sample rows."""

    name = "toy"
    variant = "test family: per-sample correctness and score"
    higher_is_better = {"toy.acc": True, "toy.err": False, "toy.score": True}

    def update(self, batch):  # the fabricated runs store stats directly
        raise NotImplementedError

    def stats(self):
        raise NotImplementedError

    def compute(self, stats):
        c = np.asarray(stats["correct"], dtype=np.float64)
        return {"toy.acc": float(c.mean()), "toy.err": float(1 - c.mean()), "toy.score": float(np.mean(stats["score"]))}


def toy_loader(run_dir: Path, family: str):
    """Same contract as medbench.scoring.load_family, for the toy family."""
    path = Path(run_dir) / "stats" / f"{family}.safetensors"
    if family != "toy" or not path.exists():
        raise FileNotFoundError(f"{path}: no stored statistics for {family!r}")
    samples = json.loads((Path(run_dir) / "samples.json").read_text())
    return ToyFamily(), load_file(str(path)), samples["ids"], samples["patients"]


def _image(path: Path, seed: int, size: int = 48) -> None:
    rng = np.random.default_rng(seed)
    im = Image.fromarray((rng.random((size, size)) * 60).astype(np.uint8), "L")
    d = ImageDraw.Draw(im)
    r = int(rng.integers(8, 16))
    d.ellipse([size // 2 - r, size // 2 - r, size // 2 + r, size // 2 + r], fill=int(rng.integers(150, 255)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def make_run(root: Path, model: str, *, quality: float = 0.8, seed: int = 0, n: int = 40, task: str = "joint_pairs",
             dataset: str = "cxr-phantom", run_id: str | None = None, commit: str = "a1b2c3d4e5f6", finished: str = "2025-01-01T00:00:00Z",
             report_text: str | None = None, first_id: int = 0, n_boot: int = 200, with_stats: bool = True) -> Path:
    """Write a finished run folder under ``root`` and return it."""
    run_id = run_id or f"{task}-{model}-s{seed}-{commit[:6]}"
    run_dir = Path(root) / run_id
    (run_dir / "outputs").mkdir(parents=True, exist_ok=True)
    ids = [f"cxr-{i:04d}" for i in range(first_id, first_id + n)]
    patients = [f"pat-{i // 2:04d}" for i in range(first_id, first_id + n)]
    rng = np.random.default_rng([seed, zlib.crc32(model.encode())])
    truth = np.random.default_rng(first_id).random(n)  # a per-sample difficulty shared by every model
    stats = {"correct": (truth < quality + 0.1 * rng.standard_normal(n)).astype(np.float64),
             "score": np.clip(quality - 0.3 * truth + 0.05 * rng.standard_normal(n), 0, 1)}
    family = ToyFamily()
    values = family.compute(stats)
    cis = bootstrap_ci(family.compute, stats, patients, n_boot=n_boot, seed=seed)
    metrics = {name: {"value": v, "ci_low": cis[name][0], "ci_high": cis[name][1], "higher_is_better": family.higher_is_better[name],
                      "n": n, "family": "toy", "variant": family.variant} for name, v in values.items()}
    fid = 5 + 60 * (1 - quality)
    metrics["image.fid@phantom-encoder"] = {"value": fid, "ci_low": fid * 0.9, "ci_high": fid * 1.1, "higher_is_better": False,
                                            "n": n, "family": "image.fidelity", "variant": "phantom-encoder 256-d, bilinear 64 px"}
    metrics["image.fid_floor@phantom-encoder"] = {"value": 3.1, "ci_low": 2.6, "ci_high": 3.7, "higher_is_better": False,
                                                  "n": n, "family": "image.fidelity", "variant": "real vs real split halves"}
    refs = []
    for k, sid in enumerate(ids):
        ref_png = Path(root) / "reference" / f"{sid}.png"
        if not ref_png.exists():
            _image(ref_png, first_id + k)
        _image(run_dir / "outputs" / f"{sid}.png", 10_000 + k + seed)
        text = report_text if report_text is not None and k == 0 else f"Generated report {k}: mild cardiomegaly. No pneumothorax."
        (run_dir / "outputs" / f"{sid}.txt").write_text(text, encoding="utf-8")
        refs.append({"id": sid, "patient_id": patients[k], "report": f"Reference report {k}. Moderate cardiomegaly.",
                     "image_path": str(ref_png), "prompt": "Cardiomegaly.", "labels": {"Cardiomegaly": 1, "Pleural Effusion": 0}})
    (run_dir / "outputs" / "index.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in ids))
    (run_dir / "references.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    (run_dir / "samples.json").write_text(json.dumps({"ids": ids, "patients": patients}))
    if with_stats:
        (run_dir / "stats").mkdir(exist_ok=True)
        save_file({k: np.ascontiguousarray(v) for k, v in stats.items()}, str(run_dir / "stats" / "toy.safetensors"))
    extras = run_dir / "extras"
    extras.mkdir(exist_ok=True)
    (extras / "clinical.json").write_text(json.dumps({"per_label": {
        lab: {"precision": 0.5 + 0.05 * j, "recall": 0.6, "f1": 0.55 + 0.04 * j, "f1_ci": [0.45 + 0.04 * j, 0.65 + 0.04 * j], "support": 10 + j}
        for j, lab in enumerate(LABELS)}}))
    (extras / "pair.consistency.json").write_text(json.dumps({"per_sample": {
        sid: {"image_labels": {"Cardiomegaly": 1, "Pleural Effusion": int(k % 3 == 0)}, "report_labels": {"Cardiomegaly": 1, "Pleural Effusion": 0}}
        for k, sid in enumerate(ids)}}))
    (extras / "memorization.json").write_text(json.dumps({"neighbours": [
        {"id": sid, "train_ids": [f"train-{k}", f"train-{k + 1}"], "distance": 0.1 * (k + 1),
         "train_image_paths": [str(Path(root) / "reference" / f"{ids[(k + 1) % n]}.png"), str(Path(root) / "reference" / f"{ids[(k + 2) % n]}.png")]}
        for k, sid in enumerate(ids[:5])]}))
    record = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "task": task, "model": model, "dataset": dataset,
        "domain": "cxr", "split": "test", "n": n, "seed": seed, "protocol": "coco", "bootstrap": n_boot,
        "metrics": metrics, "primary_metric": "toy.acc",
        "provenance": {"packages": {"numpy": np.__version__}, "git_commit": commit, "git_dirty": False,
                       "dataset_sha256": "0" * 64, "weights_sha256": {}, "outputs_sha256": "1" * 64,
                       "command": ["medbench", "run", "--task", task, "--model", model], "started": finished,
                       "finished": finished, "seconds": {"generate": 1.5, "score": 0.7}, "world_size": 1,
                       "python": "3.11", "platform": "linux"},
        "skipped": [{"what": "metric:nlg.coco", "reason": "SPICE unavailable: CoreNLP models not present"}],
        "options": {"model": {}, "dataset": {}, "metric": {}},
    }
    write_record(record, run_dir / "run.json")
    return run_dir
