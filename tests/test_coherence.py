"""Report coherence (report.coherence): parity with the labeler's mentions, the bootstrap fast path,
the labeler without mentions, and the family in a real i2t run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medbench.labelers.chexpert_rule import ChexpertRuleLabeler
from medbench.metrics.base import MetricContext, MetricUnavailable, Scored
from medbench.metrics.coherence import REFERENCE, RATE, coherence_factory, medbench_metrics
from medbench.records import Output, Request, Sample
from medbench.stats.bootstrap import resample_indices, resample_weights, take

REPORTS = [
    "There is a small pleural effusion. No pleural effusion.",          # contradictory
    "No left pleural effusion. Small right pleural effusion.",          # laterality: contradictory to the labeler
    "No left effusion; small right effusion.",                          # laterality, one sentence
    "Left lower lobe atelectasis. No atelectasis on the right.",
    "Mild cardiomegaly. Heart size is normal.",
    "No evidence of pneumonia. Right lower lobe pneumonia.",
    "Pneumothorax may be present. No pneumothorax.",                    # uncertain + negative: coherent
    "Possible pneumonia. Pneumonia is seen.",                           # uncertain + positive: coherent
    "Emphysema. No emphysema.",                                         # No Finding mentions only: excluded
    "No acute cardiopulmonary process. No finding of effusion.",
    "Normal study. No abnormality.",
    "Small bilateral effusions, no pneumothorax.",                      # two observations, no conflict
    "Heart size is normal. No pleural effusion or pneumothorax.",
    "",                                                                 # empty output: no mentions
]
REFS = ["Heart size is normal. No pleural effusion.", "No left effusion; small right effusion.",
        "Mild cardiomegaly.", "No pneumothorax."]


def direct_contradictory(report: str, labeler: ChexpertRuleLabeler) -> bool:
    """Straight from the labeler: an observation (No Finding aside) with a positive and a negative mention."""
    labels: dict[str, set[int]] = {}
    for _, mention, label in labeler.mentions(report):
        labels.setdefault(mention.observation, set()).add(label)
    return any(1 in ls and 0 in ls for obs, ls in labels.items() if obs != "No Finding")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return MetricContext(task=None, domain="cxr", protocol="coco", seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def pairs(hyps: list[str], refs: list[str]) -> list[Scored]:
    out = []
    for i, hyp in enumerate(hyps):
        s = Sample(id=f"s{i}", patient_id=f"p{i // 2}", domain="cxr", split="test", image_path=None,
                   report=refs[i % len(refs)])
        out.append(Scored(s, Request("image->report", s.id, i, "cxr"), Output(s.id, report=hyp)))
    return out


def scored_metric(ctx, hyps, refs):
    m = coherence_factory(ctx)
    batch = pairs(hyps, refs)
    m.update(batch[:5])
    m.update(batch[5:])
    return m, m.stats()


def test_rate_equals_a_direct_count_from_the_labelers_mentions(ctx):
    labeler = ChexpertRuleLabeler()
    m, st = scored_metric(ctx, REPORTS, REFS)
    gen = [direct_contradictory(r, labeler) for r in REPORTS]
    ref = [direct_contradictory(REFS[i % len(REFS)], labeler) for i in range(len(REPORTS))]
    assert gen[:6] == [True] * 6 and not any(gen[6:])  # the hand-written cases are what they claim
    values = m.compute(st)
    assert values[RATE] == pytest.approx(np.mean(gen), abs=1e-12)
    assert values[REFERENCE] == pytest.approx(np.mean(ref), abs=1e-12) and 0 < values[REFERENCE] < 1
    contradicted = m.per_sample(st)["report.coherence.contradicted"]
    assert contradicted[0] == ["Pleural Effusion"] and contradicted[4] == ["Cardiomegaly"] and contradicted[8] == []
    assert [bool(c) for c in contradicted] == gen
    assert m.extras()["contradicted_reports_per_observation"]["Pleural Effusion"] == 3
    assert m.higher_is_better == {RATE: False, REFERENCE: False}


def test_fast_path_equals_compute_on_resampled_rows(ctx):
    rng = np.random.default_rng(3)
    hyps = [REPORTS[k] for k in rng.integers(0, len(REPORTS), 60)]
    m, st = scored_metric(ctx, hyps, REFS)
    patients = [f"p{i // 3}" for i in range(len(hyps))]
    w = next(resample_weights(patients, 40, seed=5))
    fast = m.weighted_compute(st, w)
    for b, idx in enumerate(resample_indices(patients, 40, seed=5)):
        direct = m.compute(take(st, idx))
        for name in (RATE, REFERENCE):
            assert fast[name][b] == pytest.approx(direct[name], abs=1e-12)
    assert np.isnan(m.compute(take(st, np.zeros(0, np.int64)))[RATE])


def test_a_labeler_without_mentions_makes_the_family_unavailable(tmp_path):
    pytest.importorskip("medbench.labelers.path_attributes")
    ctx = MetricContext(task=None, domain="path", protocol="coco", seed=0, cache_dir=tmp_path)
    with pytest.raises(MetricUnavailable, match="labeler 'path-attributes' has no mention-level output"):
        coherence_factory(ctx)
    import medbench  # the same through the harness: the family is skipped with that reason, not failed

    scores = medbench.score_reports(["Benign tissue."], ["Carcinoma."], metrics=("report.coherence",), domain="path", n_boot=0)
    assert any("path-attributes" in str(s) for s in scores.skipped) and RATE not in scores.values


def test_spec():
    (spec,) = medbench_metrics()
    assert spec.name == "report.coherence" and spec.requires == ("report",)
    assert set(spec.kinds) == {"image->report", "prompt->pair"} and spec.can_produce(REFERENCE)


def test_an_i2t_run_reports_the_rate_and_its_bracket_with_cis(tiny_folder, tmp_path):
    from medbench.cli import main
    from medbench.tasks import load_task

    assert "report.coherence" in load_task("i2t").metrics and "report.coherence" in load_task("joint_pairs").metrics
    gen = tmp_path / "gen"
    gen.mkdir()
    ids = sorted(p.stem for p in (tiny_folder / "test").glob("*.txt"))
    bad = [k % 3 == 0 for k in range(len(ids))]  # 4 of 10 generated reports contradict themselves, over 4 of 5 patients
    for sid, b in zip(ids, bad):
        (gen / f"{sid}.txt").write_text("Small left pleural effusion. No pleural effusion." if b else "No pneumothorax.")
    out = tmp_path / "runs"
    assert main(["run", "--task", "i2t", "--model", f"outputs:{gen}", "--dataset", f"folder:{tiny_folder}", "--protocol",
                 "medim-paper", "--out", str(out), "--store", "", "--no-report", "--bootstrap", "50"]) == 0
    (run_dir,) = [p.parent for p in out.glob("*/run.json")]
    metrics = json.loads((run_dir / "run.json").read_text())["metrics"]
    rate, ref = metrics[RATE], metrics[REFERENCE]
    assert rate["value"] == pytest.approx(0.4) and rate["family"] == "report.coherence" and rate["higher_is_better"] is False
    assert rate["ci_low"] is not None and rate["ci_low"] <= 0.4 <= rate["ci_high"] and rate["ci_low"] < rate["ci_high"]
    assert ref["value"] == 0.0 and ref["ci_low"] == ref["ci_high"] == 0.0  # the folder's references never contradict
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert {r["id"]: r["scores"]["report.coherence.contradicted"] for r in rows} == {
        sid: ["Pleural Effusion"] if b else [] for sid, b in zip(ids, bad)}
