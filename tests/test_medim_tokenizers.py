"""MeDiM tokenizers: the tiny VQ model (shapes, determinism, safe loading) and the byte-level BPE."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medbench.data.folder import load_folder
from medbench.data.phantom import ensure_phantom
from reference_model.text_tokenizer import SPECIALS, TextTokenizer, train_text_tokenizer
from reference_model.vq import ImageTokenizer, TinyVQ, VQConfig, load_image_tokenizer, save_tiny_vq

BUNDLED = Path(__file__).resolve().parents[1] / "reference_model" / "checkpoints" / "tiny-phantom"
SMALL = VQConfig(image_size=32, widths=(16, 32, 32), embed_dim=8, codebook_size=32)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> list[str]:
    home = tmp_path_factory.mktemp("home")
    texts = []
    for domain in ("cxr", "path"):
        root = ensure_phantom(domain, size=32, n_train=30, n_val=0, n_test=0, home=home, workers=1)
        ds = load_folder(root, name=f"{domain}-phantom", domain=domain)
        texts += [s.report for s in ds.samples] + [s.prompt for s in ds.samples if s.prompt]
    return texts


def test_vq_shapes_range_and_protocol():
    torch.manual_seed(0)
    vq = TinyVQ(SMALL).eval()
    assert isinstance(vq, ImageTokenizer)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    codes = vq.encode(images)
    assert codes.shape == (3, 16) and codes.dtype == torch.long and vq.grid == (4, 4)
    assert 0 <= codes.min() and codes.max() < SMALL.codebook_size
    recon = vq.decode(codes)
    assert recon.shape == (3, 3, 32, 32) and recon.min() >= -1 and recon.max() <= 1
    assert torch.equal(vq.encode(images[:1].mean(1, keepdim=True)), vq.encode(images[:1].mean(1, keepdim=True).expand(-1, 3, -1, -1)))


def test_vq_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    vq = TinyVQ(SMALL).eval()
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    codes = vq.encode(images)
    assert torch.equal(codes, vq.encode(images))
    assert torch.equal(codes[2:3], vq.encode(images[2:3]))
    assert torch.equal(vq.decode(codes), vq.decode(codes))


def test_vq_rejects_bad_input():
    vq = TinyVQ(SMALL).eval()
    with pytest.raises(ValueError, match="32x32"):
        vq.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="codes must lie"):
        vq.decode(torch.full((1, 16), SMALL.codebook_size))


def test_safetensors_round_trip_and_card(tmp_path):
    torch.manual_seed(1)
    vq = TinyVQ(SMALL).eval()
    card_path = save_tiny_vq(vq, tmp_path, {"seed": 1})
    card = json.loads(card_path.read_text())
    assert card["kind"] == "tiny-vq" and card["seed"] == 1 and len(card["sha256"]) == 64
    loaded = load_image_tokenizer(tmp_path)
    assert loaded.sha256 == card["sha256"]
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(vq.encode(images), loaded.encode(images))
    assert torch.equal(vq.decode(vq.encode(images)), loaded.decode(loaded.encode(images)))


def test_sha256_mismatch_and_missing_files_are_clear_errors(tmp_path):
    save_tiny_vq(TinyVQ(SMALL), tmp_path)
    weights = tmp_path / "vq.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_image_tokenizer(tmp_path)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"place vq.safetensors .* at"):
        load_image_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="vq.json"):
        load_image_tokenizer(tmp_path / "nowhere")
    card = json.loads((tmp_path / "vq.json").read_text())
    (tmp_path / "vq.json").write_text(json.dumps(dict(card, kind="no-such-tokenizer")))
    with pytest.raises(ValueError, match="unknown image tokenizer kind"):
        load_image_tokenizer(tmp_path)


def test_bpe_round_trips_phantom_reports(tmp_path, reports):
    tok = train_text_tokenizer(reports, tmp_path / "tok.json", vocab_size=400)
    assert [tok.tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3] and tok.pad_id == 0
    for text in reports:
        ids = tok.encode(text)
        assert all(4 <= i < tok.vocab_size for i in ids)
        assert tok.decode([tok.bos_id] + ids + [tok.eos_id, tok.pad_id, tok.pad_id]) == text
    mean_len = sum(len(tok.encode(t)) for t in reports) / len(reports)
    assert mean_len < sum(len(t.encode()) for t in reports) / len(reports) / 2  # BPE actually merges
    again = train_text_tokenizer(reports, tmp_path / "tok2.json", vocab_size=400)
    assert again.sha256 == tok.sha256  # deterministic training
    with pytest.raises(ValueError, match="sha256 mismatch"):
        TextTokenizer.from_file(tmp_path / "tok.json", sha256="0" * 64)


@pytest.mark.skipif(not (BUNDLED / "text-tokenizer.json").is_file(), reason="bundled text tokenizer not trained yet")
def test_bundled_tokenizers_round_trip(reports):
    tok = TextTokenizer.from_file(BUNDLED / "text-tokenizer.json")
    assert all(tok.decode(tok.encode(t)) == t for t in reports)
    vq = load_image_tokenizer(BUNDLED)
    assert vq.grid == (8, 8) and vq.image_size == 64 and vq.codebook_size == 512
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert vq.decode(vq.encode(images)).shape == images.shape
