"""qa-findings rows S2–S5 and issue 13.7: a file that is not a medbench store is refused naming it and
is never re-initialised; leaderboard/compare open the store read-only; the run is refused before
any work when its --store cannot be used."""
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from cli_helpers import assert_one_line
from medbench.store import Store, StoreError


def record(run_id: str) -> dict:
    return {"run_id": run_id, "task": "i2t", "model": "oracle", "dataset": "d", "metrics": {"m.x": {"value": 0.5}}}


@pytest.fixture
def good_store(tmp_path) -> Path:
    path = tmp_path / "good.sqlite"
    store = Store(path)
    for i in range(40):
        store.add_run(record(f"r{i}") | {"padding": "x" * 2000})
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damaged(tmp_path: Path, good: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.sqlite"
    data = good.read_bytes()
    content = {"S2-empty": b"", "S3-100": data[:100], "S3-4096": data[:4096], "S3-8192": data[:8192],
               "S4-random": os.urandom(6000)}[kind]
    path.write_bytes(content)
    return path


KINDS = ("S2-empty", "S3-100", "S3-4096", "S3-8192", "S4-random")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("readonly", [False, True])
def test_damaged_store_is_refused_and_left_as_it_is(tmp_path, good_store, kind, readonly):
    path = damaged(tmp_path, good_store, kind)
    before = digest(path)
    with pytest.raises(StoreError) as e:
        Store(path, readonly=readonly)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert digest(path) == before
    assert not Path(str(path) + "-wal").exists() and not Path(str(path) + "-shm").exists()


def test_a_sqlite_file_of_another_program_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    before = digest(path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="not a medbench store"):
            Store(path, readonly=readonly)
    assert digest(path) == before


def test_readonly_never_writes_and_never_creates(tmp_path, good_store):
    before = digest(good_store)
    store = Store(good_store, readonly=True)
    assert len(store.runs()) == 40 and store.get("r3")["model"] == "oracle"
    with pytest.raises(StoreError, match="read-only"):
        store.add_run(record("new"))
    assert digest(good_store) == before
    with pytest.raises(StoreError, match="no store here"):
        Store(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_S5_run_into_a_damaged_store_is_refused_before_any_work(cli, tmp_path, good_store, kind):
    path = damaged(tmp_path, good_store, kind)
    before = digest(path)
    line = assert_one_line(cli("run", "--task", "i2t", "--model", "oracle", "--store", str(path), "--n", "4"), 2, str(path))
    assert "not a medbench store" in line or "damaged" in line or "not a SQLite database" in line
    assert digest(path) == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_S2_leaderboard_on_an_empty_store_says_so(cli, tmp_path, good_store):
    path = damaged(tmp_path, good_store, "S2-empty")
    result = cli("leaderboard", "--task", "i2t", "--store", str(path), "--out", str(tmp_path / "out" / "lb"))
    assert result.rc == 2 and "is empty (0 bytes)" in result.err and "Traceback" not in result.err
    assert path.stat().st_size == 0
