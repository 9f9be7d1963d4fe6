"""Report metrics in a run: skipped with the missing file named, scored with CIs from pinned tiny
weights, and never a network call (sockets blocked in a fresh interpreter, radeval's import included)."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAMILIES = ("clinical.chexbert", "nlg.bertscore", "nlg.ratescore", "nlg.green")


def test_scoring_never_touches_the_network(text_weights, tmp_path):
    script = textwrap.dedent(f"""
        import socket
        def refuse(*a, **k):
            raise AssertionError(f"network access attempted: {{a!r}}")
        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = socket.getaddrinfo = refuse
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from tiny_report_models import metric_context, report_pairs, run_family
        from medbench.metrics.report_models import bertscore, chexbert
        from pathlib import Path
        for factory in (chexbert.chexbert_factory, bertscore.bertscore_factory):
            m = factory(metric_context(Path({str(text_weights)!r}), Path({str(tmp_path)!r})))
            print(sorted(m.compute(run_family(m, *report_pairs(6))).items())[0])
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "network access attempted" not in res.stderr
    assert res.stdout.count("(") == 2


@pytest.mark.slow
def test_i2t_run_skips_without_weights_and_scores_with_them(text_weights, tiny_folder, tmp_path, monkeypatch):
    from medbench.cli import main

    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(text_weights))  # chexbert + bertscore present; ratescore, green absent
    out = tmp_path / "runs"
    assert main(["run", "--task", "i2t", "--model", "retrieval", "--dataset", f"folder:{tiny_folder}", "--out", str(out),
                 "--store", "", "--no-report", "--bootstrap", "50"]) == 0
    record = json.loads(next(out.glob("*/run.json")).read_text())
    skipped = {s["what"]: s["reason"] for s in record["skipped"]}
    assert "ratescore/RaTE-NER-Deberta/config.json: missing weight file for ratescore" in skipped["metric:nlg.ratescore"]
    assert "GREEN-radllama2-7b/config.json: missing weight file for green" in skipped["metric:nlg.green"]
    for name in ("clinical.chexbert.f1_micro14", "clinical.chexbert.f1_macro5",
                 "nlg.bertscore.f1_rescaled@distilbert-base-uncased-L5"):
        m = record["metrics"][name]
        assert m["ci_low"] is not None and m["ci_low"] <= m["value"] <= m["ci_high"], (name, m)
    assert any(k.startswith("chexbert/chexbert.pth") and "local pin" in v for k, v in record["provenance"]["weights_sha256"].items())

    # a second system, then compare without any weights at hand: the families recompute their stored stats (paired)
    assert main(["run", "--task", "i2t", "--model", "random", "--dataset", f"folder:{tiny_folder}", "--out", str(out),
                 "--store", "", "--no-report", "--bootstrap", "50"]) == 0
    from medbench.compare import Side, compare_runs

    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path / "no-weights-here"))
    sides = []
    for run_dir in sorted(out.glob("*/run.json")):
        rec = json.loads(run_dir.read_text())
        sides.append(Side(rec["model"], rec, run_dir.parent))
    rows = {r.name: r for r in compare_runs(*sides, n_perm=50, n_boot=50)}
    for name in ("clinical.chexbert.f1_micro14", "nlg.bertscore.f1@distilbert-base-uncased-L5"):
        assert rows[name].method == "paired", (name, rows[name])
