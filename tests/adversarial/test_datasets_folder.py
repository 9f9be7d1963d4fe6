"""qa-findings rows F1-F50: a folder dataset with one defect is refused naming the file and the
problem, or accepted as documented (with a warning where the numbers depend on it). Runs write
nothing outside --out, whatever the sample ids hold.

F27, F33/F34 and F46 are in test_datasets_labels.py (label keys outside the labeler's observations,
a dataset that turns "mixed", a flat folder with no train split)."""
from __future__ import annotations

import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from advhelpers import Sandbox, record, run, samples, tiny_dataset
from medbench.data.resolve import load_dataset
from medbench.errors import UserError
from medbench.safe_names import file_stem

VICTIM = "test/test003"


@pytest.fixture
def box(tmp_path):
    box = Sandbox(tmp_path)
    box.dataset = tiny_dataset(box)
    return box


def _labels(box, edit, split="test"):
    """Rewrite test/labels.jsonl: edit(rows) changes the list of row dicts in place."""
    path = box.dataset / split / "labels.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    edit(rows)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _set_label(value):
    def edit(rows):
        rows[3]["labels"]["Cardiomegaly"] = value
    return edit


def _bomb_png(path, side=100_000):
    """A PNG whose header claims side x side pixels (PIL refuses it at open)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _symloop(p):
    p.unlink()
    os.symlink(p.name, p)


REFUSED = {  # row: (mutation(box, png, txt), expected "file: problem" text ("{png}"/"{txt}"/"{labels}" filled in))
    "F1": (lambda b, png, txt: png.write_bytes(png.read_bytes()[: png.stat().st_size // 2]), "{png}: truncated or corrupt image"),
    "F2": (lambda b, png, txt: png.write_bytes(png.read_bytes()[:-12]), "{png}: truncated PNG: the file does not end with the IEND chunk"),
    "F3": (lambda b, png, txt: png.write_bytes(b""), "{png}: empty image file (0 bytes)"),
    "F4": (lambda b, png, txt: png.write_text("text"), "{png}: not an image PIL can read"),
    "F5": (lambda b, png, txt: Image.fromarray(np.full((32, 32), 999, np.uint16)).save(png), "{png}: unsupported image mode 'I;16'"),
    "F9": (lambda b, png, txt: _bomb_png(png, 12_000), "{png}: image of 12000x12000 = 144,000,000 pixels is above PIL's decompression-bomb limit"),
    "F10": (lambda b, png, txt: _bomb_png(png), "{png}: image refused as a decompression bomb"),
    "F13": (lambda b, png, txt: txt.write_bytes(b"Normal \xff heart."), "{txt}: report is not UTF-8: invalid byte 0xff at byte offset 7"),
    "F14": (lambda b, png, txt: txt.write_text("   "), "{txt}: empty report"),
    "F15": (lambda b, png, txt: txt.write_text("x" * 1_000_000), "{txt}: report too long: more than 80000 bytes (limit 20000 characters)"),
    "F16": (lambda b, png, txt: txt.unlink(), "{png}: image has no report: test003.txt is missing"),
    "F17": (lambda b, png, txt: png.unlink(), "{txt}: report has no image"),
    "F18": (lambda b, png, txt: shutil.copy(png, png.with_suffix(".PNG")), "duplicate id 'test003': several images for one id: test003.PNG, test003.png"),
    "F19": (lambda b, png, txt: (shutil.copy(png, b.dataset / "train" / png.name), shutil.copy(txt, b.dataset / "train" / txt.name)),
            "duplicate id 'test003' in split test: also"),
    "F20": (lambda b, png, txt: _labels(b, _set_label(float("nan"))), "{labels}:4: label 'Cardiomegaly' = nan is not one of 1, 0, -1"),
    "F21": (lambda b, png, txt: _labels(b, _set_label(float("inf"))), "{labels}:4: label 'Cardiomegaly' = inf is not one of"),
    "F22": (lambda b, png, txt: _labels(b, _set_label("nan")), "{labels}:4: label 'Cardiomegaly' = 'nan' is not one of"),
    "F23": (lambda b, png, txt: _labels(b, _set_label(2)), "{labels}:4: label 'Cardiomegaly' = 2 is not one of"),
    "F24": (lambda b, png, txt: _labels(b, _set_label("yes")), "{labels}:4: label 'Cardiomegaly' = 'yes' is not one of"),
    "F25": (lambda b, png, txt: _labels(b, _set_label(True)), "{labels}:4: label 'Cardiomegaly' = True is not one of"),
    "F28": (lambda b, png, txt: _labels(b, lambda rows: rows[3].update(labels=[1, 0])), "{labels}:4: labels must be a JSON object"),
    "F29": (lambda b, png, txt: _labels(b, lambda rows: rows.__setitem__(slice(3, 5), ['{"id": "test003", ', '{"id": "test004"'])),
            "{labels}:4: malformed JSON"),
    "F30": (lambda b, png, txt: _labels(b, lambda rows: rows.append(rows[3])), "{labels}:11: duplicate labels line for id 'test003' (first at {labels}:4)"),
    "F31": (lambda b, png, txt: _labels(b, lambda rows: rows.append({"id": "../../etc/passwd"})),
            "{labels}:11: labels for id '../../etc/passwd' but no image or report file in the test split"),
    "F35": (lambda b, png, txt: _labels(b, lambda rows: rows[3].update(prompt=12345)), "{labels}:4: prompt must be a string, got int 12345"),
    "F36": (lambda b, png, txt: _labels(b, lambda rows: rows[3].update(patient_id=["a", "b"])),
            "{labels}:4: patient_id must be a string or an integer, got list"),
    "F37": (lambda b, png, txt: (_labels(b, lambda rows: rows[3].update(patient_id="SHARED")),
                                 _labels(b, lambda rows: rows[0].update(patient_id="SHARED"), split="train")),
            "patient 'SHARED' appears in more than one split"),
    "F38": (lambda b, png, txt: _symloop(png), "{png}: symlink loop"),
    "F45": (lambda b, png, txt: (shutil.copy(png, b.dataset / png.name), shutil.copy(txt, b.dataset / txt.name)),
            "and also 1 image+report pair(s) directly in it (e.g. test003)"),
    "F48": (lambda b, png, txt: (png.unlink(), Image.new("CMYK", (32, 32)).save(png.with_suffix(".jpg"))),
            "{jpg}: unsupported image mode 'CMYK'"),
    "F49": (lambda b, png, txt: Image.fromarray(np.full((32, 32), np.nan, np.float32)).save(png, format="TIFF"),
            "{png}: unsupported image mode 'F'"),
}


@pytest.mark.parametrize("row", sorted(REFUSED, key=lambda r: int(r[1:])))
def test_defect_is_refused_naming_the_file(row, box):
    mutate, expected = REFUSED[row]
    png, txt = box.dataset / f"{VICTIM}.png", box.dataset / f"{VICTIM}.txt"
    mutate(box, png, txt)
    with pytest.raises(UserError) as e:
        load_dataset(f"folder:{box.dataset}")
    labels = box.dataset / "test" / "labels.jsonl"
    assert expected.format(png=png, txt=txt, labels=labels, jpg=png.with_suffix(".jpg")) in str(e.value)


def test_F29_every_malformed_label_line_is_listed_and_skip_records_them(box):
    _labels(box, lambda rows: rows.__setitem__(slice(3, 5), ['{"id": "test003", ', '{"id": "test004"']))
    with pytest.raises(UserError) as e:
        load_dataset(f"folder:{box.dataset}")
    labels = box.dataset / "test" / "labels.jsonl"
    assert f"{labels}:4: malformed JSON" in str(e.value) and f"{labels}:5: malformed JSON" in str(e.value)
    ds = load_dataset(f"folder:{box.dataset}", on_bad_sample="skip")
    assert {b.id for b in ds.bad} == {"test003", "test004"} and len(ds.split("test")) == 8


@pytest.mark.parametrize("row,kind", [("F43", "no test"), ("F44", "empty test")])
def test_no_test_pairs_is_refused(row, kind, box, capsys):
    shutil.rmtree(box.dataset / "test")
    if kind == "empty test":
        (box.dataset / "test").mkdir()
    box.seal()
    rc, err, run_dir = run(box, capsys, "--model", "oracle", "--dataset", f"folder:{box.dataset}", n=1)
    assert rc == 2 and "has no complete image-report pairs in split 'test'" in err and run_dir is None
    box.assert_nothing_outside_out()


ACCEPTED = {  # row: mutation that the loader accepts as documented
    "F6": lambda b, png, txt: Image.new("RGBA", (32, 32), (80, 80, 80, 128)).save(png),
    "F26": lambda b, png, txt: _labels(b, lambda rows: rows[3]["labels"].update(Cardiomegaly="1e0", Edema=-0.0)),
    "F32": lambda b, png, txt: (b.dataset / "test" / "labels.jsonl").write_bytes(b"\xef\xbb\xbf" + (b.dataset / "test" / "labels.jsonl").read_bytes()),
    "F39": lambda b, png, txt: os.symlink(".", b.dataset / "test" / "loopdir"),
    "F47": lambda b, png, txt: Image.new("P", (32, 32), 3).save(png, transparency=3),
    "F50": lambda b, png, txt: txt.rename(txt.with_suffix(".TXT")),
}


@pytest.mark.parametrize("row", sorted(ACCEPTED, key=lambda r: int(r[1:])))
def test_documented_input_is_accepted(row, box):
    png, txt = box.dataset / f"{VICTIM}.png", box.dataset / f"{VICTIM}.txt"
    ACCEPTED[row](box, png, txt)
    ds = load_dataset(f"folder:{box.dataset}")
    victim = next(s for s in ds.split("test") if s.id == "test003")
    assert len(ds.split("test")) == 10 and not ds.bad
    if row == "F26":
        assert victim.labels["Cardiomegaly"] == 1 and victim.labels["Edema"] == 0
    if row == "F32":
        assert ds.split("test")[0].labels is not None


@pytest.mark.parametrize("row,size", [("F7", (1, 1)), ("F8", (700, 700)), ("F11", None), ("F12", "RGB")])
def test_odd_reference_images_are_run_with_a_warning(row, size, box, capsys):
    png = box.dataset / f"{VICTIM}.png"
    if row == "F11":  # every test image a different size
        for i, p in enumerate(sorted((box.dataset / "test").glob("*.png"))):
            Image.open(p).resize((20 + i, 20 + i)).save(p)
    elif row == "F12":
        for p in sorted((box.dataset / "test").glob("*.png"))[:5]:
            Image.open(p).convert("RGB").save(p)
    else:
        Image.open(png).resize(size).save(png)
    box.seal()
    rc, err, run_dir = run(box, capsys, "--model", "oracle", "--dataset", f"folder:{box.dataset}", task="adv_joint", n=10)
    assert rc == 0, err
    messages = " ".join(w["message"] for w in record(run_dir)["warnings"])
    assert ("different modes" if row == "F12" else "different sizes") in messages
    box.assert_nothing_outside_out()


def test_F40_F41_F42_odd_ids_are_scored_and_stay_inside_out(box, capsys):
    names = ["with space", "ünïcode", "a;rm -rf ~", "-rf", "<img src=x onerror=alert(7)>", "{{7*7}}", "new\nline"]
    for i, name in enumerate(names):
        for suffix in (".png", ".txt"):
            (box.dataset / "test" / f"test{i:03d}{suffix}").rename(box.dataset / "test" / f"{name}{suffix}")
    _labels(box, lambda rows: [r.update(id=names[int(r["id"][4:])]) for r in rows if int(r["id"][4:]) < len(names)])
    box.seal()
    rc, err, run_dir = run(box, capsys, "--model", "oracle", "--dataset", f"folder:{box.dataset}", task="adv_joint", n=10)
    assert rc == 0, err
    box.assert_nothing_outside_out()
    rows = {s["id"]: s for s in samples(run_dir)}
    assert set(names) <= set(rows)
    for name in names:
        assert rows[name]["file_stem"] == file_stem(name)
        assert (run_dir / rows[name]["outputs"]["report_path"]).read_text() == rows[name]["reference"]["report"]
    assert rows["with space"]["file_stem"] == "with space" and rows["new\nline"]["file_stem"].startswith("~")
    assert record(run_dir)["metrics"]["nlg.medim-paper.bleu4"]["value"] == pytest.approx(1.0)
