"""Downstream augmentation: arms, models, scores (parity with scikit-learn / pycocoevalcap), statistics,
and the quick task end to end (oracle helps, random does not)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medbench.downstream import TrainSet
from medbench.downstream.arms import ARMS, Settings, arm_names, image_tensor, plan_arms
from medbench.downstream.metric import auroc_columns, captioner_values, classifier_values

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- arms

def test_plan_arms_sizes_pairing_and_determinism():
    plan = plan_arms(n_real_pool=1000, n_synth=400, real_train=200, arms=ARMS, ratios=(0.25, 0.5, 0.75), seed=3)
    assert list(plan) == ["real", "real+synth", "synth_only", "mix25", "mix50", "mix75"]
    real, none = plan["real"]
    assert len(real) == 200 and len(set(real.tolist())) == 200 and len(none) == 0
    assert np.array_equal(plan["real+synth"][0], real) and np.array_equal(plan["real+synth"][1], np.arange(400))
    assert len(plan["synth_only"][0]) == 0 and len(plan["synth_only"][1]) == 400
    for arm, share in (("mix25", 50), ("mix50", 100), ("mix75", 150)):
        r, s = plan[arm]
        assert len(r) + len(s) == 200 and len(s) == share  # fixed total size
        assert set(r.tolist()) <= set(real.tolist()) and len(set(s.tolist())) == share
    again = plan_arms(1000, 400, 200, ARMS, (0.25, 0.5, 0.75), seed=3)
    assert all(np.array_equal(plan[a][k], again[a][k]) for a in plan for k in (0, 1))
    other = plan_arms(1000, 400, 200, ARMS, (0.25, 0.5, 0.75), seed=4)
    assert not np.array_equal(np.sort(other["real"][0]), np.sort(real))


def test_plan_arms_errors_name_the_problem():
    with pytest.raises(ValueError, match="only 50 complete pairs"):
        plan_arms(50, 10, 100, ARMS, (), 0)
    with pytest.raises(ValueError, match="needs 75 generated pairs"):
        plan_arms(500, 10, 100, ARMS, (0.75,), 0)
    with pytest.raises(ValueError, match="unknown downstream arm"):
        arm_names(["real+fake"], ())
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        arm_names([], (1.0,))


def test_settings_from_task_options_and_quick():
    opts = {"downstream": {"real_train": 120, "seeds": [0, 1, 2, 3]},
            "quick": {"n": 50, "downstream": {"seeds": [0, 1], "meteor": False}}}
    full, quick = Settings.from_options(opts), Settings.from_options(opts, quick=True)
    assert full.real_train == quick.real_train == 120
    assert full.seeds == (0, 1, 2, 3) and quick.seeds == (0, 1) and quick.meteor is False
    with pytest.raises(ValueError, match="tasks/x.yaml: unknown options.downstream key"):
        Settings.from_options({"downstream": {"real_trian": 3}}, source="tasks/x.yaml")


def test_image_tensor_converts_mode_and_size():
    from PIL import Image

    rgb = Image.fromarray(np.full((40, 50, 3), 200, np.uint8), "RGB")
    t = image_tensor([rgb, rgb.convert("L")], 16, "L")
    assert t.shape == (2, 1, 16, 16) and t.dtype == torch.uint8
    assert image_tensor([rgb], 16, "RGB").shape == (1, 3, 16, 16)


# ----------------------------------------------------------------------------- scores: parity

def test_auroc_matches_sklearn_with_ties_and_missing_class():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(120, 5))
    y[:, 4] = 0  # no positives: undefined
    p = np.round(rng.random((120, 5)) + 0.3 * y, 1)  # rounding makes ties
    got = auroc_columns(y, p)
    for j in range(4):
        assert got[j] == pytest.approx(roc_auc_score(y[:, j], p[:, j]), abs=1e-12)
    assert np.isnan(got[4])


def test_classifier_values_match_sklearn_macro():
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=(80, 4))
    prob = rng.random((80, 2, 4))
    vals = classifier_values(y, prob)
    for s in range(2):
        assert vals["auroc"][s] == pytest.approx(np.mean([roc_auc_score(y[:, j], prob[:, s, j]) for j in range(4)]))
        pred = (prob[:, s] >= 0.5).astype(int)
        assert vals["f1"][s] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert classifier_values(y, prob, np.array([1, 1]))["auroc"] == [vals["auroc"][1]] * 2


@pytest.fixture(scope="module")
def java():
    from medbench.metrics.java_meteor import java_missing_reason

    reason = java_missing_reason()
    if reason:
        pytest.skip(reason)


def test_captioner_bleu_and_ce_match_references(java):
    from pycocoevalcap.bleu.bleu import Bleu

    from medbench.labelers.plugin import labeler_for
    from medbench.metrics.clinical import binarise
    from medbench.metrics.text_coco import ptb_tokenize
    from medbench.downstream.metric import score_reports

    refs = ["No pleural effusion. Mild cardiomegaly.", "Large right pleural effusion.", "The lungs are clear."]
    hyps = {"real": [["No effusion. Mild cardiomegaly.", "Right pleural effusion is large.", "Clear lungs."]],
            "real+synth": [["Mild cardiomegaly.", "", "The lungs are clear."]]}
    labeler = labeler_for("cxr")
    stats = score_reports("captioner", refs, hyps, labeler)
    tok = ptb_tokenize(refs)
    for arm in hyps:
        parts = {k.split(".")[-1]: v for k, v in stats.items() if k.startswith(f"captioner.{arm}.")}
        vals = captioner_values(parts)
        htok = ptb_tokenize(hyps[arm][0])
        ref_bleu, _ = Bleu(4).compute_score({i: [tok[i]] for i in range(3)}, {i: [htok[i]] for i in range(3)}, verbose=0)
        for k in range(4):
            assert vals[f"bleu{k + 1}"][0] == pytest.approx(ref_bleu[k], abs=1e-12)
        r = binarise([labeler.label(x) for x in refs], labeler.observations, "pos")
        h = binarise([labeler.label(x) for x in hyps[arm][0]], labeler.observations, "pos")
        from sklearn.metrics import f1_score

        assert vals["ce_f1"][0] == pytest.approx(f1_score(r, h, average="micro", zero_division=0))


# ----------------------------------------------------------------------------- downstream models

def _toy_trainset(n=48, size=16, seed=0):
    """Bright-left vs bright-right images with matching reports and labels."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n)
    img = rng.integers(0, 60, size=(n, 1, size, size)).astype(np.uint8)
    for i, s in enumerate(side):
        img[i, :, :, (size // 2) * s:(size // 2) * (s + 1)] += 150
    reports = ["Opacity on the left side." if s == 0 else "Opacity on the right side. No effusion." for s in side]
    labels = np.stack([side == 0, side == 1], 1).astype(np.int64)
    return TrainSet(torch.from_numpy(img), reports, labels, ("left", "right"), np.zeros(n, bool))


def test_classifier_learns_and_is_deterministic():
    from medbench.downstream.classifier import make_classifier

    train, test = _toy_trainset(), _toy_trainset(seed=1)
    clf = make_classifier({"width": 8})
    p1 = clf.fit_predict(train, test.images, seed=0, steps=40, batch_size=16)
    p2 = clf.fit_predict(train, test.images, seed=0, steps=40, batch_size=16)
    assert p1.shape == (48, 2) and np.array_equal(p1, p2)
    assert np.nanmean(auroc_columns(test.labels, p1)) > 0.9
    with pytest.raises(ValueError, match="unknown classifier option"):
        make_classifier({"depth": 3})


def test_captioner_vocab_and_deterministic_training():
    from medbench.downstream.captioner import Vocab, make_captioner

    vocab = Vocab(["No pleural effusion.", "Mild cardiomegaly, no edema."])
    ids = vocab.encode("Mild pleural effusion; zebra.", 20)
    assert ids[-2] == 3 and "zebra" not in vocab.decode(ids)  # unknown word -> <unk>, dropped when decoding
    assert vocab.decode(vocab.encode("no pleural effusion.", 20)) == "No pleural effusion."
    train, test = _toy_trainset(), _toy_trainset(seed=1)
    cap = make_captioner({"d_model": 32, "n_layer": 1})
    a = cap.fit_predict(train, test.images[:8], seed=0, steps=60, batch_size=16)
    b = cap.fit_predict(train, test.images[:8], seed=0, steps=60, batch_size=16)
    assert a == b and len(a) == 8 and all(isinstance(x, str) for x in a)


# ----------------------------------------------------------------------------- the task end to end

def _task(split="val", n=40, **downstream):
    from medbench.tasks import parse_task

    settings = {"real_train": 40, "test_n": 40, "seeds": [0, 1], "arms": ["real+synth", "synth_only"], "ratios": [0.5],
                "models": ["classifier", "captioner"], "steps": {"classifier": 30, "captioner": 20},
                "batch_size": 16, "image_size": 32, "meteor": False, "n_boot": 50, "n_perm": 50, "workers": 1}
    settings.update(downstream)
    return parse_task({"name": "downstream_tiny", "dataset": "cxr-phantom", "split": split, "request": "prompt->pair",
                       "metrics": ["downstream"], "n": n, "options": {"downstream": settings}})


def _run(tmp_path, model, task, **kw):
    from medbench.runner import RunConfig, execute

    cfg = RunConfig(task=task, model=model, dataset="cxr-phantom", out=tmp_path, seed=0, n=task.n, protocol="coco",
                    dataset_options={"size": "32", "n_train": "120", "n_val": "60", "n_test": "60"},
                    n_boot=0, report=False, store=None, **kw)
    return execute(cfg)


@pytest.mark.slow
def test_tiny_task_end_to_end_records_gains_cis_and_paired_tests(tmp_path, java):
    run_dir, record = _run(tmp_path, "oracle", _task())
    metrics = record["metrics"]
    for arm in ("real", "real+synth", "synth_only"):
        for name in ("classifier.auroc", "classifier.f1", "captioner.bleu4", "captioner.ce_f1"):
            assert f"downstream.{name}.{arm}" in metrics
    assert "downstream.classifier.auroc.mix50" in metrics and "downstream.captioner.bleu4.mix50" not in metrics
    gain = metrics["downstream.classifier.auroc.gain.real+synth"]["value"]
    assert gain == pytest.approx(metrics["downstream.classifier.auroc.real+synth"]["value"]
                                 - metrics["downstream.classifier.auroc.real"]["value"])
    extras = json.loads((run_dir / "extras" / "downstream.json").read_text())
    for name, v in extras["values"].items():
        assert v["ci_low"] <= v["value"] + 1e-9 and v["value"] - 1e-9 <= v["ci_high"], name
    paired = extras["paired"]["downstream.classifier.auroc.gain.real+synth"]
    assert 0 < paired["p_value"] <= 1 and paired["p_value"] <= paired["p_holm"] <= 1
    assert extras["arm_sizes"]["real+synth"] == {"real": 40, "synthetic": 40}
    assert extras["curve"]["classifier.auroc"]["ratio"] == [0.0, 0.5]
    assert len(extras["per_seed"]["downstream.classifier.auroc.real"]) == 2
    assert (run_dir / "downstream" / "captioner_reports.jsonl").exists()
    from safetensors.numpy import load_file

    stats = load_file(str(run_dir / "stats" / "downstream.safetensors"))
    assert stats["classifier.real.prob"].shape[:2] == (40, 2) and stats["captioner.real.bleu"].shape == (40, 2, 10)


def test_compute_is_pure_and_seed_resampling_works(tmp_path, java):
    from medbench.downstream.plugin import make_downstream
    from medbench.metrics.base import MetricContext
    from medbench.data.resolve import load_dataset

    task = _task(models=["classifier"], sweep_models=[])
    ds = load_dataset("cxr-phantom", {"size": "32", "n_train": "120", "n_val": "60", "n_test": "60"})
    from medbench.metrics.base import Scored
    from medbench.records import Output, Request

    pool = ds.split("val")[:40]
    ctx = MetricContext(task=task, domain="cxr", protocol="coco", seed=0, cache_dir=tmp_path, dataset=ds)
    metric = make_downstream(ctx)
    metric.update([Scored(s, Request("prompt->pair", s.id, 0, "cxr", prompt=s.prompt_text()),
                          Output(s.id, image=s.load_image(), report=s.report)) for s in pool])
    st = metric.stats()
    a, b = metric.compute(st), metric.compute({k: v.copy() for k, v in st.items()})
    assert a == b and set(a) == set(metric.higher_is_better)
    one = metric.compute(st, seeds=np.array([0, 0]))
    assert one["downstream.classifier.auroc.real"] == pytest.approx(metric.per_seed(st)["downstream.classifier.auroc.real"][0])
    # the generation pool must never overlap the test split
    leaky = make_downstream(ctx)
    t = ds.split("test")[0]
    leaky.update([Scored(t, Request("prompt->pair", t.id, 0, "cxr"), Output(t.id, image=t.load_image(), report=t.report))])
    with pytest.raises(ValueError, match="disjoint from the test split"):
        leaky.stats()


def test_outputs_without_image_are_rejected(tmp_path):
    from medbench.downstream.plugin import make_downstream
    from medbench.metrics.base import MetricContext, Scored
    from medbench.records import Output, Request, Sample

    ctx = MetricContext(task=_task(), domain="cxr", protocol="coco", seed=0, cache_dir=tmp_path)
    s = Sample("a", "p", "cxr", "val", None, "No effusion.")
    with pytest.raises(ValueError, match="lacks an image or a report"):
        make_downstream(ctx).update([Scored(s, Request("prompt->pair", "a", 0, "cxr"), Output("a", report="x"))])


@pytest.mark.slow
def test_quick_setting_oracle_helps_random_does_not(tmp_path):
    """The CI setting of tasks/downstream_augmentation.yaml: oracle (extra real pairs from the disjoint val pool)
    gives a significant classifier gain; random (noise images, unrelated reports) gives none or a loss."""
    from medbench.tasks import load_task

    task = load_task("downstream_augmentation")
    n = task.options["quick"]["n"]
    from medbench.runner import RunConfig, execute

    out = {}
    for model in ("oracle", "random"):
        cfg = RunConfig(task=task, model=model, dataset=task.dataset, out=tmp_path, seed=0, n=n, protocol="coco",
                        metric_options={"quick": "1"}, model_options={"quick": "1"}, n_boot=0, report=False, store=None)
        run_dir, _ = execute(cfg)
        out[model] = json.loads((run_dir / "extras" / "downstream.json").read_text())
    name = "downstream.classifier.auroc.gain.real+synth"
    oracle, random = out["oracle"]["values"][name], out["random"]["values"][name]
    assert oracle["value"] > 0 and oracle["ci_low"] > 0 and out["oracle"]["paired"][name]["p_value"] < 0.05
    assert random["value"] < oracle["value"] and random["ci_low"] <= 0  # not a significant gain
