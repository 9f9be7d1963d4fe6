"""`--model pair:T2I+I2T`: prompt -> image by the first model -> report by the second, end to end through the
CLI on registered baselines and on tiny real diffusers/transformers models; option prefixes; refusals."""
import dataclasses

import numpy as np
import pytest

from medbench.errors import UserError
from medbench.models.base import ModelContext
from medbench.models.pair import PairModel, _half_seed, split_options, split_pair
from medbench.models.retrieval import RetrievalModel
from medbench.options import OptionError
from medbench.records import Request
from medbench.registry import registry
from tiny_hf_models import outputs_of, run_medbench, run_medbench_refused, save_tiny_llava, save_tiny_sd


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair-models")
    return save_tiny_sd(root / "sd"), save_tiny_llava(root / "llava")


def joint(out, model, data, *extra):
    return run_medbench(out, "--task", "joint_pairs", "--model", model, "--dataset", f"folder:{data}",
                        "--protocol", "medim-paper", "--n", "4", *extra)


def _ctx(data_samples, arg, **options):
    train, test = data_samples
    return ModelContext(task=None, domain="cxr", seed=0, train=train, test=test, arg=arg, options=options)


@pytest.fixture
def samples(tiny_folder):
    from medbench.data.resolve import load_dataset

    ds = load_dataset(f"folder:{tiny_folder}", {})
    return ds.split("train"), ds.split("test")


def test_oracle_then_retrieval_is_the_composition_of_the_two(tiny_folder, tmp_path, samples):
    rec = joint(tmp_path / "o", "pair:oracle+retrieval", tiny_folder)
    made = outputs_of(tmp_path / "o")
    train, test = samples
    by_id = {s.id: s for s in test}
    ids = sorted({name.rsplit(".", 1)[0] for name in made})
    assert len(ids) == 4 and set(ids) <= set(by_id)
    expected = RetrievalModel(_ctx(samples, None)).generate(
        [Request("image->report", i, 0, "cxr", image=by_id[i].load_image()) for i in ids])
    for i, out in zip(ids, expected):
        assert made[f"{i}.txt"].decode() == out.report
        assert made[f"{i}.png"] == by_id[i].image_path.read_bytes() or _same_pixels(made[f"{i}.png"], by_id[i])
    assert rec["model"] == "pair:oracle+retrieval" and any(k.startswith("pair.") for k in rec["metrics"])


def _same_pixels(png: bytes, sample) -> bool:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.array_equal(np.asarray(im), np.asarray(sample.load_image()))


def test_diffusers_then_transformers_end_to_end_whatever_the_batch(hf_dirs, tiny_folder, tmp_path):
    sd, llava = hf_dirs
    model = f"pair:diffusers:{sd}+transformers:{llava}"
    rec = joint(tmp_path / "b4", model, tiny_folder, "--batch-size", "4")
    joint(tmp_path / "b1", model, tiny_folder, "--batch-size", "1")
    made = outputs_of(tmp_path / "b4")
    assert len(made) == 8 and made == outputs_of(tmp_path / "b1")
    weights = rec["provenance"]["weights_sha256"]
    assert str(sd / "unet" / "diffusion_pytorch_model.safetensors") in weights and str(llava / "model.safetensors") in weights


def test_halves_get_their_prefixed_options_and_compose_exactly(hf_dirs, samples):
    """The pair's outputs equal the diffusers adapter's images and the transformers adapter's reports on them."""
    from medbench.models.diffusers_model import DiffusersModel
    from medbench.models.transformers_model import TransformersModel

    sd, llava = hf_dirs
    pair = PairModel(_ctx(samples, f"diffusers:{sd}+transformers:{llava}", **{"t2i.steps": "2", "i2t.max_new_tokens": "5",
                                                                            "i2t.do_sample": "1"}))
    assert pair.halves["t2i"].opts["steps"] == 2 and pair.halves["i2t"].opts["max_new_tokens"] == 5
    assert pair.settings["i2t"]["settings"]["options"]["do_sample"] is True
    requests = [Request("prompt->pair", f"s{i}", seed=7 + i, domain="cxr", prompt=p)
                for i, p in enumerate(("The heart is enlarged.", "No pleural effusion."))]
    outs = pair.generate(requests)
    images = DiffusersModel(_ctx(samples, str(sd), steps=2)).generate(
        [Request("report->image", r.sample_id, r.seed, "cxr", report=r.prompt) for r in requests])
    reports = TransformersModel(_ctx(samples, str(llava), max_new_tokens=5, do_sample=True)).generate(
        [Request("image->report", r.sample_id, _half_seed(r.seed), "cxr", image=im.image) for r, im in zip(requests, images)])
    for out, im, rep in zip(outs, images, reports):
        assert np.array_equal(np.asarray(out.image), np.asarray(im.image)) and out.report == rep.report


def test_prefixed_options_through_the_cli(hf_dirs, tiny_folder, tmp_path):
    sd, llava = hf_dirs
    rec = joint(tmp_path / "o", f"pair:diffusers:{sd}+transformers:{llava}", tiny_folder,
                "--model-opt", "t2i.steps=2", "--model-opt", "i2t.max_new_tokens=4")
    assert rec["options"]["model"] == {"t2i.steps": 2, "i2t.max_new_tokens": 4}


def test_prefixed_options_are_listed_and_typos_refused_before_work(hf_dirs, tiny_folder, tmp_path, capsys):
    from medbench.cli import main
    from medbench.models.pair import pair_options

    assert main(["list", "--options", "pair"]) == 0
    listed = capsys.readouterr().out
    assert "  t2i.steps=int" in listed and "  i2t.max_new_tokens=int" in listed and "  t2i.model_path=Path" in listed
    line = run_medbench_refused(capsys, tmp_path / "o", "--task", "joint_pairs", "--model", "pair:oracle+retrieval",
                                "--dataset", f"folder:{tiny_folder}", "--n", "2", "--model-opt", "i2t.max_new_tokens=3")
    assert "i2t.max_new_tokens" in line and "i2t.model_path" in line  # retrieval declares no options of its own
    names = {o.name for o in pair_options(f"medim+transformers:{hf_dirs[1]}")}
    assert {"t2i.pad_bias", "t2i.steps", "i2t.template", "i2t.model_path"} <= names


def test_split_at_the_plus_between_two_registered_models():
    known = set(registry().names("models"))
    assert split_pair("diffusers:/m/a+b+transformers:/m/c+d", known) == ("diffusers:/m/a+b", "transformers:/m/c+d")
    assert split_pair("oracle+retrieval", known) == ("oracle", "retrieval")
    for bad in ("oracle", "oracle+nope", "", None):
        with pytest.raises(UserError, match="pair"):
            split_pair(bad, known)


def test_options_go_to_a_half_by_prefix():
    assert split_options({"t2i.steps": 4, "i2t.top_p": 0.9}) == {"t2i": {"steps": 4}, "i2t": {"top_p": 0.9}}
    for bad in ({"steps": 4}, {"t3i.steps": 4}, {"t2i.": 1}):
        with pytest.raises(OptionError, match="t2i.KEY=V"):
            split_options(bad)


def test_half_options_are_checked_against_that_model(hf_dirs, samples):
    sd, llava = hf_dirs
    with pytest.raises(OptionError, match=r"--model-opt i2t. stepz.*model 'transformers' \(the i2t half"):
        PairModel(_ctx(samples, f"oracle+transformers:{llava}", **{"i2t.stepz": "4"}))


def test_a_half_that_cannot_answer_its_kind_is_refused(tiny_folder, tmp_path, capsys, hf_dirs):
    line = run_medbench_refused(capsys, tmp_path / "o", "--task", "joint_pairs", "--model",
                                f"pair:transformers:{hf_dirs[1]}+retrieval", "--dataset", f"folder:{tiny_folder}", "--n", "2")
    assert "t2i half 'transformers' does not answer report->image" in line


def test_model_path_is_refused_for_a_pair(samples, tmp_path):
    ctx = dataclasses.replace(_ctx(samples, "oracle+retrieval"), model_path=tmp_path)
    with pytest.raises(UserError, match="t2i.model_path=DIR"):
        PairModel(ctx)
