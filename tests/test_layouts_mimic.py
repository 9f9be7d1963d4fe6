"""MIMIC-CXR / MIMIC-CXR-JPG layout on a small synthetic copy written by the test."""
from __future__ import annotations

import numpy as np
import pytest
from layout_writers import write_mimic

from medbench.data.resolve import load_dataset
from medbench.data.validate import DatasetError
from medbench.options import OptionError

STUDIES = [
    ("10000032", "50414267", "train", [("d1", "PA"), ("d2", "LATERAL")],
     "PA and lateral views. Heart size is normal. No effusion.", "No acute cardiopulmonary process."),
    ("10000032", "53189527", "train", [("d3", "AP")], "Mild cardiomegaly.", None),
    ("11000001", "50000002", "validate", [("d4", "LATERAL"), ("d5", "AP")], None, "Small left effusion, Dr. ___ notified."),
    ("12000002", "50000003", "test", [("d6", "PA")], None, None),  # no report file
    ("13000003", "50000004", "test", [("d7", "PA")], "Lungs are clear.", "Normal chest."),
]
LABELS = {("10000032", "50414267"): {"No Finding": "1.0"},
          ("10000032", "53189527"): {"Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0"},
          ("11000001", "50000002"): {"Pleural Effusion": "1.0"},
          ("13000003", "50000004"): {"No Finding": "1.0", "Fracture": ""}}


@pytest.fixture
def mimic(tmp_path):
    return write_mimic(tmp_path / "mimic", STUDIES, label_rows=LABELS)


def test_splits_patients_labels_and_sections(mimic):
    ds = load_dataset(f"mimic-cxr:{mimic}", on_bad_sample="skip")
    assert [(s.id, s.patient_id, s.split) for s in ds.samples] == [
        ("d1", "p10000032", "train"), ("d2", "p10000032", "train"), ("d3", "p10000032", "train"),
        ("d4", "p11000001", "val"), ("d5", "p11000001", "val"), ("d7", "p13000003", "test")]
    by_id = {s.id: s for s in ds.samples}
    assert by_id["d1"].report == "PA and lateral views. Heart size is normal. No effusion. No acute cardiopulmonary process."
    assert by_id["d3"].report == "Mild cardiomegaly." and by_id["d3"].labels == {"Cardiomegaly": 1, "Edema": -1, "Pleural Effusion": 0}
    assert by_id["d7"].labels == {"No Finding": 1}  # a blank cell is blank, not 0
    assert by_id["d1"].image_path == mimic / "files" / "p10" / "p10000032" / "s50414267" / "d1.jpg"
    assert [(b.id, b.reason) for b in ds.bad] == [("d6", "report file not found")]
    assert ds.preprocessing["report"]["protocol"] == "findings+impression"
    assert ds.samples[0].load_image().size == (8, 8)


def test_section_protocol_options_and_missing_sections(mimic):
    ds = load_dataset(f"mimic-cxr:{mimic}", {"section": "findings"}, on_bad_sample="skip")
    assert sorted(s.id for s in ds.samples) == ["d1", "d2", "d3", "d7"]
    assert ("d4", "no FINDINGS section in the report") in [(b.id, b.reason) for b in ds.bad]
    imp = load_dataset(f"mimic-cxr:{mimic}", {"section": "impression", "deid": "mask", "case": "lower"},
                       on_bad_sample="skip")
    assert {s.id: s.report for s in imp.samples}["d4"] == "small left effusion, dr. [deid] notified."
    assert imp.preprocessing["report"]["protocol"] == "impression|deid=mask|lower"


def test_views_and_one_image_per_study(mimic):
    frontal = load_dataset(f"mimic-cxr:{mimic}", {"views": "frontal"}, on_bad_sample="skip")
    assert [s.id for s in frontal.samples] == ["d1", "d3", "d5", "d7"]
    lateral = load_dataset(f"mimic-cxr:{mimic}", {"views": "LATERAL"}, on_bad_sample="skip")
    assert [s.id for s in lateral.samples] == ["d2", "d4"]
    first = load_dataset(f"mimic-cxr:{mimic}", {"per_study": "first"}, on_bad_sample="skip")
    assert [s.id for s in first.samples] == ["d1", "d3", "d5", "d7"]  # PA before lateral, AP before lateral


def test_bad_samples_fail_by_default_naming_the_file(mimic):
    with pytest.raises(DatasetError, match=r"s50000003\.txt: report file not found"):
        load_dataset(f"mimic-cxr:{mimic}")


def test_dicom_copy_is_read_through_the_dicom_pipeline(tmp_path):
    root = write_mimic(tmp_path / "dcm", STUDIES[:1], image_format="dcm", label_rows=LABELS)
    ds = load_dataset(f"mimic-cxr:{root}")
    assert ds.samples[0].image_path.suffix == ".dcm" and ds.preprocessing["images"] == "dcm"
    assert ds.preprocessing["image"]["reader"] == "pydicom"
    pixels = np.asarray(ds.samples[0].load_image())
    assert pixels.dtype == np.uint8 and pixels[0, 0] > pixels[3, 0]  # MONOCHROME1: the high band shows dark


def test_mimic_cxr_jpg_name_and_refusals(mimic, tmp_path):
    assert [s.id for s in load_dataset(f"mimic-cxr-jpg:{mimic}", on_bad_sample="skip").samples][:1] == ["d1"]
    with pytest.raises(DatasetError, match=r"mimic-cxr-2\.0\.0-chexpert\.csv\.gz \(or \.csv\) not found"):
        load_dataset(f"mimic-cxr:{tmp_path}")
    with pytest.raises(OptionError, match="views"):
        load_dataset(f"mimic-cxr:{mimic}", {"view": "PA"})
    with pytest.raises(OptionError, match="section"):
        load_dataset(f"mimic-cxr:{mimic}", {"section": "finding"})
    no_labels = load_dataset(f"mimic-cxr:{mimic}", {"labels": "none"}, on_bad_sample="skip")
    assert all(s.labels is None for s in no_labels.samples)


def test_a_run_on_dicom_mimic_names_the_report_protocol(tmp_path):
    """End to end through the CLI: DICOM images, the section protocol in run.json and in the text families' variants."""
    import json

    from medbench.cli import main

    studies = [(f"1{i:07d}", f"5{i:07d}", "test", [(f"t{i}", "PA")], "Heart size is normal.",
                f"No pleural effusion or pneumothorax in study number {i}.")
               for i in range(4)] + STUDIES[:1]
    root = write_mimic(tmp_path / "dcm", studies, image_format="dcm")
    assert main(["run", "--task", "i2t", "--model", "oracle", "--dataset", f"mimic-cxr:{root}", "--dataset-opt",
                 "section=impression", "--n", "all", "--bootstrap", "0", "--store", "", "--no-report",
                 "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    (run_json,) = (tmp_path / "runs").glob("*/run.json")
    record = json.loads(run_json.read_text())
    report = record["dataset_info"]["preprocessing"]["report"]
    assert report["protocol"].startswith("impression") and record["n"] == 4
    assert record["dataset_info"]["preprocessing"]["image"]["reader"] == "pydicom"
    assert record["metrics"]["nlg.coco.bleu4"]["variant"].endswith(f"; reports: {report['protocol']}")
    assert record["metrics"]["nlg.coco.bleu4"]["value"] == pytest.approx(1.0)
