"""Sharded scoring: under torchrun every rank embeds its shard into the feature cache, rank 0 scores once,
and the numbers equal one process's (2 gloo ranks on the CPU, each run with a cold feature cache)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medbench.cli import main

sys.path.insert(0, str(Path(__file__).parent))

SMALL = ["--dataset-opt", "n_train=240", "--dataset-opt", "n_val=120", "--dataset-opt", "n_test=120"]


def only_run(out: Path) -> dict:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((run / "run.json").read_text())


def fresh_home(tmp_path: Path, name: str) -> Path:
    """A MEDBENCH_HOME of its own (an empty feature cache) that shares the already drawn phantoms."""
    home = tmp_path / name
    home.mkdir()
    (home / "phantoms").symlink_to(Path(os.environ["MEDBENCH_HOME"]) / "phantoms", target_is_directory=True)
    return home


def feature_shards(home: Path) -> int:
    return len(list((home / "features").glob("*/shard-*.safetensors")))


def test_rank_shards_cover_every_image_once():
    from types import SimpleNamespace

    from medbench.sharded import shard_images

    pairs = [SimpleNamespace(output=SimpleNamespace(image=f"g{i}"), sample=SimpleNamespace(image_path=f"r{i}")) for i in range(23)]
    train = [SimpleNamespace(image_path=f"t{i}") for i in range(11)]
    seen = [x for rank in range(3) for batch in shard_images(pairs, rank, 3, train, batch=4) for x in batch]
    assert sorted(seen) == sorted([f"g{i}" for i in range(23)] + [f"r{i}" for i in range(23)] + [f"t{i}" for i in range(11)])


@pytest.mark.slow
def test_torchrun_two_ranks_score_like_one_process(tmp_path):
    from medbench.data.resolve import load_dataset

    load_dataset("cxr-phantom", {"n_train": "240", "n_val": "120", "n_test": "120"})  # draw once, shared below
    task = tmp_path / "t2i_sharded.yaml"  # (a task file: torchrun's own parser refuses a bare --n)
    task.write_text("name: t2i_sharded\ndataset: cxr-phantom\nsplit: test\nrequest: report->image\n"
                    "metrics: [image.fidelity, image.label_fidelity, memorization]\nn: 60\nseeds: [0]\nprotocol: coco\n"
                    "primary_metric: image.fid@phantom-encoder\n")
    args = ["run", "--task", str(task), "--model", "oracle", *SMALL, "--store", "", "--no-report", "--bootstrap", "50"]
    dist_home, single_home = fresh_home(tmp_path, "home-dist"), fresh_home(tmp_path, "home-single")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "MEDBENCH_HOME": str(dist_home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", "29547", "-m", "medbench", *args,
                           "--out", str(tmp_path / "dist")], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    shards_by_ranks = feature_shards(dist_home)
    old = os.environ["MEDBENCH_HOME"]
    os.environ["MEDBENCH_HOME"] = str(single_home)
    try:
        main([*args, "--out", str(tmp_path / "single")])
    finally:
        os.environ["MEDBENCH_HOME"] = old
    dist, single = only_run(tmp_path / "dist"), only_run(tmp_path / "single")
    assert dist["provenance"]["world_size"] == 2
    assert "features_sharded" in dist["provenance"]["seconds"]
    assert shards_by_ranks >= 3  # one shard per rank's prefetch, one for rank 0's threshold images (val split)
    assert any(k.startswith("image.fid@") for k in single["metrics"]) and any(k.startswith("memorization.") for k in single["metrics"])
    assert dist["metrics"] == single["metrics"]


def test_ranks_text_rows_gather_to_one_process_rows(text_weights, tmp_path):
    """Three ranks' shards of two model-based text families (tiny real weights), written and gathered in
    this process: rank 0 ends up with exactly the rows and weights one process scores; rank 2's missing
    shard is scored by rank 0."""
    from tiny_report_models import metric_context, report_pairs, run_family, scored_pairs

    from medbench.metrics.report_models import bertscore, chexbert
    from medbench.row_shards import FOLDER, gather_rows, write_rank_rows

    refs, hyps = report_pairs(23)
    pairs = scored_pairs(refs, hyps)
    ctx = metric_context(text_weights, tmp_path)
    for factory in (bertscore.bertscore_factory, chexbert.chexbert_factory):
        single = factory(ctx)
        want = run_family(single, refs, hyps, batch=4)
        for rank in (0, 1):  # rank 2 delivers nothing
            assert write_rank_rows([factory(ctx)], pairs, rank, 3, tmp_path, batch=4) == [single.name]
        gatherer = factory(ctx)
        got = gather_rows(gatherer, pairs, 3, tmp_path, batch=4)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        assert gatherer.compute(got) == single.compute(want)
        assert gatherer.weights_sha256 == single.weights_sha256 and gatherer.weights_sha256
        assert gatherer.extras() == single.extras()
        assert gatherer.gathered_rows == {"rank0": 8, "rank1": 8, "rescored_by_rank0": 7}  # batches 0,3 / 1,4 / 2,5
    assert not (tmp_path / FOLDER).exists()  # shards removed once read


@pytest.mark.slow
def test_torchrun_two_ranks_score_text_families_like_one_process(text_weights, tmp_path):
    from medbench.data.resolve import load_dataset

    load_dataset("cxr-phantom", {"n_train": "240", "n_val": "120", "n_test": "120"})
    task = tmp_path / "i2t_sharded.yaml"
    task.write_text("name: i2t_sharded\ndataset: cxr-phantom\nsplit: test\nrequest: image->report\n"
                    "metrics: [nlg.bertscore, clinical.chexbert]\nn: 120\nseeds: [0]\nprotocol: coco\n"
                    "primary_metric: nlg.bertscore.f1@distilbert-base-uncased-L5\n")
    args = ["run", "--task", str(task), "--model", "retrieval", *SMALL, "--store", "", "--no-report", "--bootstrap", "50"]
    env = {**os.environ, "MEDBENCH_WEIGHTS": str(text_weights), "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", "29548", "-m", "medbench", *args,
                           "--out", str(tmp_path / "dist")], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    single = subprocess.run([sys.executable, "-m", "medbench", *args, "--out", str(tmp_path / "single")], env=env,
                            capture_output=True, timeout=600)
    assert single.returncode == 0, single.stderr.decode()[-3000:]
    dist_run, single_run = only_run(tmp_path / "dist"), only_run(tmp_path / "single")
    assert dist_run["provenance"]["world_size"] == 2 and not dist_run["skipped"]
    for family in ("nlg.bertscore", "clinical.chexbert"):  # rows 0-63 on rank 0, 64-119 on rank 1
        assert dist_run["provenance"]["row_shards"][family] == {"rank0": 64, "rank1": 56}
    assert "nlg.bertscore.f1@distilbert-base-uncased-L5" in single_run["metrics"]
    assert dist_run["metrics"] == single_run["metrics"]
    assert dist_run["provenance"]["weights_sha256"] == single_run["provenance"]["weights_sha256"]
    (run,) = [p for p in (tmp_path / "dist").iterdir() if p.is_dir()]
    assert not (run / "row-shards").exists()
