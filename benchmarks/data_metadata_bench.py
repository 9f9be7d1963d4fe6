"""How long the real-data loaders take to read metadata at MIMIC scale (no images decoded).

    python benchmarks/data_metadata_bench.py [--studies 100000] [--dir /tmp/mb-metadata-bench]

Writes a synthetic MIMIC-CXR tree (split/metadata/chexpert CSVs, one report .txt per study, 1.6
image rows a study; image files are not written, loading does not open them) and a CheXpert Plus
CSV with the same number of rows, then times `load_unvalidated` (the loader's own work: CSV
parsing, report reading and section cutting, label normalisation). Validation, which decodes every
image, is a separate, per-image cost and not measured here. Prints one line per loader.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medbench.data.resolve import load_unvalidated  # noqa: E402

OBS = ("Atelectasis", "Cardiomegaly", "Edema", "No Finding", "Pleural Effusion")
REPORT = (" FINAL REPORT\n EXAMINATION: CHEST (PA AND LAT)\n\n INDICATION: ___ with cough.\n\n FINDINGS:\n\n"
          " The heart size is normal. No focal consolidation. No effusion {i}.\n\n IMPRESSION:\n\n No acute process.\n")


def write_mimic(root: Path, studies: int) -> int:
    split_rows, meta_rows, label_rows = [], [], []
    for i in range(studies):
        subject, study = f"{10000000 + i // 3}", f"{50000000 + i}"
        split = "test" if i % 50 == 0 else "validate" if i % 97 == 0 else "train"
        for k in range(2 if i % 5 < 3 else 1):
            dicom = f"{i:08x}-{k}"
            split_rows.append((dicom, study, subject, split))
            meta_rows.append((dicom, subject, study, "PA" if k == 0 else "LATERAL"))
        label_rows.append((subject, study, *["1.0" if (i + j) % 7 == 0 else "" for j in range(len(OBS))]))
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{study}.txt").write_text(REPORT.format(i=i))
    for stem, header, rows in (("split", ("dicom_id", "study_id", "subject_id", "split"), split_rows),
                               ("metadata", ("dicom_id", "subject_id", "study_id", "ViewPosition"), meta_rows),
                               ("chexpert", ("subject_id", "study_id", *OBS), label_rows)):
        with gzip.open(root / f"mimic-cxr-2.0.0-{stem}.csv.gz", "wt", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    return len(split_rows)


def write_chexpert_plus(root: Path, rows: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "df_chexpert_plus_240401.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id", "report",
                    "section_findings", "section_impression", "split"])
        for i in range(rows):
            image = f"train/patient{i // 4:05d}/study{i % 4}/view1_frontal.jpg"
            w.writerow([image, image[:-4] + ".dcm", "Frontal", "AP", f"patient{i // 4:05d}", REPORT.format(i=i),
                        f"The heart size is normal. No effusion {i}.", "No acute process.", "train"])


def timed(spec: str, options: dict) -> tuple[float, int]:
    start = time.perf_counter()
    ds = load_unvalidated(spec, options)
    return time.perf_counter() - start, len(ds.samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mb-metadata-bench"))
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    start = time.perf_counter()
    images = write_mimic(args.dir / "mimic", args.studies)
    write_chexpert_plus(args.dir / "plus", args.studies)
    print(f"wrote {args.studies} studies ({images} MIMIC image rows) in {time.perf_counter() - start:.1f} s")
    os.sync()
    for spec, options in ((f"mimic-cxr:{args.dir / 'mimic'}", {}),
                          (f"mimic-cxr:{args.dir / 'mimic'}", {"views": "frontal", "per_study": "first"}),
                          (f"chexpert-plus:{args.dir / 'plus'}", {})):
        seconds, n = timed(spec, options)
        print(f"{spec.split(':')[0]:14s} {str(options or ''):45s} {n:7d} samples  {seconds:6.1f} s")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
