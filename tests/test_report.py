"""The run report: a pure function of the run folder, complete, escaped, robust to missing pieces."""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
from html.parser import HTMLParser

import pytest
from report_runs import disagreeing_ids, make_v2_run, scores, sorted_ids
from runfolders import XSS, make_run

from medbench.errors import UserError
from medbench.report import add_report_args, fmt_ci, main_report, report_context, write_report


class Collect(HTMLParser):
    """Tags, image sources, links, text; and per <section class="sample"> its text and disagreeing rows."""

    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.text, self.links = [], [], [], []
        self.sections, self._depth = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if attrs.get(key) and tag != "img":
                self.links.append(attrs[key])
        if tag == "section" and "sample" in (attrs.get("class") or "").split():
            self.sections.append({"text": [], "disagree": 0})
            self._depth = 1
        elif self._depth and tag == "section":
            self._depth += 1
        if self._depth and tag == "tr" and "disagree" in (attrs.get("class") or ""):
            self.sections[-1]["disagree"] += 1

    def handle_endtag(self, tag):
        if self._depth and tag == "section":
            self._depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._depth:
            self.sections[-1]["text"].append(data)


def parse(html: str) -> Collect:
    c = Collect()
    c.feed(html)
    return c


def test_report_is_complete_and_self_contained(tmp_path):
    run = make_v2_run(tmp_path, "oracle", quality=0.9, report_text=XSS, name="Oracle (ceiling)")
    html = write_report(run).read_text(encoding="utf-8")
    page = parse(html)
    text = " ".join(page.text)
    record = json.loads((run / "run.json").read_text())
    for word in ("joint_pairs", "Oracle (ceiling)", "cxr-phantom", "coco", "a1b2c3d4e5f6", "Provenance", "Sample gallery",
                 "Memorization gallery", "Per-label table", "Worst cases", "SPICE unavailable", "rank-deficient",
                 "resize 48x48 -> 64x64", "prompt->pair"):
        assert word in text, word
    acc = record["metrics"]["toy.acc"]
    assert fmt_ci(acc["value"], acc["ci_low"], acc["ci_high"]) in text
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", text)
    assert "↑" in text and "↓" in text
    # one file: images are data URIs; the only links are the run folder's own files, relative
    assert page.srcs and all(s.startswith("data:image/png;base64,") for s in page.srcs)
    assert sorted(page.links) == ["run.json", "samples.csv", "samples.jsonl"]
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert any("FID" in (a.get("alt") or "") for t, a in page.tags if t == "img")
    # generated text shown as text, escaped everywhere (gallery and worst cases)
    assert XSS in text and "&lt;script&gt;" in html and "<script>" not in html
    assert not any(t == "img" and "onerror" in a for t, a in page.tags)


def test_gallery_shows_reference_and_generated_labels_and_marks_disagreements(tmp_path):
    run = make_v2_run(tmp_path, "oracle", n=12)
    page = parse(write_report(run, gallery_size=12, n_worst=0).read_text())
    gallery = page.sections[:12]
    expected = set(disagreeing_ids(run))
    assert expected, "the fabricated run plants disagreements"
    marked = {re.search(r"cxr-\d{4}", " ".join(s["text"])).group(0) for s in gallery if s["disagree"]}
    assert marked == expected
    for s in gallery:
        t = " ".join(s["text"])
        assert "reference" in t and "pair.consistency.image" in t and "pair.consistency.report" in t
    # the caption's promise is true: disagreeing rows carry the red class from base.css
    css = (run / "report.html").read_text()
    assert "tr.disagree td { background: var(--bad-bg); color: var(--bad)" in css


def test_request_kind_comes_from_the_record_not_the_files(tmp_path):
    run = make_v2_run(tmp_path, "m", request="image->report", n=6)  # outputs/ still holds .png files
    ctx = report_context(run, gallery_size=6)
    assert ctx["kind"] == "image->report"
    card = ctx["gallery"]["cards"][0]
    assert card["generated_image"] is None and card["generated_text"] and card["condition_image"]


def test_memorization_gallery_sorted_by_distance_with_training_images(tmp_path):
    run = make_v2_run(tmp_path, "oracle", n=12)
    mem = report_context(run)["memorization"]
    distances = [r["distance"] for r in mem["rows"]]
    neighbours = json.loads((run / "extras" / "memorization.json").read_text())["neighbours"]
    assert distances == sorted(e["distances"][0] for e in neighbours)
    assert all(r["generated"] for r in mem["rows"])
    with_paths = {e["id"] for e in neighbours if e.get("train_image_paths")}
    for r in mem["rows"]:
        assert [n["distance"] for n in r["neighbours"]] == next(e["distances"] for e in neighbours if e["id"] == r["id"])
        assert all(n["image"] for n in r["neighbours"]) == (r["id"] in with_paths)
    text = " ".join(" ".join(parse((write_report(run)).read_text()).text).split())
    assert "training image not recorded" in text and f"nearest {distances[0]:.3g}" in text


def test_every_per_label_table_is_filled(tmp_path):
    run = make_v2_run(tmp_path, "oracle", n=12)
    sections = report_context(run)["per_label"]
    titles = [s["family"] for s in sections]
    assert "image.label_fidelity · generated" in titles and "image.label_fidelity · real" in titles and "clinical" in titles
    for s in sections:
        assert s["rows"] and s["columns"] and all(len(r) == len(s["columns"]) + 1 for r in s["rows"])
    lf = next(s for s in sections if s["family"] == "image.label_fidelity · generated")
    assert lf["notes"] == ["n_generated = 12"] and lf["columns"][:2] == ["auroc", "f1"]


@pytest.mark.parametrize("key", [None, "toy.score", "memorization.gen_nn"])
def test_worst_cases_follow_the_per_sample_scores(tmp_path, key):
    run = make_v2_run(tmp_path, "oracle", n=20)
    record = json.loads((run / "run.json").read_text())
    if key == "memorization.gen_nn":  # lower is better: the worst are the largest
        record["per_sample"][key]["higher_is_better"] = False
        (run / "run.json").write_text(json.dumps(record))
    worst = report_context(run, worst_key=key, n_worst=5)["worst"]
    used = key or "toy.correct"  # primary toy.acc has no column: the first of its family with a direction
    assert worst["key"] == used
    higher = record["per_sample"][used]["higher_is_better"]
    assert [c["id"] for c in worst["cards"]] == sorted_ids(scores(run, used), higher)[:5]
    assert [c["value"] for c in worst["cards"]] == [scores(run, used)[c["id"]] for c in worst["cards"]]


def test_unknown_worst_key_is_named(tmp_path):
    run = make_v2_run(tmp_path, "oracle", n=8)
    ctx = report_context(run, worst_key="nlg.coco.bleu9")
    assert ctx["worst"] is None and any("nlg.coco.bleu9" in n and "toy.score" in n for n in ctx["notes"])


def test_samples_csv_export_neutralises_formulas(tmp_path):
    run = make_v2_run(tmp_path, "oracle", n=6, report_text='=HYPERLINK("http://x.example","click")')
    write_report(run)
    rows = list(csv.DictReader((run / "samples.csv").open(encoding="utf-8")))
    assert [r["id"] for r in rows] == [json.loads(l)["id"] for l in (run / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["outputs.report"] == "'" + '=HYPERLINK("http://x.example","click")'
    assert float(rows[1]["scores.toy.score"]) == scores(run, "toy.score")[rows[1]["id"]]
    assert rows[0]["scores.pair.consistency.image_labels.Pleural Effusion"] == "1"


def test_report_never_reloads_the_dataset(tmp_path):
    run = make_v2_run(tmp_path, "oracle", n=6)
    record = json.loads((run / "run.json").read_text())
    record["dataset"] = f"folder:{tmp_path / 'gone'}"  # a dataset that cannot load here
    (run / "run.json").write_text(json.dumps(record))
    ctx = report_context(run)
    assert ctx["memorization"]["rows"] and not any("dataset" in n or "training images" in n for n in ctx["notes"])


def test_report_degrades_gracefully(tmp_path):
    run = make_run(tmp_path, "random", quality=0.2)  # a schema-1 folder: no samples.jsonl, no request kind
    shutil.rmtree(run / "extras")
    (run / "references.jsonl").unlink()
    text = " ".join(parse(write_report(run).read_text()).text)
    assert "references.jsonl are missing" in text and "Metrics" in text
    assert "Memorization gallery" not in text and "Per-label table" not in text
    assert "does not record the harness's conversions" in text

    run2 = make_v2_run(tmp_path, "random2", quality=0.2)
    (run2 / "extras" / "clinical.json").write_text("{not json")
    (run2 / "outputs" / "cxr-0000.png").write_bytes(b"not a png")
    text2 = " ".join(parse(write_report(run2).read_text()).text)
    assert "extras/clinical.json: unreadable" in text2 and "no image" in text2


def test_cli_entry(tmp_path, capsys):
    run = make_v2_run(tmp_path, "oracle")
    parser = argparse.ArgumentParser()
    add_report_args(parser)
    assert main_report(parser.parse_args([str(run), "--gallery", "3", "--n-worst", "2"])) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    assert (run / "report.html").read_text().count('class="sample') == 5
    with pytest.raises(UserError, match="--gallery"):
        main_report(parser.parse_args([str(run), "--gallery", "-1"]))


def test_label_sets_follow_the_families_per_sample_keys():
    from medbench.report_samples import label_sets, label_table

    lab = {"Edema": 1, "Pleural Effusion": 0}
    other = {"Edema": 0, "Pleural Effusion": 1}
    entry = {"reference": {"labels": {"Edema": 1}}, "scores": {
        "clinical.reference_labels": lab, "clinical.generated_labels": other, "clinical.disagreements": ["Edema"],
        "image.label_fidelity.predicted": other, "image.label_fidelity.reference": lab,
        "image.label_fidelity.head_scores": {"Edema": 1.0, "Pleural Effusion": 0.0},  # probabilities, not labels
        "pair.consistency.report_labels": lab, "pair.consistency.image_labels": other,
        "pair.consistency.per_label": {"Edema": 0, "Pleural Effusion": 0}}}  # agreement flags, not labels
    sets = label_sets(entry)
    assert list(sets) == ["reference", "clinical.reference", "clinical.generated", "image.label_fidelity.predicted",
                          "image.label_fidelity.reference", "pair.consistency.report", "pair.consistency.image"]
    joint = label_table(sets, "prompt->pair")
    assert joint["compare"] == ("pair.consistency.image", "pair.consistency.report")
    assert joint["titles"][:3] == ["reference", "pair.consistency.image", "pair.consistency.report"]
    assert [r["label"] for r in joint["rows"] if r["disagree"]] == ["Edema", "Pleural Effusion"]
    assert label_table(sets, "image->report")["compare"] == ("clinical.generated", "clinical.reference")
    t2i = {k: v for k, v in sets.items() if not k.startswith(("clinical", "pair"))}
    assert label_table(t2i, "report->image")["compare"] == ("image.label_fidelity.predicted", "image.label_fidelity.reference")
    assert label_table({"reference": lab}, "report->image")["compare"] is None


def test_default_worst_key_prefers_the_primary_metrics_per_sample_form():
    from medbench.report_samples import default_worst_key

    record = {"primary_metric": "nlg.coco.bleu4", "metrics": {"nlg.coco.bleu4": {"family": "nlg.coco"}},
              "per_sample": {k: {"higher_is_better": True} for k in ("nlg.coco.bleu1_sentence", "nlg.coco.bleu4_sentence")}}
    assert default_worst_key(record, ["memorization.nn_distance", "nlg.coco.bleu1_sentence", "nlg.coco.bleu4_sentence"]) \
        == "nlg.coco.bleu4_sentence"
    record["primary_metric"] = "nlg.coco.cider"
    assert default_worst_key(record, ["memorization.nn_distance", "nlg.coco.bleu1_sentence"]) == "nlg.coco.bleu1_sentence"
