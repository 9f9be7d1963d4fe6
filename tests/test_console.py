"""medbench.console: headline first (primary metric marked, key metrics, skipped families with
reasons), then every metric grouped by family, aligned, with scientific notation where needed."""
from medbench.console import expand, fmt, primary_missing, summary_json, summary_lines


def metric(value, family, lo=None, hi=None, up=True):
    return {"value": value, "ci_low": lo, "ci_high": hi, "higher_is_better": up, "n": 8, "family": family}


RECORD = {
    "task": "joint_pairs", "model": "oracle", "dataset": "cxr-phantom", "n": 8, "seed": 0, "protocol": "coco",
    "primary_metric": "pair.consistency.f1",
    "metrics": {
        "nlg.coco.bleu4": metric(0.25, "nlg.coco", 0.2, 0.3),
        "nlg.coco.cider": metric(1.5, "nlg.coco"),
        "image.fid@phantom-encoder": metric(1234567.0, "image.fidelity", 1e6, 2e6, up=False),
        "image.kid@phantom-encoder": metric(2.5e-5, "image.fidelity", up=False),
        "pair.consistency.f1": metric(0.9, "pair.consistency", 0.85, 0.95),
    },
    "skipped": [{"what": "metric:nlg.coco.spice", "reason": "SPICE needs Stanford CoreNLP"},
                {"what": "sample:x1", "reason": "x1.png: truncated"}],
}


def test_formatting_switches_to_scientific_for_extreme_magnitudes():
    assert fmt(0.25) == "0.2500" and fmt(10.0) == "10.0000" and fmt(0.0) == "0.0000"
    assert fmt(1234567.0) == "1.235e+06" and fmt(2.5e-5) == "2.500e-05" and fmt(-3e7) == "-3.000e+07"
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a"


def test_headline_then_groups():
    lines = summary_lines(RECORD, key_metrics=("nlg.coco.bleu4", "image.fid@*"))
    assert lines[0].startswith("joint_pairs · model oracle · dataset cxr-phantom · n=8 · seed 0")
    assert lines[1].startswith("▶ primary") and "pair.consistency.f1" in lines[1] and "[0.8500, 0.9500]" in lines[1]
    assert "key" in lines[2] and "nlg.coco.bleu4" in lines[2]
    assert "image.fid@phantom-encoder" in lines[3] and "1.235e+06" in lines[3]
    assert "skipped" in lines[4] and "nlg.coco.spice: SPICE needs Stanford CoreNLP" in lines[4]
    assert "1 bad sample(s)" in lines[5]
    groups = [line for line in lines if line and not line.startswith(" ") and "·" not in line and not line.startswith("▶")]
    assert groups == ["nlg.coco", "image.fidelity", "pair.consistency"]
    rows = [line for line in lines if line.startswith(" " * 11)]
    assert len(rows) == len(RECORD["metrics"])
    assert sum("◀ primary" in line for line in lines) == 1
    value_cols = {line.rstrip().rindex("↑" if "↑" in line else "↓") for line in rows}
    assert len(value_cols) == 1  # aligned


def test_missing_primary_is_shown_and_explained():
    record = dict(RECORD, primary_metric="nlg.coco.spice")
    lines = summary_lines(record)
    assert "MISSING" in lines[1]
    assert primary_missing(record) == ("the task's primary metric nlg.coco.spice is missing: its family was skipped: "
                                       "SPICE needs Stanford CoreNLP")
    assert primary_missing(RECORD) is None


def test_key_metric_patterns_and_json():
    names = list(RECORD["metrics"])
    assert expand(("image.*@*", "nlg.coco.bleu4", "image.fid@*"), names) == [
        "image.fid@phantom-encoder", "image.kid@phantom-encoder", "nlg.coco.bleu4"]
    out = summary_json(RECORD, "/runs/x", key_metrics=("nlg.coco.*",))
    assert out["primary_metric"]["name"] == "pair.consistency.f1" and out["primary_metric"]["value"] == 0.9
    assert out["key_metrics"] == ["nlg.coco.bleu4", "nlg.coco.cider"] and out["run_dir"] == "/runs/x"


def test_a_plugin_that_failed_to_load_is_named_in_the_headline():
    failures = [("qa-broken", "qa-broken 0.1", "Traceback ...\nImportError: No module named 'nothing'")]
    lines = summary_lines(RECORD, plugin_failures=failures)
    (line,) = [x for x in lines if "qa-broken" in x]
    assert "failed to load and was left out: ImportError: No module named 'nothing'" in line
    assert lines.index(line) < lines.index("nlg.coco")  # in the headline, before the table
