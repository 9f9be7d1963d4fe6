"""`python -m reference_model.export RUN_DIR OUT`: a training run becomes a checkpoint `medim` evaluates."""
import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from medbench.records import Request
from reference_model.bundled import MedimModel, verify_checkpoint
from reference_model.config import load_config
from reference_model.export import export, main
from reference_model.medim_options import DEFAULT_CHECKPOINT
from reference_model.train import SyntheticPairs, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Two training steps of the bundled config (its tokenizers) on synthetic token pairs."""
    cfg = load_config(DEFAULT_CHECKPOINT / "config.json").replace(max_steps=2, warmup_steps=1, micro_batch_size=2,
                                                                 grad_accum=1, log_every=1, ckpt_every=1000,
                                                                 max_minutes=None, compile=False)
    out = tmp_path_factory.mktemp("run") / "tiny"
    train(cfg, out, dataset=SyntheticPairs(cfg, n=4), progress=False)
    return out


def test_export_writes_a_checkpoint_medim_loads_and_runs(run_dir, tmp_path):
    main([str(run_dir), str(tmp_path / "ckpt")])
    digests = verify_checkpoint(tmp_path / "ckpt")
    assert set(digests) == {"config.json", "model.safetensors", "vq.json", "vq.safetensors", "text-tokenizer.json"}
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == (run_dir / "checkpoint" / "model.safetensors").read_bytes()
    assert (tmp_path / "ckpt" / "vq.safetensors").read_bytes() == (DEFAULT_CHECKPOINT / "vq.safetensors").read_bytes()
    assert json.loads((tmp_path / "ckpt" / "train-summary.json").read_text())["steps"] == 2
    model = MedimModel(tmp_path / "ckpt", options={"steps": 2})
    out = model.generate([Request("prompt->pair", "a", 3, "cxr", prompt="Chest X-ray with cardiomegaly.")])
    assert out[0].image is not None and isinstance(out[0].report, str)


def test_export_refuses_weights_that_do_not_fit_and_a_used_folder(run_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    state = load_file(str(bad / "checkpoint" / "model.safetensors"))
    state.pop(next(iter(state)))
    save_file(state, str(bad / "checkpoint" / "model.safetensors"))
    with pytest.raises(ValueError, match="does not fit its config.json"):
        export(bad, tmp_path / "out1")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export(run_dir, tmp_path / "used")
    with pytest.raises(FileNotFoundError, match="checkpoint/config.json"):
        export(tmp_path / "used", tmp_path / "out2")
