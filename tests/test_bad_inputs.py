"""Each bad input, alone in a tiny dataset, is named with its exact file and reason.

Every case builds a small valid folder (train + test), adds exactly one defect, and checks the
DatasetError of the default policy, then that "skip" drops exactly the bad sample(s).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from medbench.data.base import BadSample
from medbench.data.resolve import load_dataset, load_unvalidated
from medbench.data.validate import DatasetError, validate

REPORT = "Heart size is normal. No pleural effusion."


def write_pair(folder: Path, sid: str, report: str | bytes = REPORT, *, suffix=".png", array=None, seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if array is None:
        array = np.random.default_rng(seed).integers(0, 255, (32, 32), dtype=np.uint8)
    image = folder / f"{sid}{suffix}"
    Image.fromarray(array).save(image, format="JPEG" if suffix.lower() in (".jpg", ".jpeg") else "PNG")
    text = folder / f"{sid}.txt"
    text.write_bytes(report if isinstance(report, bytes) else report.encode())
    return image


def good_folder(root: Path) -> Path:
    """train: t0..t3 (patients pa, pa, pb, pb), test: s0, s1 (patients pc, pd)."""
    for i in range(4):
        write_pair(root / "train", f"t{i}", seed=i)
    for i in range(2):
        write_pair(root / "test", f"s{i}", seed=10 + i)
    rows = [{"id": f"t{i}", "patient_id": "pa" if i < 2 else "pb", "labels": {"Cardiomegaly": 0}} for i in range(4)]
    (root / "train" / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows = [{"id": f"s{i}", "patient_id": f"p{'cd'[i]}"} for i in range(2)]
    (root / "test" / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def failure(root: Path, **kw) -> str:
    with pytest.raises(DatasetError) as err:
        load_dataset(f"folder:{root}", **kw)
    message = str(err.value)
    assert "--on-bad-sample skip" in message
    return message


def skipped(root: Path, expected_ids: set[str], **kw):
    ds = load_dataset(f"folder:{root}", on_bad_sample="skip", **kw)
    all_ids = {s.id for s in load_unvalidated(f"folder:{root}").samples} | {b.id for b in ds.bad}
    assert {s.id for s in ds.samples} == all_ids - expected_ids - {""}
    assert {b.id for b in ds.bad} - {""} == expected_ids
    return ds


def test_good_folder_has_no_bad_samples(tmp_path):
    ds = load_dataset(f"folder:{good_folder(tmp_path)}")
    assert len(ds.samples) == 6 and ds.bad == []


# ------------------------------------------------------------------------------ images


def test_truncated_png(tmp_path):
    root = good_folder(tmp_path)
    image = write_pair(root / "test", "s1", array=np.random.default_rng(5).integers(0, 255, (64, 64), dtype=np.uint8))
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    assert f"{image}: truncated or corrupt image" in failure(root)
    skipped(root, {"s1"})


def test_png_missing_its_end_is_truncated(tmp_path):
    root = good_folder(tmp_path)
    image = root / "train" / "t2.png"
    image.write_bytes(image.read_bytes()[:-12])  # the IEND chunk is gone, the pixels are all there
    assert f"{image}: truncated PNG" in failure(root)


def test_truncated_jpeg(tmp_path):
    root = good_folder(tmp_path)
    array = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    image = write_pair(root / "test", "s0", suffix=".jpg", array=array)
    (root / "test" / "s0.png").unlink()
    data = image.read_bytes()
    image.write_bytes(data[: int(len(data) * 0.6)])
    message = failure(root)
    assert f"{image}: truncated or corrupt image" in message and "truncated" in message.split(str(image))[1]
    skipped(root, {"s0"})


def test_truncated_image_caught_even_if_pil_was_told_to_accept_it(tmp_path):
    root = good_folder(tmp_path)
    image = write_pair(root / "test", "s1", array=np.random.default_rng(5).integers(0, 255, (64, 64), dtype=np.uint8))
    image.write_bytes(image.read_bytes()[:400])
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        assert f"{image}: truncated or corrupt image" in failure(root)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the global is restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_unreadable_image(tmp_path):
    root = good_folder(tmp_path)
    image = root / "train" / "t1.png"
    image.write_bytes(b"this is not an image at all")
    assert f"{image}: not an image PIL can read" in failure(root)


def test_zero_byte_image(tmp_path):
    root = good_folder(tmp_path)
    image = root / "train" / "t3.png"
    image.write_bytes(b"")
    assert f"{image}: empty image file (0 bytes)" in failure(root)
    skipped(root, {"t3"})


def test_sixteen_bit_image_is_an_unsupported_mode(tmp_path):
    root = good_folder(tmp_path)
    image = write_pair(root / "train", "t0", array=np.full((16, 16), 40000, dtype=np.uint16))
    message = failure(root)
    assert f"{image}: unsupported image mode" in message and "8-bit" in message


def test_extension_that_lies_about_the_format(tmp_path):
    root = good_folder(tmp_path)
    image = root / "test" / "s0.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(image, format="JPEG")
    assert f"{image}: file name says PNG but the content is JPEG" in failure(root)


# ------------------------------------------------------------------------------ reports


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_empty_report(tmp_path, text):
    root = good_folder(tmp_path)
    write_pair(root / "train", "t1", text)
    assert f"{root / 'train' / 't1.txt'}: empty report" in failure(root)
    skipped(root, {"t1"})


def test_non_utf8_report_names_the_byte_offset(tmp_path):
    root = good_folder(tmp_path)
    text = "Heart size normal. ".encode() + b"\xff" + b" effusion."
    write_pair(root / "test", "s1", text)
    offset = text.index(b"\xff")
    assert f"{root / 'test' / 's1.txt'}: report is not UTF-8: invalid byte 0xff at byte offset {offset}" in failure(root)
    skipped(root, {"s1"})


def test_over_long_report(tmp_path):
    root = good_folder(tmp_path)
    write_pair(root / "train", "t0", "word " * 30)
    message = failure(root, options={"max_report_chars": 100})
    assert f"{root / 'train' / 't0.txt'}: report too long: 149 characters (limit 100)" in message
    skipped(root, {"t0"}, options={"max_report_chars": 100})


def test_huge_report_is_not_read_whole(tmp_path):
    root = good_folder(tmp_path)
    write_pair(root / "train", "t0", "x" * 1000)
    assert f"{root / 'train' / 't0.txt'}: report too long: more than 400 bytes" in failure(root, options={"max_report_chars": 100})


# ------------------------------------------------------------------------------ pairs and ids


def test_image_without_report(tmp_path):
    root = good_folder(tmp_path)
    (root / "train" / "t2.txt").unlink()
    assert f"{root / 'train' / 't2.png'}: image has no report: t2.txt is missing" in failure(root)
    skipped(root, {"t2"})


def test_report_without_image(tmp_path):
    root = good_folder(tmp_path)
    (root / "test" / "s0.png").unlink()
    assert f"{root / 'test' / 's0.txt'}: report has no image" in failure(root)
    skipped(root, {"s0"})


def test_duplicate_id_across_splits_names_both_files(tmp_path):
    root = good_folder(tmp_path)
    write_pair(root / "test", "t1")
    message = failure(root)
    first, second = root / "train" / "t1.png", root / "test" / "t1.png"
    assert f"{first}: duplicate id 't1' in split train: also {second} (test)" in message
    assert f"{second}: duplicate id 't1' in split test: also {first} (train)" in message
    ds = skipped(root, {"t1"})
    assert len([b for b in ds.bad if b.id == "t1"]) == 2


def test_duplicate_id_within_a_split(tmp_path):
    root = good_folder(tmp_path)
    write_pair(root / "train", "t0", suffix=".jpg", array=np.zeros((16, 16, 3), np.uint8))
    message = failure(root)
    assert f"{root / 'train' / 't0.jpg'}: duplicate id 't0': several images for one id: t0.jpg, t0.png" in message
    skipped(root, {"t0"})


def test_patient_in_two_splits(tmp_path):
    root = good_folder(tmp_path)
    (root / "test" / "labels.jsonl").write_text(json.dumps({"id": "s0", "patient_id": "pa"}) + "\n" + json.dumps({"id": "s1", "patient_id": "pd"}) + "\n")
    message = failure(root)
    for sid, split in [("t0", "train"), ("t1", "train"), ("s0", "test")]:
        assert (f"{root / split / sid}.png: patient 'pa' appears in more than one split (test: 1, train: 2 samples)"
                in message)
    skipped(root, {"t0", "t1", "s0"})


# ------------------------------------------------------------------------------ labels.jsonl


def test_malformed_labels_line_names_file_and_line(tmp_path):
    root = good_folder(tmp_path)
    labels = root / "train" / "labels.jsonl"
    lines = labels.read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut the closing braces of t2's line
    labels.write_text("\n".join(lines) + "\n")
    message = failure(root)
    assert f"{labels}:3: malformed JSON: " in message
    ds = skipped(root, {"t2"})  # the id is still recognisable in the broken line
    assert ds.bad[0].path == f"{labels}:3"


def test_label_value_outside_chexpert_values(tmp_path):
    root = good_folder(tmp_path)
    labels = root / "train" / "labels.jsonl"
    lines = labels.read_text().splitlines()
    lines[1] = json.dumps({"id": "t1", "patient_id": "pa", "labels": {"Cardiomegaly": 2}})
    labels.write_text("\n".join(lines) + "\n")
    assert f"{labels}:2: label 'Cardiomegaly' = 2 is not one of 1, 0, -1" in failure(root)
    skipped(root, {"t1"})


def test_labels_for_an_id_without_files(tmp_path):
    root = good_folder(tmp_path)
    labels = root / "test" / "labels.jsonl"
    labels.write_text(labels.read_text() + json.dumps({"id": "ghost"}) + "\n")
    assert f"{labels}:3: labels for id 'ghost' but no image or report file in the test split" in failure(root)
    ds = skipped(root, {"ghost"})
    assert len(ds.samples) == 6  # nothing real was dropped


def test_duplicate_labels_line(tmp_path):
    root = good_folder(tmp_path)
    labels = root / "train" / "labels.jsonl"
    labels.write_text(labels.read_text() + json.dumps({"id": "t0", "labels": {"Edema": 1}}) + "\n")
    assert f"{labels}:5: duplicate labels line for id 't0' (first at {labels}:1)" in failure(root)
    skipped(root, {"t0"})


# ------------------------------------------------------------------------------ manifests


def manifest_folder(root: Path) -> Path:
    for i in range(3):
        write_pair(root / "img", f"m{i}", seed=i)
    return root


def test_manifest_missing_image_names_file_and_line(tmp_path):
    root = manifest_folder(tmp_path)
    rows = [{"id": f"m{i}", "split": "test", "image": f"img/m{i}.png", "report": REPORT} for i in range(3)]
    rows[1]["image"] = "img/nope.png"
    manifest = root / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError) as err:
        load_dataset(f"manifest:{manifest}")
    assert f"{root / 'img' / 'nope.png'}: image file not found (listed at {manifest}:2)" in str(err.value)
    ds = load_dataset(f"manifest:{manifest}", on_bad_sample="skip")
    assert [s.id for s in ds.samples] == ["m0", "m2"] and [b.id for b in ds.bad] == ["m1"]


def test_manifest_malformed_line_and_duplicate_id(tmp_path):
    root = manifest_folder(tmp_path)
    manifest = root / "m.jsonl"
    good = [json.dumps({"id": f"m{i}", "image": f"img/m{i}.png", "report": REPORT}) for i in range(3)]
    manifest.write_text("\n".join([good[0], "{not json", good[1], good[0], good[2]]) + "\n")
    message = str(pytest.raises(DatasetError, load_dataset, f"manifest:{manifest}").value)
    assert f"{manifest}:2: malformed JSON: " in message
    assert f"{manifest}:1: duplicate id 'm0': also at {manifest}:4" in message
    assert f"{manifest}:4: duplicate id 'm0': also at {manifest}:1" in message


def test_csv_manifest_bad_label_cell_and_split(tmp_path):
    root = manifest_folder(tmp_path)
    manifest = root / "m.csv"
    manifest.write_text("id,split,image,report,label:Edema\n"
                        f"m0,test,img/m0.png,{REPORT},1\n"
                        f"m1,test,img/m1.png,{REPORT},maybe\n"
                        f"m2,holdout,img/m2.png,{REPORT},0\n")
    message = str(pytest.raises(DatasetError, load_dataset, f"manifest:{manifest}").value)
    assert f"{manifest}:3: label 'Edema' = 'maybe' is not one of 1, 0, -1" in message
    assert f"{manifest}:4: split 'holdout' is not one of train, val, test" in message
    ds = load_dataset(f"manifest:{manifest}", on_bad_sample="skip")
    assert [s.id for s in ds.samples] == ["m0"] and {b.id for b in ds.bad} == {"m1", "m2"}


def test_csv_manifest_without_id_column(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,image,report\nx,a.png,text\n")
    with pytest.raises(DatasetError, match=r"m\.csv:1: the CSV header has no 'id' column"):
        load_dataset(f"manifest:{manifest}")


# ------------------------------------------------------------------------------ the policy


def test_fail_lists_every_bad_sample_and_skip_keeps_the_rest(tmp_path):
    root = good_folder(tmp_path)
    write_pair(root / "train", "t1", "")  # empty report
    (root / "test" / "s0.txt").unlink()  # half a pair
    (root / "train" / "t3.png").write_bytes(b"")  # zero bytes
    message = failure(root)
    assert "has 3 bad sample(s)" in message
    for path in (root / "train" / "t1.txt", root / "test" / "s0.png", root / "train" / "t3.png"):
        assert f"  {path}: " in message
    ds = skipped(root, {"t1", "s0", "t3"})
    assert sorted(s.id for s in ds.samples) == ["s1", "t0", "t2"]
    assert all(isinstance(b, BadSample) for b in ds.bad) and len(ds.bad) == 3


def test_validate_without_decoding_still_checks_existence(tmp_path):
    root = good_folder(tmp_path)
    (root / "train" / "t0.png").write_bytes(b"garbage")
    ds = load_unvalidated(f"folder:{root}")
    assert validate(ds, check_images=False) == []
    assert [b.id for b in validate(ds)] == ["t0"]
    (root / "train" / "t0.png").unlink()
    assert [b.reason for b in validate(ds, check_images=False)] == ["image file not found"]


def test_unknown_policy_and_everything_bad(tmp_path):
    root = good_folder(tmp_path)
    with pytest.raises(ValueError, match="on_bad_sample must be one of fail, skip"):
        load_dataset(f"folder:{root}", on_bad_sample="ignore")
    for txt in root.rglob("*.txt"):
        txt.write_text("")
    with pytest.raises(DatasetError, match="every sample is bad"):
        load_dataset(f"folder:{root}", on_bad_sample="skip")
