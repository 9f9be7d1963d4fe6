"""image.label_fidelity: sklearn parity, F1-optimal thresholds, oracle vs noise on a small cxr phantom.

Uses the bundled phantom-encoder weights (MEDBENCH_TEST_ENCODER_WEIGHTS=FILE overrides them).
"""
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from medbench.metrics.base import MetricContext, MetricUnavailable, Scored
from medbench.metrics.image_labels import f1_optimal_threshold
from medbench.metrics.label_fidelity import auroc_per_label, factory, fidelity_values
from medbench.records import Output, Request

from phantom_helpers import encoder_options, phantom  # noqa: F401,F811 (phantom: a module fixture)


def make_ctx(ds, options, kind="report->image"):
    from types import SimpleNamespace

    task = SimpleNamespace(request=kind, split="test")
    return MetricContext(task=task, domain="cxr", protocol="coco", seed=0, cache_dir=Path("."), train=ds.split("train"),
                         reference=ds.split("test"), options=options, dataset=ds)


def noise_image(seed: int):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64), dtype=np.uint8), "L")


def run(metric, pairs, batch=64):
    for i in range(0, len(pairs), batch):
        metric.update(pairs[i:i + batch])
    st = metric.stats()
    return st, metric.compute(st)


def pairs_for(samples, image_of, kind="report->image"):
    return [Scored(s, Request(kind, s.id, 0, "cxr", report=s.report), Output(s.id, image=image_of(i, s)))
            for i, s in enumerate(samples)]


# ---- parity with scikit-learn on the same matrices -------------------------------------------------

def test_auroc_matches_sklearn_with_ties_and_undefined_labels():
    rng = np.random.default_rng(0)
    target = (rng.random((300, 5)) < [0.1, 0.3, 0.5, 0.0, 0.8]).astype(np.int64)
    prob = np.round(rng.random((300, 5)) * 0.5 + 0.5 * target * rng.random((300, 5)), 2)  # rounded: many ties
    got = auroc_per_label(target, prob)
    for j in range(5):
        if 0 < target[:, j].sum() < len(target):
            assert got[j] == pytest.approx(roc_auc_score(target[:, j], prob[:, j]), abs=1e-12)
        else:
            assert np.isnan(got[j])


def test_f1_values_match_sklearn():
    rng = np.random.default_rng(1)
    target = (rng.random((200, 6)) < 0.3).astype(np.int64)
    target[:, 5] = 0  # a label with no positives, never predicted: excluded from the macro
    prob = np.clip(0.6 * target + 0.5 * rng.random((200, 6)), 0, 1)
    prob[:, 5] = 0.0
    thr = np.tile(rng.uniform(0.3, 0.7, 6), (200, 1))
    vals = fidelity_values(target, prob, thr)
    pred = (prob >= thr).astype(int)
    for j in range(6):
        assert vals["f1"][j] == pytest.approx(f1_score(target[:, j], pred[:, j], zero_division=0), abs=1e-12)
    assert vals["f1_micro"] == pytest.approx(f1_score(target, pred, average="micro", zero_division=0), abs=1e-12)
    assert vals["f1_macro"] == pytest.approx(f1_score(target[:, :5], pred[:, :5], average="macro", zero_division=0), abs=1e-12)
    assert vals["auroc_macro"] == pytest.approx(np.mean([roc_auc_score(target[:, j], prob[:, j]) for j in range(5)]), abs=1e-12)


def test_threshold_is_f1_optimal():
    rng = np.random.default_rng(2)
    for trial in range(3):
        y = (rng.random(150) < 0.25).astype(int)
        p = np.round(np.clip(0.35 * y + rng.random(150) * 0.7, 0, 1), 2)
        t = f1_optimal_threshold(p, y)
        best = max(f1_score(y, (p >= c).astype(int), zero_division=0) for c in np.unique(p))
        assert f1_score(y, (p >= t).astype(int), zero_division=0) == pytest.approx(best, abs=1e-12)
    assert f1_optimal_threshold(np.array([0.2, 0.9]), np.array([0, 0])) == 0.5  # no positives: documented default


# ---- on phantom data ------------------------------------------------------------------------------

def test_real_images_score_high_and_noise_near_chance(phantom):
    opts = encoder_options()
    test = phantom.split("test")
    _, real = run(factory(make_ctx(phantom, opts)), pairs_for(test, lambda i, s: s.load_image()))
    st, noise = run(factory(make_ctx(phantom, opts)), pairs_for(test, lambda i, s: noise_image(i)))
    # real images through PIL and through their file give the same rows: value == its ceiling
    assert real["image.label_fidelity.auroc_macro"] == pytest.approx(real["image.label_fidelity.auroc_macro_ceiling"], abs=1e-9)
    assert real["image.label_fidelity.auroc_macro"] > 0.8
    assert real["image.label_fidelity.f1_macro"] > 0.6
    assert abs(noise["image.label_fidelity.auroc_macro"] - 0.5) < 0.15
    assert noise["image.label_fidelity.f1_macro"] < real["image.label_fidelity.f1_macro"] - 0.25
    # thresholds are constant rows fixed before the evaluated set was seen
    assert np.all(st["threshold"] == st["threshold"][0])


def test_batch_independence_and_row_purity(phantom):
    opts = encoder_options()
    test = phantom.split("test")
    pairs = pairs_for(test, lambda i, s: noise_image(i) if i % 3 == 0 else s.load_image())
    st_a, va = run(factory(make_ctx(phantom, opts)), pairs, batch=7)
    st_b, vb = run(factory(make_ctx(phantom, opts)), pairs, batch=64)
    for k in st_a:
        np.testing.assert_array_equal(st_a[k], st_b[k])
    assert va == vb
    idx = np.random.default_rng(3).integers(0, len(pairs), len(pairs))  # a bootstrap resample is just rows
    m = factory(make_ctx(phantom, opts))
    assert m.compute({k: v[idx] for k, v in st_a.items()}) == m.compute({k: v[idx] for k, v in st_b.items()})


def test_missing_pieces_are_unavailable_with_a_reason():
    def ctx(domain, options):
        return MetricContext(task=None, domain=domain, protocol="coco", seed=0, cache_dir=Path("."), options=options)

    with pytest.raises(MetricUnavailable, match="not registered"):
        factory(ctx("cxr", {"label_extractor": "no-such-encoder"}))
    with pytest.raises(MetricUnavailable, match="labeler"):
        factory(ctx("dermatology", {}))
    # an extractor without a label head for the domain is refused at first use, with the reason
    from medbench.metrics.image_labels import ImageEncoder

    heads = ImageEncoder("phantom-encoder", encoder_options().get("weights"), "dermatology", "image.label_fidelity")
    with pytest.raises(MetricUnavailable, match="no label head for domain 'dermatology'"):
        heads.extractor
