"""qa-findings rows R4-R8: resuming a run whose folder was tampered with. Every logged output is
re-checked against the sha256 recorded when it was written: a truncated, replaced or deleted file
is regenerated (and said so), so the resumed run ends with the numbers and the provenance of an
untouched run; a torn last log line never glues onto the next entry; a report.html left by an
earlier run is never advertised by a run that did not write it.

A second process starting the same run while one holds it is refused (R9).

(R1-R3, kill -9 at any point, are tests/test_runner.py::test_kill_9_then_resume_gives_identical_metrics.)"""
from __future__ import annotations

import json

import pytest
from PIL import Image

from advhelpers import Sandbox, record, run, tiny_dataset

ARGS = ("--model", "random", "--seed", "3")
VICTIM = "test004"


@pytest.fixture
def box(tmp_path):
    box = Sandbox(tmp_path)
    box.dataset = tiny_dataset(box)
    box.seal()
    return box


def _run(box, capsys):
    return run(box, capsys, *ARGS, "--dataset", f"folder:{box.dataset}", task="adv_t2i", n=10)


def _fresh(box, capsys):
    rc, err, run_dir = _run(box, capsys)
    assert rc == 0, err
    return run_dir


def _same_numbers(a: dict, b: dict) -> None:
    assert {k: v["value"] for k, v in a["metrics"].items()} == {k: v["value"] for k, v in b["metrics"].items()}
    assert a["provenance"]["outputs_sha256"] == b["provenance"]["outputs_sha256"]


def _truncate(png):
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])


def _replace(png):
    Image.new("L", (32, 32), 255).save(png)


@pytest.mark.parametrize("row,tamper", [("R4", _truncate), ("R5", _replace), ("R6", lambda png: png.unlink())])
def test_tampered_output_is_regenerated_on_resume(row, tamper, box, capsys):
    run_dir = _fresh(box, capsys)
    untouched = record(run_dir)
    png = run_dir / "outputs" / f"{VICTIM}.png"
    tamper(png)
    rc, err, again = _run(box, capsys)
    assert rc == 0 and again == run_dir
    assert f"{png}: " in err and "regenerating it" in err
    _same_numbers(record(run_dir), untouched)
    box.assert_nothing_outside_out()


def test_R7_torn_last_log_line_never_glues_onto_the_next_entry(box, capsys):
    run_dir = _fresh(box, capsys)
    untouched = record(run_dir)
    log = run_dir / "outputs" / "index.rank0.jsonl"
    lines = log.read_text().splitlines()
    torn_id = json.loads(lines[-1])["id"]
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # killed mid-write
    rc, err, _ = _run(box, capsys)
    assert rc == 0, err
    entries = [json.loads(line) for line in log.read_text().splitlines()[:-2]] + [json.loads(log.read_text().splitlines()[-1])]
    assert entries[-1]["id"] == torn_id  # regenerated, on a line of its own
    _same_numbers(record(run_dir), untouched)
    rc, _, _ = _run(box, capsys)  # nothing left to regenerate
    assert rc == 0 and len(log.read_text().splitlines()) == len(lines) + 1
    box.assert_nothing_outside_out()


def test_R8_stale_report_is_removed_not_advertised(box, capsys):
    run_dir = _fresh(box, capsys)
    (run_dir / "report.html").write_text("<html>an earlier run's report</html>")
    capsys.readouterr()
    rc, _, _ = _run(box, capsys)
    assert rc == 0 and not (run_dir / "report.html").exists()
    box.assert_nothing_outside_out()


def test_failed_run_is_marked_failed(box, capsys):
    """A run that fails after its folder exists says so in status.json and leaves no run.json."""
    import shutil

    run_dir = _fresh(box, capsys)
    shutil.rmtree(run_dir / "stats")
    (run_dir / "stats").write_text("a file where the stats folder goes: scoring cannot save")
    rc, err, _ = _run(box, capsys)
    status = json.loads((run_dir / "status.json").read_text())
    assert rc != 0
    assert status["status"] == "failed" and status["stage"] == "score" and "FileExistsError" in status["error"]
    assert not (run_dir / "run.json").exists()  # the earlier run's record is not left to look current
    box.assert_nothing_outside_out()


def test_R9_a_second_process_on_the_same_run_is_refused(box, capsys):
    import fcntl

    run_dir = _fresh(box, capsys)
    with open(run_dir / ".lock", "a+") as held:  # another process holds the run
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = (run_dir / "run.json").read_bytes()
        rc, err, _ = _run(box, capsys)
    assert rc == 2 and "another medbench process is running this run" in err and str(run_dir) in err
    assert (run_dir / "run.json").read_bytes() == before  # the running run's folder was left alone
    rc, _, _ = _run(box, capsys)  # released: the run proceeds
    assert rc == 0
    box.assert_nothing_outside_out()
