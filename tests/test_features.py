"""Feature extractors and the feature cache: batch independence, caching, safe loading, training."""
import json
import os
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medbench.features import cached_features, cached_outputs, get_extractor
from medbench.features.cache import FeatureCache, image_key
from medbench.features.phantom_encoder import (BUNDLED_WEIGHTS, PhantomEncoder, PhantomEncoderConfig, PhantomEncoderNet,
                                               load_phantom_encoder, save_weights)
from medbench.weights import WeightsError

torch.set_num_threads(1)
LABELS = {"cxr": ["Cardiomegaly", "Pleural Effusion"], "path": ["Necrosis"]}


def random_encoder(seed=0) -> PhantomEncoder:
    torch.manual_seed(seed)
    return PhantomEncoder(PhantomEncoderNet(PhantomEncoderConfig(labels=LABELS)).eval(), weights_sha256=f"random-{seed}")


def images(n, seed=0, size=64, mode="L"):
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode) for _ in range(n)]


# ---- the contract ----------------------------------------------------------------------------

def test_features_do_not_depend_on_batching():
    ex = random_encoder()
    ims = images(40) + images(5, seed=1, size=48, mode="RGB")  # mixed sizes and modes
    full = ex.features(ims)
    assert full.shape == (45, 256) and full.dtype == np.float64
    np.testing.assert_array_equal(ex.features(ims[:3]), full[:3])
    np.testing.assert_array_equal(ex.features([ims[41]]), full[41:42])
    np.testing.assert_array_equal(ex.features(ims[::-1])[::-1], full)


def test_grayscale_equals_replicated_rgb():
    ex = random_encoder()
    gray = images(2)
    rgb = [im.convert("RGB") for im in gray]
    np.testing.assert_array_equal(ex.features(gray), ex.features(rgb))


def test_predict_proba_per_domain():
    ex = random_encoder()
    p = ex.predict_proba(images(3), "cxr")
    assert p.shape == (3, 2) and ((p > 0) & (p < 1)).all()
    assert ex.predict_proba(images(3), "path").shape == (3, 1)
    with pytest.raises(KeyError, match="no head for domain 'mri'"):
        ex.predict_proba(images(1), "mri")


def test_preprocessing_and_key_are_recorded():
    ex = random_encoder()
    card = ex.card()
    assert card["preprocessing"]["size"] == [64, 64] and "grayscale replicated" in card["preprocessing"]["channels"]
    assert ex.key() != random_encoder(seed=1).key()  # different weights -> different cache folder


# ---- the cache -------------------------------------------------------------------------------

def test_cache_computes_each_image_once(tmp_path):
    ex = random_encoder()
    ims = images(12)
    paths = []
    for i, im in enumerate(ims[:6]):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    calls = []
    orig = ex.embed
    ex.embed = lambda batch: (calls.append(len(batch)), orig(batch))[1]
    first = cached_features(ex, paths + ims[6:] + ims[6:8], batch_size=5, progress=False)  # duplicates included
    assert sum(calls) == 12
    np.testing.assert_array_equal(first, orig(ims + ims[6:8])["features"])
    calls.clear()
    again = cached_features(ex, iter(paths + ims[6:]), progress=False)  # a generator, from a fresh index
    assert calls == []
    np.testing.assert_array_equal(again, first[:12])
    folder = FeatureCache(ex).dir
    assert folder.parent == Path(os.environ["MEDBENCH_HOME"]) / "features"
    assert not list(folder.glob(".tmp-*")) and len(list(folder.glob("shard-*.safetensors"))) == 1
    assert json.loads((folder / "extractor.json").read_text())["name"] == "phantom-encoder"


def test_cache_keeps_all_outputs_and_distinguishes_extractors():
    a, b = random_encoder(0), random_encoder(1)
    ims = images(4)
    out = cached_outputs(a, ims, progress=False)
    assert set(out) == {"features", "logits:cxr", "logits:path"}
    np.testing.assert_array_equal(out["logits:cxr"], a.embed(ims)["logits:cxr"])
    assert not np.allclose(cached_features(b, ims, progress=False), out["features"])


def test_cache_streams_images():
    """At most one batch of decoded images is alive at once (memory does not grow with N)."""
    ex = random_encoder()
    refs, peak = [], [0]

    def stream(n):
        rng = np.random.default_rng(0)
        for _ in range(n):
            im = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
            refs.append(weakref.ref(im))
            peak[0] = max(peak[0], sum(r() is not None for r in refs))
            yield im

    feats = cached_features(ex, stream(100), batch_size=8, progress=False)
    assert feats.shape == (100, 256)
    assert peak[0] <= 8 + 2


def test_image_key_tracks_content(tmp_path):
    im = images(1)[0]
    assert image_key(im) == image_key(im.copy()) != image_key(im.convert("RGB"))
    im.save(tmp_path / "a.png")
    assert image_key(tmp_path / "a.png") == image_key(str(tmp_path / "a.png"))


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: cannot be read as an image"):
        cached_features(random_encoder(), [bad], progress=False)


# ---- phantom encoder weights -----------------------------------------------------------------

def test_phantom_weights_roundtrip_and_sha_check(tmp_path):
    ex = random_encoder()
    path = tmp_path / "enc.safetensors"
    digest = save_weights(ex.net, path, {"note": "test"})
    loaded = load_phantom_encoder(path)
    assert loaded.weights_sha256 == digest and loaded.label_names == LABELS
    ims = images(3)
    np.testing.assert_array_equal(loaded.features(ims), ex.features(ims))
    card = json.loads(path.with_suffix(".json").read_text())
    card["sha256"] = "0" * 64
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="does not match enc.json"):
        load_phantom_encoder(path)


def test_missing_phantom_weights_say_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_phantom_encoder --out"):
        load_phantom_encoder(tmp_path / "nope.safetensors")


@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled phantom-encoder weights not trained yet")
def test_bundled_phantom_encoder():
    card = json.loads(BUNDLED_WEIGHTS.with_suffix(".json").read_text())
    ex = get_extractor("phantom-encoder")
    assert ex.weights_sha256 == card["sha256"] and ex.dim <= 256
    assert set(ex.label_names) == {"cxr", "path"}
    aurocs = [v for d in card["val_auroc"].values() for v in d.values() if v is not None]
    assert aurocs and np.mean(aurocs) > 0.7


def test_training_loop_learns_and_is_deterministic():
    from medbench.features.train_phantom_encoder import DomainData, TrainConfig, auroc_per_label, train_encoder

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 120, (48, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = (torch.rand(48, 2, generator=g) < 0.5).float()
    x[y[:, 0] == 1, :, :16] += 120  # label 0: bright top half; label 1: bright left half
    x[y[:, 1] == 1, :, :, :16] += 120
    mask = torch.ones_like(y)
    mask[:5, 1] = 0  # an uncertain label is masked out
    data = {"cxr": DomainData(x, y, mask, ["top", "left"]), "path": DomainData(x[:16], y[:16, :1], mask[:16, :1], ["top"])}
    cfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, image_size=32)
    net = train_encoder(data, cfg, progress=False)
    auc = auroc_per_label(net, data["cxr"], "cxr")
    assert auc["top"] > 0.9 and auc["left"] > 0.9
    again = train_encoder(data, cfg, progress=False)
    for (k, v), w in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k


def test_read_split_reports_bad_json(tmp_path):
    from medbench.features.train_phantom_encoder import read_split

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "labels.jsonl").write_text('{"id": "a"}\n{broken\n')
    with pytest.raises(ValueError, match=r"labels.jsonl:2: not valid JSON"):
        read_split(tmp_path, "train")


# ---- Inception (torch-fidelity) ---------------------------------------------------------------

def test_inception_missing_weights_names_file_and_folder(tmp_path, monkeypatch):
    from medbench.features.inception import URL_BASENAME

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as e:
        get_extractor("inception-v3-compat")
    assert URL_BASENAME in str(e.value) and str(tmp_path / "torch" / "hub" / "checkpoints") in str(e.value)


@pytest.mark.slow
def test_inception_loads_safely_and_matches_torch_fidelity(tmp_path):
    """A random state dict in the real file's format: our loading path vs torch-fidelity's own network."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from medbench.features.inception import random_state_dict

    path = tmp_path / "inception-random.pth"
    torch.save(random_state_dict(seed=0), path)
    with pytest.warns(UserWarning, match="not torch-fidelity's Inception weights"):
        ex = get_extractor("inception-v3-compat", str(path))
        out = ex.embed(images(3, size=32))
    assert out["features"].shape == (3, 2048) and out["logits"].shape == (3, 1008)
    ref = FeatureExtractorInceptionV3("ref", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)).eval()
    x = torch.stack([ex.preprocess(im) for im in images(3, size=32)])
    with torch.no_grad():
        pool, logits = ref(x)
    np.testing.assert_allclose(out["features"], pool.double().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["logits"], logits.double().numpy(), rtol=1e-4, atol=1e-5)


REAL_INCEPTION = os.path.join(torch.hub.get_dir(), "checkpoints", "weights-inception-2015-12-05-6726825d.pth")


@pytest.mark.skipif(not os.path.isfile(REAL_INCEPTION), reason=f"real Inception weights absent ({REAL_INCEPTION})")
def test_real_inception_weights():
    ex = get_extractor("inception-v3-compat")
    assert ex.weights_sha256.startswith("6726825d")
    f = ex.features(images(2, size=64))
    assert f.shape == (2, 2048) and np.isfinite(f).all() and (f >= 0).all()  # pool3 after ReLU


# ---- Hugging Face encoders --------------------------------------------------------------------

@pytest.fixture
def tiny_dinov2(tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    folder = tmp_path / "tiny-dino"
    Dinov2Model(cfg).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_hf_encoder_from_local_folder(tiny_dinov2):
    from transformers import AutoImageProcessor, AutoModel

    ex = get_extractor(f"hf:{tiny_dinov2}")
    ims = images(20, size=40)
    f = ex.features(ims)
    assert f.shape == (20, 32) and ex.name == "hf:tiny-dino"
    np.testing.assert_array_equal(ex.features(ims[3:4]), f[3:4])
    model = AutoModel.from_pretrained(tiny_dinov2, local_files_only=True).eval()
    pix = AutoImageProcessor.from_pretrained(tiny_dinov2, backend="pil")(images=[im.convert("RGB") for im in ims[:2]], return_tensors="pt")
    with torch.no_grad():
        pooled = model(**pix).pooler_output
    np.testing.assert_allclose(f[:2], pooled.double().numpy(), rtol=1e-4, atol=1e-5)
    assert ex.preprocessing["processor"]["crop_size"] == {"height": 32, "width": 32}
    assert len(ex.weights_sha256) == 64


def test_hf_encoder_refuses_pickle_only_folders(tiny_dinov2):
    (tiny_dinov2 / "model.safetensors").rename(tiny_dinov2 / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
        get_extractor(f"hf:{tiny_dinov2}")


def test_hf_encoder_refuses_a_half_loaded_model(tiny_dinov2):
    from safetensors.torch import load_file, save_file

    weights = tiny_dinov2 / "model.safetensors"
    state = load_file(str(weights))
    state.pop(next(k for k in state if k.startswith("encoder.layer.1.")))
    save_file(state, str(weights), metadata={"format": "pt"})
    ex = get_extractor(f"hf:{tiny_dinov2}")
    with pytest.raises(WeightsError, match="missing_keys.*half-loaded"):
        ex.features(images(2, size=40))


def test_builtin_extractors_are_registered():
    from medbench.registry import build_registry

    names = build_registry().names("extractors")
    assert {"phantom-encoder", "inception-v3-compat", "hf"} <= set(names)
