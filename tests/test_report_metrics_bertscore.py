"""BERTScore: medbench's family vs radeval's vendored bert-score on a tiny DistilBERT in the real layout."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_report_models import (  # noqa: E402
    WEIGHT_KINDS, build_bertscore_distilbert, metric_context, parity_weights, report_pairs, run_family,
)

from medbench.metrics.base import MetricUnavailable  # noqa: E402
from medbench.metrics.report_models import bertscore  # noqa: E402
from medbench.metrics.report_models._radeval import radeval_import  # noqa: E402

TAG = "distilbert-base-uncased-L5"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return build_bertscore_distilbert(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module", params=WEIGHT_KINDS)
def parity(request, tmp_path_factory) -> Path:
    return parity_weights(request, tmp_path_factory, build_bertscore_distilbert, ("bertscore-distilbert-base-uncased",))


def test_parity_with_radeval(parity, tmp_path):
    refs, hyps = report_pairs(26)
    folder = parity / "bertscore-distilbert-base-uncased"
    metric = bertscore.bertscore_factory(metric_context(parity, tmp_path))
    stats = run_family(metric, refs, hyps, batch=len(refs))  # one batch, as the package scores them
    ours = metric.compute(stats)
    # radeval's own wrapper (raw F1) and its scorer with the package's rescaling (baseline of distilbert L5)
    wrapper = radeval_import("radeval.metrics.bertscore.bertscore")
    mean_raw, raw = wrapper.BertScore(model_type=str(folder), num_layers=5, rescale_with_baseline=False, batch_size=64)(refs, hyps)
    vendor = radeval_import("radeval.metrics.bertscore._vendor")
    baseline = Path(vendor.__file__).parent / "rescale_baseline" / "en" / "distilbert-base-uncased.tsv"
    rescaled = vendor.BERTScorer(model_type=str(folder), num_layers=5, lang="en", rescale_with_baseline=True,
                                 baseline_path=str(baseline), use_fast_tokenizer=False).score(cands=hyps, refs=refs)
    assert np.std(raw) > 1e-3, "tiny model scores do not vary: the parity would be vacuous"
    np.testing.assert_allclose(stats["f1"], raw, atol=1e-6)
    np.testing.assert_allclose(stats["f1_rescaled"], rescaled[2].numpy(), atol=1e-6)
    assert ours[f"nlg.bertscore.f1@{TAG}"] == pytest.approx(mean_raw, abs=1e-6)
    assert ours[f"nlg.bertscore.f1_rescaled@{TAG}"] == pytest.approx(float(rescaled[2].mean()), abs=1e-6)
    raw_p = vendor.BERTScorer(model_type=str(folder), num_layers=5, use_fast_tokenizer=False).score(cands=hyps, refs=refs)
    np.testing.assert_allclose(stats["precision"], raw_p[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(stats["recall"], raw_p[1].numpy(), atol=1e-6)
    assert set(metric.per_sample(stats)) == set(ours)
    # other batchings pad differently: float32 noise, amplified by 1 / (1 - baseline) when rescaled
    batched = run_family(bertscore.bertscore_factory(metric_context(parity, tmp_path)), refs, hyps, batch=4)
    np.testing.assert_allclose(batched["f1"], stats["f1"], atol=1e-6)
    np.testing.assert_allclose(batched["f1_rescaled"], stats["f1_rescaled"], atol=1e-5)


def test_missing_layer_is_a_half_loaded_model(weights, tmp_path):
    from safetensors.torch import load_file, save_file

    from medbench.weights import pin

    root = tmp_path / "w"
    shutil.copytree(weights, root)
    path = root / "bertscore-distilbert-base-uncased" / "model.safetensors"
    state = load_file(str(path))
    save_file({k: v for k, v in state.items() if ".layer.4." not in k}, str(path), metadata={"format": "pt"})
    pin(bertscore.BERTSCORE_DISTILBERT, root)
    metric = bertscore.bertscore_factory(metric_context(root, tmp_path))
    with pytest.raises(MetricUnavailable, match=r"missing \[.*layer\.4.*half-loaded"):
        run_family(metric, *report_pairs(3))


def test_missing_file_names_it(weights, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(weights, root)
    (root / "bertscore-distilbert-base-uncased" / "model.safetensors").unlink()
    with pytest.raises(MetricUnavailable, match=r"model\.safetensors: missing weight file for bertscore-distilbert"):
        run_family(bertscore.bertscore_factory(metric_context(root, tmp_path)), *report_pairs(2))


@pytest.mark.slow
def test_same_numbers_whatever_the_hash_seed(weights, tmp_path):
    """bert-score orders a call's sentences through a set: with more distinct sentences than its batch
    size, Python's per-process hash seed decided which share a padded batch, and the float32 noise
    differed from one run to the next (seen on phantom reports: 3 digests for 4 seeds)."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import hashlib, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from tiny_report_models import metric_context, run_family
        from medbench.data.resolve import load_dataset
        from medbench.metrics.report_models import bertscore
        ds = load_dataset("cxr-phantom", {{"n_train": "240", "n_val": "120", "n_test": "120"}})
        refs, hyps = [s.report for s in ds.split("test")[:64]], [s.report for s in ds.split("val")[:64]]
        m = bertscore.bertscore_factory(metric_context(Path({str(weights)!r}), Path({str(tmp_path)!r})))
        print(hashlib.sha256(run_family(m, refs, hyps, batch=64)["f1"].tobytes()).hexdigest())
    """)
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        digests.add(res.stdout.split()[-1])
    assert len(digests) == 1
