"""CheXpert v1.0 and CheXpert Plus layouts on small synthetic copies written by the test."""
from __future__ import annotations

import pytest
from layout_writers import write_chexpert, write_chexpert_plus

from medbench.data.resolve import load_dataset
from medbench.data.validate import DatasetError

ROWS = {
    "train": [("train", "patient00001", "study1", "view1_frontal", "Frontal", "AP", {"Cardiomegaly": "1.0", "Edema": "-1.0"}),
              ("train", "patient00001", "study1", "view2_lateral", "Lateral", "", {"Cardiomegaly": "1.0", "Edema": "-1.0"}),
              ("train", "patient00002", "study1", "view1_frontal", "Frontal", "PA", {"No Finding": "1.0", "Fracture": "0.0"})],
    "valid": [("valid", "patient64541", "study1", "view1_frontal", "Frontal", "AP", {"Pleural Effusion": "1.0"})],
    "test_labels": [("test", "patient64741", "study1", "view1_frontal", "Frontal", "PA", {"Lung Opacity": "1"})],
}


def test_chexpert_splits_patients_labels_views(tmp_path):
    root = write_chexpert(tmp_path, ROWS)
    ds = load_dataset(f"chexpert:{root}")
    assert [(s.patient_id, s.split) for s in ds.samples] == [
        ("patient00001", "train"), ("patient00001", "train"), ("patient00002", "train"),
        ("patient64541", "val"), ("patient64741", "test")]
    first = ds.samples[0]
    assert first.labels == {"Cardiomegaly": 1, "Edema": -1} and first.report is None
    assert first.image_path == tmp_path / "CheXpert-v1.0-small" / "train" / "patient00001" / "study1" / "view1_frontal.jpg"
    assert first.load_image().size == (8, 8)
    assert ds.samples[2].labels == {"No Finding": 1, "Fracture": 0}
    frontal = load_dataset(f"chexpert:{root}", {"views": "frontal"})
    assert len(frontal.samples) == 4 and all("frontal" in s.id for s in frontal.samples)
    assert len(load_dataset(f"chexpert:{root}", {"views": "PA"}).samples) == 2
    assert load_dataset(f"chexpert:{tmp_path}").samples[0].image_path == first.image_path  # PATH = the parent


def test_chexpert_bad_label_and_missing_image(tmp_path):
    rows = {"train": ROWS["train"] + [("train", "patient00003", "study1", "view1_frontal", "Frontal", "AP", {"Edema": "2.0"})]}
    root = write_chexpert(tmp_path, rows)
    (tmp_path / "CheXpert-v1.0-small" / "train" / "patient00002" / "study1" / "view1_frontal.jpg").unlink()
    with pytest.raises(DatasetError) as e:
        load_dataset(f"chexpert:{root}")
    assert "train.csv:5: label 'Edema' = '2.0'" in str(e.value)
    assert "patient00002/study1/view1_frontal.jpg: image file not found" in str(e.value)
    kept = load_dataset(f"chexpert:{root}", on_bad_sample="skip")
    assert [s.patient_id for s in kept.samples] == ["patient00001", "patient00001"] and len(kept.bad) == 2


PLUS = [("train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP", "patient00001",
         "Heart is enlarged. Small effusion.", "Cardiomegaly.", "train"),
        ("train/patient00001/study1/view2_lateral.jpg", "Lateral", "", "patient00001",
         "Heart is enlarged. Small effusion.", "Cardiomegaly.", "train"),
        ("valid/patient64541/study1/view1_frontal.jpg", "Frontal", "PA", "patient64541", "", "No acute process.", "valid")]


def test_chexpert_plus_sections_images_and_labels(tmp_path):
    labels = {PLUS[0][0]: {"Cardiomegaly": 1.0, "Pleural Effusion": 1.0, "Edema": None}}
    root = write_chexpert_plus(tmp_path / "plus", PLUS, labels)
    ds = load_dataset(f"chexpert-plus:{root}")
    assert [(s.patient_id, s.split, s.report) for s in ds.samples] == [
        ("patient00001", "train", "Heart is enlarged. Small effusion. Cardiomegaly."),
        ("patient00001", "train", "Heart is enlarged. Small effusion. Cardiomegaly."),
        ("patient64541", "val", "No acute process.")]
    assert ds.samples[0].labels == {"Cardiomegaly": 1, "Pleural Effusion": 1} and ds.samples[2].labels is None
    assert ds.preprocessing["report"]["protocol"] == "findings+impression"
    findings = load_dataset(f"chexpert-plus:{root}", {"section": "findings", "views": "frontal"}, on_bad_sample="skip")
    assert [s.id for s in findings.samples] == [PLUS[0][0]]
    assert [b.reason for b in findings.bad] == ["no FINDINGS section in the report"]
    png = load_dataset(f"chexpert-plus:{root}", {"images": "png"})
    assert png.samples[0].image_path.suffix == ".png" and png.samples[0].load_image().mode == "L"
    dcm = load_dataset(f"chexpert-plus:{root}", {"images": "dcm"})
    assert dcm.samples[0].image_path.suffix == ".dcm" and dcm.preprocessing["image"]["reader"] == "pydicom"
    assert dcm.samples[0].load_image().mode == "L"
