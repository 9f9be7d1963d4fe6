"""Leaderboards from the store: the latest run of every model, ranked by the task's primary metric.

    medbench leaderboard --task joint_pairs [--store runs/medbench.sqlite] [--out DIR]

writes DIR/leaderboard.html, leaderboard.md and leaderboard.csv, and a history plot per board. One
table per dataset *and text protocol* (rankings across datasets mean nothing, and a medim-paper run
is never ranked among coco runs). Columns: the primary metric, then the task's ``key_metrics``
(fnmatch patterns, under the board's protocol), or when the task declares none the first two
metrics of each family. A row is a model under its display name (run.json ``name``, else the model
spec), links to its run report, and is tested against the best: a paired test on the stored
per-sample statistics when both run folders are at hand and share samples, otherwise whether the
95 % CIs overlap (the table says which). p-values are written as in ``medbench compare``. CSV cells
that a spreadsheet would run as formulas get a leading ' and Markdown cells carry no raw HTML or
pipes (medbench.exports).
"""
from __future__ import annotations

import argparse
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
    name: str = ""  # display name: run.json "name", else the model spec
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)  # key metric -> its run.json MetricValue
    report: str | None = None  # link to the run's report.html, relative to the leaderboard folder when possible
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
    protocol: str = ""
    columns: list[str] = field(default_factory=list)  # key metrics shown beside the primary
    directions: dict[str, bool | None] = field(default_factory=dict)
    history_plot: str | None = None
    notes: list[str] = field(default_factory=list)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def display_name(run: dict[str, Any]) -> str:
    return str(run["record"].get("name") or run["model"])


def _entry(run: dict[str, Any], metric: str, columns: list[str]) -> Entry:
    metrics = run["record"].get("metrics", {})
    m = metrics.get(metric, {})
    run_dir = Path(run["run_dir"]) if run.get("run_dir") and (Path(run["run_dir"]) / "run.json").exists() else None
    report = run_dir / "report.html" if run_dir is not None and (run_dir / "report.html").exists() else None
    return Entry(run["model"], run["run_id"], m.get("value"), m.get("ci_low"), m.get("ci_high"), m.get("n"),
                 run.get("git_commit"), run.get("finished"), run_dir, name=display_name(run),
                 columns={c: metrics[c] for c in columns if c in metrics}, report=str(report) if report else None)


def primary_metric(task: str, runs: list[dict[str, Any]]) -> str:
    for run in runs:
        if run["record"].get("primary_metric"):
            return run["record"]["primary_metric"]
    spec = _task_spec(task)
    if spec is None or not spec.primary_metric:
        raise ValueError(f"task {task!r}: no primary_metric in its runs or its task spec")
    return spec.primary_metric


def _task_spec(task: str, protocol: str | None = None):
    """The registered task under ``protocol`` (its nlg key metrics follow), or None when it is not installed here."""
    try:
        from medbench.tasks import load_task

        spec = load_task(task)
    except Exception:  # a task of a plugin that is not installed here: the runs still rank
        return None
    try:
        from medbench.tasks import for_protocol

        return for_protocol(spec, protocol)
    except ImportError:
        return spec


def key_columns(task: str, protocol: str, primary: str, runs: list[dict[str, Any]], per_family: int = 2) -> list[str]:
    """The board's metric columns besides the primary: the task's key_metrics (patterns) that its runs
    recorded, else the first ``per_family`` metrics of each family, in record order."""
    import fnmatch

    names: list[str] = []
    for r in runs:
        names += [n for n in r["record"].get("metrics", {}) if n not in names]
    spec = _task_spec(task, protocol)
    patterns = tuple(getattr(spec, "key_metrics", ()) or ())
    if patterns:
        chosen: list[str] = []
        for pattern in patterns:
            chosen += [n for n in names if fnmatch.fnmatchcase(n, pattern) and n not in chosen and n != primary]
        return chosen
    counts: dict[str, int] = {}
    chosen = []
    for n in names:
        m = next(r["record"]["metrics"][n] for r in runs if n in r["record"].get("metrics", {}))
        family = m.get("family") or ".".join(n.split("@")[0].split(".")[:2])
        if n != primary and counts.get(family, 0) < per_family:
            counts[family] = counts.get(family, 0) + 1
            chosen.append(n)
    return chosen


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
    """One Board per (dataset, protocol) among the task's runs in the store."""
    from medbench.plots import history

    runs = store.runs(task=task)  # newest first
    if not runs:
        raise LookupError(f"no runs of task {task!r} in {store.path} (tasks there: {', '.join(store.tasks()) or 'none'})")
    boards = []
    for dataset, protocol in sorted({(r["dataset"], r.get("protocol") or r["record"].get("protocol") or "") for r in runs}):
        these = [r for r in runs if r["dataset"] == dataset and (r.get("protocol") or r["record"].get("protocol") or "") == protocol]
        metric = primary_metric(task, these)
        latest: dict[str, dict[str, Any]] = {}
        for r in these:
            latest.setdefault(display_name(r), r)
        info = next((r["record"]["metrics"][metric] for r in these if metric in r["record"].get("metrics", {})), {})
        higher = info.get("higher_is_better", True)
        family = info.get("family") or ".".join(metric.split("@")[0].split(".")[:2])
        columns = key_columns(task, protocol, metric, list(latest.values()))
        entries = [_entry(r, metric, columns) for r in latest.values()]
        entries.sort(key=lambda e: (not _finite(e.value), -(e.value or 0) if higher else (e.value or 0), e.name))
        directions = {c: next((e.columns[c].get("higher_is_better") for e in entries if c in e.columns), None) for c in columns}
        board = Board(task, dataset, metric, higher, entries, protocol=protocol, columns=columns, directions=directions)
        missing = [e.name for e in entries if not _finite(e.value)]
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
                series.setdefault(display_name(r), []).append((label, m.get("value"), m.get("ci_low"), m.get("ci_high"), when))
        board.history_plot = history(series, metric=metric, higher_is_better=higher)
        boards.append(board)
    return boards


def link_reports(boards: list[Board], out: Path) -> None:
    """Make report links relative to the leaderboard folder (the pages then move together)."""
    import os

    for b in boards:
        for e in b.entries:
            if e.report:
                try:
                    e.report = Path(os.path.relpath(e.report, out.resolve())).as_posix()
                except ValueError:  # another drive (Windows): keep the absolute path
                    e.report = Path(e.report).as_uri()


# -- output ------------------------------------------------------------------------------------

def _ci(m: Any) -> str:
    from medbench.report import fmt_ci

    if isinstance(m, Entry):
        return fmt_ci(m.value, m.ci_low, m.ci_high)
    return fmt_ci(m.get("value"), m.get("ci_low"), m.get("ci_high")) if m else "–"


def _arrow(hib: bool | None) -> str:
    return "↑" if hib else "↓" if hib is not None else ""


def format_p(p: float | None) -> str:
    from medbench.compare import format_p as compare_p

    return compare_p(p)


def title(b: Board) -> str:
    return f"{b.task} · {b.dataset} · protocol {b.protocol or 'unrecorded'}"


def to_markdown(boards: list[Board]) -> str:
    from medbench.exports import md_cell

    lines = []
    for b in boards:
        head = ["rank", "model", f"{b.metric} {_arrow(b.higher_is_better)} [95 % CI]"] + [f"{c} {_arrow(b.directions.get(c))}" for c in b.columns]
        head += ["vs best", "test", "p", "n", "commit", "finished"]
        lines += [f"## {md_cell(title(b))}", "", f"Ranked by `{md_cell(b.metric)}` {_arrow(b.higher_is_better)} (95 % CI). "
                  "≈ best: not significantly different from the best (paired test on shared samples, else CI overlap).", "",
                  "| " + " | ".join(md_cell(h) for h in head) + " |",
                  "|--:|---|--:|" + "--:|" * len(b.columns) + "---|---|--:|--:|---|---|"]
        for e in b.entries:
            model = md_cell(e.name) + (f" ([report]({md_cell(e.report).replace(' ', '%20')}))" if e.report else "")
            cells = [str(e.rank), model, md_cell(_ci(e))] + [md_cell(_ci(e.columns.get(c))) for c in b.columns]
            cells += [md_cell(e.mark), md_cell(e.test), format_p(e.p_value), md_cell(e.n or "–"), md_cell((e.commit or "")[:10]),
                      md_cell((e.finished or "")[:19])]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [f"- {md_cell(n)}" for n in b.notes] + [""]
    return "\n".join(lines)


def to_csv(boards: list[Board]) -> str:
    """One row per (board, model); key metrics as ``<metric>``, ``<metric>.ci_low``, ``<metric>.ci_high`` columns."""
    from medbench.exports import csv_text

    keys = list(dict.fromkeys(c for b in boards for c in b.columns))
    head = ["task", "dataset", "protocol", "metric", "higher_is_better", "rank", "name", "model", "value", "ci_low", "ci_high",
            "vs_best", "test", "p_value", "n", "git_commit", "finished", "run_id", "report"]
    head += [f"{k}{s}" for k in keys for s in ("", ".ci_low", ".ci_high")]
    rows = [head]
    for b in boards:
        for e in b.entries:
            row = [b.task, b.dataset, b.protocol, b.metric, b.higher_is_better, e.rank, e.name, e.model, e.value, e.ci_low,
                   e.ci_high, e.mark, e.test, e.p_value, e.n, e.commit, e.finished, e.run_id, e.report]
            for k in keys:
                m = e.columns.get(k) or {}
                row += [m.get("value"), m.get("ci_low"), m.get("ci_high")]
            rows.append(row)
    return csv_text(rows)


def write_leaderboard(store: Store, task: str, out: Path, **kwargs: Any) -> list[Path]:
    from medbench.report import environment

    boards = build_boards(store, task, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    link_reports(boards, out)
    html = environment().get_template("leaderboard.html.j2").render(task=task, boards=boards, store=str(store.path),
                                                                     format_p=format_p, title=title)
    paths = []
    for name, text in (("leaderboard.html", html), ("leaderboard.md", to_markdown(boards)), ("leaderboard.csv", to_csv(boards))):
        (out / name).write_text(text, encoding="utf-8", newline="")  # the CSV's CRLF as written
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
        paths = write_leaderboard(Store(args.store, readonly=True), args.task, Path(args.out), loader=loader,
                                  n_perm=getattr(args, "n_perm", 1000), n_boot=getattr(args, "n_perm", 1000))
    except (LookupError, ValueError) as e:
        print(f"medbench leaderboard: {e}", file=sys.stderr)
        return 2
    print((paths[1]).read_text(encoding="utf-8"))
    for p in paths:
        print(p)
    return 0
