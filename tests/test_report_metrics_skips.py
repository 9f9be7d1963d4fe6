"""Families that cannot run say why: GREEN on the CPU, RaTEScore where its spaCy stack does not import."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_report_models import metric_context, report_pairs, run_family  # noqa: E402

from medbench.metrics.base import MetricUnavailable  # noqa: E402
from medbench.metrics.report_models import green, ratescore, weights_specs  # noqa: E402
from medbench.weights import pin  # noqa: E402


def placeholder_weights(root: Path, spec) -> Path:
    """The spec's files as placeholders, pinned: enough for the factory's checks, never loaded."""
    for wf in spec.files:
        (root / spec.name / wf.path).parent.mkdir(parents=True, exist_ok=True)
        (root / spec.name / wf.path).write_text("{}")
    pin(spec, root)
    return root


def test_green_is_skipped_on_the_cpu(tmp_path):
    root = placeholder_weights(tmp_path / "w", weights_specs.GREEN)
    with pytest.raises(MetricUnavailable, match="needs a CUDA GPU"):
        run_family(green.green_factory(metric_context(root, tmp_path)), *report_pairs(2))


def test_green_without_weights_names_the_file(tmp_path):
    with pytest.raises(MetricUnavailable, match=r"green/GREEN-radllama2-7b/config\.json: missing weight file for green"):
        run_family(green.green_factory(metric_context(tmp_path / "empty", tmp_path)), *report_pairs(2))


def test_families_build_without_weights_for_recomputing(tmp_path):
    """compare/leaderboard rebuild a family only to recompute stored stats: no weights needed then."""
    import numpy as np

    from medbench.metrics.report_models import chexbert

    m = chexbert.chexbert_factory(metric_context(tmp_path / "empty", tmp_path))
    rows = {c: np.eye(14, dtype=np.int64)[:3] for c in ("tp", "fp", "fn", "tn")}
    assert m.compute(rows)["clinical.chexbert.f1_micro14"] == 0.5
    assert m.weights_sha256 == {}


def test_ratescore_import_failure_is_a_reason(tmp_path, monkeypatch):
    """A spaCy/thinc built for another numpy (radeval's own resolution on Python < 3.12) is a skip reason."""
    def numpy1_build(module):
        raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. "
                         "Expected 96 from C header, got 88 from PyObject")

    monkeypatch.setattr(ratescore, "radeval_import", numpy1_build)
    with pytest.raises(MetricUnavailable, match="RaTEScore cannot be imported here .ValueError: numpy.dtype size changed") as e:
        ratescore.import_ratescore()
    assert "spacy==3.8.18" in str(e.value)
    root = placeholder_weights(tmp_path / "w", weights_specs.RATESCORE)
    with pytest.raises(MetricUnavailable, match="RaTEScore cannot be imported here"):
        run_family(ratescore.ratescore_factory(metric_context(root, tmp_path)), *report_pairs(2))
