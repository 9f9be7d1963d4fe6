"""The benchmark scripts run and write their block into a Markdown file (numbers themselves are not asserted)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_sampler_bench_writes_its_block(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("# B\n\n<!-- sampler_bench:begin -->\nold\n<!-- sampler_bench:end -->\n\ntail\n")
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "sampler_bench.py"), "--batch", "2", "--steps", "2", "4",
                    "--repeats", "1", "--device", "cpu", "--write", str(doc)], check=True, capture_output=True, cwd=REPO)
    text = doc.read_text()
    assert "old" not in text and text.endswith("<!-- sampler_bench:end -->\n\ntail\n")
    rows = [line for line in text.splitlines() if line.startswith("| MeDiM") or line.startswith("| AR")]
    assert [r.split("|")[1].strip() for r in rows] == ["MeDiM MaskGIT, 2 steps", "MeDiM MaskGIT, 4 steps",
                                                        "AR (same backbone, causal, KV cache), 160 tokens"]
    assert rows[-1].split("|")[3].strip() == "161"  # AR: prefill + one pass per token


def test_write_block_refuses_a_file_without_markers(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from doc_block import write_block
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    doc = tmp_path / "x.md"
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="sampler_bench:begin"):
        write_block(doc, "sampler_bench", "body")
    assert doc.read_text() == "no markers\n"
