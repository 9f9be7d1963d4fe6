"""memorization: NN search parity, training-image copies vs held-out images, report copy rate.

Uses the bundled phantom-encoder weights (MEDBENCH_TEST_ENCODER_WEIGHTS=FILE overrides them).
"""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_distances, euclidean_distances

from medbench.metrics.base import MetricContext, Scored
from medbench.metrics.memorization import ReportIndex, closer_than_p1, factory, nearest
from medbench.records import Output, Request

from phantom_helpers import encoder_options, phantom  # noqa: F401,F811 (phantom: a module fixture)


def make_ctx(ds, options, kind):
    return MetricContext(task=SimpleNamespace(request=kind, split="test"), domain="cxr", protocol="coco", seed=0,
                         cache_dir=Path("."), train=ds.split("train"), reference=ds.split("test"), options=options, dataset=ds)


def run(metric, pairs, batch=64):
    for i in range(0, len(pairs), batch):
        metric.update(pairs[i:i + batch])
    st = metric.stats()
    return st, metric.compute(st)


def pairs_for(samples, kind, image_of=None, report_of=None):
    return [Scored(s, Request(kind, s.id, 0, "cxr"), Output(s.id, image=image_of(i, s) if image_of else None,
                                                           report=report_of(i, s) if report_of else None))
            for i, s in enumerate(samples)]


# ---- the pieces ---------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_nearest_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    base, query = rng.normal(size=(500, 32)), rng.normal(size=(70, 32))
    query[:5] = base[[3, 10, 20, 30, 499]]  # exact copies
    idx, dist = nearest(query, base, k=3, metric=metric)
    full = cosine_distances(query, base) if metric == "cosine" else euclidean_distances(query, base)
    ref_idx = np.argsort(full, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, np.maximum(np.take_along_axis(full, ref_idx, 1), 0), atol=1e-9)
    np.testing.assert_array_equal(idx[:5, 0], [3, 10, 20, 30, 499])


def test_closer_than_p1_definition():
    real = np.linspace(1.0, 2.0, 101)  # 1st percentile = 1.01
    gen = np.array([0.5, 1.0, 1.005, 1.01, 1.5, np.nan])
    assert closer_than_p1(gen, real) == pytest.approx(3 / 5)


def test_report_index_exact_and_ngram():
    train = ["PA view of the chest. The heart size is normal. There is no pleural effusion or pneumothorax seen today.",
             "Lateral view. Small left pleural effusion."]
    ix = ReportIndex(train, n=12)
    assert ix.is_copy("pa view of the  chest.   The heart size is NORMAL. There is no pleural effusion or pneumothorax seen today.")
    edited = "AP view. The heart size is normal. There is no pleural effusion or pneumothorax seen today."
    assert not ix.is_copy(edited) and ix.shares_ngram(edited)
    assert not ix.shares_ngram("Lateral view. Small left pleural effusion.") and ix.is_copy("Lateral view. Small left pleural effusion.")
    assert not ix.shares_ngram("Cardiomegaly with a right-sided port catheter.")
    copy, gram = ix.flags([train[0], None])
    assert copy[0] == 1 and gram[0] == 1 and np.isnan(copy[1]) and np.isnan(gram[1])


# ---- on phantom data ------------------------------------------------------------------------------

def test_training_copies_are_flagged_and_heldout_images_are_not(phantom):
    opts = encoder_options()
    kind = "report->image"
    train, val, test = phantom.split("train"), phantom.split("val"), phantom.split("test")
    copied = pairs_for(test, kind, image_of=lambda i, s: train[i].load_image())
    st, copies = run(factory(make_ctx(phantom, opts, kind)), copied)
    assert copies["memorization.nn_closer_than_p1"] > 0.95
    assert copies["memorization.nn_distance_ratio"] < 0.05
    m = factory(make_ctx(phantom, opts, kind))
    run(m, copied, batch=50)
    gallery = m.extras()["neighbours"]
    assert [g["train_ids"][0] for g in gallery] == [train[i].id for i in range(len(test))]
    assert all(len(g["train_ids"]) == 3 and g["distances"] == sorted(g["distances"]) for g in gallery)
    assert set(copies) == {"memorization.nn_closer_than_p1", "memorization.nn_distance_ratio"}

    held_out = pairs_for(test, kind, image_of=lambda i, s: val[i].load_image())
    st_h, heldout = run(factory(make_ctx(phantom, opts, kind)), held_out, batch=13)
    assert heldout["memorization.nn_closer_than_p1"] <= 0.05
    assert 0.7 < heldout["memorization.nn_distance_ratio"] < 1.4
    # batch size changes rows only by BLAS summation order (the features themselves are cached rows)
    np.testing.assert_allclose(st["real_nn"], st_h["real_nn"], rtol=1e-12, atol=1e-15)


def test_report_copy_rate_against_heldout_baseline(phantom):
    kind = "image->report"
    train, test = phantom.split("train"), phantom.split("test")
    st, copied = run(factory(make_ctx(phantom, {}, kind)), pairs_for(test, kind, report_of=lambda i, s: train[i].report))
    assert set(copied) == {"memorization.report_copy_rate", "memorization.report_copy_rate_real",
                           "memorization.report_ngram12_rate", "memorization.report_ngram12_rate_real"}
    assert copied["memorization.report_copy_rate"] == 1.0 and copied["memorization.report_ngram12_rate"] == 1.0
    assert copied["memorization.report_copy_rate_real"] < 0.9  # templated reports: some real copies, not all
    _, own = run(factory(make_ctx(phantom, {}, kind)), pairs_for(test, kind, report_of=lambda i, s: s.report), batch=17)
    assert own["memorization.report_copy_rate"] == own["memorization.report_copy_rate_real"]
    assert own["memorization.report_ngram12_rate"] == own["memorization.report_ngram12_rate_real"]
    _, fresh = run(factory(make_ctx(phantom, {}, kind)), pairs_for(test, kind, report_of=lambda i, s: f"Novel finding number {i}."))
    assert fresh["memorization.report_copy_rate"] == 0.0 and fresh["memorization.report_ngram12_rate"] == 0.0
