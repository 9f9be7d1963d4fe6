"""PathGen layouts (JSON + tiles, PathGen's flat extraction output, MeDiM's split folders), synthetic."""
from __future__ import annotations

import pytest
from layout_writers import write_image, write_pathgen_json

from medbench.data.pathgen import hash_split, patient_of
from medbench.data.resolve import load_dataset
from medbench.data.validate import DatasetError

WSI_A = "TCGA-AA-3844-01Z-00-DX1.bf88ce1f-0601-40c8-813e-4e3df51bd2f0"
WSI_A2 = "TCGA-AA-3844-01Z-00-DX2.0a1b2c3d-0000-0000-0000-000000000000"
WSI_B = "TCGA-55-8621-01Z-00-DX1.7C519007-D59D-432A-BF4D-23D14A1C8BB6"


def test_patient_is_the_tcga_case_barcode():
    assert patient_of(WSI_A) == patient_of(WSI_A2) == patient_of(f"{WSI_A}_35136_33344") == "TCGA-AA-3844"
    assert patient_of("slide7_10_20") == "slide7"


@pytest.mark.parametrize("nested", [False, True])
def test_json_and_tiles(tmp_path, nested):
    root = write_pathgen_json(tmp_path / "pg", [
        (WSI_A, 35136, 33344, "The colon tissue exhibits pleomorphism.", True),
        (WSI_A2, 100, 200, "Glandular architecture is preserved.", True),
        (WSI_B, 13280, 13056, "Dense fibrosis.", False),  # tile not extracted
        (WSI_B, 1, 2, "", True),  # empty caption
    ], nested=nested)
    ds = load_dataset(f"pathgen:{root}", on_bad_sample="skip")
    assert [(s.id, s.patient_id, s.split, s.domain) for s in ds.samples] == [
        (f"{WSI_A}_35136_33344", "TCGA-AA-3844", "test", "path"), (f"{WSI_A2}_100_200", "TCGA-AA-3844", "test", "path")]
    assert ds.samples[0].report == "The colon tissue exhibits pleomorphism."
    assert ds.samples[0].load_image().mode == "RGB"
    reasons = sorted(b.reason.split(" (")[0] for b in ds.bad)
    assert reasons[0] == "empty report" and reasons[1].startswith("tile not found in")
    with pytest.raises(DatasetError, match="tile not found"):
        load_dataset(f"pathgen:{root}")


def test_flat_extraction_folder_and_patient_hash_split(tmp_path):
    root = tmp_path / "flat"
    stems = [f"{wsi}_{x}_{x + 1}" for wsi in (WSI_A, WSI_A2, WSI_B) for x in range(3)]
    for stem in stems:
        write_image(root / f"{stem}.png", mode="RGB")
        (root / f"{stem}.txt").write_text("Tumour cells with hyperchromatic nuclei.")
    flat = load_dataset(f"pathgen:{root}")
    assert {s.split for s in flat.samples} == {"test"} and {s.patient_id for s in flat.samples} == {"TCGA-AA-3844", "TCGA-55-8621"}
    hashed = load_dataset(f"pathgen:{root}", {"split": "patient-hash", "val_fraction": 0.3, "test_fraction": 0.3})
    for s in hashed.samples:
        assert s.split == hash_split(s.patient_id, 0.3, 0.3)
    by_patient = {}
    for s in hashed.samples:
        by_patient.setdefault(s.patient_id, set()).add(s.split)
    assert all(len(splits) == 1 for splits in by_patient.values())  # a patient never straddles splits
    assert hashed.preprocessing["split"] == "patient-hash" and hashed.preprocessing["test_fraction"] == 0.3


def test_hash_split_proportions():
    splits = [hash_split(f"TCGA-XX-{i:04d}", 0.1, 0.2) for i in range(5000)]
    assert abs(splits.count("test") / 5000 - 0.2) < 0.03 and abs(splits.count("val") / 5000 - 0.1) < 0.03


def test_medim_split_folders(tmp_path):
    for split, wsi in (("train", WSI_A), ("test", WSI_B)):
        write_image(tmp_path / split / f"{wsi}_1_2.png", mode="RGB")
        (tmp_path / split / f"{wsi}_1_2.txt").write_text("Necrosis is present.")
    ds = load_dataset(f"pathgen:{tmp_path}")
    assert [(s.patient_id, s.split) for s in ds.samples] == [("TCGA-AA-3844", "train"), ("TCGA-55-8621", "test")]
    assert ds.preprocessing["layout"] == "split folders"
