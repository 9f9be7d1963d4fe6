"""Exports under hostile names and texts (qa-findings O33, O34, F41, C41 and issue 13.7): the leaderboard's
CSV neutralises spreadsheet formulas, its Markdown carries no raw HTML or pipes, the report and the
compare page escape everything, samples.csv neutralises formulas, and nothing is written outside the
folders asked for."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report_runs import make_v2_run  # noqa: E402
from runfolders import toy_loader  # noqa: E402

from medbench.cli import main  # noqa: E402
from medbench.compare import compare_runs, markdown, resolve_side  # noqa: E402
from medbench.leaderboard import write_leaderboard  # noqa: E402
from medbench.report import write_report  # noqa: E402
from medbench.runrecord import load_record  # noqa: E402
from medbench.store import Store  # noqa: E402

PAYLOADS = ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '{{7*7}}', '"><svg onload=alert(1)>',
            '</textarea>', 'javascript:alert(1)']
FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(A1:A9)", "\t=1", "\r=1"]


def snapshot(root: Path, skip: list[Path]) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()
            and not any(s == p or s in p.parents for s in skip)}


def board(tmp_path: Path, models: list[str], task: str = "joint_pairs") -> tuple[Store, Path]:
    runs = tmp_path / "runs"
    store = Store(tmp_path / "s.sqlite")
    for i, model in enumerate(models):
        d = make_v2_run(runs, f"m{i}", quality=0.3 + 0.1 * i, run_id=f"run-{i}", n=12)
        store.add_run(dict(load_record(d), model=model, task=task), d)
    return store, runs


def test_O34_html_in_a_model_spec_is_escaped_in_every_export(tmp_path):
    evil = "outputs:out/xss2/<svg onload=alert(1)>"
    store, runs = board(tmp_path, [evil, "oracle"])
    before = snapshot(tmp_path, [tmp_path / "lb", tmp_path / "s.sqlite", tmp_path / "s.sqlite-wal", tmp_path / "s.sqlite-shm"])
    assert main(["leaderboard", "--task", "joint_pairs", "--store", str(store.path), "--out", str(tmp_path / "lb"),
                 "--n-perm", "20"]) == 0
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    html = (tmp_path / "lb" / "leaderboard.html").read_text()
    assert "<svg" not in md and "&lt;svg onload=alert(1)&gt;" in md
    assert "<svg" not in html and "&lt;svg onload=alert(1)&gt;" in html and "<script" not in html
    rows = list(csv.DictReader((tmp_path / "lb" / "leaderboard.csv").open(encoding="utf-8")))
    assert evil in {r["model"] for r in rows}  # CSV keeps the text exactly: it cannot run in a spreadsheet
    assert snapshot(tmp_path, [tmp_path / "lb", tmp_path / "s.sqlite", tmp_path / "s.sqlite-wal", tmp_path / "s.sqlite-shm"]) == before


@pytest.mark.parametrize("formula", FORMULAS)
def test_C41_formulas_in_names_are_neutralised_in_the_csv(tmp_path, formula):
    store, _ = board(tmp_path, [formula, "oracle"], task=formula)
    write_leaderboard(store, formula, tmp_path / "lb", loader=toy_loader, n_perm=20, n_boot=20)
    rows = list(csv.reader((tmp_path / "lb" / "leaderboard.csv").open(encoding="utf-8", newline="")))
    head, body = rows[0], rows[1:]
    for row in body:
        assert row[head.index("task")] == "'" + formula
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or _is_number(cell), cell
    assert "'" + formula in {r[head.index("model")] for r in body}
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len({line.count(" | ") for line in table}) == 1  # no pipe in a name split a row


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("payload", PAYLOADS)
def test_O33_F41_payloads_in_reports_and_ids_stay_text(tmp_path, payload):
    run = make_v2_run(tmp_path, "oracle", n=6, report_text=f"No effusion. {payload}")
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    rows[1]["id"] = f"id-{payload}"  # F41: an id with markup
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = snapshot(tmp_path, [run / "report.html", run / "samples.csv"])
    body = write_report(run).read_text().split("</style>", 1)[1]
    for tag in ("<script", "<svg", "</textarea>", "onerror=alert(1)>", 'href="javascript:'):
        assert tag not in body, tag
    if payload == "{{7*7}}":
        assert payload in body  # literal: templates never evaluate model text
    assert snapshot(tmp_path, [run / "report.html", run / "samples.csv"]) == before


@pytest.mark.parametrize("formula", FORMULAS[:4])
def test_samples_csv_neutralises_formulas_in_generated_reports(tmp_path, formula):
    run = make_v2_run(tmp_path, "oracle", n=6, report_text=formula)
    write_report(run)
    rows = list(csv.DictReader((run / "samples.csv").open(encoding="utf-8", newline="")))
    assert rows[0]["outputs.report"] == "'" + formula


def test_compare_outputs_escape_run_labels(tmp_path, capsys):
    a = make_v2_run(tmp_path, "base|<b>x</b>", n=12, run_id="a")
    b = make_v2_run(tmp_path, "cand <img src=x onerror=alert(1)>", n=12, run_id="b", quality=0.5)
    sa, sb = resolve_side(str(a)), resolve_side(str(b))
    md = markdown(sa, sb, compare_runs(sa, sb, n_perm=20, n_boot=20, loader=toy_loader))
    assert "<b>" not in md and "<img" not in md and "base\\|&lt;b&gt;x&lt;/b&gt;" in md
    assert main(["compare", str(a), str(b), "--n-perm", "20", "--n-boot", "20"]) in (0, 1)
    page = (b / "compare-vs-a.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "<script" not in page
