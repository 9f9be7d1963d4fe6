"""qa-findings rows M1-M13 (manifests and IU X-Ray XML) and C40 (task YAML): hostile ids and names
never write outside --out (ids that are not safe file names are encoded, with the mapping recorded);
bad rows are refused naming the file and line. Nothing is ever written outside --out."""
from __future__ import annotations

import dataclasses
import json

import pytest

from advhelpers import Sandbox, run, samples, tiny_dataset
from medbench.data.resolve import load_dataset
from medbench.errors import UserError
from medbench.safe_names import file_stem

HOSTILE = ["../../../../..TRAVERSED2", "/ABSOLUTE_ID", "sub/dir/x", "..", "a\nb", "nul\x00id", "C:\\win\\x", "x" * 300]


@pytest.fixture
def box(tmp_path):
    box = Sandbox(tmp_path)
    box.dataset = tiny_dataset(box)
    return box


def _manifest(box, ids, **extra) -> str:
    path = box.data / "man.jsonl"
    with open(path, "w") as f:
        for i, sid in enumerate(ids):
            stem = f"test{i:03d}"
            f.write(json.dumps({"id": sid, "image": f"test/{stem}.png", "report_path": f"test/{stem}.txt", **extra}) + "\n")
    return f"manifest:{path}"


@pytest.mark.parametrize("row,task", [("M1", "adv_joint"), ("M2", "adv_i2t")])
def test_traversal_ids_in_a_manifest_stay_inside_out(row, task, box, capsys):
    spec = _manifest(box, HOSTILE + ["plain-id", "test-9"])
    box.seal()
    rc, err, run_dir = run(box, capsys, "--model", "oracle", "--dataset", spec, task=task, n=len(HOSTILE) + 2)
    assert rc == 0, err
    box.assert_nothing_outside_out()
    rows = {s["id"]: s for s in samples(run_dir)}
    assert set(rows) == set(HOSTILE) | {"plain-id", "test-9"}
    for sid, s in rows.items():
        assert s["file_stem"] == file_stem(sid)
        path = run_dir / (s["outputs"]["report_path"] or s["outputs"]["image_path"])
        assert path.parent == run_dir / "outputs" and path.is_file()
    assert rows["plain-id"]["file_stem"] == "plain-id"
    assert all(rows[sid]["file_stem"].startswith("~") for sid in HOSTILE)
    assert record_value(run_dir) == pytest.approx(1.0)


def record_value(run_dir):
    return json.loads((run_dir / "run.json").read_text())["metrics"]["nlg.medim-paper.bleu4"]["value"]


def test_C40_task_name_cannot_leave_out(box, capsys):
    task = box.root / "tasks" / "traverse.yaml"
    task.write_text((box.root / "tasks" / "adv_i2t.yaml").read_text().replace("name: adv_i2t", 'name: "../../../..TASK_ESCAPE"'))
    box.seal()
    rc, err, run_dir = run(box, capsys, "--model", "oracle", "--dataset", f"folder:{box.dataset}", task=str(task), n=10)
    assert rc == 2 and "TASK_ESCAPE" in err and run_dir is None
    box.assert_nothing_outside_out()


def test_run_id_is_one_plain_name_whatever_the_task_and_specs(tmp_path):
    """Even a task that got past validation (a plugin's) cannot name a folder outside --out."""
    from medbench.runner import RunConfig, run_id
    from medbench.safe_names import inside
    from medbench.tasks import load_task

    task = dataclasses.replace(load_task("i2t"), name="../../../..TASK_ESCAPE/\x00x")
    cfg = RunConfig(task=task, model="outputs:/etc/../../x", dataset="manifest:../../y.jsonl", out=tmp_path, seed=0, n=1,
                    protocol="coco")
    rid = run_id(cfg)
    assert "/" not in rid and "\x00" not in rid and not rid.startswith(".") and inside(tmp_path, tmp_path / rid)


MANIFEST_ROWS = {  # row: (rows, expected problem)
    "M3": ([{"id": "a", "image": "test/test000.png", "report": "No effusion.", "labels": {"Edema": float("nan")}}],
           "label 'Edema' = nan is not one of 1, 0, -1"),
    "M6": ([{"id": "a", "image": "/dev/zero", "report": "No effusion."}], "/dev/zero: image not a regular file (a device or socket)"),
    "M7": ([{"id": "a", "image": "test/test000.png", "report_path": "/dev/urandom"}],
           "/dev/urandom: report not a regular file (a device or socket)"),
    "M8": ([{"id": "X", "image": "test/test000.png", "report": "No effusion."},
            {"id": "X ", "image": "test/test001.png", "report": "No effusion."}], "duplicate id 'X'"),
    "M9": ([{"id": "a", "image": "test/test000.png", "report": "No effusion.", "split": "TEST"}],
           "split 'TEST' is not one of train, val, test"),
}


@pytest.mark.parametrize("row", sorted(MANIFEST_ROWS))
def test_bad_manifest_row_is_refused_naming_it(row, box):
    rows, problem = MANIFEST_ROWS[row]
    path = box.data / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError) as e:
        load_dataset(f"manifest:{path}")
    assert problem in str(e.value)


def test_M4_csv_nan_and_inf_cells_are_refused_with_their_lines(box):
    path = box.data / "bad.csv"
    path.write_text("id,image,report,label:Edema\na,test/test000.png,No effusion.,nan\nb,test/test001.png,No effusion.,inf\n")
    with pytest.raises(UserError) as e:
        load_dataset(f"manifest:{path}")
    assert f"{path}:2: label 'Edema' = 'nan'" in str(e.value) and f"{path}:3: label 'Edema' = 'inf'" in str(e.value)


def test_M5_absolute_report_path_is_read(box):
    path = box.data / "abs.jsonl"
    report = box.dataset / "test" / "test000.txt"
    path.write_text(json.dumps({"id": "a", "image": str(box.dataset / "test" / "test000.png"), "report_path": str(report)}) + "\n")
    ds = load_dataset(f"manifest:{path}")
    assert ds.samples[0].report == report.read_text().strip()


def test_manifest_line_longer_than_the_cap_is_refused_not_read_whole(box):
    from medbench.data.validate import MAX_LINE_BYTES

    path = box.data / "long.jsonl"
    path.write_text(json.dumps({"id": "a", "image": "test/test000.png", "report": "x" * (MAX_LINE_BYTES + 10)}) + "\n")
    with pytest.raises(UserError) as e:
        load_dataset(f"manifest:{path}")
    assert f"{path}:1: line longer than {MAX_LINE_BYTES} bytes" in str(e.value)


# ------------------------------------------------------------------ IU X-Ray (Open-i) XML

IU = """<?xml version="1.0" encoding="utf-8"?>
{doctype}<eCitation><uId id="{uid}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">No acute cardiopulmonary disease.</AbstractText>
</Abstract></Article></MedlineCitation>
<parentImage id="{image}"/></eCitation>
"""


def _iu(box, studies: list[tuple[str, str, str]], doctype: str = "") -> str:
    """An IU X-Ray copy deep in the sandbox: data/x/y/z/iu/{ecgen-radiology, NLMCXR_png}."""
    import shutil

    root = box.data / "x" / "y" / "z" / "iu"
    (root / "ecgen-radiology").mkdir(parents=True)
    (root / "NLMCXR_png").mkdir()
    for i, (uid, image, findings) in enumerate(studies):
        (root / "ecgen-radiology" / f"{i}.xml").write_text(IU.format(uid=uid, image=image, findings=findings, doctype=doctype))
        target = root / "NLMCXR_png" / f"{image}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(box.dataset / "test" / f"test{i:03d}.png", target)
    return f"iu-xray:{root}"


def test_M13_iu_xray_traversal_image_id_stays_inside_out(box, capsys):
    spec = _iu(box, [("CXR1", "CXR1_1", "The heart is normal. No effusion."),
                     ("CXR2", "CXR2_1", "Small left pleural effusion."),
                     ("CXR3", "../../../../..IU_ESCAPE", "No pneumothorax.")])
    box.seal()
    rc, err, run_dir = run(box, capsys, "--model", "oracle", "--dataset", spec, task="adv_i2t", n=3)
    assert rc == 0, err
    box.assert_nothing_outside_out()
    stems = {s["id"]: s["file_stem"] for s in samples(run_dir)}
    assert stems["../../../../..IU_ESCAPE"] == file_stem("../../../../..IU_ESCAPE")
    assert (run_dir / "outputs" / f"{stems['../../../../..IU_ESCAPE']}.txt").is_file()


@pytest.mark.parametrize("row,doctype,findings,problem", [
    ("M10", "", "<unclosed", "malformed XML"),
    ("M11", '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
            '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
            '<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">]>\n', "&g;", "malformed XML"),
    ("M12", '<!DOCTYPE l [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n', "&xxe;", "undefined entity"),
])
def test_hostile_iu_xml_is_refused_naming_the_file(row, doctype, findings, problem, box):
    spec = _iu(box, [("CXR1", "CXR1_1", findings)], doctype=doctype)
    with pytest.raises(UserError) as e:
        load_dataset(spec)
    assert "0.xml: malformed XML" in str(e.value) and problem in str(e.value)
    assert "root:" not in str(e.value)  # /etc/passwd was never read
