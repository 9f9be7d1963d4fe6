"""Run the medbench CLI in-process and check what it printed and where it wrote.

    result = run_cli(tmp_path, "run", "--task", "t2", "--model", "oracle")
    assert result.rc == 2 and result.err_lines == ["medbench: unknown task 't2'. ..."]

Every call runs in ``tmp_path/cwd`` with ``--out tmp_path/out`` appended to ``run`` commands (unless
the call gives its own), and asserts that nothing outside the out folder changed under tmp_path.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from medbench.cli import main

@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every entry under root, except under the skipped folders."""
    seen = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        st = path.lstat()
        seen[str(path.relative_to(root))] = (st.st_size if path.is_file() else -1, st.st_mtime_ns if path.is_file() else 0)
    return seen


def run_cli(tmp_path: Path, *argv: str, out: Path | None = None, fast: bool = True) -> Result:
    """Run `medbench argv...`; returns exit code, stdout and stderr. Fails if anything outside --out changed."""
    out = out or tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    args = list(argv)
    if args and args[0] == "run":
        if "--out" not in args:
            args += ["--out", str(out)]
        if fast:
            args += _fast(args)
    before = snapshot(tmp_path, (out,))
    stdout, stderr = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                rc = main(args)
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(old)
    after = snapshot(tmp_path, (out,))
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"medbench {' '.join(argv)} changed files outside --out: {changed}"
    return Result(rc, stdout.getvalue(), stderr.getvalue())


def _fast(args: list[str]) -> list[str]:
    extra = []
    for flag, value in (("--store", ""), ("--bootstrap", "0")):
        if flag not in args:
            extra += [flag, value]
    for flag in ("--no-report", "--quiet"):
        if flag not in args:
            extra.append(flag)
    return extra


def assert_one_line(result: Result, rc: int, *words: str) -> str:
    """Exit code `rc`, exactly one stderr line starting 'medbench: ', no traceback, containing `words`."""
    lines = result.err_lines
    assert result.rc == rc, (result.rc, result.err)
    assert "Traceback" not in result.err, result.err
    assert len(lines) == 1 and lines[0].startswith("medbench: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]
