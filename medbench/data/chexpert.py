"""CheXpert and CheXpert Plus from the user's own copy (Stanford AIMI licence; nothing bundled).

CheXpert v1.0 (images + labels, no reports)::

    PATH/train.csv  PATH/valid.csv  [PATH/test_labels.csv | PATH/test.csv]
        Path, Sex, Age, Frontal/Lateral, AP/PA, 14 observations (1.0, 0.0, -1.0, blank)
        Path = CheXpert-v1.0[-small]/train/patient00001/study1/view1_frontal.jpg

CheXpert Plus (reports with sections, DICOM or PNG)::

    PATH/df_chexpert_plus_240401.csv
        path_to_image, path_to_dcm, frontal_lateral, ap_pa, deid_patient_id, report,
        section_findings, section_impression, ..., split (train | valid)
    PATH/<path_to_image> (or its .png), PATH/<path_to_dcm>      the files
    [PATH/chexbert_labels/report_fixed.json]   JSON lines: path_to_image + 14 observations

Splits are the official ones (train / valid -> val / test). Patient = ``patientNNNNN`` from the
path (CheXpert Plus: its ``deid_patient_id`` column). ``views``: all (default), frontal, lateral,
or a comma list of AP/PA values (AP, PA, LL, RL). Paths in the CSVs are taken relative to PATH,
or to its parent when they start with PATH's own folder name (``CheXpert-v1.0/train/...``).

Usage::

    --dataset chexpert:/data/CheXpert-v1.0 --dataset-opt views=frontal
    --dataset chexpert-plus:/data/chexpert-plus --dataset-opt section=impression --dataset-opt images=dcm
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from medbench.data import sections
from medbench.data.base import BadSample, Dataset
from medbench.data.local_copy import MAX_CHARS, PATH, FRONTAL, find_csv, open_root, read_csv, split_name
from medbench.data.validate import DatasetError, normalize_labels, report_problem
from medbench.options import Option
from medbench.records import Sample

SPLIT_FILES = (("train", "train"), ("valid", "val"), ("test_labels", "test"), ("test", "test"))
PLUS_CSV = "df_chexpert_plus_240401"
PLUS_LABELS = Path("chexbert_labels") / "report_fixed.json"
_PATIENT = re.compile(r"(patient\d+)")
NOT_LABELS = {"Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "path_to_image", "path_to_dcm"}
VIEWS = Option("views", str, "all", "all, frontal, lateral, or a comma list of AP/PA values (AP, PA, LL, RL)")

OPTIONS = (PATH, VIEWS)
PLUS_OPTIONS = (
    PATH,
    VIEWS,
    Option("images", str, "as-listed", "image files: as-listed (path_to_image), png (same path, .png) or dcm "
           "(path_to_dcm)", choices=("as-listed", "png", "dcm")),
    Option("labels", Path, None, f"JSON-lines label file (default: PATH/{PLUS_LABELS} if present, else no labels)"),
    *sections.OPTIONS,
    MAX_CHARS,
)


def load_chexpert(options: dict | None = None) -> Dataset:
    """CheXpert v1.0: one Sample per image with its labels; no reports (image-side tasks only)."""
    opts, root = open_root(options, "chexpert", OPTIONS, "train.csv, valid.csv and the image folders")
    if find_csv(root, "train") is None and find_csv(root, "valid") is None:  # PATH is the release's parent folder
        root = next((d for d in sorted(root.glob("CheXpert-v1.0*")) if find_csv(d, "train") or find_csv(d, "valid")), root)
    keep = _view_test(opts["views"])
    samples, bad, seen = [], [], set()
    for stem, split in SPLIT_FILES:
        path = find_csv(root, stem)
        if path is None or split in seen:
            continue
        seen.add(split)
        rows = read_csv(path, dataset="chexpert", required=("Path",))
        base = _base(root, rows[0]["Path"] if rows else "")
        for number, row in enumerate(rows, start=2):
            if not keep(row.get("Frontal/Lateral", ""), row.get("AP/PA", "")):
                continue
            where = f"{path}:{number}"
            sample = _image_sample(row["Path"], base, split, _label_cells(row), None, None, where, bad)
            if sample is not None:
                samples.append(sample)
    if not seen:
        raise DatasetError(f"chexpert: no train.csv, valid.csv or test_labels.csv in {root}")
    return Dataset("chexpert", "cxr", samples, source=f"chexpert:{root.resolve()}", bad=bad,
                   preprocessing={"views": opts["views"], "labels": "CheXpert CSV (uncertain kept as -1)"})


def load_chexpert_plus(options: dict | None = None) -> Dataset:
    """CheXpert Plus: one Sample per image with its report section(s) and, when present, labels."""
    opts, root = open_root(options, "chexpert-plus", PLUS_OPTIONS, f"{PLUS_CSV}.csv and the image folders")
    path = find_csv(root, PLUS_CSV) or next(iter(sorted(root.glob("df_chexpert_plus*.csv"))), None)
    if path is None:
        raise DatasetError(f"chexpert-plus: {root / PLUS_CSV}.csv not found")
    rows = read_csv(path, dataset="chexpert-plus", required=("path_to_image", "report", "split"))
    protocol = sections.ReportProtocol.from_options(opts)
    labels_file = opts["labels"] or (root / PLUS_LABELS if (root / PLUS_LABELS).is_file() else None)
    labels_of = _plus_labels(Path(labels_file)) if labels_file else {}
    keep = _view_test(opts["views"])
    base = _base(root, rows[0]["path_to_image"] if rows else "")
    samples, bad = [], []
    for number, row in enumerate(rows, start=2):
        if not keep(row.get("frontal_lateral", ""), row.get("ap_pa", "")):
            continue
        where = f"{path}:{number}"
        split = split_name(row["split"] or "")
        if split is None:
            bad.append(BadSample(row["path_to_image"], where, f"split {row['split']!r} is not train, valid or test"))
            continue
        parts = {"findings": row.get("section_findings") or "", "impression": row.get("section_impression") or ""}
        report, problem = protocol.apply(row["report"] or "", parts)
        if not problem:
            problem = report_problem(report, opts["max_report_chars"])
        if problem:
            bad.append(BadSample(row["path_to_image"], where, problem))
            continue
        image = {"as-listed": row["path_to_image"], "png": os.path.splitext(row["path_to_image"])[0] + ".png",
                 "dcm": row.get("path_to_dcm") or ""}[opts["images"]]
        labels = labels_of.get(row["path_to_image"])
        sample = _image_sample(image, base, split, labels, report, row.get("deid_patient_id"), where, bad,
                               sample_id=row["path_to_image"])
        if sample is not None:
            samples.append(sample)
    preprocessing = {"report": protocol.describe(), "views": opts["views"], "images": opts["images"],
                     "labels": str(labels_file) if labels_file else "none"}
    return Dataset("chexpert-plus", "cxr", samples, source=f"chexpert-plus:{root.resolve()}", bad=bad,
                   preprocessing=preprocessing)


def _view_test(views: str):
    """A predicate on (Frontal/Lateral, AP/PA) cells for the views option."""
    text = views.strip().lower()
    if text == "all":
        return lambda fl, appa: True
    if text == "frontal":
        return lambda fl, appa: fl.strip().lower() == "frontal" or (not fl and appa.strip().upper() in FRONTAL)
    if text == "lateral":
        return lambda fl, appa: fl.strip().lower() == "lateral"
    wanted = {v.strip().upper() for v in views.split(",") if v.strip()}
    if not wanted <= {"AP", "PA", "LL", "RL"}:
        raise DatasetError(f"views must be all, frontal, lateral or a comma list of AP, PA, LL, RL; got {views!r}")
    return lambda fl, appa: appa.strip().upper() in wanted


def _base(root: Path, first_path: str) -> Path:
    """Where CSV paths are relative to: PATH, or its parent when they start with PATH's folder name."""
    head = first_path.replace("\\", "/").split("/", 1)[0]
    if head and head == root.name and not (root / head).exists():
        return root.parent
    return root


def _patient(path: str) -> str | None:
    m = _PATIENT.search(path)
    return m.group(1) if m else None


def _label_cells(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in NOT_LABELS}


def _image_sample(image: str, base: Path, split: str, raw_labels, report, patient, where, bad,
                  sample_id: str | None = None) -> Sample | None:
    sample_id = sample_id or image
    if not image:
        bad.append(BadSample(sample_id, where, "row names no image file"))
        return None
    patient = patient or _patient(image)
    if not patient:
        bad.append(BadSample(sample_id, where, f"no patient id: {image!r} has no patientNNNNN folder"))
        return None
    labels, problem = normalize_labels(raw_labels)
    if problem:
        bad.append(BadSample(sample_id, where, problem))
        return None
    return Sample(id=sample_id, patient_id=patient, domain="cxr", split=split, image_path=base / image,
                  report=report, labels=labels)


def _plus_labels(path: Path) -> dict[str, dict]:
    """path_to_image -> raw label cells, from a JSON-lines (or JSON list) CheXbert label file."""
    if not path.is_file():
        raise DatasetError(f"chexpert-plus: label file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except json.JSONDecodeError as e:
        raise DatasetError(f"chexpert-plus: {path}: malformed JSON ({e})") from None
    out = {}
    for r in records:
        if isinstance(r, dict) and r.get("path_to_image"):
            out[r["path_to_image"]] = {k: v for k, v in r.items() if k not in NOT_LABELS}
    return out
