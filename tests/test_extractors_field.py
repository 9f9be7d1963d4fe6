"""The field's named extractors (rad-dino, xrv-densenet121, biomedclip) and the re-ID network: tiny
random-initialised models of the real architectures in the real layouts, loaded from a weights root;
parity with the reference packages called directly; strict loading; missing files named. No network."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_image_models as tiny
from medbench.weights import WeightsError

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every test here runs with sockets refused (the no_network fixture of tests/conftest.py)."""


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


PARITY_SPEC = {"test_rad_dino_equals_transformers_called_directly": "rad-dino",
               "test_xrv_equals_torchxrayvision_pipeline": "xrv-densenet121",
               "test_biomedclip_equals_open_clip_local_dir_loading": "biomedclip"}
REAL_ROOT = os.environ.get("MEDBENCH_REAL_WEIGHTS") or os.environ.get("MEDBENCH_WEIGHTS")  # read before tests patch it


@pytest.fixture(params=["tiny", pytest.param("real", marks=pytest.mark.realweights)])
def parity_env(request, root, monkeypatch):
    """(kind, root) for a parity test: the tiny models, or the user's published files (``realweights``:
    $MEDBENCH_REAL_WEIGHTS or $MEDBENCH_WEIGHTS, skipped when absent or pinned)."""
    if request.param == "tiny":
        monkeypatch.setenv("MEDBENCH_WEIGHTS", str(root))
        return "tiny", root
    from medbench.features.field_weights import ALL
    from medbench.weights import locate

    name = PARITY_SPEC[request.function.__name__]
    spec = next(s for s in ALL if s.name == name)
    if not REAL_ROOT:
        pytest.skip("realweights: set MEDBENCH_REAL_WEIGHTS (or MEDBENCH_WEIGHTS) to a folder with the published files")
    try:
        found = locate(spec, REAL_ROOT)
    except WeightsError as e:
        pytest.skip(f"realweights: {e}")
    if found.pinned:
        pytest.skip(f"realweights: {spec.name} under {REAL_ROOT} is a local pin, not the published files")
    monkeypatch.setenv("MEDBENCH_WEIGHTS", REAL_ROOT)
    return "real", Path(REAL_ROOT)


def images(n=6, seed=0, mode="L", size=64):
    return tiny.blob_images(n, seed, 120, size=size, mode=mode)


# ---- registry and missing weights --------------------------------------------------------------

def test_registered_and_listed():
    from medbench.registry import registry

    reg = registry()
    assert {"rad-dino", "rad-dino-mean", "xrv-densenet121", "biomedclip"} <= set(reg.names("extractors"))
    assert {"rad-dino", "xrv-densenet121", "biomedclip", "chexgenbench-reid"} <= set(reg.names("weights"))


@pytest.mark.parametrize("name,missing", [("rad-dino", "rad-dino/config.json"),
                                          ("xrv-densenet121", "xrv-densenet121/densenet121-res224-all.safetensors"),
                                          ("biomedclip", "biomedclip/open_clip_config.json")])
def test_missing_weights_name_the_file(tmp_path, monkeypatch, name, missing):
    from medbench.features import get_extractor

    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError) as e:
        get_extractor(name)
    assert str(tmp_path / missing) in str(e.value)


def test_pinned_tiny_weights_are_recorded_as_unverified(weights_env):
    from medbench.features import get_extractor

    card = get_extractor("rad-dino").card()
    assert all(v.endswith("(local pin, not the published file)") for v in card["weights"].values())
    assert set(card["weights"]) == {"rad-dino/config.json", "rad-dino/preprocessor_config.json", "rad-dino/model.safetensors"}


# ---- rad-dino ----------------------------------------------------------------------------------

def test_rad_dino_equals_transformers_called_directly(parity_env):
    from transformers import AutoImageProcessor, Dinov2Model

    from medbench.features import get_extractor

    ims = images(5) + images(2, seed=3, mode="RGB", size=48)
    folder = parity_env[1] / "rad-dino"
    crop = json.loads((folder / "preprocessor_config.json").read_text())["crop_size"]
    proc = AutoImageProcessor.from_pretrained(folder, backend="pil")
    model = Dinov2Model.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**proc(images=[im.convert("RGB") for im in ims], return_tensors="pt"))
    cls = get_extractor("rad-dino")
    x = cls.preprocess(ims[0])
    assert tuple(x.shape) == (3, crop["height"], crop["width"])
    np.testing.assert_allclose(cls.features(ims), out.pooler_output.double().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(get_extractor("rad-dino-mean").features(ims),
                               out.last_hidden_state[:, 1:].mean(1).double().numpy(), rtol=1e-5, atol=1e-6)
    assert cls.key() != get_extractor("rad-dino-mean").key()
    # pooler_output is the final-layernormed CLS token (what CheXGenBench takes)
    np.testing.assert_allclose(out.pooler_output.numpy(), out.last_hidden_state[:, 0].numpy(), atol=1e-6)


def test_rad_dino_refuses_a_half_loaded_model(root, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from medbench.features import get_extractor

    bad = tmp_path / "rad-dino"
    shutil.copytree(root / "rad-dino", bad)
    state = load_file(str(bad / "model.safetensors"))
    state.pop("encoder.layer.1.mlp.fc2.weight")
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    (bad / "medbench-pin.json").unlink()
    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="missing_keys.*fc2"):
        get_extractor("rad-dino").features(images(1))


# ---- xrv-densenet121 -----------------------------------------------------------------------------

def test_xrv_equals_torchxrayvision_pipeline(parity_env):
    import torchxrayvision as xrv

    from medbench.features import get_extractor

    ims = images(3, size=80) + images(2, seed=5, mode="RGB", size=60)
    ex = get_extractor("xrv-densenet121")
    x = ex.preprocess(ims[0])
    assert tuple(x.shape) == (1, 224, 224) and x.dtype == torch.float32
    assert -1024.0 <= float(x.min()) and float(x.max()) <= 1024.0
    from safetensors.torch import load_file

    kind, weights = parity_env
    state = load_file(str(weights / "xrv-densenet121" / "densenet121-res224-all.safetensors"))
    state.pop("op_threshs", None)
    ref_net = tiny.tiny_xrv() if kind == "tiny" else xrv.models.DenseNet(weights=None)
    ref_net.load_state_dict(state)
    rows = []
    for im in ims:  # torchxrayvision's README recipe, step by step
        arr = np.asarray(im, dtype=np.float64)
        img = xrv.datasets.normalize(arr, 255)
        img = img.mean(2) if img.ndim == 3 else img
        img = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(img[None, ...]))
        with torch.no_grad():
            rows.append(ref_net.eval().features2(torch.from_numpy(img)[None]).double().numpy()[0])
    np.testing.assert_allclose(ex.features(ims), np.stack(rows), rtol=1e-5, atol=1e-5)
    assert ex.card()["published_architecture"] is (kind == "real")


def test_xrv_architecture_of_the_published_densenet():
    import torchxrayvision as xrv

    from medbench.features.xrv_densenet import PUBLISHED, architecture

    assert architecture(xrv.models.DenseNet(weights=None).state_dict()) == PUBLISHED


def test_xrv_refuses_a_foreign_state_dict(root, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from medbench.features import get_extractor

    bad = tmp_path / "xrv-densenet121"
    bad.mkdir()
    state = load_file(str(root / "xrv-densenet121" / "densenet121-res224-all.safetensors"))
    state["classifier.extra"] = torch.zeros(1)
    save_file(state, str(bad / "densenet121-res224-all.safetensors"))
    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="does not fit torchxrayvision's DenseNet"):
        get_extractor("xrv-densenet121").features(images(1))


# ---- biomedclip ----------------------------------------------------------------------------------

def test_biomedclip_equals_open_clip_local_dir_loading(parity_env, tmp_path):
    """open_clip's own loader (create_model_and_transforms('local-dir:...') + get_tokenizer) on the same
    files, with text_cfg pointing at the local BERT config instead of the hub name."""
    import open_clip

    from medbench.features import get_extractor
    from medbench.features.biomedclip import cosine

    copy = tmp_path / "oc"
    shutil.copytree(parity_env[1] / "biomedclip", copy)
    cfg = json.loads((copy / "open_clip_config.json").read_text())
    cfg["model_cfg"]["text_cfg"]["hf_model_name"] = str(copy / "text")
    (copy / "open_clip_config.json").write_text(json.dumps(cfg))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{copy}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{copy}")
    model.eval()
    ims = images(3) + images(1, seed=2, mode="RGB", size=300)
    texts = ["No pleural effusion.", "The heart is enlarged.", "Small right pneumothorax.", "Lungs are clear."]
    with torch.no_grad():
        want_img = model.encode_image(torch.stack([preprocess(im.convert("RGB")) for im in ims])).double().numpy()
        want_txt = model.encode_text(tokenizer(texts)).double().numpy()
    ex = get_extractor("biomedclip")
    assert tuple(ex.preprocess(ims[0]).shape) == (3, 224, 224)
    np.testing.assert_allclose(ex.features(ims), want_img, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ex.text_features(texts), want_txt, rtol=1e-5, atol=1e-5)
    assert ex._tokenizer(["pleural effusion"])[0, 1].item() not in (0, 1)  # a real WordPiece id, not [PAD]/[UNK]
    want_cos = (torch.nn.functional.normalize(torch.from_numpy(want_img), dim=-1)
                * torch.nn.functional.normalize(torch.from_numpy(want_txt), dim=-1)).sum(1).numpy()
    np.testing.assert_allclose(cosine(ex.features(ims), ex.text_features(texts)), want_cos, rtol=1e-5, atol=1e-6)


def test_biomedclip_refuses_a_mismatched_checkpoint(root, tmp_path, monkeypatch):
    from medbench.features import get_extractor

    bad = tmp_path / "biomedclip"
    shutil.copytree(root / "biomedclip", bad)
    (bad / "medbench-pin.json").unlink()
    state = torch.load(bad / "open_clip_pytorch_model.bin", weights_only=True)
    state.pop("logit_scale")
    torch.save(state, bad / "open_clip_pytorch_model.bin")
    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="half-loaded"):
        get_extractor("biomedclip").features(images(1))


# ---- CheXGenBench's re-identification network ----------------------------------------------------

def test_siamese_loads_strictly_and_scores_like_chexgenbench(root):
    from PIL import Image
    from torchvision import transforms

    from medbench.metrics.reid import load_siamese, reid_input

    path = root / "chexgenbench-reid" / "siamese_resnet50.pth"
    net = load_siamese(path)
    ref = tiny.tiny_reid()
    ref.load_state_dict(torch.load(path, weights_only=True))
    a, b = images(2, size=100)
    x = reid_input(a)
    assert tuple(x.shape) == (3, 224, 224) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])  # privacy_metrics.py's transform
    xa = tf(a.resize((512, 512), Image.BICUBIC).convert("RGB"))[None]
    xb = tf(b.resize((512, 512), Image.BICUBIC).convert("RGB"))[None]
    with torch.no_grad():
        want = torch.sigmoid(ref(xa, xb)).item()
        got = torch.sigmoid(net(reid_input(a)[None], reid_input(b)[None])).item()
    assert got == pytest.approx(want, rel=1e-6)
    # the full-size network has the checkpoint layout of CheXGenBench's ResNet-50 SiameseNetwork
    from medbench.metrics.reid import SiameseNetwork
    from torchvision.models import resnet50

    keys = set(SiameseNetwork().state_dict())
    assert {f"model.{k}" for k in resnet50().state_dict() if not k.startswith("fc.")} <= keys
    assert {"model.fc.weight", "fc_end.weight", "fc_end.bias"} <= keys
