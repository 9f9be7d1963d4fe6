"""RadCliQ-v1 composite vs radeval's CompositeMetric.predict on the same per-report component scores."""
import numpy as np
import pytest

from medbench.metrics.report_models import radcliq
from medbench.metrics.report_models._radeval import radeval_import


@pytest.fixture(scope="module")
def radeval_composite():
    """radeval's CompositeMetric with its scorers' constructors skipped (they need hub weights) and
    its component computation replaced by given scores: only the fixed linear model is exercised."""
    mod = radeval_import("radeval.metrics.RadCliQv1.radcliq")
    mp = pytest.MonkeyPatch()
    for name in ("RadGraph", "F1CheXbert", "Bleu"):
        mp.setattr(mod, name, lambda *a, **k: None)
    try:
        yield mod.CompositeMetric()
    finally:
        mp.undo()


def test_composite_matches_radeval(radeval_composite):
    rng = np.random.default_rng(0)
    comps = {c: rng.random(40) for c in radcliq.COLUMNS}
    radeval_composite._compute_sub_metrics = lambda refs, hyps: comps
    inv_mean, per_report = radeval_composite.predict(None, None)
    ours = radcliq.composite(comps)
    np.testing.assert_allclose(ours, per_report, atol=1e-12)
    s = radcliq.summary(ours)
    assert s["nlg.radcliq_v1"] == pytest.approx(per_report.mean(), abs=1e-12)
    assert s["nlg.radcliq_v1_inv"] == pytest.approx(inv_mean, abs=1e-12)


def test_lower_is_better():
    good = {c: np.full(3, 0.9) for c in radcliq.COLUMNS}
    bad = {c: np.full(3, 0.1) for c in radcliq.COLUMNS}
    assert radcliq.composite(good).mean() < radcliq.composite(bad).mean()
