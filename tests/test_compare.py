"""compare and the CI gate on fabricated run folders (real toy family, real paired statistics)."""
from __future__ import annotations

import argparse
import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from runfolders import ToyFamily, make_run, toy_loader

from medbench.compare import (GateRule, Row, add_compare_args, compare_runs, evaluate_gate, judge, load_gate, main_compare,
                              parse_query, resolve_side)
from medbench.runrecord import load_record
from medbench.stats.paired import paired_compare
from medbench.store import Store

EXAMPLE_GATE = Path(__file__).resolve().parent.parent / "reports" / "gates" / "example-gate.yaml"


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_compare_args(parser)
    return parser.parse_args([*argv, "--n-perm", "300", "--n-boot", "300"])


def gate_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    return path


def test_paired_rows_match_paired_compare_on_the_shared_ids(tmp_path):
    base = make_run(tmp_path, "oracle", quality=0.85, n=40)
    cand = make_run(tmp_path, "retrieval", quality=0.6, n=40, first_id=10)  # overlaps on 30 ids
    rows = {r.name: r for r in compare_runs(resolve_side(str(base)), resolve_side(str(cand)), n_perm=200, n_boot=200, loader=toy_loader)}
    acc = rows["toy.acc"]
    assert acc.method == "paired" and acc.n == 30
    # the same numbers from the statistics module, with rows aligned by id by hand
    _, sa, ids_a, pats = toy_loader(base, "toy")
    _, sb, ids_b, _ = toy_loader(cand, "toy")
    ia = [ids_a.index(i) for i in ids_a if i in ids_b]
    ib = [ids_b.index(ids_a[k]) for k in ia]
    want = paired_compare(ToyFamily().compute, {k: v[ia] for k, v in sa.items()}, {k: v[ib] for k, v in sb.items()},
                          [pats[k] for k in ia], n_perm=200, n_boot=200, seed=0)["toy.acc"]
    assert (acc.diff, acc.ci_low, acc.ci_high, acc.p_value) == (want.diff, want.ci_low, want.ci_high, want.p_value)
    assert acc.a == load_record(base)["metrics"]["toy.acc"]["value"]  # a/b are each run's own full value
    fid = rows["image.fid@phantom-encoder"]  # no per-sample stats stored: unpaired from the CIs, said so
    assert fid.method == "unpaired" and "unpaired" in fid.note and fid.p_value is not None


def test_gate_passes_same_model_other_seed_and_fails_a_degraded_candidate(tmp_path, capsys):
    base = make_run(tmp_path, "oracle", quality=0.85, seed=0, n=60)
    same = make_run(tmp_path, "oracle", quality=0.85, seed=1, n=60)
    bad = make_run(tmp_path, "random", quality=0.2, seed=0, n=60)
    gate = gate_file(tmp_path, "- {metric: toy.acc}\n- {metric: toy.err, direction: lower, tolerance: 0.02}\n- {metric: 'toy.sc*'}\n")
    junit = tmp_path / "junit.xml"
    assert main_compare(args(str(base), str(same), "--gate", str(gate), "--junit", str(junit)), loader=toy_loader) == 0
    assert "Gate passed" in capsys.readouterr().out
    assert main_compare(args(str(base), str(bad), "--gate", str(gate), "--junit", str(junit)), loader=toy_loader) == 1
    out = capsys.readouterr().out
    assert "Gate FAILED" in out and "toy.acc: significantly worse" in out and "toy.err: significantly worse" in out
    assert "| `toy.acc` | ↑ |" in out and "▼" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"toy.acc", "toy.err", "toy.score"} and suite.get("failures") == "3"
    assert all(c.find("failure") is not None for c in cases.values())


def test_gate_needs_significance_and_tolerance():
    worse = Row("m", "f", True, 0.80, 0.70, -0.10, -0.15, -0.05, 0.001, 50, "paired")
    assert judge(worse, GateRule("m", None)).status == "fail"
    assert judge(worse, GateRule("m", None, tolerance=0.12)).status == "pass"  # within tolerance
    assert judge(worse, GateRule("m", None, tolerance=0.07)).status == "pass"  # CI reaches into the tolerance
    assert judge(worse, GateRule("m", None, alpha=0.0005)).status == "pass"  # not significant at this alpha
    noisy = Row("m", "f", True, 0.80, 0.70, -0.10, -0.30, 0.10, 0.4, 50, "paired")
    assert judge(noisy, GateRule("m", None)).status == "pass"
    lower = Row("fid", "f", False, 10.0, 14.0, 4.0, 2.0, 6.0, 0.001, 50, "paired")  # FID went up: worse
    assert judge(lower, GateRule("fid", None)).status == "fail"
    assert judge(lower, GateRule("fid", "higher")).status == "pass"  # the gate's direction wins
    untestable = Row("m", "f", True, 0.8, 0.5, -0.3, None, None, None, 50, "unpaired")
    assert judge(untestable, GateRule("m", None)).status == "fail"  # cannot check it: do not pass it
    nan = Row("m", "f", True, 0.8, float("nan"), float("nan"), None, None, None, 50, "paired")
    assert judge(nan, GateRule("m", None)).status == "fail"
    missing = Row("m", "f", True, 0.8, None, None, None, None, None, None, "missing")
    assert judge(missing, GateRule("m", None)).status == "fail"
    assert [r.status for r in evaluate_gate([worse], [GateRule("nothing.*", None)])] == ["fail"]  # a typo guard
    assert [r.status for r in evaluate_gate([worse], [GateRule("nothing.*", None, optional=True)])] == ["skipped"]
    assert [r.status for r in evaluate_gate([missing], [GateRule("m", None, optional=True)])] == ["fail"]


def test_gate_file_validation(tmp_path):
    with pytest.raises(ValueError, match=r"gate.yaml: .*direction must be 'higher' or 'lower'.*tolerance must be"):
        load_gate(gate_file(tmp_path, "- {metric: a, direction: up}\n- {metric: b, tolerance: -1}\n"))
    with pytest.raises(ValueError, match="non-empty list"):
        load_gate(gate_file(tmp_path, "metric: a\n"))
    rules = load_gate(EXAMPLE_GATE)
    assert rules and all(0 < r.alpha < 1 and r.tolerance >= 0 for r in rules)


def test_store_query_sides(tmp_path, capsys):
    store_path = tmp_path / "medbench.sqlite"
    store = Store(store_path)
    old = make_run(tmp_path, "oracle", quality=0.85, commit="1111aaaa", finished="2025-01-01T00:00:00Z")
    new = make_run(tmp_path, "oracle", quality=0.85, seed=3, commit="2222bbbb", finished="2025-02-01T00:00:00Z")
    rnd = make_run(tmp_path, "random", quality=0.2, commit="2222bbbb", finished="2025-02-01T00:00:00Z")
    for d in (old, new, rnd):
        store.add_run(load_record(d), d)
    assert parse_query("model=oracle, task=joint_pairs,seed=3") == {"model": "oracle", "task": "joint_pairs", "seed": 3}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_query("colour=blue")
    assert resolve_side("store:model=oracle,task=joint_pairs", store_path).record["run_id"] == load_record(new)["run_id"]
    assert resolve_side("store:model=oracle,commit=1111", store_path).run_dir == old.resolve()
    with pytest.raises(LookupError, match="no run"):
        resolve_side("store:model=medim", store_path)
    gate = gate_file(tmp_path, "- {metric: toy.acc, tolerance: 0.02}\n- {metric: nlg.coco.cider, optional: true}\n")
    code = main_compare(args("store:model=oracle,task=joint_pairs,commit=1111", "store:model=random,task=joint_pairs",
                             "--store", str(store_path), "--gate", str(gate)), loader=toy_loader)
    out = capsys.readouterr().out
    assert code == 1 and "toy.acc: significantly worse" in out and "(1 of 2 gated metrics)" in out
    assert main_compare(args("store:model=oracle,task=joint_pairs,commit=1111", "store:model=oracle,task=joint_pairs",
                             "--store", str(store_path), "--gate", str(gate)), loader=toy_loader) == 0
    assert main_compare(args("store:model=nobody", str(new), "--store", str(store_path)), loader=toy_loader) == 2


def test_unpaired_fallback_when_runs_share_no_samples(tmp_path):
    base = make_run(tmp_path, "oracle", quality=0.85, n=40)
    cand = make_run(tmp_path, "random", quality=0.2, n=40, first_id=500)
    rows = {r.name: r for r in compare_runs(resolve_side(str(base)), resolve_side(str(cand)), n_perm=50, n_boot=50, loader=toy_loader)}
    acc = rows["toy.acc"]
    assert acc.method == "unpaired" and "share no sample ids" in acc.note
    assert acc.ci_high < 0 and acc.p_value < 0.05 and np.isclose(acc.diff, acc.b - acc.a)


@pytest.mark.slow
def test_end_to_end_runs_report_store_leaderboard_and_gate(tmp_path):
    """Real runs: oracle and random at once into one store, oracle again with another seed."""
    import subprocess
    import sys

    store = tmp_path / "medbench.sqlite"

    def run(model: str, seed: int = 0) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "medbench", "run", "--task", "joint_pairs", "--model", model, "--n", "20",
                                 "--seed", str(seed), "--bootstrap", "100", "--out", str(tmp_path / "runs"), "--store", str(store)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = [run("oracle"), run("random")]  # two processes finishing into one store at about the same time
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    again = run("oracle", seed=1)
    assert again.wait(timeout=900) == 0, again.stdout.read()
    dirs = {load_record(d)["model"] + str(load_record(d)["seed"]): d for d in (tmp_path / "runs").iterdir() if (d / "run.json").exists()}
    assert set(dirs) == {"oracle0", "random0", "oracle1"} and all((d / "report.html").exists() for d in dirs.values())
    assert {r["model"] for r in Store(store).runs(task="joint_pairs")} == {"oracle", "random"}

    cli = [sys.executable, "-m", "medbench"]
    worse = subprocess.run([*cli, "compare", str(dirs["oracle0"]), "store:model=random,task=joint_pairs", "--store", str(store),
                            "--gate", str(EXAMPLE_GATE), "--junit", str(tmp_path / "junit.xml"), "--n-perm", "200", "--n-boot", "200"],
                           capture_output=True, text=True, timeout=600)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "Gate FAILED" in worse.stdout and "nlg.coco.bleu4: significantly worse" in worse.stdout
    assert ET.parse(tmp_path / "junit.xml").getroot().find("testsuite").get("failures") != "0"
    same = subprocess.run([*cli, "compare", str(dirs["oracle0"]), str(dirs["oracle1"]), "--gate", str(EXAMPLE_GATE),
                           "--n-perm", "200", "--n-boot", "200"], capture_output=True, text=True, timeout=600)
    assert same.returncode == 0, same.stdout + same.stderr
    board = subprocess.run([*cli, "leaderboard", "--task", "joint_pairs", "--store", str(store), "--out", str(tmp_path / "lb"),
                            "--n-perm", "200"], capture_output=True, text=True, timeout=600)
    assert board.returncode == 0, board.stderr
    rows = list(csv.DictReader((tmp_path / "lb" / "leaderboard.csv").open()))
    assert {r["model"] for r in rows} == {"oracle", "random"}


def test_side_by_side_html_page(tmp_path, capsys):
    import json
    import re

    from report_runs import make_v2_run, scores

    from medbench.exports import md_cell

    base = make_v2_run(tmp_path, "oracle", quality=0.85, n=20, run_id="base-run")
    cand = make_v2_run(tmp_path, "retrieval <b>|x", quality=0.6, n=20, first_id=5, run_id="cand-run")  # 15 shared ids
    gate = gate_file(tmp_path, "- {metric: toy.acc, tolerance: 0.0, alpha: 0.05}\n")
    main_compare(args(str(base), str(cand), "--gate", str(gate)), loader=toy_loader)
    out = capsys.readouterr().out
    page = cand / "compare-vs-base-run.html"
    assert f"html: {page}" in out and md_cell("retrieval <b>|x") in out and "<b>" not in out
    html = page.read_text()
    assert "<script" not in html and "default-src 'none'" in html and "&lt;b&gt;|x" in html
    assert "toy.acc" in html and "Shared samples side by side" in html and html.count('class="sample pair"') == 8
    # samples shown: shared ids, largest per-sample difference of the primary family's column first
    a, b = scores(base, "toy.correct"), scores(cand, "toy.correct")
    shown = re.findall(r'<section class="sample pair">\s*<div class="head"><span><code>([^<]+)</code>', html)
    diffs = [abs(b[i] - a[i]) for i in shown]
    assert set(shown) <= set(a) & set(b) and diffs == sorted(diffs, reverse=True)
    assert max(abs(b[i] - a[i]) for i in set(a) & set(b)) == diffs[0]
    elsewhere = tmp_path / "pages" / "c.html"
    main_compare(args(str(base), str(cand), "--html", str(elsewhere)), loader=toy_loader)
    assert elsewhere.exists() and "Baseline" in elsewhere.read_text()
