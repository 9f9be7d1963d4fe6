"""Leaderboards from the store: the latest run of every model, ranked by the task's primary metric.

    medbench leaderboard --task joint_pairs [--store runs/medbench.sqlite] [--out DIR]

writes DIR/leaderboard.html, leaderboard.md and leaderboard.csv. One table per dataset (rankings
across datasets mean nothing). Each model is tested against the best: a paired test on the stored
per-sample statistics when both run folders are at hand and share samples, otherwise whether the
95 % CIs overlap (the table says which). Models not significantly different from the best are
marked "≈ best". A plot shows every model's primary metric across commits and dates.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from medbench.store import DEFAULT_STORE, Store

ALPHA = 0.05


@dataclass
class Entry:
    model: str
    run_id: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    commit: str | None
    finished: str | None
    run_dir: Path | None
    rank: int = 0
    mark: str = ""  # "best" | "≈ best" | ""
    test: str = ""  # how the comparison with the best was made
    p_value: float | None = None


@dataclass
class Board:
    task: str
    dataset: str
    metric: str
    higher_is_better: bool
    entries: list[Entry]
    history_plot: str | None = None
    notes: list[str] = field(default_factory=list)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _entry(run: dict[str, Any], metric: str) -> Entry:
    m = run["record"].get("metrics", {}).get(metric, {})
    run_dir = Path(run["run_dir"]) if run.get("run_dir") and (Path(run["run_dir"]) / "run.json").exists() else None
    return Entry(run["model"], run["run_id"], m.get("value"), m.get("ci_low"), m.get("ci_high"), m.get("n"),
                 run.get("git_commit"), run.get("finished"), run_dir)


def primary_metric(task: str, runs: list[dict[str, Any]]) -> str:
    for run in runs:
        if run["record"].get("primary_metric"):
            return run["record"]["primary_metric"]
    try:
        from medbench.tasks import load_task

        name = load_task(task).primary_metric
    except Exception:
        name = None
    if not name:
        raise ValueError(f"task {task!r}: no primary_metric in its runs or its task spec")
    return name


def versus_best(best: Entry, other: Entry, metric: str, family: str, loader: Callable | None, *, n_perm: int,
                n_boot: int, seed: int) -> tuple[bool, str, float | None]:
    """(tied with the best?, how it was tested, p). Paired when possible, else CI overlap."""
    if best.run_dir is not None and other.run_dir is not None:
        from medbench.compare import paired_family

        if loader is None:
            from medbench.scoring import load_family as loader
        try:
            results, n = paired_family(best.run_dir, other.run_dir, family, loader, n_perm=n_perm, n_boot=n_boot, seed=seed)
            if metric in results:
                p = results[metric].p_value
                return p >= ALPHA, f"paired, {n} shared samples", p
        except Exception:  # no stats or no shared samples: fall through to CIs
            pass
    if None in (best.ci_low, best.ci_high, other.ci_low, other.ci_high):
        return False, "untested (no CI)", None
    overlap = other.ci_low <= best.ci_high and best.ci_low <= other.ci_high
    return overlap, "CI overlap" if overlap else "CIs disjoint", None


def build_boards(store: Store, task: str, *, loader: Callable | None = None, n_perm: int = 1000,
                 n_boot: int = 1000, seed: int = 0) -> list[Board]:
    from medbench.plots import history

    runs = store.runs(task=task)  # newest first
    if not runs:
        raise LookupError(f"no runs of task {task!r} in {store.path} (tasks there: {', '.join(store.tasks()) or 'none'})")
    metric = primary_metric(task, runs)
    boards = []
    for dataset in sorted({r["dataset"] for r in runs}):
        these = [r for r in runs if r["dataset"] == dataset]
        latest: dict[str, dict[str, Any]] = {}
        for r in these:
            latest.setdefault(r["model"], r)
        info = next((r["record"]["metrics"][metric] for r in these if metric in r["record"].get("metrics", {})), {})
        higher = info.get("higher_is_better", True)
        family = info.get("family") or ".".join(metric.split("@")[0].split(".")[:2])
        entries = [_entry(r, metric) for r in latest.values()]
        entries.sort(key=lambda e: (not _finite(e.value), -(e.value or 0) if higher else (e.value or 0), e.model))
        board = Board(task, dataset, metric, higher, entries)
        missing = [e.model for e in entries if not _finite(e.value)]
        if missing:
            board.notes.append(f"no {metric} value in the latest run of: {', '.join(missing)}")
        for i, e in enumerate(entries):
            prev = entries[i - 1] if i else None
            e.rank = prev.rank if prev and prev.value == e.value else i + 1
        if entries and _finite(entries[0].value):
            best = entries[0]
            best.mark, best.test = "best", "—"
            for e in entries[1:]:
                if _finite(e.value):
                    tied, e.test, e.p_value = versus_best(best, e, metric, family, loader, n_perm=n_perm, n_boot=n_boot, seed=seed)
                    e.mark = "≈ best" if tied else ""
        series: dict[str, list] = {}
        for r in reversed(these):
            m = r["record"].get("metrics", {}).get(metric)
            if m:
                when = r.get("finished") or ""
                label = (r.get("git_commit") or "")[:7] or when[:10] or r["run_id"][:10]
                series.setdefault(r["model"], []).append((label, m.get("value"), m.get("ci_low"), m.get("ci_high"), when))
        board.history_plot = history(series, metric=metric, higher_is_better=higher)
        boards.append(board)
    return boards


# -- output ------------------------------------------------------------------------------------

def _ci(e: Entry) -> str:
    from medbench.report import fmt_ci

    return fmt_ci(e.value, e.ci_low, e.ci_high)


def to_markdown(boards: list[Board]) -> str:
    lines = []
    for b in boards:
        arrow = "↑" if b.higher_is_better else "↓"
        lines += [f"## {b.task} · {b.dataset}", "", f"Ranked by `{b.metric}` {arrow} (95 % CI). "
                  "≈ best: not significantly different from the best (paired test on shared samples, else CI overlap).", "",
                  "| rank | model | value [95 % CI] | vs best | test | n | commit | finished |",
                  "|--:|---|--:|---|---|--:|---|---|"]
        for e in b.entries:
            p = f" (p = {e.p_value:.3g})" if e.p_value is not None else ""
            lines.append(f"| {e.rank} | {e.model} | {_ci(e)} | {e.mark} | {e.test}{p} | {e.n or '–'} | "
                         f"{(e.commit or '')[:10]} | {(e.finished or '')[:19]} |")
        lines += [f"- {n}" for n in b.notes] + [""]
    return "\n".join(lines)


def to_csv(boards: list[Board]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "dataset", "metric", "higher_is_better", "rank", "model", "value", "ci_low", "ci_high",
                "vs_best", "test", "p_value", "n", "git_commit", "finished", "run_id"])
    for b in boards:
        for e in b.entries:
            w.writerow([b.task, b.dataset, b.metric, b.higher_is_better, e.rank, e.model, e.value, e.ci_low, e.ci_high,
                        e.mark, e.test, e.p_value, e.n, e.commit, e.finished, e.run_id])
    return buf.getvalue()


def write_leaderboard(store: Store, task: str, out: Path, **kwargs: Any) -> list[Path]:
    from medbench.report import environment

    boards = build_boards(store, task, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    html = environment().get_template("leaderboard.html.j2").render(task=task, boards=boards, store=str(store.path))
    paths = []
    for name, text in (("leaderboard.html", html), ("leaderboard.md", to_markdown(boards)), ("leaderboard.csv", to_csv(boards))):
        (out / name).write_text(text, encoding="utf-8")
        paths.append(out / name)
    return paths


def add_leaderboard_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="the task to rank (e.g. joint_pairs)")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"results store (default {DEFAULT_STORE})")
    parser.add_argument("--out", type=Path, default=Path("leaderboard"), help="output folder (default ./leaderboard)")
    parser.add_argument("--n-perm", type=int, default=1000, help="permutations of the paired tests (default 1000)")


def main_leaderboard(args: argparse.Namespace, loader: Callable | None = None) -> int:
    if not Path(args.store).exists():
        print(f"medbench leaderboard: the store {args.store} does not exist (runs record there; pass --store PATH)", file=sys.stderr)
        return 2
    try:
        paths = write_leaderboard(Store(args.store), args.task, Path(args.out), loader=loader,
                                  n_perm=getattr(args, "n_perm", 1000), n_boot=getattr(args, "n_perm", 1000))
    except (LookupError, ValueError) as e:
        print(f"medbench leaderboard: {e}", file=sys.stderr)
        return 2
    print((paths[1]).read_text(encoding="utf-8"))
    for p in paths:
        print(p)
    return 0
