"""The results store: every run recorded in one SQLite file (default ``runs/medbench.sqlite``).

One row per run (with the full run.json kept in ``record_json``) plus one row per metric.
WAL journal, a busy timeout and ``BEGIN IMMEDIATE`` transactions, so several processes finishing
at once all land. The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[v]`` moves a
database from version ``v`` to ``v + 1`` and runs inside the same transaction that checks the version::

    store = Store("runs/medbench.sqlite")
    store.add_run(record, run_dir)                  # re-adding a run_id replaces it
    store.latest(model="oracle", task="joint_pairs")
    store.runs(task="joint_pairs", commit="3fa2c1")
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

DEFAULT_STORE = Path("runs/medbench.sqlite")
BUSY_TIMEOUT_MS = 60_000

RUN_COLUMNS = ("run_id", "task", "model", "dataset", "domain", "protocol", "seed", "n", "git_commit",
               "started", "finished", "run_dir", "record_json")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _v0_to_v1(db: sqlite3.Connection) -> None:
    """Create the v1 schema. A v0 database (the pre-release layout: runs without domain, protocol
    and git_commit; metrics without n) gains those columns, backfilled from record_json."""
    db.execute("""CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, task TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT NOT NULL,
        domain TEXT, protocol TEXT, seed INTEGER, n INTEGER, git_commit TEXT,
        started TEXT, finished TEXT, run_dir TEXT, record_json TEXT NOT NULL)""")
    db.execute("""CREATE TABLE IF NOT EXISTS metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, name TEXT NOT NULL,
        value REAL, ci_low REAL, ci_high REAL, higher_is_better INTEGER, n INTEGER,
        PRIMARY KEY (run_id, name))""")
    for column in ("domain", "protocol", "git_commit"):
        if column not in _columns(db, "runs"):
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
    if "n" not in _columns(db, "metrics"):
        db.execute("ALTER TABLE metrics ADD COLUMN n INTEGER")
    for run_id, text in db.execute("SELECT run_id, record_json FROM runs WHERE git_commit IS NULL OR domain IS NULL").fetchall():
        rec = json.loads(text)
        db.execute("UPDATE runs SET domain = ?, protocol = ?, git_commit = ? WHERE run_id = ?",
                   (rec.get("domain"), rec.get("protocol"), (rec.get("provenance") or {}).get("git_commit"), run_id))
        for name, m in (rec.get("metrics") or {}).items():
            db.execute("UPDATE metrics SET n = ? WHERE run_id = ? AND name = ? AND n IS NULL", (m.get("n"), run_id, name))
    db.execute("CREATE INDEX IF NOT EXISTS runs_by_task_model ON runs (task, model, finished)")
    db.execute("CREATE INDEX IF NOT EXISTS runs_by_commit ON runs (git_commit)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v0_to_v1]
SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    """A SQLite results store. Cheap to open; each call uses its own short connection."""

    def __init__(self, path: str | Path = DEFAULT_STORE):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._enable_wal()
        self.migrate()

    # -- plumbing ---------------------------------------------------------------------------

    def _enable_wal(self) -> None:
        """Switch to WAL once (it persists in the file). Two processes creating the same store can both try;
        the switch needs an exclusive lock and SQLite may report "locked" without waiting, so retry."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                with self._connect() as db:
                    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def version(self) -> int:
        with self._connect() as db:
            return db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION; refuse a database written by a newer medbench."""
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: store schema version {version} is newer than this medbench "
                                   f"understands ({SCHEMA_VERSION}); upgrade medbench")
            for step in MIGRATIONS[version:]:
                step(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- writing ----------------------------------------------------------------------------

    def add_run(self, record: dict[str, Any], run_dir: str | Path | None = None) -> None:
        """Insert a run and its metrics in one transaction; an existing run_id is replaced."""
        prov = record.get("provenance") or {}
        row = (record["run_id"], record["task"], record["model"], record["dataset"], record.get("domain"),
               record.get("protocol"), record.get("seed"), record.get("n"), prov.get("git_commit"),
               prov.get("started"), prov.get("finished"), str(Path(run_dir).resolve()) if run_dir else None,
               json.dumps(record, allow_nan=True))
        metrics = [(record["run_id"], name, m.get("value"), m.get("ci_low"), m.get("ci_high"),
                    None if m.get("higher_is_better") is None else int(bool(m["higher_is_better"])), m.get("n"))
                   for name, m in (record.get("metrics") or {}).items()]
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ?", (record["run_id"],))
            db.execute("DELETE FROM runs WHERE run_id = ?", (record["run_id"],))
            db.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})", row)
            db.executemany("INSERT INTO metrics (run_id, name, value, ci_low, ci_high, higher_is_better, n) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", metrics)

    # -- reading ----------------------------------------------------------------------------

    def runs(self, *, task: str | None = None, model: str | None = None, dataset: str | None = None,
             commit: str | None = None, seed: int | None = None) -> list[dict[str, Any]]:
        """Matching runs, newest first (by finish time). ``commit`` matches a commit-hash prefix."""
        where, args = [], []
        for column, value in (("task", task), ("model", model), ("dataset", dataset), ("seed", seed)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if commit is not None:
            where.append("git_commit LIKE ? ESCAPE '\\'")
            args.append(commit.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY finished DESC, run_id DESC"
        with self._connect() as db:
            return [self._row(r) for r in db.execute(sql, args)]

    def latest(self, **query: Any) -> dict[str, Any] | None:
        """The newest run matching ``query`` (same keys as `runs`), or None."""
        found = self.runs(**query)
        return found[0] if found else None

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return self._row(row) if row else None

    def metrics(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM metrics WHERE run_id = ? ORDER BY name", (run_id,)).fetchall()
        return {r["name"]: {k: r[k] for k in ("value", "ci_low", "ci_high", "higher_is_better", "n")} for r in rows}

    def tasks(self) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT task FROM runs ORDER BY task")]

    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        out = {k: row[k] for k in row.keys() if k != "record_json"}
        out["record"] = json.loads(row["record_json"])
        return out
