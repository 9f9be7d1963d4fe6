"""RadCliQ-v1 composite vs radeval's CompositeMetric.predict on the same per-report component scores."""
import numpy as np
import pytest

from medbench.metrics.report_models import radcliq
from medbench.metrics.report_models._radeval import radeval_import


@pytest.fixture
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


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_report_models import build_bertscore_distilroberta, build_chexbert, build_radgraph

    root = tmp_path_factory.mktemp("weights")
    build_chexbert(root)
    build_bertscore_distilroberta(root)
    build_radgraph(root, model_type="radgraph")
    return root


@pytest.mark.slow
def test_family_matches_radeval_end_to_end(weights, tmp_path):
    """medbench's nlg.radcliq_v1 vs radeval's CompositeMetric.predict, both on the same tiny weights:
    radeval's constructors are pointed at the local files (its hub ids cannot be fetched here)."""
    import json
    import sys
    import tarfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_report_models import metric_context, report_pairs, run_family

    from medbench.metrics.report_models.chexbert import load_labeler

    refs, hyps = report_pairs(12, seed=2)
    ctx = metric_context(weights, tmp_path)
    ctx.reference = [p.sample for p in __import__("tiny_report_models").scored_pairs(refs, hyps)]
    metric = radcliq.radcliq_factory(ctx)
    stats = run_family(metric, refs, hyps, batch=len(refs))  # one batch, as radeval scores them
    ours = metric.compute(stats)

    mod = radeval_import("radeval.metrics.RadCliQv1.radcliq")
    core = radeval_import("radeval.metrics.radgraph._vendor.core")
    vendor = radeval_import("radeval.metrics.bertscore._vendor")
    cache = tmp_path / "pkg"
    with tarfile.open(weights / "radgraph" / "radgraph.tar.gz") as tar:
        tar.extractall(cache / "radgraph", filter="data")
    cfg = json.loads((cache / "radgraph" / "config.json").read_text())
    for bert in (cfg["dataset_reader"]["token_indexers"]["bert"], cfg["model"]["embedder"]["token_embedders"]["bert"]):
        bert["model_name"] = str(weights / "radgraph" / "embedder")
    (cache / "radgraph" / "config.json").write_text(json.dumps(cfg))
    roberta = weights / "bertscore-distilroberta-base"
    tsv = Path(vendor.__file__).parent / "rescale_baseline" / "en" / "distilroberta-base.tsv"
    real_scorer = vendor.BERTScorer
    mp = pytest.MonkeyPatch()
    mp.setattr(mod, "RadGraph", lambda model_type: core.RadGraph(model_type=model_type, model_cache_dir=str(cache), cuda=-1))
    mp.setattr(mod, "F1CheXbert", lambda device: load_labeler(weights / "chexbert", "cpu"))
    mp.setattr(vendor, "BERTScorer", lambda model_type, **kw: real_scorer(model_type=str(roberta), baseline_path=str(tsv), **kw))
    try:
        composite = mod.CompositeMetric()
        components = composite._compute_sub_metrics(refs, hyps)
        inv_mean, per_report = composite.predict(refs, hyps)
    finally:
        mp.undo()
    assert np.std(per_report) > 1e-3
    for c in radcliq.COLUMNS:
        np.testing.assert_allclose(stats[c], components[c], atol=1e-9, err_msg=c)
    np.testing.assert_allclose(stats["radcliq_v1"], per_report, atol=1e-9)
    assert ours["nlg.radcliq_v1_inv"] == pytest.approx(inv_mean, rel=1e-6)
    assert metric.higher_is_better == {"nlg.radcliq_v1": False, "nlg.radcliq_v1_inv": True}
