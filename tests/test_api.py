"""The Python API gives the CLI's numbers: score_reports / score_images on a run's own pairs equal its
run.json (values and CIs to 1e-9), one METEOR JVM serves several calls, evaluate writes the CLI's run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import medbench
from medbench.api import RunResult, Scores, shared_meteor
from medbench.cli import main as cli_main
from medbench.errors import UserError
from medbench.runrecord import load_record


def cli_run(out: Path, task: str, dataset: Path, *extra: str) -> Path:
    assert cli_main(["run", "--task", task, "--model", "retrieval", "--dataset", f"folder:{dataset}", "--n", "10",
                     "--bootstrap", "200", "--out", str(out), "--store", "", "--no-report", *extra]) == 0
    (run,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    return run


def scored_pairs(run: Path) -> tuple[list[dict], list[str]]:
    """(reference rows, patient ids) in the run's row order."""
    samples = json.loads((run / "samples.json").read_text())
    refs = {r["id"]: r for r in map(json.loads, (run / "references.jsonl").read_text().splitlines())}
    return [refs[i] for i in samples["ids"]], samples["patients"]


def generated(run: Path, ids: list[str], suffix: str) -> list[Path]:
    """Output files by id: samples.jsonl's paths when the run wrote it, else outputs/<id><suffix>."""
    if (run / "samples.jsonl").exists():
        rows = {r["id"]: r["outputs"] for r in map(json.loads, (run / "samples.jsonl").read_text().splitlines())}
        key = "report_path" if suffix == ".txt" else "image_path"
        return [run / rows[i][key] for i in ids]
    return [run / "outputs" / f"{i}{suffix}" for i in ids]


def assert_same(record: dict, scores: Scores, prefixes: tuple[str, ...]) -> None:
    expected = {k: v for k, v in record["metrics"].items() if k.startswith(prefixes)}
    assert expected and set(expected) == {k for k in scores.values if k.startswith(prefixes)}
    for name, m in expected.items():
        got = scores[name]
        for key in ("value", "ci_low", "ci_high"):
            if m[key] is None:
                assert got[key] is None, (name, key)
            else:
                assert got[key] == pytest.approx(m[key], abs=1e-9, rel=0), (name, key, got[key], m[key])
        assert got["higher_is_better"] == m["higher_is_better"] and got["n"] == m["n"]


def same(a, b) -> bool:
    """A per-sample value as computed here and as samples.jsonl logged it (NaN is logged as null)."""
    if isinstance(a, float) and a != a:
        return b is None
    if isinstance(a, float) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-12
    return a == b


def meteor_jvms() -> list[int]:
    """pids of this process's child JVMs running meteor-1.5.jar."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"meteor-1.5.jar" in cmd:
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_score_reports_equals_the_cli_and_keeps_one_jvm(tmp_path, tiny_folder):
    run = cli_run(tmp_path / "runs", "i2t", tiny_folder)
    record = load_record(run)
    refs, patients = scored_pairs(run)
    hyps = [p.read_text(encoding="utf-8") for p in generated(run, [r["id"] for r in refs], ".txt")]
    scores = medbench.score_reports([r["report"] for r in refs], hyps, metrics=("nlg", "clinical"), protocol="coco",
                                    patient_ids=patients, n_boot=200, seed=record["seed"])
    assert_same(record, scores, ("nlg.", "clinical."))
    # per-sample values: the run's samples.jsonl scores of the same families, sample by sample
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    keys = [k for k in scores.per_sample if k.startswith(("nlg.coco.", "clinical."))]
    assert any(k.startswith("nlg.coco.") for k in keys) and any(k.startswith("clinical.") for k in keys)
    for key in keys:
        mine, logged = scores.per_sample[key], [row["scores"].get(key) for row in rows]
        assert len(mine) == len(refs) and all(same(a, b) for a, b in zip(mine, logged)), (key, mine, logged)
    jvm = shared_meteor().process.pid
    again = medbench.score_reports([r["report"] for r in refs[:6]], hyps[:6], metrics=("nlg",), n_boot=50)
    third = medbench.score_reports(["No pleural effusion."] * 3, ["No effusion.", "", None], metrics=("nlg",), n_boot=0)
    assert shared_meteor().process.pid == jvm and meteor_jvms() == [jvm]
    assert again["nlg.coco.meteor"]["n"] == 6 and third["nlg.coco.bleu1"]["ci_low"] is None


@pytest.mark.slow
def test_score_images_equals_the_cli(tmp_path, tiny_folder):
    run = cli_run(tmp_path / "runs", "t2i", tiny_folder)
    record = load_record(run)
    refs, patients = scored_pairs(run)
    gen = generated(run, [r["id"] for r in refs], ".png")
    from PIL import Image

    real = [r["image_path"] for r in refs]
    real[0] = Image.open(real[0])  # PIL images and paths both work, with the same numbers
    scores = medbench.score_images(real, gen, extractor="phantom-encoder", patient_ids=patients, n_boot=200, seed=record["seed"])
    assert_same(record, scores, ("image.fid", "image.kid", "image.precision", "image.recall", "image.density", "image.coverage"))


@pytest.mark.slow
def test_evaluate_writes_the_cli_run(tmp_path, tiny_folder):
    cli = cli_run(tmp_path / "cli", "i2t", tiny_folder)
    result = medbench.evaluate(task="i2t", model="retrieval", dataset=f"folder:{tiny_folder}", n=10, out=tmp_path / "api",
                               n_boot=200, store=None, report=False)
    assert isinstance(result, RunResult) and result.run_dir.parent == tmp_path / "api"
    expected = load_record(cli)
    config = {side: json.loads((d / "config.json").read_text()) for side, d in (("cli", cli), ("api", result.run_dir))}
    commits = {side: c.pop("commit") for side, c in config.items()}
    assert config["cli"] == config["api"]  # the same RunConfig identity
    if commits["cli"] == commits["api"]:  # (the run id also hashes the checkout's commit, which may move meanwhile)
        assert result.run_id == expected["run_id"] and result.run_dir.name == cli.name
    assert result.metrics == expected["metrics"] and load_record(result.run_dir)["metrics"] == expected["metrics"]
    assert result.primary == ("nlg.coco.bleu4", expected["metrics"]["nlg.coco.bleu4"])
    assert sorted(p.name for p in (result.run_dir / "stats").iterdir()) == sorted(p.name for p in (cli / "stats").iterdir())
    rows = medbench.compare(cli, result.run_dir, n_perm=50, n_boot=50)
    assert {r.name for r in rows} == set(expected["metrics"]) and all(r.diff == 0 for r in rows if r.method == "paired")


def test_bad_calls_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="2 references but 1 hypotheses"):
        medbench.score_reports(["a.", "b."], ["a."])
    with pytest.raises(UserError, match="patient_ids"):
        medbench.score_reports(["a."], ["a."], patient_ids=["p1", "p2"])
    with pytest.raises(UserError, match="empty or not text"):
        medbench.score_reports([""], ["a."])
    with pytest.raises(UserError, match="unknown metric family"):
        medbench.score_reports(["a."], ["a."], metrics=("nlg.cocoo",))
    with pytest.raises(UserError, match="neither a PIL image nor an existing file"):
        medbench.score_images([tmp_path / "absent.png"], [tmp_path / "absent.png"])
    with pytest.raises(UserError, match="unknown option"):
        medbench.evaluate(task="i2t", model="oracle", bootstrap=10)


def test_import_medbench_stays_cheap():
    import subprocess
    import sys

    code = "import sys, medbench; print(sorted(m for m in ('torch', 'PIL', 'numpy', 'medbench.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    assert callable(medbench.compare) and medbench.score_reports.__module__ == "medbench.api"
