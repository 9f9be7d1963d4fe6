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


def test_key_metrics_names_links_and_protocol_tables(tmp_path):
    from report_runs import make_v2_run

    from medbench.leaderboard import write_leaderboard

    store = Store(tmp_path / "s.sqlite")
    runs = [make_v2_run(tmp_path, "oracle", quality=0.9, name="Oracle ceiling", run_id="r-oracle"),
            make_v2_run(tmp_path, "retrieval", quality=0.6, run_id="r-retrieval", finished="2025-01-02T00:00:00Z"),
            make_v2_run(tmp_path, "medim", quality=0.7, run_id="r-medim-paper", finished="2025-01-03T00:00:00Z")]
    paper = load_record(runs[2]) | {"protocol": "medim-paper"}
    for d in runs[:2]:
        write_report_for(d)
        store.add_run(load_record(d), d)
    store.add_run(paper, runs[2])
    boards = build_boards(store, "joint_pairs", loader=toy_loader, n_perm=50, n_boot=50)
    assert [(b.dataset, b.protocol) for b in boards] == [("cxr-phantom", "coco"), ("cxr-phantom", "medim-paper")]
    coco, med = boards
    assert [e.name for e in coco.entries] == ["Oracle ceiling", "retrieval"] and [e.name for e in med.entries] == ["medim"]
    # joint_pairs declares key_metrics (patterns): the ones these runs recorded are the columns
    from medbench.tasks import load_task
    import fnmatch

    names = list(load_record(runs[0])["metrics"])
    expected = [n for p in load_task("joint_pairs").key_metrics for n in names if fnmatch.fnmatchcase(n, p) and n != coco.metric]
    assert coco.columns == list(dict.fromkeys(expected)) and "image.fid@phantom-encoder" in coco.columns
    assert coco.entries[0].columns["image.fid@phantom-encoder"] == load_record(runs[0])["metrics"]["image.fid@phantom-encoder"]
    paths = write_leaderboard(store, "joint_pairs", tmp_path / "lb", loader=toy_loader, n_perm=50, n_boot=50)
    html = paths[0].read_text()
    assert 'href="../r-oracle/report.html"' in html and "Oracle ceiling" in html and "protocol medim-paper" in html
    assert (tmp_path / "lb" / "../r-oracle/report.html").exists()
    rows = list(csv.DictReader((tmp_path / "lb" / "leaderboard.csv").open()))
    assert {r["protocol"] for r in rows} == {"coco", "medim-paper"} and "image.fid@phantom-encoder.ci_low" in rows[0]
    assert float(rows[0]["image.fid@phantom-encoder"]) == coco.entries[0].columns["image.fid@phantom-encoder"]["value"]


def write_report_for(run):
    from medbench.report import write_report

    write_report(run, gallery_size=2, n_worst=0)


def test_fallback_columns_are_the_first_of_each_family(tmp_path):
    from medbench.leaderboard import key_columns

    run = {"record": {"metrics": {"a.x.1": {"family": "a.x"}, "a.x.2": {"family": "a.x"}, "a.x.3": {"family": "a.x"},
                                  "b.y": {"family": "b"}, "p.q": {"family": "p"}}}}
    assert key_columns("not-a-task", "coco", "p.q", [run]) == ["a.x.1", "a.x.2", "b.y"]


def test_exports_neutralise_formulas_and_html(tmp_path):
    from medbench.compare import format_p
    from medbench.leaderboard import to_csv, to_markdown

    store = Store(tmp_path / "s.sqlite")
    evil = {"=cmd|' /C calc'!A0": 0.9, "+SUM(A1)": 0.5, "-2+3": 0.4, "@x": 0.3, "\tTab": 0.2, "a|b <img src=x onerror=alert(1)>": 0.1}
    for i, (model, q) in enumerate(evil.items()):
        d = make_run(tmp_path, f"m{i}", quality=q, run_id=f"run-{i}")
        store.add_run(dict(load_record(d), model=model), d)
    boards = build_boards(store, "joint_pairs", loader=toy_loader, n_perm=50, n_boot=50)
    rows = list(csv.reader(to_csv(boards).splitlines()))
    col = rows[0].index("model")
    assert sorted(r[col] for r in rows[1:]) == sorted("'" + m if m[0] in "=+-@\t" else m for m in evil)
    assert all(not r[col].startswith(("=", "+", "-", "@", "\t")) for r in rows[1:])
    assert all(not c.startswith(("=", "+", "@")) for r in rows[1:] for c in r if c)
    md = to_markdown(boards)
    assert "<img" not in md and "a\\|b &lt;img src=x onerror=alert(1)&gt;" in md
    body = [l for l in md.splitlines() if l.startswith("| ") and "rank" not in l]
    assert all(l.count(" | ") == body[0].count(" | ") for l in body)  # no pipe broke a row
    ps = {e.p_value for e in boards[0].entries if e.p_value is not None}
    assert ps and all(format_p(p) in md for p in ps)
