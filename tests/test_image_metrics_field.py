"""The field's image metrics on tiny real-architecture evaluators: FID/KID on every named extractor
(parity with torchmetrics — CheXGenBench's computation — and torch-fidelity), per-pathology FID/KID,
BiomedCLIP alignment with its brackets, MS-SSIM diversity (torchmetrics called directly), privacy
(nearest-training distances, CheXGenBench's latent distance and re-ID score). No network."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_image_models as tiny
from medbench.metrics.base import MetricContext, Scored
from medbench.records import Output, Request, Sample

torch.set_num_threads(1)
LABELS = ("Cardiomegaly", "Pleural Effusion", "Pneumothorax")


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every test here runs with sockets refused (the no_network fixture of tests/conftest.py)."""


@pytest.fixture(autouse=True)
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("weights")
    tiny.write_all(r)
    tiny.pin_all(r)
    return r


@pytest.fixture
def weights_env(root, monkeypatch):
    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(root))
    return root


def make_samples(folder: Path, n: int, seed: int, split: str = "test", bright: int = 140, labels=None) -> list[Sample]:
    """n samples with blob images on disk; labels cycle through LABELS unless given."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, im in enumerate(tiny.blob_images(n, seed, bright)):
        path = folder / f"{split}{seed}_{i:03d}.png"
        im.save(path)
        lab = labels[i] if labels is not None else {LABELS[i % 3]: 1}
        report = " ".join(f"There is {k.lower()}." for k, v in lab.items() if v == 1) or "No acute findings."
        out.append(Sample(id=path.stem, patient_id=f"p{seed}-{i // 2}", domain="cxr", split=split, image_path=path,
                          report=report, labels=lab))
    return out


def scored(samples, gen_images, kind="report->image"):
    return [Scored(s, Request(kind, s.id, 0, "cxr", report=s.report), Output(s.id, image=g)) for s, g in zip(samples, gen_images)]


def feed(metric, pairs, batch=7):
    for i in range(0, len(pairs), batch):
        metric.update(pairs[i:i + batch])
    st = metric.stats()
    return st, metric.compute(st)


def ctx(**kw):
    base = dict(task=None, domain="cxr", protocol="coco", seed=0, cache_dir=Path("."))
    return MetricContext(**(base | kw))


class ByIndex(torch.nn.Module):
    """A torchmetrics feature module: uint8 batches -> the medbench extractor's features (CheXGenBench's way)."""

    def __init__(self, extractor):
        super().__init__()
        self.extractor = extractor

    def forward(self, x):
        from PIL import Image

        ims = [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in x]
        return torch.from_numpy(self.extractor.features(ims))


class Precomputed(torch.nn.Identity):
    """A torchmetrics feature module for rows that already are features."""

    def __init__(self, dim):
        super().__init__()
        self.num_features = dim


def load(paths):
    from PIL import Image

    return [Image.open(p).copy() for p in paths]


def as_uint8(ims):
    return torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"))).permute(2, 0, 1) for im in ims])


# ---- FID / KID on each named extractor ----------------------------------------------------------------

@pytest.mark.parametrize("extractor", ["rad-dino", "rad-dino-mean", "xrv-densenet121", "biomedclip"])
def test_fid_kid_equal_torchmetrics_and_torch_fidelity(weights_env, tmp_path, extractor):
    import torch_fidelity
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from medbench.features import get_extractor
    from medbench.features.torch_fidelity_bridge import UInt8Images, register_with_torch_fidelity
    from medbench.metrics.fidelity_named import factory_for

    samples = make_samples(tmp_path / "real", 40, 2, bright=140)
    gen = tiny.blob_images(40, 1, 90)
    metric = factory_for(extractor)(ctx())
    assert metric.name == f"image.fidelity@{extractor}"
    _, values = feed(metric, scored(samples, gen))
    real = [s.image_path for s in samples]
    from PIL import Image

    real_ims = [Image.open(p).convert("L") for p in real]
    ex = get_extractor(extractor)
    tm_fid = FrechetInceptionDistance(feature=ByIndex(ex))
    tm_kid = KernelInceptionDistance(feature=ByIndex(ex), subsets=1, subset_size=40)
    for m in (tm_fid, tm_kid):
        m.update(as_uint8(real_ims), real=True)
        m.update(as_uint8(gen), real=False)
    tf = torch_fidelity.calculate_metrics(input1=UInt8Images(gen), input2=UInt8Images(real_ims), fid=True, kid=True,
                                          feature_extractor=register_with_torch_fidelity(ex), kid_subset_size=40, cuda=False,
                                          verbose=False, cache=False, save_cpu_ram=True, batch_size=16)
    ours = values[f"image.fid@{extractor}"]
    assert ours > 0
    assert ours == pytest.approx(float(tm_fid.compute()), rel=1e-4)
    assert ours == pytest.approx(tf["frechet_inception_distance"], rel=1e-4)
    kid_ours = values[f"image.kid@{extractor}"]
    assert kid_ours == pytest.approx(float(tm_kid.compute()[0]), rel=1e-4)
    # torch-fidelity's pipeline keeps float32 features and computes the polynomial-kernel MMD in float32; KID is a
    # small difference of large kernel means, so its pipeline value carries float32 cancellation error. The same
    # torch-fidelity function on the same features: float32 reproduces its pipeline, float64 is ours.
    from torch_fidelity.metric_kid import kid_features_to_metric

    g32, r32 = (torch.from_numpy(ex.features(x).astype(np.float32)) for x in (gen, real_ims))
    args = dict(kid_subsets=100, kid_subset_size=40, verbose=False)
    assert kid_features_to_metric(g32, r32, **args)["kernel_inception_distance_mean"] == pytest.approx(
        tf["kernel_inception_distance_mean"], rel=1e-5)
    assert kid_ours == pytest.approx(kid_features_to_metric(g32.double(), r32.double(), **args)[
        "kernel_inception_distance_mean"], rel=1e-9)
    assert kid_ours == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-3)
    assert np.isfinite(values[f"image.density@{extractor}"]) and np.isfinite(values[f"image.fid_floor@{extractor}"])


def test_named_family_without_weights_names_the_file(tmp_path, monkeypatch):
    from medbench.metrics.base import MetricUnavailable
    from medbench.metrics.fidelity_named import factory_for

    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(MetricUnavailable, match=str(tmp_path / "rad-dino" / "config.json")):
        factory_for("rad-dino")(ctx())


# ---- per-pathology FID / KID --------------------------------------------------------------------------

def test_per_pathology_per_label_values_and_too_few(weights_env, tmp_path):
    from torchmetrics.image.fid import FrechetInceptionDistance

    from medbench.features import get_extractor
    from medbench.metrics.fidelity import kid
    from medbench.metrics.per_pathology import factory

    labs = [{"Cardiomegaly": 1}] * 36 + [{"Pleural Effusion": 1, "Cardiomegaly": 0}] * 34 + [{"Pneumothorax": 1}] * 4 \
        + [{"Pneumothorax": -1}] * 3
    samples = make_samples(tmp_path / "real", len(labs), 3, labels=labs)
    gen = tiny.blob_images(len(labs), 4, 100)
    metric = factory(ctx(options={"per_pathology_min_n": 30}))
    st, values = feed(metric, scored(samples, gen))
    ex = get_extractor("rad-dino")
    g, r = ex.features(gen), ex.features(load(s.image_path for s in samples))
    fids = []
    for lab, key in (("Cardiomegaly", "cardiomegaly"), ("Pleural Effusion", "pleural_effusion")):
        rows = [i for i, d in enumerate(labs) if d.get(lab) == 1]
        tm = FrechetInceptionDistance(feature=Precomputed(g.shape[1]))
        tm.update(torch.from_numpy(r[rows]), real=True)
        tm.update(torch.from_numpy(g[rows]), real=False)
        want = float(tm.compute())
        assert values[f"image.per_pathology.{key}.fid@rad-dino"] == pytest.approx(want, rel=1e-4)
        assert values[f"image.per_pathology.{key}.kid@rad-dino"] == pytest.approx(kid(g[rows], r[rows])[0], rel=1e-9)
        fids.append(want)
    assert values["image.per_pathology.macro.fid@rad-dino"] == pytest.approx(np.mean(fids), rel=1e-4)
    assert np.isnan(values["image.per_pathology.pneumothorax.fid@rad-dino"])  # 4 positives (-1 is not counted)
    extras = json.loads(json.dumps(metric.extras()))
    assert extras["too_few"]["Pneumothorax"] == 4 and "Cardiomegaly" not in extras["too_few"]
    row = next(x for x in extras["per_label"] if x["label"] == "Pneumothorax")
    assert row["scored"] is False and row["fid"] is None
    cis = metric.confidence_intervals(st, [s.patient_id for s in samples], n_boot=4, seed=0)
    lo, hi = cis["image.per_pathology.cardiomegaly.fid@rad-dino"]
    assert lo is not None and lo <= hi
    assert cis["image.per_pathology.pneumothorax.fid@rad-dino"] == (None, None)


# ---- alignment -------------------------------------------------------------------------------------------

def test_alignment_equals_biomedclip_cosines_with_brackets(weights_env, tmp_path):
    from medbench.features import get_extractor
    from medbench.metrics.alignment import factory
    from medbench.metrics.pair_consistency import derangement

    samples = make_samples(tmp_path / "real", 9, 5)
    gen = tiny.blob_images(9, 6, 80)
    metric = factory(ctx(reference=samples, seed=3))
    st, values = feed(metric, scored(samples, gen), batch=4)
    ex = get_extractor("biomedclip")

    def cos(ims, texts):
        a = torch.nn.functional.normalize(torch.from_numpy(ex.features(ims)), dim=-1)
        b = torch.nn.functional.normalize(torch.from_numpy(ex.text_features(texts)), dim=-1)
        return (a * b).sum(1).numpy()

    reports = [s.report for s in samples]
    real = load(s.image_path for s in samples)
    np.testing.assert_allclose(st["gen"], cos(gen, reports), atol=1e-6)
    np.testing.assert_allclose(st["real"], cos(real, reports), atol=1e-6)
    np.testing.assert_allclose(st["shuffled"], cos(real, [reports[j] for j in derangement(9, 3)]), atol=1e-6)
    g, c, f = st["gen"].mean(), st["real"].mean(), st["shuffled"].mean()
    assert values["image.alignment.cosine@biomedclip"] == pytest.approx(g)
    assert values["image.alignment.cosine_relative@biomedclip"] == pytest.approx((g - f) / (c - f))


# ---- diversity ---------------------------------------------------------------------------------------------

def test_diversity_pairs_inside_label_sets_equal_torchmetrics(tmp_path):
    from PIL import Image
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

    from medbench.metrics.diversity import factory

    labs = [{"Cardiomegaly": 1}] * 4 + [{"Pleural Effusion": 1}] * 3 + [{"Pneumothorax": 1}]
    samples = make_samples(tmp_path / "real", 8, 7, labels=labs)
    gen = tiny.blob_images(8, 8, 90)
    metric = factory(ctx(seed=1))
    st, values = feed(metric, scored(samples, gen), batch=3)
    mate = st["partner"]
    assert mate[7] == -1 and np.isnan(st["gen"][7])  # alone in its label set
    for i in range(7):
        assert mate[i] != i and labs[mate[i]] == labs[i]

    def t(im):
        im = Image.open(im) if isinstance(im, Path) else im
        return torch.from_numpy(np.asarray(im.convert("L").resize((256, 256), Image.BICUBIC), np.float32) / 255.0)[None, None]

    for i in range(7):
        want = float(ms_ssim(t(gen[i]), t(gen[mate[i]]), data_range=1.0))
        assert st["gen"][i] == pytest.approx(want, abs=1e-6)
        want_real = float(ms_ssim(t(samples[i].image_path), t(samples[mate[i]].image_path), data_range=1.0))
        assert st["real"][i] == pytest.approx(want_real, abs=1e-6)
    assert values["image.diversity.ms_ssim"] == pytest.approx(np.nanmean(st["gen"]))
    # a collapsed model (one image per label set) is less diverse than the real data
    collapsed = [gen[0]] * 4 + [gen[4]] * 3 + [gen[7]]
    _, v2 = feed(factory(ctx(seed=1)), scored(samples, collapsed))
    assert v2["image.diversity.ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert v2["image.diversity.ms_ssim_excess"] > 0


# ---- privacy ---------------------------------------------------------------------------------------------

def test_privacy_nearest_training_and_latent_distance(weights_env, tmp_path):
    from sklearn.neighbors import NearestNeighbors

    from medbench.features import get_extractor
    from medbench.metrics.privacy import factory

    train = make_samples(tmp_path / "train", 30, 9, split="train")
    test = make_samples(tmp_path / "test", 12, 10)
    from PIL import Image

    copies = [Image.open(s.image_path).copy() for s in train[:12]]  # a model that memorised its training images
    fresh = tiny.blob_images(12, 11, 140)
    metric = factory(ctx(train=train))
    st, values = feed(metric, scored(test, copies))
    assert values["image.privacy.nn_closer_than_p1@rad-dino"] == 1.0
    assert np.allclose(st["gen_nn"], 0.0, atol=1e-9)
    ex = get_extractor("rad-dino")
    nn = NearestNeighbors(n_neighbors=1, metric="cosine").fit(ex.features(load(s.image_path for s in train)))
    real_f = ex.features(load(s.image_path for s in test))
    np.testing.assert_allclose(st["real_nn"], nn.kneighbors(real_f)[0][:, 0], atol=1e-9)
    want_lat = [float(torch.norm(torch.from_numpy(a - b)) / np.sqrt(a.size)) for a, b in zip(ex.features(copies), real_f)]
    np.testing.assert_allclose(st["latent"], want_lat, rtol=1e-9)
    _, v_fresh = feed(factory(ctx(train=train)), scored(test, fresh))
    assert v_fresh["image.privacy.nn_closer_than_p1@rad-dino"] < 1.0
    assert v_fresh["image.privacy.nn_distance_ratio@rad-dino"] > values["image.privacy.nn_distance_ratio@rad-dino"]


def test_reid_scores_generated_against_the_samples_real_image(weights_env, tmp_path):
    from medbench.metrics.pair_consistency import derangement
    from medbench.metrics.reid import factory, load_siamese, reid_input

    samples = make_samples(tmp_path / "real", 5, 12)
    gen = tiny.blob_images(5, 13, 90)
    metric = factory(ctx(reference=samples, seed=2))
    st, values = feed(metric, scored(samples, gen), batch=2)
    net = load_siamese(weights_env / "chexgenbench-reid" / "siamese_resnet50.pth")
    with torch.no_grad():
        want = [torch.sigmoid(net(reid_input(g)[None], reid_input(s.image_path)[None])).item() for g, s in zip(gen, samples)]
        mate = derangement(5, 2)
        floor = [torch.sigmoid(net(reid_input(s.image_path)[None], reid_input(samples[mate[i]].image_path)[None])).item()
                 for i, s in enumerate(samples)]
    np.testing.assert_allclose(st["gen"], want, rtol=1e-5)
    np.testing.assert_allclose(st["floor"], floor, rtol=1e-5)
    assert values["image.privacy.reid.rate@chexgenbench-siamese"] == pytest.approx(np.mean(np.asarray(want) > 0.5))


def test_reid_without_weights_names_the_file(tmp_path, monkeypatch):
    from medbench.metrics.base import MetricUnavailable
    from medbench.metrics.reid import factory

    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path))
    samples = make_samples(tmp_path / "real", 2, 14)
    metric = factory(ctx(reference=samples))  # cheap: nothing located yet (compare rebuilds runs this way)
    with pytest.raises(MetricUnavailable, match=str(tmp_path / "chexgenbench-reid" / "siamese_resnet50.pth")):
        metric.update(scored(samples, tiny.blob_images(2, 15, 90)))
