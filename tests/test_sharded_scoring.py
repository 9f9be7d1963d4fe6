"""Sharded scoring: under torchrun every rank embeds its shard into the feature cache, rank 0 scores once,
and the numbers equal one process's (2 gloo ranks on the CPU, each run with a cold feature cache)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medbench.cli import main

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
