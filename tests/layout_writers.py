"""Small synthetic copies of public dataset layouts, written by the tests (no real data).

Each writer lays files out exactly as the public release does (names, CSV columns, folder tree)
so the loaders are exercised on the real structure; the contents are made up.
"""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
from PIL import Image

MIMIC_OBS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
             "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
             "Pneumothorax", "Support Devices")


def write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_image(path: Path, value: int = 60, fmt: str | None = None, size=(8, 8), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    fmt = fmt or {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    Image.fromarray(np.full(shape, value, np.uint8)).save(path, format=fmt)
    return path


def write_dicom_image(path: Path, value: int = 1000) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    pixels = np.full((8, 8), value, np.uint16)
    pixels[2:6, :] = 4000  # a bright band, so min-max scaling has a range
    ds.set_pixel_data(pixels, "MONOCHROME1", 12)
    ds.save_as(path, enforce_file_format=True)
    return path


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old woman with cough.

 COMPARISON:  ___

 FINDINGS:

 {findings}

 IMPRESSION:

 {impression}
"""


def write_mimic(root: Path, studies, *, image_format="jpg", label_rows=None, extra_reports=None) -> Path:
    """studies: [(subject, study, split, [(dicom_id, view), ...], findings, impression)].

    findings/impression None leave that section out; a report of None writes no report file.
    label_rows: {(subject, study): {observation: "1.0" | "0.0" | "-1.0" | ""}}.
    """
    split_rows, meta_rows = [], []
    for subject, study, split, images, findings, impression in studies:
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        for dicom, view in images:
            split_rows.append([dicom, study, subject, split])
            meta_rows.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 8, 8])
            image = folder / f"s{study}" / f"{dicom}.{image_format}"
            write_dicom_image(image) if image_format == "dcm" else write_image(image, fmt="JPEG")
        if findings is None and impression is None:
            continue
        text = MIMIC_REPORT.format(findings=findings or "", impression=impression or "")
        if findings is None:
            text = text.replace(" FINDINGS:\n\n \n\n", "")
        if impression is None:
            text = text.split(" IMPRESSION:")[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{study}.txt").write_text(text)
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz",
              ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
               "Columns"], meta_rows)
    labels = label_rows or {}
    write_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *MIMIC_OBS],
              [[s, st, *[labels[(s, st)].get(o, "") for o in MIMIC_OBS]] for (s, st) in labels])
    return root


CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
                   "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                   "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"]


def write_chexpert(parent: Path, rows_by_file, folder="CheXpert-v1.0-small") -> Path:
    """rows_by_file: {"train": [(split_dir, patient, study, view, frontal_lateral, ap_pa, {obs: cell})], ...}."""
    root = parent / folder
    for stem, rows in rows_by_file.items():
        out = []
        for split_dir, patient, study, view, fl, appa, labels in rows:
            rel = f"{folder}/{split_dir}/{patient}/{study}/{view}.jpg"
            write_image(parent / rel, fmt="JPEG")
            out.append([rel, "Female", 60, fl, appa, *[labels.get(c, "") for c in CHEXPERT_HEADER[5:]]])
        write_csv(root / f"{stem}.csv", CHEXPERT_HEADER, out)
    return root


PLUS_HEADER = ["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id",
               "patient_report_date_order", "report", "section_narrative", "section_clinical_history",
               "section_history", "section_comparison", "section_technique", "section_procedure_comments",
               "section_findings", "section_impression", "section_end_of_impression", "section_summary",
               "section_accession_number", "age", "sex", "race", "ethnicity", "interpreter_needed",
               "insurance_type", "recent_bmi", "deceased", "split"]


def write_chexpert_plus(root: Path, rows, labels=None) -> Path:
    """rows: [(path_to_image, frontal_lateral, ap_pa, patient, findings, impression, split)]."""
    out = []
    for image, fl, appa, patient, findings, impression, split in rows:
        write_image(root / image, fmt="JPEG")
        write_image(root / (image.rsplit(".", 1)[0] + ".png"))
        dcm = image.rsplit(".", 1)[0] + ".dcm"
        write_dicom_image(root / dcm)
        report = f"NARRATIVE:\nCHEST.\n\nFINDINGS: {findings}\n\nIMPRESSION: {impression}\n"
        cells = dict(path_to_image=image, path_to_dcm=dcm, frontal_lateral=fl, ap_pa=appa, deid_patient_id=patient,
                     patient_report_date_order=1, report=report, section_findings=findings,
                     section_impression=impression, split=split)
        out.append([cells.get(c, "") for c in PLUS_HEADER])
    write_csv(root / "df_chexpert_plus_240401.csv", PLUS_HEADER, out)
    if labels:
        (root / "chexbert_labels").mkdir(parents=True, exist_ok=True)
        (root / "chexbert_labels" / "report_fixed.json").write_text(
            "\n".join(json.dumps({"path_to_image": k, **v}) for k, v in labels.items()) + "\n")
    return root


def write_pathgen_json(root: Path, records, tiles: str = "tiles", nested: bool = False) -> Path:
    """records: [(wsi_id, x, y, caption, write_tile)]; tiles as <wsi>_<x>_<y>.png or <wsi>/<x>_<y>.jpg."""
    data = []
    for wsi, x, y, caption, write_tile in records:
        data.append({"wsi_id": wsi, "position": [str(x), str(y)], "caption": caption, "file_id": "uuid-" + wsi[-4:]})
        if write_tile:
            name = f"{wsi}/{x}_{y}.jpg" if nested else f"{wsi}_{x}_{y}.png"
            write_image(root / tiles / name, value=180, mode="RGB")
    root.mkdir(parents=True, exist_ok=True)
    (root / "PathGen-1.6M.json").write_text(json.dumps(data))
    return root
