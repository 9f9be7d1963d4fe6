"""The `medim` medbench plugin: checkpoint verification, output types per request kind, seeds.

Most tests use a randomly initialised tiny checkpoint assembled here (the plugin's code path does not
depend on the weights being trained); the last one loads the bundled tiny-phantom checkpoint.
"""
from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from medbench.models.base import ModelContext
from medbench.records import Request
from reference_model.config import MeDiMConfig
from reference_model.plugin import DEFAULT_CHECKPOINT, MedimModel, _factory, medbench_models, write_manifest
from reference_model.text_tokenizer import train_text_tokenizer
from reference_model.vq import TinyVQ, VQConfig, save_tiny_vq

REPORT = "PA view of the chest. There is a small left pleural effusion. Heart size is normal."
PROMPT = "PA chest radiograph with small left pleural effusion."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A complete, randomly initialised checkpoint folder with a manifest."""
    from safetensors.torch import save_file

    from reference_model.backbone import MeDiMBackbone

    folder = tmp_path_factory.mktemp("medim-ckpt")
    torch.manual_seed(0)
    save_tiny_vq(TinyVQ(VQConfig(image_size=32, widths=(16, 32, 32), embed_dim=8, codebook_size=32)), folder)
    texts = [REPORT, PROMPT, "No pleural effusion. No pneumothorax.", "H&E-stained tile of normal tissue."] * 5
    text_tok = train_text_tokenizer(texts, folder / "text-tokenizer.json", vocab_size=300)
    cfg = MeDiMConfig(name="test-tiny", hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
                      intermediate_size=64, text_vocab_size=text_tok.vocab_size, image_codebook_size=32,
                      image_grid=(4, 4), text_len=24, domains=["cxr", "path"], sample_steps=4, cfg_scale=2.0,
                      data={"layouts": ["report", "prompted"]})
    cfg.save(folder / "config.json")
    model = MeDiMBackbone(cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    write_manifest(folder)
    return folder


def requests_of(kind: str, seeds=(0, 1, 2)) -> list[Request]:
    image = Image.new("L", (32, 32), 90)
    return [Request(kind=kind, sample_id=f"s{i}", seed=s, domain=("cxr", "path")[i % 2], report=REPORT,
                    image=image if kind == "image->report" else None, prompt=PROMPT) for i, s in enumerate(seeds)]


def test_plugin_registers_all_kinds():
    (spec,) = medbench_models()
    assert spec.name == "medim" and set(spec.kinds) == {"report->image", "image->report", "prompt->pair"}


@pytest.mark.parametrize("kind", ["report->image", "image->report", "prompt->pair"])
def test_output_types_per_kind(checkpoint, kind):
    model = _factory(ModelContext(task=None, domain="cxr", seed=0, model_path=checkpoint, image_size=32))
    outs = model.generate(requests_of(kind))
    assert [o.sample_id for o in outs] == ["s0", "s1", "s2"]
    for out, domain in zip(outs, ("cxr", "path", "cxr")):
        if kind in ("report->image", "prompt->pair"):
            assert isinstance(out.image, Image.Image) and out.image.size == (32, 32)
            assert out.image.mode == ("L" if domain == "cxr" else "RGB")
        else:
            assert out.image is None
        if kind in ("image->report", "prompt->pair"):
            assert isinstance(out.report, str)
        else:
            assert out.report is None


def test_same_seed_same_output_whatever_the_batch(checkpoint):
    model = MedimModel(checkpoint, options={"steps": 3, "batch_size": 2})
    a = model.generate(requests_of("prompt->pair", seeds=(7, 8, 9)))
    b = model.generate(requests_of("prompt->pair", seeds=(7, 8, 9))[2:])
    assert a[2].report == b[0].report and a[2].image.tobytes() == b[0].image.tobytes()
    again = model.generate(requests_of("prompt->pair", seeds=(7, 8, 9)))
    assert [o.image.tobytes() for o in a] == [o.image.tobytes() for o in again]
    other = model.generate(requests_of("prompt->pair", seeds=(70, 80, 90)))
    assert [o.image.tobytes() for o in a] != [o.image.tobytes() for o in other]


def test_bad_options_and_kinds(checkpoint):
    with pytest.raises(ValueError, match="model 'medim' has no option 'stepz'"):
        MedimModel(checkpoint, options={"stepz": 3})
    model = MedimModel(checkpoint)
    with pytest.raises(ValueError, match="unknown domain"):
        model.generate([Request(kind="report->image", sample_id="x", seed=0, domain="mri", report=REPORT)])


def test_missing_and_corrupt_files_are_named(checkpoint, tmp_path):
    broken = tmp_path / "ckpt"
    shutil.copytree(checkpoint, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing model.safetensors .* place it at .*model.safetensors"):
        MedimModel(broken)
    shutil.copy(checkpoint / "model.safetensors", broken / "model.safetensors")
    with open(broken / "text-tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(ValueError, match="text-tokenizer.json: sha256 mismatch"):
        MedimModel(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest"):
        MedimModel(broken)


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").is_file(),
                    reason="the bundled tiny-phantom MeDiM weights are not trained yet (model.safetensors absent)")
def test_bundled_checkpoint_generates_each_kind():
    model = _factory(ModelContext(task=None, domain="cxr", seed=0, options={"steps": 4}))
    for kind in ("report->image", "image->report", "prompt->pair"):
        reqs = [Request(kind=kind, sample_id="a", seed=1, domain="cxr", report=REPORT, prompt=PROMPT,
                        image=Image.new("L", (64, 64), 100) if kind == "image->report" else None)]
        first, second = model.generate(reqs)[0], model.generate(reqs)[0]
        if kind != "image->report":
            assert first.image.mode == "L" and first.image.size == (64, 64)
            assert first.image.tobytes() == second.image.tobytes()
        if kind != "report->image":
            assert isinstance(first.report, str) and first.report == second.report
