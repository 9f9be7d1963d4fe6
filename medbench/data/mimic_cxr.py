"""MIMIC-CXR (DICOM) and MIMIC-CXR-JPG from the user's own copy (PhysioNet credentialed access).

Layout (as PhysioNet ships it; the CSVs come with MIMIC-CXR-JPG 2.x)::

    PATH/mimic-cxr-2.0.0-split.csv.gz       dicom_id, study_id, subject_id, split (train|validate|test)
    PATH/mimic-cxr-2.0.0-metadata.csv.gz    dicom_id, ..., ViewPosition (PA, AP, LATERAL, LL, ...)
    PATH/mimic-cxr-2.0.0-chexpert.csv.gz    subject_id, study_id, 14 observations (1.0, 0.0, -1.0, blank)
    PATH/mimic-cxr-2.0.0-negbio.csv.gz      the same columns from NegBio (labels=negbio)
    PATH/files/p10/p10000032/s50414267/<dicom_id>.jpg | .dcm     the images
    PATH/files/p10/p10000032/s50414267.txt                       the study's free-text report

One Sample per image (``per_study=first`` keeps one image a study, PA before AP before lateral);
patient = ``p<subject_id>`` (the bootstrap resamples patients); split from the split CSV (validate ->
val). The report is cut by the section protocol (`medbench.data.sections`; default
findings+impression) and recorded in ``dataset.preprocessing``. A study whose report is missing or
lacks the section, or whose labels are malformed, is recorded in ``dataset.bad`` for each of its
images (``--on-bad-sample skip`` leaves them out).

Usage::

    --dataset mimic-cxr:/data/mimic --dataset-opt views=frontal --dataset-opt section=findings
    load_mimic_cxr({"path": "/data/mimic", "format": "dcm", "labels": "negbio"})
"""
from __future__ import annotations

import os
from pathlib import Path

from medbench.data import sections
from medbench.data.base import BadSample, Dataset
from medbench.data.local_copy import MAX_CHARS, PATH, find_csv, open_root, read_csv, split_name, view_filter
from medbench.data.validate import DatasetError, normalize_labels, read_report
from medbench.options import Option
from medbench.records import Sample

SPLIT, METADATA = "mimic-cxr-2.0.0-split", "mimic-cxr-2.0.0-metadata"
LABEL_FILES = {"chexpert": "mimic-cxr-2.0.0-chexpert", "negbio": "mimic-cxr-2.0.0-negbio"}
VIEW_ORDER = ("PA", "AP", "LATERAL", "LL")  # per_study=first keeps the first of these a study has
EXPECTED = "mimic-cxr-2.0.0-split.csv.gz, -metadata.csv.gz, -chexpert.csv.gz and files/pNN/pSUBJECT/sSTUDY/"

OPTIONS = (
    PATH,
    Option("format", str, "auto", "image files: jpg (MIMIC-CXR-JPG), dcm (MIMIC-CXR DICOM) or auto (look)",
           choices=("auto", "jpg", "dcm")),
    Option("metadata", Path, None, "folder of the split/metadata/label CSVs (default: PATH)"),
    Option("reports", Path, None, "folder holding files/pNN/.../sSTUDY.txt (default: PATH)"),
    Option("views", str, "all", "all, frontal (PA,AP) or a comma list of ViewPosition values"),
    Option("per_study", str, "all", "all images of a study, or the first (PA, AP, lateral order)",
           choices=("all", "first")),
    Option("labels", str, "chexpert", "which label CSV: chexpert, negbio or none", choices=("chexpert", "negbio", "none")),
    *sections.OPTIONS,
    MAX_CHARS,
)


def load_mimic_cxr(options: dict | None = None, *, name: str = "mimic-cxr") -> Dataset:
    """Read a local MIMIC-CXR / MIMIC-CXR-JPG copy (see the module docstring)."""
    opts, root = open_root(options, name, OPTIONS, EXPECTED)
    meta_root = Path(opts["metadata"] or root)
    reports_root = Path(opts["reports"] or root)
    protocol = sections.ReportProtocol.from_options(opts)
    views = view_filter(opts["views"])

    labels_of = _labels(meta_root, name, opts["labels"])
    split_csv = find_csv(meta_root, SPLIT)
    if split_csv is None:
        raise DatasetError(f"{name}: {meta_root / SPLIT}.csv.gz (or .csv) not found; it ships with MIMIC-CXR-JPG "
                           f"(use --dataset-opt metadata=DIR if the CSVs are elsewhere)")
    rows = read_csv(split_csv, dataset=name, required=("dicom_id", "study_id", "subject_id", "split"))
    view_of = _views(meta_root, name) if (views is not None or opts["per_study"] == "first") else {}
    suffix = _image_suffix(root, rows, opts["format"])

    bad: list[BadSample] = []
    chosen = _choose_images(rows, view_of, views, opts["per_study"], split_csv, bad)
    samples: list[Sample] = []
    report_of: dict[tuple[str, str], tuple[str | None, str | None, str]] = {}
    files = os.path.join(str(root), "files")
    for row in chosen:
        subject, study, dicom = row["subject_id"], row["study_id"], row["dicom_id"]
        key = (subject, study)
        if key not in report_of:
            report_of[key] = _report(reports_root, subject, study, protocol, opts["max_report_chars"])
        report, problem, where = report_of[key]
        if problem:
            bad.append(BadSample(dicom, where, problem))
            continue
        labels, problem = labels_of.get(key, (None, None)) if labels_of is not None else (None, None)
        if problem:
            bad.append(BadSample(dicom, problem[0], problem[1]))
            continue
        image = os.path.join(files, f"p{subject[:2]}", f"p{subject}", f"s{study}", dicom + suffix)
        samples.append(Sample(id=dicom, patient_id=f"p{subject}", domain="cxr", split=row["_split"],
                              image_path=Path(image), report=report, labels=labels))
    preprocessing = {"report": protocol.describe(), "views": opts["views"], "per_study": opts["per_study"],
                     "labels": LABEL_FILES.get(opts["labels"], "none"), "images": suffix.lstrip(".")}
    return Dataset(name, "cxr", samples, source=f"{name}:{root.resolve()}", bad=bad, preprocessing=preprocessing)


def load_mimic_cxr_jpg(options: dict | None = None) -> Dataset:
    """The MIMIC-CXR-JPG name: the same loader with format=jpg unless told otherwise."""
    return load_mimic_cxr({"format": "jpg", **dict(options or {})}, name="mimic-cxr-jpg")


def _choose_images(rows, view_of, views, per_study, split_csv, bad) -> list[dict]:
    kept = []
    for number, row in enumerate(rows, start=2):
        split = split_name(row["split"] or "")
        if split is None:
            bad.append(BadSample(row["dicom_id"], f"{split_csv}:{number}",
                                 f"split {row['split']!r} is not one of train, validate, test"))
            continue
        if views is not None and view_of.get(row["dicom_id"], "") not in views:
            continue
        row["_split"] = split
        kept.append(row)
    if per_study == "all":
        return kept
    rank = {v: i for i, v in enumerate(VIEW_ORDER)}
    best: dict[tuple[str, str], dict] = {}
    for row in kept:
        key = (row["subject_id"], row["study_id"])
        order = (rank.get(view_of.get(row["dicom_id"], ""), len(rank)), row["dicom_id"])
        if key not in best or order < best[key]["_order"]:
            best[key] = {**row, "_order": order}
    return [r for r in kept if best[(r["subject_id"], r["study_id"])]["dicom_id"] == r["dicom_id"]]


def _views(meta_root: Path, name: str) -> dict[str, str]:
    path = find_csv(meta_root, METADATA)
    if path is None:
        raise DatasetError(f"{name}: views/per_study need {meta_root / METADATA}.csv.gz (or .csv), not found")
    return {r["dicom_id"]: (r["ViewPosition"] or "").strip().upper()
            for r in read_csv(path, dataset=name, required=("dicom_id", "ViewPosition"))}


def _labels(meta_root: Path, name: str, which: str):
    """(subject, study) -> (labels, None) or (None, (where, problem)); None when labels=none."""
    if which == "none":
        return None
    stem = LABEL_FILES[which]
    path = find_csv(meta_root, stem)
    if path is None:
        raise DatasetError(f"{name}: {meta_root / stem}.csv.gz (or .csv) not found (or use --dataset-opt labels=none)")
    out = {}
    for number, r in enumerate(read_csv(path, dataset=name, required=("subject_id", "study_id")), start=2):
        values, problem = normalize_labels({k: v for k, v in r.items() if k not in ("subject_id", "study_id")})
        out[(r["subject_id"], r["study_id"])] = (values, None) if not problem else (None, (f"{path}:{number}", problem))
    return out


def _image_suffix(root: Path, rows: list[dict], fmt: str) -> str:
    if fmt != "auto":
        return "." + fmt
    for row in rows[:50]:
        s, st, d = row["subject_id"], row["study_id"], row["dicom_id"]
        base = root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{st}" / d
        for suffix in (".jpg", ".dcm"):
            if os.path.isfile(str(base) + suffix):
                return suffix
    return ".jpg"


def _report(reports_root: Path, subject: str, study: str, protocol, max_chars: int):
    path = os.path.join(str(reports_root), "files", f"p{subject[:2]}", f"p{subject}", f"s{study}.txt")
    text, problem = read_report(path, max_chars)  # a missing file -> "report file not found"
    if problem:
        return None, problem, path
    report, problem = protocol.apply(text)
    return report, problem, path
