"""Families that cannot run here say why: GREEN on the CPU, RaTEScore where its spaCy stack does not import."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_report_models import metric_context  # noqa: E402

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
        green.green_factory(metric_context(root, tmp_path))


def test_green_without_weights_names_the_file(tmp_path):
    with pytest.raises(MetricUnavailable, match=r"green/GREEN-radllama2-7b/config\.json: missing weight file for green"):
        green.green_factory(metric_context(tmp_path / "empty", tmp_path))


def test_ratescore_import_failure_is_a_reason(tmp_path):
    try:
        ratescore.import_ratescore()
    except MetricUnavailable as e:
        root = placeholder_weights(tmp_path / "w", weights_specs.RATESCORE)
        with pytest.raises(MetricUnavailable, match="RaTEScore cannot be imported here"):
            ratescore.ratescore_factory(metric_context(root, tmp_path))
        assert "cannot be imported here" in str(e)
    else:
        pytest.skip("radeval's RaTEScore imports here: the tiny-model parity test is still to be written")
