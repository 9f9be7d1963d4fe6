"""Run folders in the schema-2 shape (docs/runjson.md) for the report, browser and API tests:
`runfolders.make_run` plus samples.jsonl, the request kind, warnings, conversions, per-sample
directions, label-fidelity-style per-label tables and memorization neighbours as the families write
them (``distances`` lists, nearest first within a sample, samples in no particular order).

Disagreements are planted, not random: sample k's generated image shows a pleural effusion when
k % 3 == 0 while its report never does, so a joint-pairs gallery must mark exactly those samples.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from runfolders import make_run
from safetensors.numpy import load_file

from medbench.runrecord import write_record

LABELS = ["Cardiomegaly", "Pleural Effusion", "Edema"]


def image_labels(k: int) -> dict[str, int]:
    return {"Cardiomegaly": 1, "Pleural Effusion": int(k % 3 == 0), "Edema": 0}


def report_labels(k: int) -> dict[str, int]:
    return {"Cardiomegaly": 1, "Pleural Effusion": 0, "Edema": -1 if k % 4 == 1 else 0}


def make_v2_run(root: Path, model: str, *, request: str = "prompt->pair", name: str | None = None,
                conversions: bool = True, **kwargs) -> Path:
    run = make_run(root, model, **kwargs)
    record = json.loads((run / "run.json").read_text())
    samples = json.loads((run / "samples.json").read_text())
    refs = [json.loads(line) for line in (run / "references.jsonl").read_text().splitlines()]
    stats = load_file(str(run / "stats" / "toy.safetensors"))
    rows = []
    for k, (sid, ref) in enumerate(zip(samples["ids"], refs)):
        text = (run / "outputs" / f"{sid}.txt").read_text(encoding="utf-8")
        makes_image, makes_text = request != "image->report", request != "report->image"
        rows.append({
            "schema_version": 2, "row": k, "id": sid, "patient_id": ref["patient_id"], "split": "test", "file_stem": sid,
            "request": request,
            "inputs": {"report": ref["report"] if request == "report->image" else None,
                       "image_path": ref["image_path"] if request == "image->report" else None,
                       "prompt": ref["prompt"] if request == "prompt->pair" else None, "seed": 1000 + k},
            "reference": {"report": ref["report"], "image_path": ref["image_path"], "labels": ref["labels"]},
            "outputs": {"image_path": f"outputs/{sid}.png" if makes_image else None,
                        "report_path": f"outputs/{sid}.txt" if makes_text else None, "report": text if makes_text else None,
                        "image_size": [48, 48] if makes_image else None, "image_mode": "L" if makes_image else None, "source": None},
            "conversions": ["resize 48x48 -> 64x64"] if conversions and k < 2 else [],
            "scores": {"toy.correct": float(stats["correct"][k]), "toy.score": float(stats["score"][k]),
                       "memorization.gen_nn": 0.05 + 0.01 * ((7 * k) % 11),
                       "pair.consistency.image_labels": image_labels(k), "pair.consistency.report_labels": report_labels(k),
                       "pair.consistency.agreement": float(image_labels(k) == report_labels(k))},
        })
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ids = samples["ids"]
    order = [3, 0, 4, 1, 2]  # unsorted on purpose: the report sorts by the nearest distance
    neighbours = []
    for k in order:
        near = 0.02 * (k + 1)
        neighbours.append({"id": ids[k], "train_ids": [f"train-{k}", f"train-{k + 1}", f"train-{k + 2}"],
                           "distances": [near, near + 0.01, near + 0.03],
                           **({"train_image_paths": [ref["image_path"] for ref in refs[k + 1:k + 4]]} if k % 2 == 0 else {})})
    (run / "extras" / "memorization.json").write_text(json.dumps({
        "parts": ["image"], "n_train": 400, "distance": "cosine", "extractor": "phantom-encoder", "neighbours": neighbours,
        "real_p1": 0.05, "real_median": 0.09}))
    (run / "extras" / "image.label_fidelity.json").write_text(json.dumps({"labels": LABELS, "per_label": {
        "generated": [{"label": lab, "auroc": 0.7 + 0.1 * j, "f1": 0.5 + 0.1 * j, "support": 5 + j, "predicted": 6} for j, lab in enumerate(LABELS)],
        "n_generated": len(ids),
        "real": [{"label": lab, "auroc": 0.9, "f1": 0.8, "support": 5 + j, "predicted": 5} for j, lab in enumerate(LABELS)],
        "n_real": len(ids)}}))
    record.update({
        "request": request, "status": "complete",
        "warnings": [{"family": "image.fidelity", "metric": "image.fid@phantom-encoder",
                      "message": f"FID on {len(ids)} samples with 256 feature dimensions: the covariance is rank-deficient"}],
        "conversions": {"counts": {"resize": 2} if conversions else {}, "samples": 2 if conversions else 0,
                        "reference": {"size": [64, 64], "mode": "L"}},
        "per_sample": {"toy.correct": {"family": "toy", "higher_is_better": True},
                       "toy.score": {"family": "toy", "higher_is_better": True},
                       "memorization.gen_nn": {"family": "memorization", "higher_is_better": True},
                       "pair.consistency.agreement": {"family": "pair.consistency", "higher_is_better": True}},
    })
    if name is not None:
        record["name"] = name
    write_record(record, run / "run.json")
    return run


def disagreeing_ids(run: Path) -> list[str]:
    """Samples whose generated image and report disagree on a positive label (from samples.jsonl)."""
    out = []
    for line in (run / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        img, rep = row["scores"]["pair.consistency.image_labels"], row["scores"]["pair.consistency.report_labels"]
        if any((img.get(k) == 1) != (rep.get(k) == 1) for k in set(img) | set(rep)):
            out.append(row["id"])
    return out


def scores(run: Path, key: str) -> dict[str, float]:
    return {json.loads(l)["id"]: json.loads(l)["scores"][key] for l in (run / "samples.jsonl").read_text().splitlines()}


def sorted_ids(values: dict[str, float], higher_is_better: bool = True) -> list[str]:
    ids = list(values)
    return [ids[i] for i in np.argsort([values[i] if higher_is_better else -values[i] for i in ids], kind="stable")]
