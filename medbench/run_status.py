"""status.json: whether a run folder holds a running, complete or failed run.

A run that fails after creating its folder is marked failed (with its error and stage), never left
as an empty folder that looks finished. Starting a run removes what an earlier run of the same id
left that this run will write again (run.json, report.html), so a stale report is never advertised
for a run that did not write one. A run holds ``.lock`` (fcntl.flock) while it runs, so a second
process starting the same run is refused instead of generating everything again. Usage::

    status = RunStatus(run_dir, run_id, started)
    status.start(config=cfg.identity())    # status "running"; writes config.json
    status.stage("score")
    status.complete()                      # or status.fail(exc)
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from medbench.errors import UserError

STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
STALE = ("run.json", "report.html")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_status(run_dir: Path) -> dict | None:
    """The folder's status.json, or None (runs before schema 2 have none)."""
    path = Path(run_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return {"status": "unknown", "error": f"{path} is not valid JSON"}


class RunStatus:
    def __init__(self, run_dir: Path, run_id: str, started: str, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.state = {"status": "running", "run_id": run_id, "started": started, "updated": started, "stage": "load", "error": None}

    def _write(self) -> None:
        if not self.enabled:
            return
        self.state["updated"] = _now()
        path = self.run_dir / STATUS_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, path)

    def start(self, config: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.enabled:
            return
        self._lock()
        for name in STALE:
            (self.run_dir / name).unlink(missing_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(config, indent=1, default=str))
        self._write()

    def stage(self, name: str) -> None:
        self.state["stage"] = name
        self._write()

    def complete(self) -> None:
        self.state.update(status="complete", error=None)
        self._write()
        self._unlock()

    def fail(self, error: BaseException) -> None:
        self.state.update(status="failed", error=f"{type(error).__name__}: {error}"[:4000])
        self._write()
        self._unlock()

    def _lock(self) -> None:
        """One process per run folder: a second identical run is refused, not run twice (qa R9)."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): runs are not locked
            return
        self._lock_file = open(self.run_dir / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            other = read_status(self.run_dir) or {}
            raise UserError(f"{self.run_dir}: another medbench process is running this run (started "
                            f"{other.get('started', '?')}, stage {other.get('stage', '?')}); wait for it to finish, "
                            f"then rerun to reuse its outputs") from None

    def _unlock(self) -> None:
        if getattr(self, "_lock_file", None) is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None
