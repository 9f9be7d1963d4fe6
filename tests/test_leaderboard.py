"""Leaderboards from the store: ranking, "≈ best" marks (paired / CI overlap), history, three outputs."""
from __future__ import annotations

import argparse
import csv

from runfolders import make_run, toy_loader

from medbench.leaderboard import add_leaderboard_args, build_boards, main_leaderboard
from medbench.runrecord import load_record
from medbench.store import Store


def fill(tmp_path):
    store = Store(tmp_path / "medbench.sqlite")
    runs = {
        "oracle-old": make_run(tmp_path, "oracle", quality=0.80, commit="1111aaaa", finished="2025-01-01T00:00:00Z", n=60),
        "oracle": make_run(tmp_path, "oracle", quality=0.90, commit="2222bbbb", finished="2025-02-01T00:00:00Z", n=60),
        "oracle2": make_run(tmp_path, "oracle-twin", quality=0.89, seed=5, commit="2222bbbb", finished="2025-02-01T00:00:01Z", n=60),
        "retrieval": make_run(tmp_path, "retrieval", quality=0.55, commit="2222bbbb", finished="2025-02-01T00:00:02Z", n=60),
        "random": make_run(tmp_path, "random", quality=0.15, commit="2222bbbb", finished="2025-02-01T00:00:03Z", n=60),
        "other-data": make_run(tmp_path, "oracle", quality=0.7, dataset="path-phantom", run_id="path-oracle", commit="2222bbbb", n=60, first_id=900,
                               finished="2025-02-01T00:00:04Z"),
    }
    for d in runs.values():
        store.add_run(load_record(d), d)
    return store, runs


def test_ranking_marks_and_history(tmp_path):
    store, _ = fill(tmp_path)
    boards = build_boards(store, "joint_pairs", loader=toy_loader, n_perm=300, n_boot=300)
    assert [b.dataset for b in boards] == ["cxr-phantom", "path-phantom"]
    cxr = boards[0]
    assert cxr.metric == "toy.acc" and cxr.higher_is_better
    models = [e.model for e in cxr.entries]
    assert models[-2:] == ["retrieval", "random"] and set(models[:2]) == {"oracle", "oracle-twin"}
    values = [e.value for e in cxr.entries]
    assert values == sorted(values, reverse=True)
    best, twin = cxr.entries[0], cxr.entries[1]
    oracle = next(e for e in cxr.entries if e.model == "oracle")
    assert oracle.commit == "2222bbbb"  # the latest run of the model, not the older one
    assert best.mark == "best" and twin.mark == "≈ best" and twin.test.startswith("paired") and twin.p_value >= 0.05
    assert cxr.entries[-1].mark == "" and cxr.entries[-1].p_value < 0.05
    assert cxr.history_plot.startswith("data:image/png;base64,")
    assert [e.model for e in boards[1].entries] == ["oracle"]


def test_ci_overlap_when_runs_share_no_samples(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    a = make_run(tmp_path, "a", quality=0.85, n=40)
    b = make_run(tmp_path, "b", quality=0.83, n=40, first_id=400, finished="2025-01-02T00:00:00Z")
    c = make_run(tmp_path, "c", quality=0.1, n=40, first_id=800, finished="2025-01-03T00:00:00Z")
    for d in (a, b, c):
        store.add_run(load_record(d), d)
    board = build_boards(store, "joint_pairs", loader=toy_loader, n_perm=100, n_boot=100)[0]
    tests = {e.model: (e.mark, e.test) for e in board.entries}
    assert tests["b"] == ("≈ best", "CI overlap") and tests["c"] == ("", "CIs disjoint")


def test_cli_writes_html_md_csv(tmp_path, capsys):
    store, _ = fill(tmp_path)
    parser = argparse.ArgumentParser()
    add_leaderboard_args(parser)
    out = tmp_path / "lb"
    code = main_leaderboard(parser.parse_args(["--task", "joint_pairs", "--store", str(store.path), "--out", str(out),
                                               "--n-perm", "200"]), loader=toy_loader)
    assert code == 0
    html = (out / "leaderboard.html").read_text()
    md = (out / "leaderboard.md").read_text()
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert "<script" not in html and "data:image/png;base64," in html and "≈ best" in html
    assert "| 1 |" in md and "random" in md and "toy.acc" in capsys.readouterr().out
    cxr = [r for r in rows if r["dataset"] == "cxr-phantom"]
    assert [r["rank"] for r in cxr] == ["1", "2", "3", "4"] and cxr[0]["vs_best"] == "best" and float(cxr[0]["ci_low"]) < float(cxr[0]["value"])
    assert main_leaderboard(parser.parse_args(["--task", "nope", "--store", str(store.path), "--out", str(out)])) == 2
    assert main_leaderboard(parser.parse_args(["--task", "x", "--store", str(tmp_path / "absent.sqlite")])) == 2
