"""samples.jsonl (one line per scored sample), `medbench samples`, and run.json schema 2 with its v1
migration (a real v1 run folder written by commit e235b25: tests/fixtures/run_v1)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medbench.cli import main
from medbench.runrecord import SCHEMA_VERSION, load_record
from medbench.samples_log import read_samples
from medbench.samples_cmd import ranked

V1 = Path(__file__).parent / "fixtures" / "run_v1"


def _run(tiny_folder, out, model, task="i2t"):
    assert main(["run", "--task", task, "--model", model, "--dataset", f"folder:{tiny_folder}", "--protocol", "medim-paper",
                 "--n", "10", "--out", str(out), "--store", "", "--no-report", "--bootstrap", "0"]) == 0
    return next(out.iterdir())


@pytest.fixture
def random_i2t(tiny_folder, tmp_path):
    return _run(tiny_folder, tmp_path / "r", "random")


def test_one_line_per_scored_sample_in_stats_order(random_i2t):
    rows = read_samples(random_i2t)
    order = json.loads((random_i2t / "samples.json").read_text())
    record = load_record(random_i2t)
    assert [r["id"] for r in rows] == order["ids"] and [r["patient_id"] for r in rows] == order["patients"]
    assert [r["row"] for r in rows] == list(range(record["n"]))
    for r in rows:
        assert r["schema_version"] == SCHEMA_VERSION and r["request"] == "image->report" == record["request"]
        assert r["inputs"]["image_path"] == r["reference"]["image_path"] and r["inputs"]["prompt"] is None
        report = (random_i2t / r["outputs"]["report_path"]).read_bytes()
        assert r["outputs"]["report"] == report.decode() and r["outputs"]["report_sha256"] == hashlib.sha256(report).hexdigest()
        assert r["file_stem"] == r["id"] and r["conversions"] == []
        assert set(r["scores"]) == set(record["per_sample"])


def test_per_sample_values_agree_with_the_run_numbers(random_i2t):
    """The per-sample columns are the family's own statistics: their mean is the run's value where the
    metric is a mean of per-report scores (medim-paper scores each report and averages)."""
    rows, record = read_samples(random_i2t), load_record(random_i2t)
    for name in ("nlg.medim-paper.bleu4", "nlg.medim-paper.rougeL"):
        assert np.mean([r["scores"][name] for r in rows]) == pytest.approx(record["metrics"][name]["value"], abs=1e-12)
    for r in rows:  # clinical agreement is the share of observations where the two label sets agree
        ref, gen = r["scores"]["clinical.reference_labels"], r["scores"]["clinical.generated_labels"]
        assert r["scores"]["clinical.agreement"] == pytest.approx(np.mean([ref[o] == gen[o] for o in ref]))
        assert r["scores"]["clinical.disagreements"] == [o for o in ref if ref[o] != gen[o]]


def test_oracle_labels_agree_everywhere(tiny_folder, tmp_path):
    rows = read_samples(_run(tiny_folder, tmp_path / "o", "oracle"))
    assert all(r["scores"]["clinical.agreement"] == 1.0 and not r["scores"]["clinical.disagreements"] for r in rows)


def test_coco_sentence_bleu_is_pycocoevalcaps_per_sentence_score():
    from pycocoevalcap.bleu.bleu import Bleu

    from medbench.metrics.text_coco import CocoText, ptb_tokenize
    from report_sentences import SENTENCES  # shared radiology sentences

    refs = SENTENCES[:6]
    hyps = [refs[1], refs[0][:20], "no pleural effusion", refs[3], "", refs[5] + " heart normal"]
    metric = CocoText(with_meteor=False)
    for i, (r, h) in enumerate(zip(refs, hyps)):
        metric.add(r, h, f"s{i}")
    ours = metric.per_sample(metric.stats())
    tokens = ptb_tokenize(refs + hyps)
    _, per_sentence = Bleu(4).compute_score({i: [tokens[i]] for i in range(6)}, {i: [tokens[6 + i] or ""] for i in range(6)}, verbose=0)
    for k in range(4):
        assert ours[f"nlg.coco.bleu{k + 1}_sentence"] == pytest.approx(per_sentence[k], rel=1e-12, abs=1e-15)


def test_samples_command_prints_the_worst_first(random_i2t, capsys):
    rows = read_samples(random_i2t)
    key = "nlg.medim-paper.bleu4"
    capsys.readouterr()
    assert main(["samples", str(random_i2t), "--sort", key, "--worst", "3", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    expected = sorted(rows, key=lambda r: r["scores"][key])[:3]
    assert [r["scores"][key] for r in shown] == [r["scores"][key] for r in expected]
    assert main(["samples", str(random_i2t), "--sort", "memorization.report_copy", "--worst", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)  # lower is better: copies first
    assert [r["scores"]["memorization.report_copy"] for r in shown] == sorted((r["scores"]["memorization.report_copy"] for r in rows), reverse=True)[:2]
    rc = main(["samples", str(random_i2t), "--sort", "nlg.medim-paper.bleu"])
    assert rc == 2 and "did you mean" in capsys.readouterr().err


def test_ranked_puts_missing_values_last():
    rows = [{"id": "a", "scores": {"k": 0.5}}, {"id": "b", "scores": {"k": None}}, {"id": "c", "scores": {"k": 0.1}}]
    assert [r["id"] for r in ranked(rows, "k", higher_is_better=True, worst=True)] == ["c", "a", "b"]
    assert [r["id"] for r in ranked(rows, "k", higher_is_better=True, worst=False)] == ["a", "c", "b"]


# ------------------------------------------------------------------ schema 2 and the v1 migration


def test_v1_run_folder_loads_migrated(tmp_path):
    folder = shutil.copytree(V1, tmp_path / "v1")
    raw = json.loads((folder / "run.json").read_text())
    assert raw["schema_version"] == 1 and "warnings" not in raw
    record = load_record(folder)
    assert record["schema_version"] == SCHEMA_VERSION == 2 and record["migrated_from"] == 1
    assert record["status"] == "complete" and record["warnings"] == [] and record["per_sample"] == {}
    assert record["conversions"] == {"counts": {}, "samples": None, "reference": None, "recorded": False}
    assert record["request"] == "image->report"  # from config.json's task
    assert record["dataset_info"]["name"] == raw["dataset"] and record["identity"]["model_content"] is None
    assert {k: v for k, v in record.items() if k in raw and k != "schema_version"} == {k: v for k, v in raw.items() if k != "schema_version"}
    assert json.loads((folder / "run.json").read_text()) == raw  # the file is not rewritten


def test_v1_stats_still_rebuild_their_family(tmp_path):
    from medbench.scoring import load_family

    folder = shutil.copytree(V1, tmp_path / "v1")
    metric, stats, ids, patients = load_family(folder, "nlg.medim-paper")
    assert metric.compute(stats)["nlg.medim-paper.bleu4"] == pytest.approx(load_record(folder)["metrics"]["nlg.medim-paper.bleu4"]["value"])


@pytest.mark.parametrize("version", [0, 3, "2", None])
def test_unknown_schema_version_is_refused_naming_the_file(version, tmp_path):
    from medbench.errors import UserError

    folder = shutil.copytree(V1, tmp_path / "v")
    raw = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**raw, "schema_version": version}))
    with pytest.raises(UserError) as e:
        load_record(folder)
    assert str(folder / "run.json") in str(e.value) and "schema_version" in str(e.value)
