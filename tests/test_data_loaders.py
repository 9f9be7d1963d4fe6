"""The folder and manifest loaders turn tiny real files into the right Samples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medbench.data.folder import load_folder
from medbench.data.manifest import load_manifest
from medbench.data.resolve import load_dataset
from medbench.data.validate import DatasetError, normalize_labels
from medbench.records import Sample


def write_image(path: Path, value: int = 0, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path, format=fmt)
    return path


def write_pair(folder: Path, sid: str, report: str, suffix: str = ".png") -> Path:
    image = write_image(folder / f"{sid}{suffix}", fmt="JPEG" if suffix.lower() != ".png" else "PNG")
    (folder / f"{sid}.txt").write_text(report)
    return image


def test_split_layout_reads_samples_labels_and_defaults(tmp_path):
    write_pair(tmp_path / "train", "a", "Cardiomegaly. Small left effusion.\n")
    write_pair(tmp_path / "train", "b", "No acute findings.")
    write_pair(tmp_path / "val", "c", "Possible edema.", suffix=".jpg")
    write_pair(tmp_path / "test", "d", "Right pneumothorax.", suffix=".JPEG")
    (tmp_path / "train" / "labels.jsonl").write_text(
        json.dumps({"id": "a", "patient_id": "p1", "labels": {"Cardiomegaly": 1, "Pleural Effusion": 1.0, "Edema": None},
                    "prompt": "Cardiomegaly.", "extra": "ignored"}) + "\n\n"
        + json.dumps({"id": "b", "patient_id": "p1", "labels": {"No Finding": 1}}) + "\n")
    (tmp_path / "labels.jsonl").write_text(json.dumps({"id": "c", "labels": {"Edema": -1}, "domain": "cxr"}) + "\n")
    (tmp_path / "README.txt").write_text("phantom data: synthetic, not clinical")  # outside the split folders: ignored

    ds = load_folder(tmp_path, name="tiny")
    assert ds.bad == [] and ds.name == "tiny" and ds.domain == "cxr"
    assert ds.source == f"folder:{tmp_path.resolve()}"
    by_id = {s.id: s for s in ds.samples}
    assert [s.id for s in ds.samples] == ["a", "b", "c", "d"]
    assert by_id["a"] == Sample(id="a", patient_id="p1", domain="cxr", split="train", image_path=tmp_path / "train" / "a.png",
                                report="Cardiomegaly. Small left effusion.",
                                labels={"Cardiomegaly": 1, "Pleural Effusion": 1}, prompt="Cardiomegaly.")
    assert by_id["b"].labels == {"No Finding": 1} and by_id["b"].prompt is None
    assert (by_id["c"].split, by_id["c"].labels, by_id["c"].image_path.name) == ("val", {"Edema": -1}, "c.jpg")
    assert (by_id["d"].split, by_id["d"].patient_id, by_id["d"].labels) == ("test", "d", None)
    assert [s.id for s in ds.split("train")] == ["a", "b"]
    assert by_id["d"].load_image().size == (8, 8)


def test_flat_folder_is_the_test_split_and_domain_precedence(tmp_path):
    write_pair(tmp_path, "x1", "Tissue with dense lymphocytes.")
    write_pair(tmp_path, "x2", "Necrosis present.")
    (tmp_path / "labels.jsonl").write_text(json.dumps({"id": "x2", "domain": "cxr"}) + "\n")
    ds = load_folder(tmp_path, name="flat", domain="path")
    assert [(s.id, s.split, s.domain) for s in ds.samples] == [("x1", "test", "path"), ("x2", "test", "cxr")]
    assert ds.domain == "mixed"
    assert load_folder(tmp_path, name="flat").samples[0].domain == "cxr"  # the documented default


def test_loading_is_deterministic_and_fingerprinted(tmp_path):
    for i in range(5):
        write_pair(tmp_path / "test", f"s{i}", f"Report {i}.")
    first, second = load_folder(tmp_path, name="n"), load_folder(tmp_path, name="n")
    assert first.samples == second.samples
    assert first.manifest_sha256() == second.manifest_sha256()
    (tmp_path / "test" / "s3.txt").write_text("Report changed.")
    assert load_folder(tmp_path, name="n").manifest_sha256() != first.manifest_sha256()


def test_missing_or_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        load_folder(tmp_path / "nope", name="x")
    with pytest.raises(DatasetError, match="no samples found"):
        load_folder(tmp_path, name="x")


def test_jsonl_manifest(tmp_path):
    write_image(tmp_path / "img" / "a.png", 10)
    write_image(tmp_path / "img" / "b.png", 20)
    elsewhere = write_image(tmp_path.parent / f"{tmp_path.name}-abs" / "c.png", 30)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "b.txt").write_text("  Enlarged heart.\n")
    rows = [
        {"id": "a", "patient_id": "p", "split": "train", "image": "img/a.png", "report": "Clear lungs.",
         "labels": {"No Finding": 1}, "prompt": "Normal chest.", "view": "PA"},
        {"id": "b", "patient_id": "p", "split": "train", "image": "img/b.png", "report_path": "reports/b.txt"},
        {"id": 7, "image": str(elsewhere), "report": "Left effusion.", "domain": "cxr"},
    ]
    manifest = tmp_path / "cohort.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_manifest(manifest)
    assert ds.bad == [] and ds.name == "cohort" and ds.source == f"manifest:{manifest.resolve()}"
    a, b, c = ds.samples
    assert a == Sample("a", "p", "cxr", "train", tmp_path / "img" / "a.png", "Clear lungs.", {"No Finding": 1}, "Normal chest.")
    assert (b.report, b.labels, b.split) == ("Enlarged heart.", None, "train")
    assert (c.id, c.patient_id, c.split, c.image_path) == ("7", "7", "test", elsewhere)
    assert load_manifest(manifest, name="named", domain="path").samples[0].domain == "path"


def test_csv_manifest_with_label_columns_and_json_labels(tmp_path):
    for sid in "abc":
        write_image(tmp_path / f"{sid}.png")
    (tmp_path / "b.txt").write_text("Edema.")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,patient_id,split,image,report,report_path,labels,label:Edema,label:Cardiomegaly,notes\n"
        'a,p1,train,a.png,"Heart enlarged, lungs clear.",,,0.0,1.0,anything\n'
        "b,p2,test,b.png,,b.txt,,1,,\n"
        'c,,val,c.png,Clear.,,"{""Pneumothorax"": -1}",-1,,\n')
    ds = load_manifest(manifest, domain="cxr")
    assert ds.bad == []
    a, b, c = ds.samples
    assert (a.report, a.labels, a.patient_id) == ("Heart enlarged, lungs clear.", {"Edema": 0, "Cardiomegaly": 1}, "p1")
    assert (b.report, b.labels, b.split) == ("Edema.", {"Edema": 1}, "test")
    assert (c.patient_id, c.labels, c.split) == ("c", {"Pneumothorax": -1, "Edema": -1}, "val")


def test_manifest_format_and_existence_errors(tmp_path):
    with pytest.raises(DatasetError, match="manifest file not found"):
        load_manifest(tmp_path / "none.jsonl")
    (tmp_path / "m.tsv").write_text("id\n")
    with pytest.raises(DatasetError, match=r"m\.tsv: unknown manifest format '\.tsv'"):
        load_manifest(tmp_path / "m.tsv")
    (tmp_path / "m.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="the manifest has no rows"):
        load_manifest(tmp_path / "m.jsonl")


def test_load_dataset_specs(tmp_path):
    write_pair(tmp_path / "train", "a", "Clear.")
    write_pair(tmp_path / "test", "b", "Clear.")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.name == f"folder:{tmp_path}" and len(ds.samples) == 2
    assert load_dataset(f"folder:{tmp_path}", {"name": "mine"}).name == "mine"
    with pytest.raises(DatasetError, match="unknown option"):
        load_dataset(f"folder:{tmp_path}", {"seed": 1})
    with pytest.raises(DatasetError, match="names no path"):
        load_dataset("folder:")
    with pytest.raises(KeyError, match="unknown dataset 'no-such-dataset'"):
        load_dataset("no-such-dataset")


@pytest.mark.parametrize("raw, expected", [
    ({"A": 1, "B": 0, "C": -1, "D": None, "E": ""}, {"A": 1, "B": 0, "C": -1}),
    ({"A": 1.0, "B": "-1.0", "C": " 0 "}, {"A": 1, "B": -1, "C": 0}),
    (None, None),
])
def test_normalize_labels(raw, expected):
    assert normalize_labels(raw) == (expected, None)


@pytest.mark.parametrize("raw", [{"A": True}, {"A": 2}, {"A": 0.5}, {"A": "yes"}, [1, 0]])
def test_normalize_labels_rejects(raw):
    labels, problem = normalize_labels(raw)
    assert labels is None and problem


def test_file_datasets_entry_point_loads():
    import importlib.metadata as md

    from medbench.data import plugin

    (entry,) = [ep for ep in md.entry_points(group="medbench") if ep.name == "file-datasets"]
    assert entry.load() is plugin
    assert [spec.name for spec in plugin.medbench_datasets()] == ["iu-xray", "mimic-cxr", "mimic-cxr-jpg", "chexpert", "chexpert-plus", "pathgen"]


# ------------------------------------------------------------------------------ public collections (local copies)

OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="{uid}"/>
  <pmcId id="{n}"/>
  <MedlineCitation><Article><Abstract>
    <AbstractText Label="COMPARISON">None.</AbstractText>
    <AbstractText Label="INDICATION">Cough.</AbstractText>
    <AbstractText Label="FINDINGS">{findings}</AbstractText>
    <AbstractText Label="IMPRESSION">{impression}</AbstractText>
  </Abstract></Article></MedlineCitation>
  <MeSH><major>normal</major></MeSH>
  {images}
</eCitation>
"""


def write_openi(root: Path, n: int, findings: str, impression: str, image_ids: list[str]) -> None:
    (root / "ecgen-radiology").mkdir(parents=True, exist_ok=True)
    images = "".join(f'<parentImage id="{i}"><figureId>F{k}</figureId></parentImage>' for k, i in enumerate(image_ids))
    (root / "ecgen-radiology" / f"{n}.xml").write_text(
        OPENI_XML.format(uid=f"CXR{n}", n=n, findings=findings, impression=impression, images=images))
    for i in image_ids:
        write_image(root / "NLMCXR_png" / f"{i}.png")


def test_iu_xray_open_i_xml(tmp_path):
    write_openi(tmp_path, 1, "The heart is normal in size.", "Normal chest.", ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"])
    write_openi(tmp_path, 2, "", "No acute disease.", ["CXR2_IM-0652-1001"])
    write_openi(tmp_path, 3, "", "", ["CXR3_IM-1384-1001"])
    ds = load_dataset(f"iu-xray:{tmp_path}", on_bad_sample="skip")
    assert [(s.id, s.patient_id, s.split, s.report) for s in ds.samples] == [
        ("CXR1_1_IM-0001-3001", "CXR1", "test", "The heart is normal in size. Normal chest."),
        ("CXR1_1_IM-0001-4001", "CXR1", "test", "The heart is normal in size. Normal chest."),
        ("CXR2_IM-0652-1001", "CXR2", "test", "No acute disease."),
    ]
    assert ds.samples[0].image_path == tmp_path / "NLMCXR_png" / "CXR1_1_IM-0001-3001.png"
    assert [(b.path, b.reason) for b in ds.bad] == [
        (str(tmp_path / "ecgen-radiology" / "3.xml"), "empty report: no FINDINGS or IMPRESSION text")]
    findings_only = load_dataset(f"iu-xray:{tmp_path}", {"section": "findings"}, on_bad_sample="skip")
    assert [s.id for s in findings_only.samples] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    with pytest.raises(DatasetError, match="write --dataset iu-xray:PATH"):
        load_dataset("iu-xray")


def write_csv_gz(path: Path, header: list[str], rows: list[list]) -> None:
    import csv
    import gzip

    with gzip.open(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_mimic_cxr_jpg_metadata(tmp_path):
    obs = ["Cardiomegaly", "Edema", "No Finding"]
    write_csv_gz(tmp_path / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"],
                 [["d1", "50000001", "10000032", "train"], ["d2", "50000001", "10000032", "train"],
                  ["d3", "50000002", "11000001", "validate"], ["d4", "50000003", "12000002", "test"]])
    write_csv_gz(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *obs],
                 [["10000032", "50000001", "1.0", "-1.0", ""], ["11000001", "50000002", "", "", "1.0"]])
    write_csv_gz(tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz", ["dicom_id", "subject_id", "study_id", "ViewPosition"],
                 [["d1", "10000032", "50000001", "PA"], ["d2", "10000032", "50000001", "LATERAL"],
                  ["d3", "11000001", "50000002", "AP"], ["d4", "12000002", "50000003", "PA"]])
    reports = {("10000032", "50000001"): "EXAMINATION: Chest.\n\nFINDINGS: Enlarged heart.\n Mild edema.\n\nIMPRESSION: Cardiomegaly.",
               ("11000001", "50000002"): "INDICATION: Dyspnea.\nIMPRESSION: No acute process.",
               ("12000002", "50000003"): "WET READ: none.\nCOMPARISON: None."}
    for (subject, study), text in reports.items():
        folder = tmp_path / "files" / f"p{subject[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{study}.txt").write_text(text)
    for dicom, subject, study in [("d1", "10000032", "50000001"), ("d2", "10000032", "50000001"),
                                  ("d3", "11000001", "50000002"), ("d4", "12000002", "50000003")]:
        write_image(tmp_path / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", fmt="JPEG")

    ds = load_dataset(f"mimic-cxr-jpg:{tmp_path}", on_bad_sample="skip")
    assert [(s.id, s.patient_id, s.split) for s in ds.samples] == [("d1", "p10000032", "train"), ("d2", "p10000032", "train"),
                                                                  ("d3", "p11000001", "val")]
    d1 = ds.samples[0]
    assert d1.report == "Enlarged heart. Mild edema. Cardiomegaly."
    assert d1.labels == {"Cardiomegaly": 1, "Edema": -1}
    assert d1.image_path == tmp_path / "files" / "p10" / "p10000032" / "s50000001" / "d1.jpg"
    assert ds.samples[2].report == "No acute process." and ds.samples[2].labels == {"No Finding": 1}
    assert [(b.id, b.reason) for b in ds.bad] == [("d4", "no FINDINGS or IMPRESSION section in the report")]
    frontal = load_dataset(f"mimic-cxr-jpg:{tmp_path}", {"views": "PA,AP"}, on_bad_sample="skip")
    assert [s.id for s in frontal.samples] == ["d1", "d3"]
    with pytest.raises(DatasetError, match=r"files/mimic-cxr-2\.0\.0-chexpert\.csv\.gz \(or \.csv\) not found"):
        load_dataset(f"mimic-cxr-jpg:{tmp_path / 'files'}")
