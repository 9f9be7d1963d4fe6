"""The SQLite results store: round trip, replacement, queries, migration from v0, concurrent writers."""
from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3

import pytest

from medbench.store import SCHEMA_VERSION, Store


def record(run_id: str, model: str = "oracle", task: str = "joint_pairs", commit: str = "abc123", finished: str = "2025-01-01T00:00:00Z",
           value: float = 0.5, dataset: str = "cxr-phantom") -> dict:
    return {"schema_version": 1, "run_id": run_id, "task": task, "model": model, "dataset": dataset, "domain": "cxr",
            "split": "test", "n": 20, "seed": 0, "protocol": "coco", "bootstrap": 100, "primary_metric": "toy.acc",
            "metrics": {"toy.acc": {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1, "higher_is_better": True,
                                    "n": 20, "family": "toy", "variant": ""},
                        "image.fid@phantom-encoder": {"value": 12.5, "ci_low": None, "ci_high": None, "higher_is_better": False,
                                                      "n": 20, "family": "image.fidelity", "variant": ""}},
            "provenance": {"git_commit": commit, "started": finished, "finished": finished}, "skipped": [], "options": {}}


def test_round_trip_and_replace(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.version() == SCHEMA_VERSION
    store.add_run(record("r1", value=0.5), tmp_path / "r1")
    got = store.get("r1")
    assert got["model"] == "oracle" and got["git_commit"] == "abc123" and got["record"]["metrics"]["toy.acc"]["value"] == 0.5
    assert got["run_dir"] == str((tmp_path / "r1").resolve())
    m = store.metrics("r1")
    assert m["toy.acc"] == {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "higher_is_better": 1, "n": 20}
    assert m["image.fid@phantom-encoder"]["ci_low"] is None and m["image.fid@phantom-encoder"]["higher_is_better"] == 0
    store.add_run(record("r1", value=0.7))  # same run id: replaced, not duplicated
    assert len(store.runs()) == 1 and store.metrics("r1")["toy.acc"]["value"] == 0.7
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 2


def test_queries(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.add_run(record("old", commit="1111aaaa", finished="2025-01-01T00:00:00Z", value=0.4))
    store.add_run(record("new", commit="2222bbbb", finished="2025-02-01T00:00:00Z", value=0.6))
    store.add_run(record("rnd", model="random", commit="2222bbbb", finished="2025-02-02T00:00:00Z"))
    store.add_run(record("t2i", task="t2i", finished="2025-03-01T00:00:00Z"))
    store.add_run(record("path", dataset="path-phantom", finished="2025-04-01T00:00:00Z"))
    assert store.latest(model="oracle", task="joint_pairs")["run_id"] == "path"
    assert store.latest(model="oracle", task="joint_pairs", dataset="cxr-phantom")["run_id"] == "new"
    assert store.latest(model="oracle", task="joint_pairs", commit="1111")["run_id"] == "old"
    assert {r["run_id"] for r in store.runs(commit="2222bbbb")} == {"new", "rnd"}
    assert [r["run_id"] for r in store.runs(task="joint_pairs")] == ["path", "rnd", "new", "old"]
    assert store.latest(model="nobody") is None
    assert store.runs(commit="%") == []  # LIKE wildcards in a ref are literal
    assert store.tasks() == ["joint_pairs", "t2i"]


def test_migrates_a_v0_database(tmp_path):
    """v0 (pre-release layout): runs without domain/protocol/git_commit, metrics without n."""
    path = tmp_path / "v0.sqlite"
    rec = record("legacy", commit="feedbeef")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, task TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT NOT NULL, "
                   "seed INTEGER, n INTEGER, started TEXT, finished TEXT, run_dir TEXT, record_json TEXT NOT NULL)")
        db.execute("CREATE TABLE metrics (run_id TEXT NOT NULL, name TEXT NOT NULL, value REAL, ci_low REAL, ci_high REAL, "
                   "higher_is_better INTEGER, PRIMARY KEY (run_id, name))")
        db.execute("INSERT INTO runs VALUES ('legacy', 'joint_pairs', 'oracle', 'cxr-phantom', 0, 20, 's', 'f', NULL, ?)", (json.dumps(rec),))
        db.execute("INSERT INTO metrics VALUES ('legacy', 'toy.acc', 0.5, 0.4, 0.6, 1)")
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    store = Store(path)
    assert store.version() == SCHEMA_VERSION
    got = store.get("legacy")
    assert got["git_commit"] == "feedbeef" and got["domain"] == "cxr" and got["protocol"] == "coco"
    assert store.metrics("legacy")["toy.acc"]["n"] == 20
    assert store.latest(commit="feed")["run_id"] == "legacy"
    store.add_run(record("after"))  # the migrated database takes new runs
    assert len(store.runs()) == 2


def test_refuses_newer_schema(tmp_path):
    path = tmp_path / "future.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        Store(path)


def _writer(path: str, prefix: str, count: int) -> None:
    store = Store(path)
    for i in range(count):
        store.add_run(record(f"{prefix}-{i}", model=prefix, finished=f"2025-01-01T00:00:{i:02d}Z"))


def test_two_processes_writing_at_once_both_land(tmp_path):
    path = str(tmp_path / "shared.sqlite")  # no Store yet: both processes also race to create the schema
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, name, 15)) for name in ("alpha", "beta")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    store = Store(path)
    assert len(store.runs(model="alpha")) == 15 and len(store.runs(model="beta")) == 15
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 60
