"""Sharded model-based text metrics under torchrun: every rank scores its pair batches, rank 0 gathers.

A family with ``shard_rows = True`` (BERTScore, CheXbert, RadGraph, RaTEScore, RadCliQ, GREEN) keeps
one stats row per pair in update order and scores each batch on its own, so the rows of a batch do
not depend on which process scored it. Pair batch ``i`` (of ``batch`` pairs, as in one process)
belongs to rank ``i % world``::

    # every rank, after generation (medbench.sharded.prefetch_run)
    write_rank_rows(families, pairs, rank, world, run_dir)      # -> run_dir/row-shards/<family>.rank<r>.safetensors
    # rank 0, after a barrier, in place of the update loop
    stats = gather_rows(family, pairs, world, run_dir)

A shard carries the weights its rank loaded (sha256s, recorded as if rank 0 had loaded them); rank 0
scores any batch no rank delivered (a rank whose family could not load, which then records why).
The shard files are removed once read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from medbench.metrics.base import Metric, MetricUnavailable, Scored

FOLDER = "row-shards"
ROWS = "__rows__"  # the pair positions of a shard's stats rows


def batch_starts(n: int, rank: int, world: int, batch: int) -> range:
    """Starts of the pair batches rank `rank` of `world` scores (round-robin, as the image shards)."""
    return range(rank * batch, n, world * batch)


def shard_path(run_dir: Path, family: str, rank: int) -> Path:
    return Path(run_dir) / FOLDER / f"{family}.rank{rank}.safetensors"


def write_rank_rows(families: Sequence[Metric], pairs: Sequence[Scored], rank: int, world: int, run_dir: Path,
                    batch: int = 64) -> list[str]:
    """Score this rank's batches with every `shard_rows` family and write their rows; returns the
    families written (one that cannot load is left to rank 0, which records why)."""
    from safetensors.numpy import save_file

    from medbench.weights import WeightsError

    written = []
    for fam in families:
        if not fam.shard_rows:
            continue
        rows: list[int] = []
        try:
            for start in batch_starts(len(pairs), rank, world, batch):
                items = pairs[start:start + batch]
                fam.update(items)
                rows.extend(range(start, start + len(items)))
            stats = fam.stats()
        except (MetricUnavailable, WeightsError):
            continue
        path = shard_path(run_dir, fam.name, rank)
        path.parent.mkdir(exist_ok=True)
        arrays = {k: np.ascontiguousarray(v) for k, v in stats.items()}
        arrays[ROWS] = np.asarray(rows, dtype=np.int64)
        tmp = path.with_suffix(".tmp")
        save_file(arrays, str(tmp), metadata={"weights_sha256": json.dumps(getattr(fam, "weights_sha256", {}))})
        os.replace(tmp, path)  # rank 0 never reads a half-written shard
        written.append(fam.name)
    return written


def gather_rows(fam: Metric, pairs: Sequence[Scored], world: int, run_dir: Path, batch: int = 64) -> dict[str, np.ndarray]:
    """Rank 0: the family's stats over every pair, in pair order, from the ranks' shards and its own
    scoring of any batch missing; the family is left holding them (`restore`)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    n = len(pairs)
    parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    covered = np.zeros(n, dtype=bool)
    fam.gathered_rows = {}  # run.json provenance.row_shards: rows each rank delivered
    for rank in range(world):
        path = shard_path(run_dir, fam.name, rank)
        if path.exists():
            with safe_open(str(path), "np") as f:
                fam.gathered_weights.update(json.loads((f.metadata() or {}).get("weights_sha256", "{}")))
            stats = load_file(str(path))
            rows = stats.pop(ROWS)
            parts.append((rows, stats))
            covered[rows] = True
            fam.gathered_rows[f"rank{rank}"] = len(rows)
            path.unlink()
    own: list[int] = []
    for start in range(0, n, batch):
        if not covered[start:start + batch].all():
            items = pairs[start:start + batch]
            fam.update(items)
            own.extend(range(start, start + len(items)))
    parts.append((np.asarray(own, dtype=np.int64), fam.stats()))
    if own:
        fam.gathered_rows["rescored_by_rank0"] = len(own)
    keys = set(parts[-1][1])
    if any(set(st) != keys or any(len(v) != len(rows) for v in st.values()) for rows, st in parts):
        raise RuntimeError(f"{fam.name}: rank shards disagree on their stats; a bug in the family's shard_rows")
    full = {}
    for key in keys:
        arrays = [st[key] for _, st in parts]
        out = np.empty((n,) + arrays[-1].shape[1:], dtype=np.result_type(*arrays))
        for (rows, _), a in zip(parts, arrays):
            out[rows] = a
        full[key] = out
    fam.restore(full)
    folder = Path(run_dir) / FOLDER
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return fam.stats()
