"""The ``file-datasets`` entry point: public chest X-ray collections read from local copies.

``folder:PATH`` and ``manifest:FILE`` are resolved by `medbench.data.resolve` (they take a path,
not a name). This plugin registers two named datasets whose files you download yourself
(licences forbid redistribution; nothing is ever downloaded here):

    iu-xray        IU X-Ray / Open-i: ecgen-radiology/*.xml + the PNGs (NLMCXR_png)
    mimic-cxr-jpg  MIMIC-CXR-JPG 2.x metadata CSVs + files/pXX/pSUBJECT/sSTUDY/DICOM.jpg,
                   reports from MIMIC-CXR (files/pXX/pSUBJECT/sSTUDY.txt)

Use them as ``--dataset iu-xray:/data/openi`` (see `resolve`) or ``load({"path": ...})``.
Options: ``path`` (required), ``section`` (findings+impression | findings | impression | full;
default findings+impression), ``images`` / ``reports`` (folders, when not under ``path``),
``views`` (MIMIC only, e.g. "PA,AP"). One Sample per image; a study's images share its report.
What cannot be read (a report file missing, no usable section) is recorded in ``dataset.bad``.
"""
from __future__ import annotations

import csv
import gzip
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from medbench import hookimpl
from medbench.data.base import BadSample, Dataset
from medbench.data.validate import MAX_REPORT_CHARS, DatasetError, normalize_labels, read_report
from medbench.registry import DatasetSpec

SECTIONS = ("findings+impression", "findings", "impression", "full")
_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]*[A-Z)])[ \t]*:", re.M)


@hookimpl
def medbench_datasets():
    return [
        DatasetSpec("iu-xray", load_iu_xray, "IU X-Ray (Open-i) from a local copy: iu-xray:PATH (not bundled)"),
        DatasetSpec("mimic-cxr-jpg", load_mimic_cxr_jpg, "MIMIC-CXR-JPG from a local copy: mimic-cxr-jpg:PATH (not bundled)"),
    ]


def _root(options: dict | None, dataset: str, expected: str) -> tuple[dict, Path]:
    options = dict(options or {})
    if not options.get("path"):
        raise DatasetError(f"{dataset} is read from your own local copy: write --dataset {dataset}:PATH, where PATH holds {expected}")
    root = Path(options["path"]).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{dataset}: {root} is not a folder (expected it to hold {expected})")
    section = options.get("section", SECTIONS[0])
    if section not in SECTIONS:
        raise DatasetError(f"{dataset}: section must be one of {', '.join(SECTIONS)}, got {section!r}")
    return options, root


def _choose(findings: str, impression: str, full: str, section: str) -> str:
    if section == "full":
        return full.strip()
    parts = {"findings": [findings], "impression": [impression], "findings+impression": [findings, impression]}[section]
    return " ".join(p.strip() for p in parts if p and p.strip())


# ---------------------------------------------------------------------------- IU X-Ray / Open-i


def load_iu_xray(options: dict | None = None) -> Dataset:
    """One Sample per parentImage; patient = the study's uId (IU X-Ray has no patient ids); split test."""
    options, root = _root(options, "iu-xray", "ecgen-radiology/*.xml and the NLMCXR_png images")
    xml_dir = root / "ecgen-radiology" if (root / "ecgen-radiology").is_dir() else root
    images = Path(options["images"]) if options.get("images") else next(
        (d for d in (root / "NLMCXR_png", root / "images") if d.is_dir()), root)
    files = sorted(xml_dir.glob("*.xml"))
    if not files:
        raise DatasetError(f"iu-xray: no *.xml reports in {xml_dir}")
    samples, bad = [], []
    for xml_file in files:
        try:
            tree = ET.parse(xml_file).getroot()
        except ET.ParseError as e:
            bad.append(BadSample(xml_file.stem, str(xml_file), f"malformed XML: {e}"))
            continue
        uid = (tree.find("uId").get("id") if tree.find("uId") is not None else "") or xml_file.stem
        text = {(a.get("Label") or "").upper(): (a.text or "") for a in tree.iter("AbstractText")}
        full = "\n".join(f"{k}: {v.strip()}" for k, v in text.items() if v and v.strip())
        report = _choose(text.get("FINDINGS", ""), text.get("IMPRESSION", ""), full, options.get("section", SECTIONS[0]))
        image_ids = [im.get("id") for im in tree.iter("parentImage") if im.get("id")]
        if not image_ids:
            bad.append(BadSample(uid, str(xml_file), "study lists no parentImage"))
            continue
        if not report:
            wanted = options.get("section", SECTIONS[0]).upper().replace("+", " or ")
            bad.extend(BadSample(i, str(xml_file), f"empty report: no {wanted} text") for i in image_ids)
            continue
        for image_id in image_ids:
            samples.append(_sample(image_id, uid, "test", images / f"{image_id}.png", report, None))
    return Dataset("iu-xray", "cxr", samples, source=f"iu-xray:{root.resolve()}", bad=bad)


# ---------------------------------------------------------------------------- MIMIC-CXR-JPG


def _read_csv(root: Path, stem: str) -> list[dict]:
    for path in (root / f"{stem}.csv.gz", root / f"{stem}.csv"):
        if path.is_file():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
    raise DatasetError(f"mimic-cxr-jpg: {root / stem}.csv.gz (or .csv) not found; it ships with MIMIC-CXR-JPG")


def mimic_sections(text: str) -> dict[str, str]:
    """Split a MIMIC-CXR report at its upper-case headings ("FINDINGS:", "IMPRESSION:" ...)."""
    heads = list(_HEADING.finditer(text))
    return {m.group(1): text[m.end(): nxt.start() if nxt else len(text)].strip()
            for m, nxt in zip(heads, heads[1:] + [None])}


def load_mimic_cxr_jpg(options: dict | None = None) -> Dataset:
    """One Sample per DICOM image with the study's CheXpert labels; splits from the split CSV."""
    options, root = _root(options, "mimic-cxr-jpg", "mimic-cxr-2.0.0-split.csv.gz, -chexpert.csv.gz, -metadata.csv.gz and files/")
    reports_root = Path(options.get("reports", root))
    section = options.get("section", SECTIONS[0])
    views = {v.strip() for v in str(options["views"]).split(",")} if options.get("views") else None
    max_chars = int(options.get("max_report_chars", MAX_REPORT_CHARS))
    labels_of = {(r["subject_id"], r["study_id"]): r for r in _read_csv(root, "mimic-cxr-2.0.0-chexpert")}
    view_of = {r["dicom_id"]: r.get("ViewPosition", "") for r in _read_csv(root, "mimic-cxr-2.0.0-metadata")} if views else {}
    samples, bad, reports = [], [], {}
    for row in _read_csv(root, "mimic-cxr-2.0.0-split"):
        subject, study, dicom = row["subject_id"], row["study_id"], row["dicom_id"]
        if views is not None and view_of.get(dicom) not in views:
            continue
        folder = Path("files") / f"p{subject[:2]}" / f"p{subject}"
        key = (subject, study)
        if key not in reports:
            reports[key] = _mimic_report(reports_root / folder / f"s{study}.txt", section, max_chars)
        report, problem, where = reports[key]
        if problem:
            bad.append(BadSample(dicom, where, problem))
            continue
        raw = labels_of.get(key)
        labels, problem = normalize_labels({k: v for k, v in raw.items() if k not in ("subject_id", "study_id")} if raw else None)
        if problem:
            bad.append(BadSample(dicom, f"{root}/mimic-cxr-2.0.0-chexpert.csv (s{study})", problem))
            continue
        split = {"validate": "val"}.get(row["split"], row["split"])
        samples.append(_sample(dicom, f"p{subject}", split, root / folder / f"s{study}" / f"{dicom}.jpg", report, labels))
    return Dataset("mimic-cxr-jpg", "cxr", samples, source=f"mimic-cxr-jpg:{root.resolve()}", bad=bad)


def _mimic_report(path: Path, section: str, max_chars: int) -> tuple[str | None, str | None, str]:
    text, problem = read_report(path, max_chars) if path.is_file() else (None, "report file not found")
    if problem:
        return None, problem, str(path)
    parts = mimic_sections(text)
    report = _choose(parts.get("FINDINGS", ""), parts.get("IMPRESSION", ""), text, section)
    if not report:
        return None, f"no {section.upper().replace('+', ' or ')} section in the report", str(path)
    return report, None, str(path)


def _sample(sample_id, patient, split, image, report, labels):
    from medbench.records import Sample

    return Sample(id=sample_id, patient_id=patient, domain="cxr", split=split, image_path=image, report=report, labels=labels)
