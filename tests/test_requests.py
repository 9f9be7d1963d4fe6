"""`medbench requests` writes exactly what a system must answer; a script that answers it with the
dataset's own images and reports (oracle quality) scores the oracle's numbers through outputs:DIR."""
import json
import shutil
from pathlib import Path

import pytest

from medbench.cli import main


def medbench(*argv: str) -> int:
    return main(list(argv))


def answer_like_the_oracle(requests_dir: Path, dataset: Path, answers: Path) -> None:
    """What a user's script does: read the manifest, write one file per expected output name. Here the
    answers are the dataset's own files, found by sample id (folder layout: <split>/<id>.png/.txt)."""
    answers.mkdir()
    for line in (requests_dir / "requests.jsonl").read_text().splitlines():
        req = json.loads(line)
        source = next(dataset.glob(f"*/{req['id']}.png"))
        for name in req["outputs"]:
            if name.endswith(".png"):
                shutil.copyfile(source, answers / name)
            else:
                (answers / name).write_text(source.with_suffix(".txt").read_text())


def metrics_of(out: Path) -> dict:
    (run,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    return json.loads((run / "run.json").read_text())["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["i2t", "t2i", "joint_pairs"])
def test_requests_then_outputs_dir_gives_the_oracle_numbers(task, tiny_folder, tmp_path):
    common = ("--task", task, "--dataset", f"folder:{tiny_folder}", "--n", "8")
    assert medbench("requests", *common, "--out", str(tmp_path / "req")) == 0
    lines = [json.loads(x) for x in (tmp_path / "req" / "requests.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and len({x["id"] for x in lines}) == 8
    for req in lines:
        if req["kind"] == "image->report":
            assert (tmp_path / "req" / req["image_path"]).is_file() and req["outputs"] == [f"{req['stem']}.txt"]
        if req["kind"] == "report->image":
            assert (tmp_path / "req" / req["report_path"]).read_text() == req["report"]
            assert req["image_size"] == [32, 32] and req["image_mode"] == "L"
        if req["kind"] == "prompt->pair":
            assert req["prompt"] and sorted(req["outputs"]) == sorted([f"{req['stem']}.png", f"{req['stem']}.txt"])
    answer_like_the_oracle(tmp_path / "req", tiny_folder, tmp_path / "answers")
    run = ("run", *common, "--store", "", "--no-report", "--bootstrap", "0", "--quiet")
    assert medbench(*run, "--model", f"outputs:{tmp_path / 'answers'}", "--out", str(tmp_path / "o1")) == 0
    assert medbench(*run, "--model", "oracle", "--out", str(tmp_path / "o2")) == 0
    mine, oracle = metrics_of(tmp_path / "o1"), metrics_of(tmp_path / "o2")
    assert mine.keys() == oracle.keys() and len(mine) > 3
    for name in oracle:
        assert mine[name]["value"] == oracle[name]["value"], name


def test_requests_refuses_a_non_empty_folder_and_too_many_samples(tiny_folder, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    assert medbench("requests", "--task", "i2t", "--dataset", f"folder:{tiny_folder}", "--out", str(tmp_path / "busy")) == 2
    assert "is not empty" in capsys.readouterr().err
    assert medbench("requests", "--task", "i2t", "--dataset", f"folder:{tiny_folder}", "--n", "11",
                    "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert "--n 11" in err and "has only 10" in err and not (tmp_path / "r").exists()
