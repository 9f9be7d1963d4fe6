"""`--model transformers:PATH` on tiny random-initialised LLaVA and Qwen2-VL models saved in their real layout:
end to end through the CLI, seeds and batch invariance, parity with transformers' own generate, and the refusals."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from medbench.errors import UserError
from medbench.models.base import ModelContext
from medbench.models.transformers_model import DEFAULT_INSTRUCTIONS, TransformersModel
from medbench.options import OptionError
from medbench.records import Request
from tiny_hf_models import (outputs_of, run_medbench, run_medbench_refused, save_tiny_gemma3, save_tiny_llava,
                            save_tiny_qwen2_vl)

BUILDERS = {"llava": save_tiny_llava, "qwen2_vl": save_tiny_qwen2_vl, "gemma3": save_tiny_gemma3}


@pytest.fixture(scope="module")
def vlm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlms")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def i2t(out, folder, data, *extra):
    return run_medbench(out, "--task", "i2t", "--model", f"transformers:{folder}", "--dataset", f"folder:{data}",
                        "--protocol", "medim-paper", "--n", "4", *extra)


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_greedy_i2t_end_to_end_is_batch_invariant(family, vlm_dirs, tiny_folder, tmp_path):
    folder = vlm_dirs[family]
    opts = ["--model-opt", "max_new_tokens=8", "--model-opt", "instruction=write the report ."]
    rec = i2t(tmp_path / "b4", folder, tiny_folder, "--batch-size", "4", *opts)
    i2t(tmp_path / "b1", folder, tiny_folder, "--batch-size", "1", *opts)
    assert outputs_of(tmp_path / "b4") == outputs_of(tmp_path / "b1")
    reports = [v.decode() for k, v in outputs_of(tmp_path / "b4").items() if k.endswith(".txt")]
    assert len(reports) == 4 and any(reports)
    assert rec["options"]["model"] == {"max_new_tokens": 8, "instruction": "write the report ."}
    weights = rec["provenance"]["weights_sha256"]
    st = folder / "model.safetensors"
    assert weights[str(st)] == hashlib.sha256(st.read_bytes()).hexdigest()
    assert str(folder / "config.json") in weights and any(k.endswith("tokenizer.json") for k in weights)
    assert any(name.startswith("nlg.") and name.endswith(".bleu4") for name in rec["metrics"])


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_sampling_same_seed_same_report_whatever_the_batch(family, vlm_dirs, tiny_folder, tmp_path):
    opts = ["--model-opt", "max_new_tokens=8", "--model-opt", "do_sample=1", "--model-opt", "temperature=1.5"]
    i2t(tmp_path / "b4", vlm_dirs[family], tiny_folder, "--batch-size", "4", *opts)
    i2t(tmp_path / "b1", vlm_dirs[family], tiny_folder, "--batch-size", "1", *opts)
    i2t(tmp_path / "s1", vlm_dirs[family], tiny_folder, "--batch-size", "4", "--seed", "1", *opts)
    assert outputs_of(tmp_path / "b4") == outputs_of(tmp_path / "b1")
    assert outputs_of(tmp_path / "b4") != outputs_of(tmp_path / "s1")


def _model(folder, **options) -> TransformersModel:
    return TransformersModel(ModelContext(task=None, domain="cxr", seed=0, arg=str(folder), options=options))


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_reports_equal_transformers_generate_on_the_same_inputs(family, vlm_dirs, tiny_folder):
    """Parity with the reference: the processor + chat template + generate called directly."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = vlm_dirs[family]
    images = [Image.open(p).convert("L") for p in sorted((tiny_folder / "test").glob("*.png"))[:3]]
    requests = [Request("image->report", f"s{i}", seed=i, domain="cxr", image=im) for i, im in enumerate(images)]
    ours = [o.report for o in _model(folder, max_new_tokens="6", num_beams="2").generate(requests)]

    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    chats = [[{"role": "user", "content": [{"type": "image", "image": im.convert("RGB")},
                                           {"type": "text", "text": DEFAULT_INSTRUCTIONS["cxr"]}]}] for im in images]
    inputs = processor.apply_chat_template(chats, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt", processor_kwargs={"padding": True})
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=6, num_beams=2, do_sample=False)
    theirs = [t.strip() for t in processor.tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)]
    assert ours == theirs


def test_settings_record_effective_options_prompt_and_classes(vlm_dirs):
    m = _model(vlm_dirs["llava"], max_new_tokens="5", system="You are a radiologist.")
    s = m.settings
    assert s["model_class"] == "LlavaForConditionalGeneration" and s["options"]["max_new_tokens"] == 5
    assert s["options"]["num_beams"] == 1 and s["generation"] == {"max_new_tokens": 5, "do_sample": False, "num_beams": 1}
    assert "You are a radiologist." in s["prompts"]["cxr"] and "<image>" in s["prompts"]["cxr"]
    assert len(s["config_sha256"]) == 64 and s["dtype"] == "float32"


def test_dtype_option_loads_the_weights_in_that_dtype(vlm_dirs):
    from PIL import Image

    m = _model(vlm_dirs["llava"], dtype="bf16", max_new_tokens="3")
    assert m.settings["dtype"] == "bfloat16" and all(p.dtype == torch.bfloat16 for p in m.model.parameters())
    out = m.generate([Request("image->report", "a", 0, "cxr", image=Image.new("L", (32, 32), 90))])
    assert isinstance(out[0].report, str)


def test_template_replaces_a_missing_chat_template(tmp_path):
    folder = save_tiny_llava(tmp_path / "plain", chat_template=False)
    with pytest.raises(UserError, match="no chat template.*template="):
        _model(folder)
    m = _model(folder, template="USER: <image>\n{instruction} ASSISTANT:", instruction="write the report .",
               max_new_tokens="4")
    assert m.prompt("cxr") == "USER: <image>\nwrite the report . ASSISTANT:"
    from PIL import Image

    out = m.generate([Request("image->report", "a", 0, "cxr", image=Image.new("L", (32, 32), 90))])
    assert isinstance(out[0].report, str)


def test_missing_folder_is_one_clear_error(tmp_path, tiny_folder, capsys):
    line = run_medbench_refused(capsys, tmp_path / "o", "--task", "i2t", "--model", f"transformers:{tmp_path / 'nowhere'}",
                                "--dataset", f"folder:{tiny_folder}", "--n", "2")
    assert "folder not found" in line and str(tmp_path / "nowhere") in line


def test_pickle_only_folder_is_refused_with_the_resave_hint(vlm_dirs, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(vlm_dirs["llava"], folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"pickle files only \(pytorch_model.bin\).*safe_serialization=True"):
        _model(folder)


def test_text_only_architecture_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "llama")
    with pytest.raises(UserError, match="not an image-text-to-text model"):
        _model(tmp_path / "llama")


@pytest.mark.parametrize("edit, what", [("extra", "unexpected keys: model.language_model.layers.0.adaLN_modulation.weight"),
                                        ("drop", "missing keys: .*lm_head.weight")])
def test_weights_that_do_not_fit_the_architecture_are_refused(edit, what, vlm_dirs, tmp_path):
    """The MeDiM-release failure mode: a plain class silently dropping AdaLN weights (or missing some)."""
    folder = tmp_path / edit
    shutil.copytree(vlm_dirs["llava"], folder)
    state = load_file(str(folder / "model.safetensors"))
    if edit == "extra":
        state["model.language_model.layers.0.adaLN_modulation.weight"] = torch.zeros(6 * 32, 32)
    else:
        state.pop(next(k for k in state if k.endswith("lm_head.weight")))
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match=f"do not fit the architecture.*{what}"):
        _model(folder)


def test_a_folder_without_its_processor_is_refused(vlm_dirs, tmp_path):
    folder = tmp_path / "bare"
    shutil.copytree(vlm_dirs["llava"], folder)
    for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (folder / name).unlink()
    with pytest.raises(UserError, match="no processor transformers can load"):
        _model(folder)


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_remote_code_needs_an_explicit_yes(where, vlm_dirs, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(vlm_dirs["llava"], folder)
    config = json.loads((folder / where).read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "modeling_custom.CustomVLM"}
    (folder / where).write_text(json.dumps(config))
    with pytest.raises(UserError, match=f"auto_map in {where}.*trust_remote_code=1"):
        _model(folder)


def test_bad_option_values_are_refused():
    for given, match in (({"temperature": "0"}, "temperature"), ({"dtype": "int8"}, "dtype"), ({"stepz": "4"}, "stepz")):
        with pytest.raises(OptionError, match=match):
            TransformersModel(ModelContext(task=None, domain="cxr", seed=0, arg="/nowhere", options=given))


def test_list_models_shows_the_adapters_and_their_options(capsys):
    from medbench.cli import main
    from medbench.registry import registry

    assert main(["list", "models"]) == 0
    shown = capsys.readouterr().out
    for name in ("transformers", "diffusers", "pair"):
        assert f"  {name} " in shown
    for name, some in (("transformers", ("max_new_tokens=int", "template=str", "dtype=auto|bf16|fp16|fp32")),
                       ("diffusers", ("steps=int", "guidance_scale=float", "scheduler=str", "negative_prompt=str"))):
        assert main(["list", "--options", name]) == 0
        listed = capsys.readouterr().out
        assert all(f"  {opt}" in listed for opt in some), listed
    declared = {o.name for o in registry().get("models", "transformers").options}
    assert {"instruction", "template", "max_new_tokens", "do_sample", "temperature", "top_p", "num_beams", "dtype",
            "trust_remote_code"} <= declared


def test_each_torchrun_rank_uses_its_own_gpu(monkeypatch):
    from medbench.models.safe_load import rank_device

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device("cuda") == "cuda:1" and rank_device("cuda:0") == "cuda:0" and rank_device("cpu") == "cpu"


@pytest.mark.slow
def test_torchrun_two_ranks_write_what_one_process_writes(vlm_dirs, tiny_folder, tmp_path):
    import subprocess
    import sys

    # every test sample: torchrun would read --n as an abbreviation of its own flags
    args = ["--task", "i2t", "--model", f"transformers:{vlm_dirs['qwen2_vl']}", "--dataset", f"folder:{tiny_folder}",
            "--protocol", "medim-paper", "--model-opt", "max_new_tokens=6", "--model-opt", "do_sample=1"]
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", "29541", "-m", "medbench", "run", *args,
                    "--batch-size", "1", "--store", "", "--no-report", "--bootstrap", "0", "--out", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=600)
    run_medbench(tmp_path / "single", *args, "--batch-size", "4")
    assert outputs_of(tmp_path / "dist") == outputs_of(tmp_path / "single")
    assert sorted(p.name for p in next((tmp_path / "dist").iterdir()).joinpath("outputs").glob("index.rank*.jsonl")) == \
        ["index.rank0.jsonl", "index.rank1.jsonl"]
