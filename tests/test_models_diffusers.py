"""`--model diffusers:PATH` on a tiny random-initialised Stable-Diffusion pipeline (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel, CLIP-style tokenizer, DDIM) saved in its real layout: end to end through the
CLI, seeds and batch invariance, parity with the pipeline called directly, schedulers and the refusals."""
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from medbench.errors import UserError
from medbench.models.base import ModelContext
from medbench.models.diffusers_model import DiffusersModel
from medbench.records import Request
from tiny_hf_models import outputs_of, run_medbench, run_medbench_refused, save_tiny_llava, save_tiny_sd


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def t2i(out, folder, data, *extra):
    return run_medbench(out, "--task", "t2i", "--model", f"diffusers:{folder}", "--dataset", f"folder:{data}",
                        "--n", "4", "--model-opt", "steps=3", *extra)


def pngs(out) -> dict[str, bytes]:
    return {k: v for k, v in outputs_of(out).items() if k.endswith(".png")}


def test_t2i_end_to_end_same_seed_same_images_whatever_the_batch(sd_dir, tiny_folder, tmp_path):
    rec = t2i(tmp_path / "b4", sd_dir, tiny_folder, "--batch-size", "4", "--model-opt", "guidance_scale=3")
    t2i(tmp_path / "b1", sd_dir, tiny_folder, "--batch-size", "1", "--model-opt", "guidance_scale=3")
    t2i(tmp_path / "s1", sd_dir, tiny_folder, "--batch-size", "4", "--model-opt", "guidance_scale=3", "--seed", "1")
    made = pngs(tmp_path / "b4")
    assert len(made) == 4 and made == pngs(tmp_path / "b1") and made != pngs(tmp_path / "s1")
    for data in made.values():  # as the pipeline made it: its native 32×32 RGB, not the dataset's grayscale
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
    assert rec["options"]["model"] == {"steps": 3, "guidance_scale": 3.0}
    unet = sd_dir / "unet" / "diffusion_pytorch_model.safetensors"
    assert rec["provenance"]["weights_sha256"][str(unet)] == hashlib.sha256(unet.read_bytes()).hexdigest()
    assert str(sd_dir / "model_index.json") in rec["provenance"]["weights_sha256"]
    assert any(name.startswith("image.") for name in rec["metrics"])


def _model(folder, **options) -> DiffusersModel:
    return DiffusersModel(ModelContext(task=None, domain="cxr", seed=0, arg=str(folder), options=options))


REPORTS = ("The heart is enlarged.", "No pleural effusion. Small right pneumothorax.")


def test_images_equal_the_pipeline_called_directly(sd_dir):
    """Parity with the reference: StableDiffusionPipeline with a generator seeded by the request's seed."""
    from diffusers import StableDiffusionPipeline

    requests = [Request("report->image", f"s{i}", seed=100 + i, domain="cxr", report=t) for i, t in enumerate(REPORTS)]
    ours = _model(sd_dir, steps="4", guidance_scale="5", negative_prompt="blurry").generate(requests)
    pipe = StableDiffusionPipeline.from_pretrained(sd_dir, local_files_only=True, safety_checker=None)
    for r, out in zip(requests, ours):
        ref = pipe(prompt=r.report, num_inference_steps=4, guidance_scale=5.0, negative_prompt="blurry",
                   generator=torch.Generator().manual_seed(r.seed), output_type="pil").images[0]
        assert np.array_equal(np.asarray(out.image), np.asarray(ref))


def test_settings_record_call_scheduler_and_output(sd_dir):
    m = _model(sd_dir, steps="2", scheduler="DPMSolverMultistepScheduler", height="48", width="64")
    m.generate([Request("report->image", "a", 1, "cxr", report=REPORTS[0])])
    s = m.settings
    assert s["scheduler"] == "DPMSolverMultistepScheduler" and type(m.pipe.scheduler).__name__ == s["scheduler"]
    assert s["call"] == {"num_inference_steps": 2, "height": 48, "width": 64}
    assert s["output"] == {"size": [64, 48], "mode": "RGB"}
    assert s["pipeline_defaults"]["guidance_scale"] == 7.5 and s["pipeline_class"] == "StableDiffusionPipeline"


def test_a_size_the_pipeline_refuses_is_a_user_error(sd_dir):
    with pytest.raises(UserError, match="refused --model-opt .*'width': 33.*divisible"):
        _model(sd_dir, steps="1", height="32", width="33").generate([Request("report->image", "a", 1, "cxr", report=REPORTS[0])])
    with pytest.raises(UserError, match="give both"):  # the pipeline would silently make its native size
        _model(sd_dir, width="64")


def test_unknown_scheduler_is_refused_with_the_compatible_ones(sd_dir):
    with pytest.raises(UserError, match="scheduler=Nope.*compatible: .*DDIMScheduler"):
        _model(sd_dir, scheduler="Nope")


def test_missing_folder_is_one_clear_error(tmp_path, tiny_folder, capsys):
    line = run_medbench_refused(capsys, tmp_path / "o", "--task", "t2i", "--model", f"diffusers:{tmp_path / 'none'}",
                                "--dataset", f"folder:{tiny_folder}", "--n", "2")
    assert "folder not found" in line


def test_pickle_only_component_is_refused_with_the_resave_hint(sd_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(sd_dir, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(UserError, match=r"unet weights are pickle files only.*safe_serialization=True"):
        _model(folder)


def test_a_transformers_folder_is_not_a_pipeline(tmp_path):
    folder = save_tiny_llava(tmp_path / "vlm")
    with pytest.raises(UserError, match="no model_index.json"):
        _model(folder)


def test_unet_weights_with_foreign_keys_are_refused(sd_dir, tmp_path):
    folder = tmp_path / "extra"
    shutil.copytree(sd_dir, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["time_embedding.adaLN_modulation.weight"] = torch.zeros(4, 4)
    save_file(state, str(weights))
    with pytest.raises(UserError, match="unet: the weights do not fit.*unexpected keys: time_embedding.adaLN_modulation"):
        _model(folder)


def test_a_pipeline_without_a_text_prompt_is_refused(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 8),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    with pytest.raises(UserError, match="not a text-to-image pipeline"):
        _model(tmp_path / "ddpm")


def test_custom_pipeline_class_needs_an_explicit_yes(sd_dir, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(sd_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "MyCustomPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="pipeline class 'MyCustomPipeline'.*trust_remote_code=1"):
        _model(folder)
