"""pair.consistency: sklearn parity, the real-pair brackets, oracle vs noise on a small cxr phantom.

Uses the bundled phantom-encoder weights (MEDBENCH_TEST_ENCODER_WEIGHTS=FILE overrides them).
"""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from medbench.metrics.base import MetricContext, Scored
from medbench.metrics.pair_consistency import agreement, derangement, factory
from medbench.records import Output, Request

from phantom_helpers import encoder_options, phantom  # noqa: F401,F811 (phantom: a module fixture)
KIND = "prompt->pair"


def make_ctx(ds, options, seed=0):
    return MetricContext(task=SimpleNamespace(request=KIND, split="test"), domain="cxr", protocol="coco", seed=seed,
                         cache_dir=Path("."), train=ds.split("train"), reference=ds.split("test"), options=options, dataset=ds)


def noise_image(seed: int):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64), dtype=np.uint8), "L")


def pairs_for(samples, image_of, report_of):
    return [Scored(s, Request(KIND, s.id, 0, "cxr", prompt=s.prompt_text()), Output(s.id, image=image_of(i, s), report=report_of(i, s)))
            for i, s in enumerate(samples)]


def run(metric, pairs, batch=64):
    for i in range(0, len(pairs), batch):
        metric.update(pairs[i:i + batch])
    st = metric.stats()
    return st, metric.compute(st)


# ---- parity ------------------------------------------------------------------------------------

def test_agreement_matches_sklearn():
    rng = np.random.default_rng(0)
    a = (rng.random((250, 6)) < [0.1, 0.3, 0.5, 0.7, 0.2, 0.0]).astype(np.int64)
    b = np.where(rng.random((250, 6)) < 0.75, a, 1 - a)
    b[:, 5] = 0  # both sides constant on the same class: kappa undefined, F1 excluded from the macro
    res = agreement(a, b)
    for j in range(5):
        assert res["f1"][j] == pytest.approx(f1_score(a[:, j], b[:, j], zero_division=0), abs=1e-12)
        assert res["kappa"][j] == pytest.approx(cohen_kappa_score(a[:, j], b[:, j]), abs=1e-12)
    assert np.isnan(res["kappa"][5])
    assert res["f1_macro"] == pytest.approx(f1_score(a[:, :5], b[:, :5], average="macro", zero_division=0), abs=1e-12)
    assert res["kappa_macro"] == pytest.approx(np.mean([cohen_kappa_score(a[:, j], b[:, j]) for j in range(5)]), abs=1e-12)


def test_derangement_has_no_fixed_point_and_is_seeded():
    for n in (2, 3, 10, 101):
        p = derangement(n, seed=5)
        assert sorted(p) == list(range(n)) and not np.any(p == np.arange(n))
        np.testing.assert_array_equal(p, derangement(n, seed=5))
    assert not np.array_equal(derangement(50, 1), derangement(50, 2))


# ---- brackets on phantom data --------------------------------------------------------------------

def test_brackets_oracle_and_noise(phantom):
    opts = encoder_options()
    test = phantom.split("test")
    _, oracle = run(factory(make_ctx(phantom, opts)), pairs_for(test, lambda i, s: s.load_image(), lambda i, s: s.report))
    ceiling, floor = oracle["pair.consistency.f1_ceiling"], oracle["pair.consistency.f1_floor"]
    assert ceiling > floor + 0.25, (ceiling, floor)
    assert oracle["pair.consistency.kappa_ceiling"] > oracle["pair.consistency.kappa_floor"] + 0.3
    assert oracle["pair.consistency.f1"] == pytest.approx(ceiling, abs=1e-9)  # real pairs are the ceiling
    assert oracle["pair.consistency.f1_relative"] == pytest.approx(1.0, abs=1e-9)

    _, noise = run(factory(make_ctx(phantom, opts)), pairs_for(test, lambda i, s: noise_image(i), lambda i, s: s.report))
    assert noise["pair.consistency.f1"] < floor + 0.1
    assert noise["pair.consistency.kappa"] < oracle["pair.consistency.kappa_floor"] + 0.1
    assert noise["pair.consistency.f1_ceiling"] == ceiling  # the brackets depend on the real samples only


def test_batch_independence_and_missing_images(phantom):
    opts = encoder_options()
    test = phantom.split("test")
    pairs = pairs_for(test, lambda i, s: None if i % 10 == 0 else s.load_image(),
                      lambda i, s: test[(i + 1) % len(test)].report if i % 4 == 0 else s.report)
    st_a, va = run(factory(make_ctx(phantom, opts)), pairs, batch=9)
    st_b, vb = run(factory(make_ctx(phantom, opts)), pairs, batch=64)
    for k in st_a:
        np.testing.assert_array_equal(st_a[k], st_b[k])
    assert va == vb
    assert int((st_a["gen_valid"] == 0).sum()) == len(range(0, len(test), 10))
    assert va["pair.consistency.f1_floor"] < va["pair.consistency.f1"] < va["pair.consistency.f1_ceiling"]
