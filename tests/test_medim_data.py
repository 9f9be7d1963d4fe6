"""MeDiM's token data pipeline: padded examples, prompt_len, the VQ-code cache, resumable order."""
from __future__ import annotations

import itertools

import pytest
import torch
from PIL import Image

from medbench.data.folder import load_folder
from medbench.data.phantom import ensure_phantom
from reference_model.data import (MedimTokenDataset, ResumableSampler, first_sentence, image_to_tensor,
                                  layout_ids, report_from_ids, tensor_to_image)
from reference_model.text_tokenizer import train_text_tokenizer
from reference_model.vq import TinyVQ, VQConfig, load_image_tokenizer, save_tiny_vq


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    samples = []
    for domain in ("cxr", "path"):
        root = ensure_phantom(domain, size=32, n_train=12, n_val=0, n_test=0, home=home, workers=1)
        samples += load_folder(root, name=f"{domain}-phantom", domain=domain).split("train")
    torch.manual_seed(0)
    save_tiny_vq(TinyVQ(VQConfig(image_size=32, widths=(16, 32, 32), embed_dim=8, codebook_size=32)), home / "vq")
    image_tok = load_image_tokenizer(home / "vq")
    texts = [s.report for s in samples] + [s.prompt for s in samples]
    text_tok = train_text_tokenizer(texts, home / "text-tokenizer.json", vocab_size=400)
    return samples, image_tok, text_tok, home


def test_examples_shapes_padding_and_prompt_len(setup):
    samples, image_tok, text_tok, home = setup
    ds = MedimTokenDataset(samples, image_tok, text_tok, text_len=400, cache_root=home / "cache", progress=False)
    assert len(ds) == 2 * len(samples)  # every phantom sample has a prompt: report + prompted layouts
    assert {ds[k]["domain"] for k in range(len(ds))} == {"cxr", "path"}
    for k in range(len(ds)):
        ex = ds[k]
        sample = samples[ds.items[k][0]]
        assert ex["text"].shape == (400,) and ex["text"].dtype == torch.long
        assert ex["image"].shape == (16,) and ex["image"].dtype == torch.long
        assert 0 <= ex["image"].min() and ex["image"].max() < image_tok.codebook_size
        n = int(ex["text_mask"].sum())
        assert ex["text_mask"][:n].all() and not ex["text_mask"][n:].any()  # real tokens, then padding
        assert ex["text"][0] == text_tok.bos_id and (ex["text"][n:] == text_tok.pad_id).all()
        head = text_tok.decode(ex["text"][: ex["prompt_len"]].tolist())
        if k < len(samples):  # report layout: MeDiM's first sentence, without its "."
            assert head == first_sentence(sample.report.strip())
            assert text_tok.decode(ex["text"].tolist()) == sample.report.strip()
        else:  # prompted layout: <s> prompt </s> report
            assert ex["text"][ex["prompt_len"] - 1] == text_tok.eos_id and head == sample.prompt
            assert report_from_ids(text_tok, ex["text"].tolist()) == sample.report.strip()


def test_truncation_keeps_bos_and_counts(setup):
    samples, image_tok, text_tok, home = setup
    ds = MedimTokenDataset(samples, image_tok, text_tok, text_len=8, cache_root=home / "cache", progress=False)
    ex = ds[0]
    assert ex["text_mask"].all() and ex["text"][0] == text_tok.bos_id and ex["prompt_len"] <= 8
    assert ds.truncated == len(ds)


def test_code_cache_hits_on_second_pass(setup):
    samples, image_tok, text_tok, home = setup
    first = MedimTokenDataset(samples, image_tok, text_tok, 64, cache_root=home / "cache2", progress=False)
    assert first.cache_stats == (0, len(samples))
    assert list((home / "cache2").glob("*.safetensors"))
    second = MedimTokenDataset(samples, image_tok, text_tok, 64, cache_root=home / "cache2", progress=False)
    assert second.cache_stats == (len(samples), 0)
    assert torch.equal(first.codes, second.codes)
    with Image.open(samples[0].image_path) as im:
        direct = image_tok.encode(image_to_tensor(im, 32)[None])[0]
    assert torch.equal(second.codes[0], direct)


def test_layout_prompt_len_is_exact(setup):
    _, _, text_tok, _ = setup
    ids, p = layout_ids(text_tok, "Small left effusion. Heart normal.", None, "report")
    assert text_tok.decode(ids[:p]) == "Small left effusion" and text_tok.decode(ids) == "Small left effusion. Heart normal."
    ids, p = layout_ids(text_tok, "No acute findings.", "Chest X-ray with no findings.", "prompted")
    assert ids[p - 1] == text_tok.eos_id and text_tok.decode(ids[:p]) == "Chest X-ray with no findings."
    with pytest.raises(ValueError, match="layout"):
        layout_ids(text_tok, "x.", None, "other")


def test_resumable_sampler_order_and_resume():
    full = list(itertools.islice(iter(ResumableSampler(10, seed=3)), 35))
    assert sorted(full[:10]) == list(range(10)) and sorted(full[10:20]) == list(range(10))
    assert full[:10] != full[10:20]  # a new permutation each epoch
    assert list(itertools.islice(iter(ResumableSampler(10, seed=3, start=17)), 18)) == full[17:35]
    ranks = [list(itertools.islice(iter(ResumableSampler(10, seed=3, start=4, rank=r, world_size=2)), 8)) for r in (0, 1)]
    assert [x for pair in zip(*ranks) for x in pair] == full[4:20]
    assert full != list(itertools.islice(iter(ResumableSampler(10, seed=4)), 35))


def test_image_round_trip_modes():
    grey = Image.fromarray((torch.arange(64 * 64) % 256).view(64, 64).to(torch.uint8).numpy())
    x = image_to_tensor(grey, 64)
    assert x.shape == (3, 64, 64) and torch.equal(x[0], x[2])
    back = tensor_to_image(x, "cxr")
    assert back.mode == "L" and back.tobytes() == grey.tobytes()
    assert tensor_to_image(x, "path").mode == "RGB"
    wide = image_to_tensor(Image.new("RGB", (40, 20), (255, 255, 255)), 32)
    assert wide.shape == (3, 32, 32) and wide[:, 0, 16].tolist() != wide[:, 16, 16].tolist()  # padded band
