"""The bootstrap fast path (row weights, one product) gives the direct path's numbers, family by family.

Each per-sample-decomposable family's `weighted_compute` is checked against its own `compute` re-run on
the gathered rows of the same resamples (same seed): every resample's value to 1e-9, the CIs to 1e-6,
and the paired test's p-values and CIs likewise. Statistics come from the real scorers where they are
cheap (pycocoevalcap + the METEOR jar, nltk, the CheXpert-phrase labeler); the label-matrix families get
random matrices with ties, NaN rows (missing images) and labels absent from a resample.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from medbench.metrics.base import MetricContext, Scored
from medbench.records import Output, Request, Sample
from medbench.stats.bootstrap import (bootstrap_ci, bootstrap_ci_weighted, bootstrap_draws, resample_indices,
                                      resample_weights, weighted_draws)
from medbench.stats.paired import paired_compare
from medbench.stats.weighted import wauroc, wmean, wquantile

from report_sentences import SENTENCES

N_BOOT = 80


def patients_of(n: int, seed: int = 0) -> list[str]:
    """Patients with 1-4 studies each, rows interleaved (a patient's rows need not be adjacent)."""
    rng = np.random.default_rng(seed)
    return [f"p{int(v)}" for v in rng.integers(0, max(2, n // 2), n)]


def assert_same_draws(metric, stats, patients, n_boot=N_BOOT, seed=3):
    direct = bootstrap_draws(metric.compute, stats, patients, n_boot=n_boot, seed=seed)
    fast = weighted_draws(metric.weighted_compute, stats, patients, n_boot=n_boot, seed=seed, block=17)
    assert set(direct) == set(fast) == set(metric.compute(stats))
    for name in direct:
        assert fast[name].shape == (n_boot,), name
        np.testing.assert_allclose(fast[name], direct[name], rtol=0, atol=1e-9, err_msg=name)
    ci_d = bootstrap_ci(metric.compute, stats, patients, n_boot=n_boot, seed=seed)
    ci_f = metric.confidence_intervals(stats, patients, n_boot=n_boot, seed=seed)
    for name, (lo, hi) in ci_d.items():
        if lo is None:
            assert ci_f[name] == (None, None), name
        else:
            assert ci_f[name] == pytest.approx((lo, hi), abs=1e-6), name


def assert_same_paired(metric, a, b, patients):
    kw = dict(n_perm=60, n_boot=60, seed=5)
    direct = paired_compare(metric.compute, a, b, patients, **kw)
    fast = paired_compare(metric.compute, a, b, patients, weighted_compute=metric.weighted_compute, **kw)
    assert set(direct) == set(fast)
    for name, d in direct.items():
        f = fast[name]
        np.testing.assert_equal((f.a, f.b, f.diff), (d.a, d.b, d.diff))
        assert f.p_value == d.p_value, name
        if d.ci_low is None:
            assert f.ci_low is None
        else:
            assert (f.ci_low, f.ci_high) == pytest.approx((d.ci_low, d.ci_high), abs=1e-6), name


# ---- the weights themselves -------------------------------------------------------------------

def test_weights_are_the_bincounts_of_the_resample_indices():
    patients = patients_of(37)
    w = np.concatenate(list(resample_weights(patients, 50, seed=9, block=7)))
    for b, idx in enumerate(resample_indices(patients, 50, seed=9)):
        np.testing.assert_array_equal(w[b], np.bincount(idx, minlength=37))


def test_weighted_helpers_equal_numpy_on_gathered_rows():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=60), 1)  # ties
    x[[3, 17]] = np.nan
    y = rng.random(60) < 0.3
    patients = patients_of(60)
    idxs = list(resample_indices(patients, 40, seed=1))
    w = np.stack([np.bincount(i, minlength=60) for i in idxs]).astype(float)
    from sklearn.metrics import roc_auc_score

    for b, idx in enumerate(idxs):
        xi = x[idx]
        fin = xi[np.isfinite(xi)]
        assert wmean(w[b:b + 1], x, skip_nan=True)[0] == pytest.approx(fin.mean(), abs=1e-12)
        for q in (1, 50, 97.5):
            assert wquantile(w[b:b + 1], x, q)[0] == pytest.approx(np.percentile(fin, q), abs=1e-12)
        ok = np.isfinite(xi)
        assert wauroc(w[b:b + 1], y, x)[0] == pytest.approx(roc_auc_score(y[idx][ok], xi[ok]), abs=1e-12)


# ---- text families --------------------------------------------------------------------------------

def text_pairs(n: int) -> list[Scored]:
    rng = np.random.default_rng(4)
    out = []
    for i in range(n):
        ref = " ".join(rng.choice(SENTENCES, 2, replace=False))
        hyp = "" if i % 11 == 5 else " ".join(rng.choice(SENTENCES, int(rng.integers(1, 3)), replace=False))
        s = Sample(id=f"s{i}", patient_id=f"p{i // 3}", domain="cxr", split="test", image_path=None, report=ref)
        out.append(Scored(s, Request("image->report", s.id, i, "cxr"), Output(s.id, report=hyp)))
    return out


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    task = SimpleNamespace(request="prompt->pair", split="test")
    return MetricContext(task=task, domain="cxr", protocol="coco", seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.slow  # the METEOR JVM and the PTB tokenizer start (~10 s idle, a minute on busy cores)
def test_coco_text_fast_path_equals_direct():
    from medbench.metrics.java_meteor import java_missing_reason
    from medbench.metrics.text_coco import CocoText

    if java_missing_reason():
        pytest.skip(java_missing_reason())
    pairs = text_pairs(45)
    m = CocoText()
    try:
        m.update(pairs)
        stats = m.stats()
    finally:
        m.close()
    patients = [p.sample.patient_id for p in pairs]
    assert_same_draws(m, stats, patients)
    b = {k: v[np.random.default_rng(0).permutation(len(v))] for k, v in stats.items()}  # another "system"
    assert_same_paired(m, stats, b, patients)


@pytest.mark.slow  # nltk + WordNet load
@pytest.mark.parametrize("skip_empty", [False, True])
def test_medim_text_fast_path_equals_direct(skip_empty):
    from medbench.metrics.text_medim import MedimPaperText

    pairs = text_pairs(30)
    m = MedimPaperText(skip_empty=skip_empty)
    m.update(pairs)
    assert_same_draws(m, m.stats(), [p.sample.patient_id for p in pairs])


def test_clinical_fast_path_equals_direct(ctx):
    from medbench.metrics.clinical import clinical_factory

    pairs = text_pairs(60)
    m = clinical_factory(ctx)
    m.update(pairs)
    stats = m.stats()
    patients = [p.sample.patient_id for p in pairs]
    assert_same_draws(m, stats, patients)
    b = {k: v[::-1].copy() for k, v in stats.items()}
    assert_same_paired(m, stats, b, patients)


# ---- label-matrix and memorization families (real compute on random statistics) ---------------------

def label_stats(rng, n: int, L: int = 5) -> dict[str, np.ndarray]:
    target = (rng.random((n, L)) < np.linspace(0.03, 0.5, L)).astype(np.int64)
    prob = np.round(np.clip(target * 0.3 + rng.random((n, L)) * 0.7, 0, 1), 1)  # many ties
    real = np.round(np.clip(target * 0.6 + rng.random((n, L)) * 0.4, 0, 1), 2)
    prob[rng.random(n) < 0.1] = np.nan  # missing generated images
    return {"target": target, "prob": prob, "real_prob": real, "threshold": np.tile(np.linspace(0.3, 0.7, L), (n, 1))}


def test_label_fidelity_fast_path_equals_direct(ctx):
    from medbench.metrics.label_fidelity import factory

    rng = np.random.default_rng(2)
    m = factory(ctx)
    stats, patients = label_stats(rng, 70), patients_of(70)
    assert_same_draws(m, stats, patients)
    assert_same_paired(m, stats, label_stats(rng, 70), patients)


def test_pair_consistency_fast_path_equals_direct(ctx):
    from medbench.metrics.pair_consistency import factory

    rng = np.random.default_rng(3)
    n, L = 64, 6
    m = factory(ctx)
    p = np.linspace(0.02, 0.5, L)

    def stats():
        out = {k: (rng.random((n, L)) < p).astype(np.int64) for k in ("gen_report", "real_report", "real_image", "shuffled_report")}
        out["gen_image"] = out["gen_report"] ^ (rng.random((n, L)) < 0.2)
        out["gen_valid"] = (rng.random(n) > 0.1).astype(np.int64)
        return out

    a = stats()
    patients = patients_of(n)
    assert_same_draws(m, a, patients)
    assert_same_paired(m, a, stats(), patients)


def test_memorization_fast_path_equals_direct(ctx):
    from medbench.metrics.memorization import factory

    rng = np.random.default_rng(4)
    n = 90
    m = factory(ctx)
    assert m.parts == ("image", "report")

    def stats():
        out = {"gen_nn": rng.gamma(2.0, 0.05, n), "real_nn": rng.gamma(2.0, 0.06, n)}
        out["gen_nn"][[4, 40]] = np.nan
        for k in ("gen_copy", "real_copy", "gen_ngram", "real_ngram"):
            out[k] = (rng.random(n) < 0.3).astype(np.float64)
        out["gen_copy"][7] = np.nan  # a missing report
        return out

    a, patients = stats(), patients_of(n)
    assert_same_draws(m, a, patients)
    assert_same_paired(m, a, stats(), patients)


def test_diversity_fast_path_equals_direct():
    """image.diversity keeps each row's pair MS-SSIM: NaN rows (unpaired, missing images) and ties included."""
    from medbench.metrics.diversity import Diversity

    rng = np.random.default_rng(4)
    n = 45
    gen, real = np.round(rng.random(n), 2), np.round(rng.random(n), 2)
    gen[[1, 7, 20]] = np.nan
    real[[7, 30]] = np.nan
    stats = {"gen": gen, "real": real, "partner": rng.integers(-1, n, n)}
    metric = Diversity(SimpleNamespace(name="chexpert-rule"), ("Edema",))
    patients = patients_of(n, seed=2)
    assert_same_draws(metric, stats, patients)
    b = {"gen": np.clip(gen + rng.normal(0, 0.05, n), 0, 1), "real": real, "partner": stats["partner"]}
    assert_same_paired(metric, stats, b, patients)


def test_fast_path_costs_little_next_to_direct(ctx):
    """1,000 resamples of a decomposable family: the fast path is far cheaper than the direct one
    (a ratio on the same machine, not a timing budget)."""
    import time

    from medbench.metrics.clinical import clinical_factory

    m = clinical_factory(ctx)
    m.update(text_pairs(300))
    stats, patients = m.stats(), [f"p{i // 3}" for i in range(300)]
    t0 = time.perf_counter()
    bootstrap_ci(m.compute, stats, patients, n_boot=100, seed=0)
    direct = (time.perf_counter() - t0) * 10  # per 1,000
    t0 = time.perf_counter()
    bootstrap_ci_weighted(m.weighted_compute, stats, patients, n_boot=1000, seed=0)
    fast = time.perf_counter() - t0
    assert fast < direct / 5, (fast, direct)


# ---- image fidelity (set-level) -------------------------------------------------------------------

def fidelity_metric():
    from medbench.features import get_extractor
    from medbench.metrics.fidelity import ImageFidelity

    return ImageFidelity(get_extractor("phantom-encoder", None), seed=0)


def fidelity_stats(rng, n: int, d: int) -> dict[str, np.ndarray]:
    ref = rng.normal(size=(n, d)).astype(np.float32)
    gen = (0.8 * ref + 0.6 * rng.normal(size=(n, d)) + 0.2).astype(np.float32)
    gen[3] = np.nan  # a missing generated image
    return {"gen_features": gen, "ref_features": ref}


def test_fid_side_follows_the_distinct_rows_of_every_resample():
    from medbench.metrics.fid_weighted import fid_side

    w = np.array([[1, 0, 2, 1], [1, 1, 1, 1]], dtype=float)  # fewest distinct rows drawn: 3
    assert fid_side(w, w, 2) == "feature"
    assert fid_side(w, w, 3) == "sample"
    assert fid_side(w, w[[1, 1]], 2) == "feature" and fid_side(w[[1, 1]], w, 3) == "sample"


@pytest.mark.parametrize("n,d,side", [(160, 12, "feature"), (60, 90, "sample")])  # more rows than dims, fewer
def test_fidelity_fast_path_equals_direct(n, d, side):
    from medbench.metrics.fidelity import fid, split_half
    from medbench.metrics.fid_weighted import fid_side

    rng = np.random.default_rng(n)
    m = fidelity_metric()
    stats, patients = fidelity_stats(rng, n, d), patients_of(n, seed=1)
    assert fid_side(np.concatenate(list(resample_weights(patients, 40, seed=2))), np.ones((1, n)), d) == side
    t = m.tag
    direct = bootstrap_draws(m.compute, stats, patients, n_boot=40, seed=2)
    fast = weighted_draws(m.weighted_compute, stats, patients, n_boot=40, seed=2, block=13)
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        key = f"image.{name}@{t}"
        np.testing.assert_allclose(fast[key], direct[key], rtol=0, atol=1e-6 if name != "fid" else 1e-6 * max(1, d / 10),
                                   err_msg=key)
    assert np.isnan(fast[f"image.kid_std@{t}"]).all()
    # the floor: the same fixed halves of the (kept) reference rows, patients resampled
    keep = np.isfinite(stats["gen_features"]).all(1)
    ref = stats["ref_features"][keep].astype(np.float64)
    pos = np.cumsum(keep) - 1  # kept-row position of every row
    a, b = split_half(len(ref), 0)
    for r, idx in enumerate(resample_indices(patients, 40, seed=2)):
        kept = pos[idx[keep[idx]]]
        want = fid(ref[kept[np.isin(kept, a)]], ref[kept[np.isin(kept, b)]])
        assert fast[f"image.fid_floor@{t}"][r] == pytest.approx(want, abs=1e-6 * max(1, d / 10))
    # the CIs the run records come from the fast path
    ci = m.confidence_intervals(stats, patients, n_boot=40, seed=2)
    lo, hi = bootstrap_ci(m.compute, stats, patients, n_boot=40, seed=2)[f"image.fid@{t}"]
    assert ci[f"image.fid@{t}"] == pytest.approx((lo, hi), abs=1e-6 * max(1, d / 10))


def test_fidelity_fast_path_streamed_equals_direct(monkeypatch):
    """Small blocks, kernels recomputed per call and 4 kept neighbours: every streamed branch runs
    (radii and balls that outgrow the kept neighbours are searched in full) and still equals the
    direct path; no N x N matrix is held."""
    from medbench.metrics import fidelity_weighted as fw

    monkeypatch.setattr(fw, "NEIGHBOURS", 4)
    monkeypatch.setattr(fw, "ROWS", 16)
    monkeypatch.setattr(fw, "KERNEL_CACHE_BYTES", 0)
    rng = np.random.default_rng(21)
    n, d = 90, 6
    m = fidelity_metric()
    stats, patients = fidelity_stats(rng, n, d), patients_of(n, seed=6)
    direct = bootstrap_draws(m.compute, stats, patients, n_boot=30, seed=4)
    fast = weighted_draws(m.weighted_compute, stats, patients, n_boot=30, seed=4, block=11)
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):  # (the floor: fixed halves, above)
        key = f"image.{name}@{m.tag}"
        np.testing.assert_allclose(fast[key], direct[key], rtol=0, atol=1e-6, err_msg=key)
    wf = m._fast[2]
    held = [v for obj in (wf, wf.prc_gen, wf.prc_ref, wf.prdc_ref, wf.in_real, wf.in_gen, wf.in_real5, wf.kxx)
            for v in vars(obj).values() if isinstance(v, np.ndarray) and v is not wf.gen and v is not wf.ref]
    assert wf.kxx.blocks is None and max(a.size for a in held) < (n - 1) ** 2 / 4


def test_fidelity_paired_fast_path_equals_direct():
    rng = np.random.default_rng(7)
    m = fidelity_metric()
    a, patients = fidelity_stats(rng, 120, 10), patients_of(120, seed=3)
    b = {"gen_features": (a["ref_features"] + 0.9 * rng.normal(size=a["ref_features"].shape)).astype(np.float32),
         "ref_features": a["ref_features"]}
    kw = dict(n_perm=30, n_boot=30, seed=1)
    direct = paired_compare(m.compute, a, b, patients, **kw)
    fast = paired_compare(m.compute, a, b, patients, weighted_compute=m.weighted_compute, **kw)
    for name in (f"image.{s}@{m.tag}" for s in ("fid", "kid", "precision", "recall", "density", "coverage")):
        assert fast[name].p_value == direct[name].p_value, name
        assert (fast[name].ci_low, fast[name].ci_high) == pytest.approx((direct[name].ci_low, direct[name].ci_high), abs=1e-6), name


@pytest.mark.gpu
def test_fidelity_fast_path_on_cuda_equals_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from medbench.metrics.fid_weighted import weighted_fid_two

    rng = np.random.default_rng(11)
    stats, patients = fidelity_stats(rng, 600, 64), patients_of(600, seed=4)
    gen, ref = stats["gen_features"][4:].astype(np.float64), stats["ref_features"][4:].astype(np.float64)
    w = np.concatenate(list(resample_weights(patients[4:], 30, seed=0)))
    np.testing.assert_allclose(weighted_fid_two(w, gen, w, ref, "cuda"), weighted_fid_two(w, gen, w, ref, "cpu"), rtol=0, atol=1e-6)


def test_fidelity_torch_path_equals_numpy_path_on_the_cpu():
    """The CUDA code path's torch implementation, run on the CPU, against the numpy feature side."""
    from medbench.metrics.fid_weighted import _fid_feature_side, _fid_feature_side_torch

    rng = np.random.default_rng(12)
    stats, patients = fidelity_stats(rng, 200, 10), patients_of(200, seed=5)
    gen, ref = stats["gen_features"][4:].astype(np.float64), stats["ref_features"][4:].astype(np.float64)
    w = np.concatenate(list(resample_weights(patients[4:], 25, seed=0)))
    np.testing.assert_allclose(_fid_feature_side_torch(w, gen, w, ref, "cpu"), _fid_feature_side(w, gen, w, ref), rtol=0, atol=1e-8)
