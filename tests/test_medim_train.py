"""MeDiM trainer: LR schedule, exact resume, optimizer flattening, DDP (gloo) == single process."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from reference_model.config import MeDiMConfig
from reference_model.checkpoint import flatten_optimizer, unflatten_optimizer
from reference_model.train import SyntheticPairs, lr_at, stream_indices, train


def tiny_cfg(**kw) -> MeDiMConfig:
    base = dict(name="test", hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                text_vocab_size=30, image_codebook_size=16, image_grid=(3, 3), text_len=8, micro_batch_size=4,
                max_steps=4, warmup_steps=2, lr=3e-3, log_every=1, ckpt_every=1000)
    return MeDiMConfig(**{**base, **kw})


def losses(out_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_lr_schedules():
    cfg = tiny_cfg(max_steps=110, warmup_steps=10, lr=1.0, min_lr=0.0)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(60, cfg) == pytest.approx(0.5)
    assert lr_at(110, cfg) == pytest.approx(0.0)
    r = cfg.replace(lr_schedule="cosine_restarts", restart_t0=20, restart_t_mult=2)
    assert lr_at(10 + 20, r) == pytest.approx(1.0) and lr_at(10 + 60, r) == pytest.approx(1.0)  # restarts
    assert lr_at(10 + 10, r) == pytest.approx(0.5) and lr_at(10 + 40, r) == pytest.approx(0.5)


def test_stream_order_is_a_permutation_per_epoch():
    got = stream_indices(10, 3, 0, 20)
    assert sorted(got[:10]) == list(range(10)) and sorted(got[10:]) == list(range(10))
    assert stream_indices(10, 3, 7, 5) == got[7:12]


def test_optimizer_flatten_roundtrip():
    p = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(p.parameters(), lr=0.1, betas=(0.8, 0.9))
    p(torch.ones(1, 3)).sum().backward()
    opt.step()
    tensors, scalars = flatten_optimizer(opt.state_dict())
    json.dumps(scalars)  # JSON-serialisable: no pickle needed
    back = unflatten_optimizer(tensors, json.loads(json.dumps(scalars)))
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(back)
    assert opt2.param_groups[0]["betas"] == (0.8, 0.9)
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_resume_gives_bit_identical_next_step(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_cfg(grad_accum=2, micro_batch_size=2)
    data = SyntheticPairs(cfg, n=12)
    train(cfg, tmp_path / "full", dataset=data, progress=False)
    train(cfg.replace(max_steps=2), tmp_path / "part", dataset=data, progress=False)
    assert sorted(p.name for p in (tmp_path / "part" / "checkpoint").iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer.json"]
    train(cfg, tmp_path / "part", dataset=data, resume=True, progress=False)
    full, resumed = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert len(full) == len(resumed) == 4
    assert full == resumed  # bit-identical, including the steps after the resume


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = tiny_cfg(micro_batch_size=2, max_steps=3)
    train(cfg, out, dataset=SyntheticPairs(cfg, n=12), progress=False, device="cpu")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_gloo_two_processes_matches_one(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_cfg(micro_batch_size=4, max_steps=3)
    train(cfg, tmp_path / "one", dataset=SyntheticPairs(cfg, n=12), progress=False, device="cpu")
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    assert one == pytest.approx(two, rel=1e-5, abs=1e-6)
    from safetensors.torch import load_file
    a = load_file(str(tmp_path / "one" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "checkpoint" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_image_embeddings_from_the_vq_codebook():
    """image_embedding_init="vq": image-code rows keep the codebook's geometry (a random projection preserves
    pairwise distances), text rows and the embedding's scale are untouched; a tokenizer without one is an error."""
    from reference_model.backbone import MeDiMBackbone
    from reference_model.config import load_config
    from reference_model.train import init_image_embeddings_from_vq, tokenizer_dir
    from reference_model.vq import load_image_tokenizer

    cfg = load_config("tiny-phantom").replace(image_embedding_init="vq")
    torch.manual_seed(0)
    model = MeDiMBackbone(cfg)
    before = model.embed.weight.detach().clone()
    init_image_embeddings_from_vq(model, cfg)
    tok = model.tokens
    rows = model.embed.weight.detach()[tok.image_offset:tok.image_offset + tok.codebook_size]
    codebook = load_image_tokenizer(tokenizer_dir(cfg)).quantizer.codebook
    pick = torch.arange(0, tok.codebook_size, 8)
    d_code, d_emb = torch.cdist(codebook[pick], codebook[pick]), torch.cdist(rows[pick], rows[pick])
    upper = torch.triu(torch.ones_like(d_code, dtype=torch.bool), diagonal=1)
    assert torch.corrcoef(torch.stack([d_code[upper], d_emb[upper]]))[0, 1] > 0.9
    assert torch.equal(model.embed.weight[:tok.image_offset], before[:tok.image_offset])
    assert rows.std().item() == pytest.approx(before[tok.image_offset:].std().item(), rel=1e-3)
    with pytest.raises(ValueError, match="tokenizer_dir"):
        init_image_embeddings_from_vq(model, cfg.replace(data={}))
