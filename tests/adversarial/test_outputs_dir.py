"""qa-findings rows O1-O32: a broken `outputs:DIR` is refused before any run folder is made, with one
line per bad file naming it and the problem (the folder loader's rules); what is accepted is scored
with every change recorded; a rewritten DIR is scored anew. Nothing is ever written outside --out.

(O33/O34, HTML and CSV escaping of report and leaderboard, are covered by the report and
leaderboard tests.)"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from advhelpers import Sandbox, oracle_outputs, record, run, samples, tiny_dataset

BROKEN = "test003"  # the sample whose output each case breaks


def _truncate(p, keep):
    data = p.read_bytes()
    p.write_bytes(data[:keep(len(data))])


def _tiff_as_png(p, array):
    p.unlink()
    Image.fromarray(array).save(p, format="TIFF")


def _symlink(p, target):
    p.unlink()
    os.symlink(target, p)


def _dir_instead(p):
    p.unlink()
    p.mkdir()


def _fifo(p):
    p.unlink()
    os.mkfifo(p)


def _cmyk(p):
    p.unlink()
    Image.new("CMYK", (32, 32), (10, 20, 30, 40)).save(p.with_suffix(".jpg"), format="JPEG")


def _jpeg_as_png(p):
    Image.open(p).convert("RGB").save(p, format="JPEG")


REFUSED = {  # row: (mutation of DIR/test003.png or .txt, which file the message names, expected problem)
    "O1": (lambda png, txt: _truncate(png, lambda n: n // 2), "png", "truncated or corrupt image"),
    "O2": (lambda png, txt: _truncate(png, lambda n: n - 12), "png", "truncated PNG: the file does not end with the IEND chunk"),
    "O3": (lambda png, txt: png.write_bytes(b""), "png", "empty image file (0 bytes)"),
    "O4": (lambda png, txt: png.write_text("not an image"), "png", "not an image PIL can read"),
    "O5": (lambda png, txt: Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(png), "png", "unsupported image mode 'I;16'"),
    "O10": (lambda png, txt: _cmyk(png), "jpg", "unsupported image mode 'CMYK'"),
    "O11": (lambda png, txt: Image.new("1", (32, 32), 1).save(png), "png", "unsupported image mode '1'"),
    "O12": (lambda png, txt: _tiff_as_png(png, np.full((32, 32), 7, np.int32)), "png", "unsupported image mode 'I'"),
    "O13": (lambda png, txt: _tiff_as_png(png, np.full((32, 32), np.nan, np.float32)), "png", "unsupported image mode 'F'"),
    "O14": (lambda png, txt: _jpeg_as_png(png), "png", "file name says PNG but the content is JPEG"),
    "O15": (lambda png, txt: txt.write_bytes(b"No effusion \xff\xfe."), "txt", "report is not UTF-8: invalid byte 0xff at byte offset 12"),
    "O16": (lambda png, txt: txt.write_bytes("Pleural effusion, r\u00e9sum\u00e9.".encode("latin-1")), "txt", "report is not UTF-8"),
    "O20": (lambda png, txt: txt.write_text("No effusion. " * 80_000), "txt", "report too long: more than 80000 bytes"),
    "O21": (lambda png, txt: txt.write_bytes(b"No effusion.\x00\x00 Heart normal."), "txt", "report contains NUL bytes (first at byte offset 12)"),
    "O25": (lambda png, txt: Image.new("L", (32, 32), 9).save(png.with_suffix(".PNG")), "png", "several image files for one id"),
    "O26": (lambda png, txt: Image.new("L", (32, 32), 9).save(png.with_suffix(".jpg")), "png", "several image files for one id"),
    "O27": (lambda png, txt: _symlink(png, png.name), "png", "symlink loop"),
    "O28": (lambda png, txt: _symlink(png, png.parent), "png", "is a directory, not a file"),
    "O29": (lambda png, txt: _dir_instead(txt), "txt", "is a directory, not a file"),
    "O30": (lambda png, txt: _symlink(txt, "/etc/passwd"), "txt", "symlink leads outside"),
    "O31": (lambda png, txt: _fifo(txt), "txt", "not a regular file (a FIFO (named pipe))"),
}


@pytest.fixture
def sandbox(tmp_path):
    box = Sandbox(tmp_path)
    box.dataset = tiny_dataset(box)
    box.dir = oracle_outputs(box.dataset, tmp_path / "gen")
    return box


@pytest.mark.parametrize("row", sorted(REFUSED, key=lambda r: int(r[1:])))
def test_broken_output_is_refused_naming_the_file(row, sandbox, capsys):
    mutate, suffix, problem = REFUSED[row]
    mutate(sandbox.dir / f"{BROKEN}.png", sandbox.dir / f"{BROKEN}.txt")
    sandbox.seal()
    rc, err, run_dir = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}",
                           task="adv_joint", n=10)
    assert rc == 2
    assert f"{sandbox.dir / BROKEN}.{suffix}: {problem}" in err
    assert "Traceback" not in err
    assert run_dir is None  # refused before any run folder
    sandbox.assert_nothing_outside_out()


def test_every_bad_file_is_listed_in_one_error(sandbox, capsys):
    _truncate(sandbox.dir / "test001.png", lambda n: n // 2)
    (sandbox.dir / "test002.txt").write_bytes(b"\xff")
    _dir_instead(sandbox.dir / "test004.txt")
    sandbox.seal()
    rc, err, _ = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}",
                     task="adv_joint", n=10)
    assert rc == 2 and "3 file(s) cannot be scored" in err
    for bad in ("test001.png: truncated", "test002.txt: report is not UTF-8", "test004.txt: is a directory"):
        assert bad in err
    sandbox.assert_nothing_outside_out()


def test_O22_missing_outputs_are_all_listed(sandbox, capsys):
    for sid in ("test001", "test002", "test005"):
        (sandbox.dir / f"{sid}.png").unlink()
    (sandbox.dir / "test007.txt").unlink()
    sandbox.seal()
    rc, err, run_dir = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}",
                           task="adv_joint", n=10)
    assert rc == 2 and "no output for 4 requested sample(s)" in err
    for missing in ("test001 (image: test001.png)", "test002 (image", "test005 (image", "test007 (report: test007.txt)"):
        assert missing in err
    assert run_dir is None
    sandbox.assert_nothing_outside_out()


# ------------------------------------------------------------------ accepted, with the changes recorded


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One t2i run over a DIR whose outputs differ from the 32x32 grey references in three ways."""
    box = Sandbox(tmp_path_factory.mktemp("converted"))
    box.dataset = tiny_dataset(box)
    gen = oracle_outputs(box.dataset, box.root / "gen", kinds=("image",))
    Image.new("RGBA", (32, 32), (200, 10, 10, 0)).save(gen / "test000.png")
    Image.new("L", (1, 1), 120).save(gen / "test001.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2000, 2000), np.uint8)).save(gen / "test002.png")
    box.seal()
    from medbench.cli import main

    rc = main(["run", "--task", str(box.root / "tasks" / "adv_t2i.yaml"), "--model", f"outputs:{gen}", "--dataset", f"folder:{box.dataset}",
               "--n", "10", "--out", str(box.out), "--store", "", "--no-report", "--bootstrap", "0"])
    run_dir = next(box.out.iterdir())
    return box, rc, run_dir


@pytest.mark.parametrize("row,sid,change", [("O6", "test000", "alpha dropped (RGBA -> RGB, composited onto black)"),
                                            ("O6", "test000", "mode RGBA -> L"),
                                            ("O7", "test001", "resize 1x1 -> 32x32"),
                                            ("O8", "test002", "resize 2000x2000 -> 32x32")])
def test_odd_images_are_scored_with_the_conversion_recorded(row, sid, change, converted):
    box, rc, run_dir = converted
    assert rc == 0
    by_id = {s["id"]: s for s in samples(run_dir)}
    assert any(c.startswith(change) for c in by_id[sid]["conversions"]), by_id[sid]["conversions"]
    assert all(not by_id[other]["conversions"] for other in by_id if other not in ("test000", "test001", "test002"))
    rec = record(run_dir)
    assert rec["conversions"]["samples"] == 3 and rec["conversions"]["reference"] == {"size": [32, 32], "mode": "L"}
    assert any("3 of 10 outputs were converted" in w["message"] for w in rec["warnings"])
    box.assert_nothing_outside_out()


@pytest.mark.parametrize("row,text", [("O17", ""), ("O18", "  \n\t ")])
def test_empty_report_is_scored_as_zero(row, text, sandbox, capsys):
    (sandbox.dir / f"{BROKEN}.txt").write_text(text)
    sandbox.seal()
    rc, err, run_dir = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}",
                           task="adv_i2t", n=10)
    assert rc == 0, err
    rows = {s["id"]: s for s in samples(run_dir)}
    assert rows[BROKEN]["outputs"]["report"] == ""
    assert rec_value(run_dir) < 1.0
    sandbox.assert_nothing_outside_out()


def rec_value(run_dir, name="nlg.medim-paper.bleu4"):
    return record(run_dir)["metrics"][name]["value"]


def test_O19_every_report_empty_scores_zero(sandbox, capsys):
    for txt in sandbox.dir.glob("*.txt"):
        txt.write_text("")
    sandbox.seal()
    rc, err, run_dir = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}", n=10)
    assert rc == 0, err
    assert rec_value(run_dir) == 0.0
    sandbox.assert_nothing_outside_out()


def test_O23_extra_outputs_are_ignored(sandbox, capsys):
    sandbox.seal()
    rc, _, plain = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}", n=10)
    for i in range(5):
        (sandbox.dir / f"unknown{i}.txt").write_text("Heart size is normal.")
    sandbox.seal()
    rc2, _, extra = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}", n=10)
    assert rc == rc2 == 0 and extra == plain  # same files scored: same content digest, same run
    assert rec_value(plain) == pytest.approx(1.0)
    sandbox.assert_nothing_outside_out()


def test_O24_upper_case_suffix_is_found(sandbox, capsys):
    png = sandbox.dir / f"{BROKEN}.png"
    png.rename(png.with_suffix(".PNG"))
    sandbox.seal()
    rc, err, run_dir = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}",
                           task="adv_joint", n=10)
    assert rc == 0, err
    row = next(s for s in samples(run_dir) if s["id"] == BROKEN)
    assert row["outputs"]["source"]["image"] == str(sandbox.dir / f"{BROKEN}.PNG")
    sandbox.assert_nothing_outside_out()


def test_O32_rewriting_the_outputs_dir_changes_the_numbers(sandbox, capsys):
    sandbox.seal()
    rc, _, first = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}", n=10)
    assert rc == 0 and rec_value(first) == pytest.approx(1.0)
    for txt in sandbox.dir.glob("*.txt"):
        txt.write_text("Normal chest.")
    sandbox.seal()
    rc, _, second = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}", n=10)
    assert rc == 0 and second != first
    assert rec_value(second) < 0.5
    assert record(second)["identity"]["model_content"]["sha256"] != record(first)["identity"]["model_content"]["sha256"]
    assert record(second)["provenance"]["outputs_sha256"] != record(first)["provenance"]["outputs_sha256"]
    assert all(s["outputs"]["report"] == "Normal chest." for s in samples(second))
    sandbox.assert_nothing_outside_out()


def test_moving_the_dir_keeps_the_run(sandbox, capsys):
    """Identity follows content: the same files under another path are the same run (resumed)."""
    sandbox.seal()
    rc, _, first = run(sandbox, capsys, "--model", f"outputs:{sandbox.dir}", "--dataset", f"folder:{sandbox.dataset}", n=10)
    moved = sandbox.root / "elsewhere" / sandbox.dir.name
    moved.parent.mkdir()
    shutil.move(sandbox.dir, moved)
    sandbox.seal()
    rc2, _, second = run(sandbox, capsys, "--model", f"outputs:{moved}", "--dataset", f"folder:{sandbox.dataset}", n=10)
    assert rc == rc2 == 0 and second == first
    assert record(second)["provenance"]["outputs_sha256"] == record(first)["provenance"]["outputs_sha256"]
    sandbox.assert_nothing_outside_out()
