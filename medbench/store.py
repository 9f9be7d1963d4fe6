"""The results store: every run recorded in one SQLite file (default ``runs/medbench.sqlite``).

One row per run (with the full run.json kept in ``record_json``) plus one row per metric.
WAL journal, a busy timeout and ``BEGIN IMMEDIATE`` transactions, so several processes finishing
at once all land. The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[v]`` moves a
database from version ``v`` to ``v + 1`` and runs inside the same transaction that checks the version::

    store = Store("runs/medbench.sqlite")
    store.add_run(record, run_dir)                  # re-adding a run_id replaces it
    Store("runs/medbench.sqlite", readonly=True)    # leaderboard / compare: sqlite mode=ro, never created

A file that is not a medbench store (0 bytes, not SQLite, damaged, or SQLite without the medbench
tables) is refused with a `StoreError` naming it; it is never re-initialised. Only a path that does
not exist yet is created.
    store.latest(model="oracle", task="joint_pairs")
    store.runs(task="joint_pairs", commit="3fa2c1")
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

from medbench.errors import UserError

DEFAULT_STORE = Path("runs/medbench.sqlite")
BUSY_TIMEOUT_MS = 60_000

SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(UserError):
    """The store file is not usable: missing (read-only), a folder, empty, not SQLite, damaged, or not a medbench store."""


class StoreVersionError(StoreError, RuntimeError):
    """The store was written by a newer medbench."""


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

    def __init__(self, path: str | Path = DEFAULT_STORE, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        existed = check_store_file(self.path, must_exist=readonly)
        if readonly:
            self._check_readable()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not existed:
            self._create()
        try:
            self._check_is_medbench()  # checked before anything is written to it
            self._enable_wal()
            self.migrate()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: the store is damaged or not a SQLite database ({err}); "
                             "it was left as it is: restore it from a backup or pass another --store") from None

    def _create(self) -> None:
        """Build the schema in a private file, then link it into place: another process never sees a
        half-made store (so an empty or table-less file is always refused, never re-initialised)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            fresh = Store.__new__(Store)
            fresh.path, fresh.readonly = tmp, False
            fresh._enable_wal()
            fresh.migrate()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
            except OSError:  # no hard links on this file system
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                leftover.unlink(missing_ok=True)

    def _check_is_medbench(self) -> None:
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            problems = [r[0] for r in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"integrity check: {'; '.join(problems[:3])}")
        if version <= SCHEMA_VERSION and "runs" not in tables:
            raise StoreError(f"{self.path}: a SQLite file but not a medbench store (no 'runs' table; tables: "
                             f"{', '.join(sorted(tables)) or 'none'}); it was left as it is: pass another --store")

    def _check_readable(self) -> None:
        sidecars = [self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")]
        existed = [c.exists() for c in sidecars]
        try:
            self._check_is_medbench()
            version = self.version()
        except (sqlite3.DatabaseError, StoreError) as err:
            for sidecar, was_there in zip(sidecars, existed):  # SQLite opens a WAL file's sidecars even read-only
                if not was_there:
                    sidecar.unlink(missing_ok=True)
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"{self.path}: the store is damaged or not a SQLite database ({err})") from None
        if version > SCHEMA_VERSION:
            raise StoreVersionError(f"{self.path}: store schema version {version} is newer than this medbench "
                                    f"understands ({SCHEMA_VERSION}); upgrade medbench")
        if version < SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema version {version} is older than {SCHEMA_VERSION}; "
                             "a `medbench run --store` into it upgrades it (this command only reads)")

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
        if self.readonly:
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        else:
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
                raise StoreVersionError(f"{self.path}: store schema version {version} is newer than this medbench "
                                        f"understands ({SCHEMA_VERSION}); upgrade medbench")
            for step in MIGRATIONS[version:]:
                step(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- writing ----------------------------------------------------------------------------

    def add_run(self, record: dict[str, Any], run_dir: str | Path | None = None) -> None:
        """Insert a run and its metrics in one transaction; an existing run_id is replaced."""
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only; runs are added by `medbench run`")
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


def check_store_file(path: Path, must_exist: bool = False) -> bool:
    """Refuse a path that cannot be a store before any work; True when the file exists already."""
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a store file; pass a file path such as {path / 'medbench.sqlite'}")
    if not path.exists():
        if must_exist:
            raise StoreError(f"{path}: no store here (runs record into one with `medbench run --store {path}`)")
        if path.parent.exists() and not path.parent.is_dir():
            raise StoreError(f"{path}: cannot create the store: {path.parent} is a file, not a folder")
        return False
    if not path.is_file():
        raise StoreError(f"{path}: is not a regular file, so not a medbench store")
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if not head:
        raise StoreError(f"{path}: is empty (0 bytes), not a medbench store; it was left as it is "
                         "(it may be a truncated store: restore it, or delete it to start a new one)")
    if head != SQLITE_HEADER:
        raise StoreError(f"{path}: is not a SQLite database, so not a medbench store; it was left as it is: pass another --store")
    return True
