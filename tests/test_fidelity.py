"""image.fidelity: parity with torch-fidelity (FID/KID/PRC) and prdc (density/coverage), the metric contract."""
import numpy as np
import pytest
import torch
from PIL import Image

from medbench.features.torch_fidelity_bridge import UInt8Images, register_with_torch_fidelity
from medbench.features.phantom_encoder import PhantomEncoder, PhantomEncoderConfig, PhantomEncoderNet, uint8_to_input
from medbench.metrics.base import MetricContext, MetricUnavailable, Scored
from medbench.metrics.fidelity import ImageFidelity, density_coverage, factory, fid, kid
from medbench.records import Output, Request, Sample

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


def encoder(seed=0) -> PhantomEncoder:
    """A random network whose batch-norm statistics are calibrated on blob images (unit-scale features)."""
    torch.manual_seed(seed)
    net = PhantomEncoderNet(PhantomEncoderConfig(labels={"cxr": ["Cardiomegaly"]}))
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average: one pass gives the exact batch statistics
    calib = UInt8Images(blobs(32, 98, 90) + blobs(32, 99, 140))
    x = torch.stack([calib[i] for i in range(len(calib))])
    with torch.no_grad():
        net.train()(uint8_to_input(x))
    return PhantomEncoder(net.eval(), weights_sha256=f"random-{seed}")


def blobs(n, seed, bright):
    """Gray images with a few bright discs: two sets differ in brightness and blob count."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    out = []
    for _ in range(n):
        img = rng.normal(60, 10, (64, 64))
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.integers(10, 54, 2).tolist() + [int(rng.integers(4, 10))]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += bright
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)))
    return out


# ---- parity with torch-fidelity (the same extractor registered there) ------------------------

@pytest.mark.parametrize("subset_size", [None, 20])
def test_fid_kid_prc_match_torch_fidelity(subset_size):
    import torch_fidelity

    ex = encoder()
    gen, ref = blobs(40, 1, 90), blobs(40, 2, 140)
    g, r = ex.features(gen), ex.features(ref)
    kwargs = dict(kid_subset_size=subset_size or 40)
    expected = torch_fidelity.calculate_metrics(input1=UInt8Images(gen), input2=UInt8Images(ref), fid=True, kid=True, prc=True,
                                                feature_extractor=register_with_torch_fidelity(ex), cuda=False, verbose=False,
                                                cache=False, save_cpu_ram=True, batch_size=16, **kwargs)
    ours_kid, ours_kid_std = kid(g, r, subset_size=subset_size or 1000)
    assert fid(g, r) == pytest.approx(expected["frechet_inception_distance"], rel=1e-4)
    assert ours_kid == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-4)
    if subset_size:  # the one-subset shortcut has std 0; torch-fidelity's 100 permutations give rounding noise
        assert ours_kid_std == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-4)
    else:
        assert expected["kernel_inception_distance_std"] < 1e-4 * abs(ours_kid)
    metric = ImageFidelity(ex)
    values = metric.compute({"gen_features": g, "ref_features": r})
    assert values["image.precision@phantom-encoder"] == pytest.approx(expected["precision"], abs=1e-9)
    assert values["image.recall@phantom-encoder"] == pytest.approx(expected["recall"], abs=1e-9)
    assert values["image.fid@phantom-encoder"] > 0


def test_density_coverage_match_prdc():
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 8)), rng.normal(0.4, 1.2, size=(50, 8))
    expected = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    density, coverage = density_coverage(fake, real, k=5)
    assert density == pytest.approx(float(expected["density"]), rel=1e-12)
    assert coverage == pytest.approx(float(expected["coverage"]), rel=1e-12)


def test_streamed_knn_above_the_block_size_matches_the_references():
    """Above STREAM_ROWS rows PRC runs torch-fidelity's block-wise mode and PRDC is computed in row blocks
    (memory in N, not N^2): the same numbers as torch-fidelity's full mode and the prdc package."""
    prdc = pytest.importorskip("prdc")
    from torch import from_numpy
    from torch_fidelity.metric_prc import prc_features_to_metric

    from medbench.metrics.fidelity import STREAM_ROWS, precision_recall

    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(STREAM_ROWS + 77, 6)), rng.normal(0.3, 1.1, size=(STREAM_ROWS + 40, 6))
    full = prc_features_to_metric(from_numpy(fake), from_numpy(real), prc_neighborhood=3, prc_batch_size=10000,
                                  save_cpu_ram=False, verbose=False)
    assert precision_recall(fake, real, 3) == pytest.approx((full["precision"], full["recall"]), abs=1e-12)
    expected = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    assert density_coverage(fake, real, 5) == pytest.approx((float(expected["density"]), float(expected["coverage"])), rel=1e-12)


def test_density_coverage_match_the_paper_definition():
    """Direct transcription of Naeem et al. 2020, eqs. (3)-(4), with explicit loops."""
    rng = np.random.default_rng(1)
    real, fake, k = rng.normal(size=(30, 4)), rng.normal(0.3, 1.0, size=(25, 4)), 5
    radius = [sorted(np.linalg.norm(real - x, axis=1))[k] for x in real]  # k-th neighbour, self excluded
    density = sum(np.linalg.norm(y - x) < radius[i] for y in fake for i, x in enumerate(real)) / (k * len(fake))
    coverage = np.mean([any(np.linalg.norm(y - x) < radius[i] for y in fake) for i, x in enumerate(real)])
    assert density_coverage(fake, real, k) == pytest.approx((density, coverage), rel=1e-12)


# ---- the metric contract ---------------------------------------------------------------------

def scored(tmp_path, gen, ref, missing=()):
    items = []
    for i, (g, r) in enumerate(zip(gen, ref)):
        path = tmp_path / f"ref{i}.png"
        r.save(path)
        sample = Sample(f"s{i}", f"p{i // 2}", "cxr", "test", path, "Heart size is normal.")
        req = Request("report->image", sample.id, seed=i, domain="cxr", report=sample.report)
        items.append(Scored(sample, req, Output(sample.id, image=None if i in missing else g)))
    return items


def test_metric_rows_resample_together(tmp_path):
    ex = encoder()
    pairs = scored(tmp_path, blobs(24, 3, 90), blobs(24, 4, 140), missing=(5,))
    m = ImageFidelity(ex, seed=0)
    m.update(pairs[:10])
    m.update(pairs[10:])
    st = m.stats()
    assert st["gen_features"].shape == st["ref_features"].shape == (24, 256)
    assert np.isnan(st["gen_features"][5]).all() and m.extras()["missing_images"]["generated"] == 1
    values = m.compute(st)
    assert set(values) == set(m.higher_is_better)
    assert all(np.isfinite(v) for v in values.values())
    assert "image.is@phantom-encoder" not in values and "IS omitted" in m.variant
    keep = [i for i in range(24) if i != 5]
    assert st["gen_features"].dtype == np.float32  # lossless for a float32 network, half the memory
    g, r = st["gen_features"][keep].astype(np.float64), st["ref_features"][keep].astype(np.float64)
    assert values["image.fid@phantom-encoder"] == pytest.approx(fid(g, r), rel=1e-12)
    idx = np.random.default_rng(0).integers(0, 24, 24)
    resampled = m.compute({k: v[idx] for k, v in st.items()})
    assert set(resampled) == set(values)
    same = m.compute(st)
    assert same == values  # pure: the floor's split is seeded
    # identical sets: FID ~ 0, precision = recall = coverage = 1
    ident = m.compute({"gen_features": r, "ref_features": r})
    assert abs(ident["image.fid@phantom-encoder"]) < 1e-4 and ident["image.coverage@phantom-encoder"] == 1.0


def test_metric_reuses_cached_reference_features(tmp_path):
    ex = encoder()
    pairs = scored(tmp_path, blobs(6, 5, 90), blobs(6, 6, 140))
    m1 = ImageFidelity(ex)
    m1.update(pairs)
    st1 = m1.stats()
    calls = []
    orig = ex.embed
    ex.embed = lambda ims: (calls.append(len(ims)), orig(ims))[1]
    m2 = ImageFidelity(ex)
    m2.update(pairs)
    assert calls == []
    np.testing.assert_array_equal(m2.stats()["ref_features"], st1["ref_features"])


def test_factory_reports_unavailable_extractors(tmp_path, monkeypatch):
    ctx = MetricContext(task=None, domain="cxr", protocol="coco", seed=0, cache_dir=tmp_path, options={"extractor": "nope"})
    with pytest.raises(MetricUnavailable, match="unknown extractor 'nope'"):
        factory(ctx)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ctx.options = {"extractor": "inception-v3-compat"}
    with pytest.raises(MetricUnavailable, match="weights-inception-2015-12-05-6726825d.pth"):
        factory(ctx)


def test_spec_is_registered():
    from medbench.registry import build_registry

    spec = build_registry().get("metrics", "image.fidelity")
    assert spec.requires == ("image",) and set(spec.kinds) == {"report->image", "prompt->pair"}
