"""The run report: self-contained, complete, escaped, and robust to missing pieces."""
from __future__ import annotations

import argparse
import json
import re
import shutil
from html.parser import HTMLParser

from runfolders import XSS, make_run

from medbench.report import add_report_args, fmt_ci, main_report, write_report


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.text, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if attrs.get(key) and tag != "img":
                self.links.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Collect:
    c = Collect()
    c.feed(html)
    return c


def test_report_is_complete_and_self_contained(tmp_path):
    run = make_run(tmp_path, "oracle", quality=0.9, report_text=XSS)
    path = write_report(run)
    html = path.read_text(encoding="utf-8")
    page = parse(html)
    text = " ".join(page.text)
    record = json.loads((run / "run.json").read_text())
    for word in ("joint_pairs", "oracle", "cxr-phantom", "coco", "a1b2c3d4e5f6", "Provenance", "Sample gallery",
                 "Memorization gallery", "Per-label table", "Skipped and warnings", "SPICE unavailable"):
        assert word in text, word
    acc = record["metrics"]["toy.acc"]
    assert fmt_ci(acc["value"], acc["ci_low"], acc["ci_high"]) in text  # "0.850 [0.700, 0.950]"
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", text)
    assert "image.fidelity" in text and "toy" in text  # grouped by family
    assert "↑" in text and "↓" in text
    # one file: every image is a data URI, nothing is fetched, no scripts at all
    assert page.srcs and all(s.startswith("data:image/png;base64,") for s in page.srcs)
    assert page.links == []
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    n_plots = sum("plot" in (a.get("alt") or "") or "F1" in (a.get("alt") or "") for t, a in page.tags if t == "img")
    assert n_plots >= 1 and any("FID" in (a.get("alt") or "") for t, a in page.tags if t == "img")
    # the generated text is shown as text, escaped, and no tag came out of it
    assert XSS in text
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert not any(t == "img" and "onerror" in a for t, a in page.tags)
    # joint pairs: the image-vs-report disagreement is highlighted
    assert 'class="disagree"' in html


def test_report_degrades_gracefully(tmp_path):
    run = make_run(tmp_path, "random", quality=0.2)
    shutil.rmtree(run / "extras")
    (run / "references.jsonl").unlink()
    (run / "outputs" / "cxr-0000.png").unlink()
    text = " ".join(parse(write_report(run).read_text()).text)
    assert "references.jsonl is missing" in text and "Metrics" in text
    assert "Memorization gallery" not in text and "Per-label table" not in text

    run2 = make_run(tmp_path, "random2", quality=0.2)
    (run2 / "extras" / "clinical.json").write_text("{not json")
    (run2 / "outputs" / "cxr-0000.png").write_bytes(b"not a png")
    text2 = " ".join(parse(write_report(run2).read_text()).text)
    assert "extras/clinical.json: unreadable" in text2 and "no image" in text2


def test_cli_entry(tmp_path, capsys):
    run = make_run(tmp_path, "oracle")
    parser = argparse.ArgumentParser()
    add_report_args(parser)
    assert main_report(parser.parse_args([str(run), "--gallery", "3"])) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    assert (run / "report.html").read_text().count('class="sample"') == 3
