"""F1-CheXbert: medbench's family vs radeval's own F1CheXbert on tiny random CheXbert weights in the real layout."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_report_models import WEIGHT_KINDS, build_chexbert, metric_context, parity_weights, report_pairs, run_family  # noqa: E402

from medbench.metrics.base import MetricUnavailable  # noqa: E402
from medbench.metrics.report_models import chexbert  # noqa: E402
from medbench.metrics.report_models._radeval import radeval_import  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return build_chexbert(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module", params=WEIGHT_KINDS)
def parity(request, tmp_path_factory) -> Path:
    return parity_weights(request, tmp_path_factory, build_chexbert, ("chexbert",))


@pytest.fixture(scope="module")
def reference(parity):
    """radeval's F1CheXbert built by its own constructor, its hub lookups pointed at the local files."""
    f1c = radeval_import("radeval.metrics.f1chexbert.f1chexbert")
    folder = parity / "chexbert"
    mp = pytest.MonkeyPatch()
    mp.setattr(f1c, "hf_hub_download", lambda repo_id, filename, cache_dir=None: str(folder / filename))
    for name in ("AutoConfig", "BertTokenizer"):
        cls = getattr(f1c, name)
        mp.setattr(f1c, name, type(name, (), {"from_pretrained": staticmethod(
            lambda hub_id, _cls=cls: _cls.from_pretrained(str(folder / hub_id)))}))
    try:
        yield f1c.F1CheXbert(device="cpu", batch_size=7)
    finally:
        mp.undo()


def radeval_reports(evaluator, hyps, refs):
    """The classification_report calls of radeval's BaseCheXbertEvaluator.forward, on its own labels.

    forward() itself fails before them with scikit-learn 1.9 (count_nonzero on a dense matrix:
    AttributeError 'matrix' object has no attribute 'format'), so the test makes the same calls."""
    from sklearn.metrics import classification_report

    r, h = evaluator.get_labels(refs), evaluator.get_labels(hyps)
    r5, h5 = [np.array(x)[evaluator.top5_idx] for x in r], [np.array(x)[evaluator.top5_idx] for x in h]
    cr = classification_report(r, h, target_names=evaluator.TARGET_NAMES, output_dict=True)
    cr5 = classification_report(r5, h5, target_names=evaluator.TOP5, output_dict=True)
    return cr, cr5


def test_label_names_are_radevals(reference):
    assert tuple(reference.TARGET_NAMES) == chexbert.LABELS
    assert tuple(reference.TOP5) == chexbert.TOP5


def test_parity_with_radeval(parity, reference, tmp_path):
    refs, hyps = report_pairs(30)
    metric = chexbert.chexbert_factory(metric_context(parity, tmp_path))
    stats = run_family(metric, refs, hyps, batch=4)
    ours = metric.compute(stats)
    cr, cr5 = radeval_reports(reference, hyps, refs)
    got_labels = np.concatenate([metric.label(refs), metric.label(hyps)])
    assert got_labels.std(0).max() > 0, "labels do not vary: the parity would be vacuous"
    assert (got_labels == np.asarray(reference.get_labels(refs) + reference.get_labels(hyps))).all()
    for k, table in (("5", cr5), ("14", cr)):
        for avg, key in (("micro", "micro avg"), ("macro", "macro avg"), ("weighted", "weighted avg"), ("example", "samples avg")):
            assert ours[f"clinical.chexbert.f1_{avg}{k}"] == pytest.approx(table[key]["f1-score"], abs=1e-9), (avg, k)


def test_stats_are_sufficient_for_resampling(parity, reference, tmp_path):
    """compute() on resampled rows equals radeval on the resampled reports (what the bootstrap relies on)."""
    refs, hyps = report_pairs(20, seed=3)
    metric = chexbert.chexbert_factory(metric_context(parity, tmp_path))
    stats = run_family(metric, refs, hyps)
    idx = np.random.default_rng(0).integers(0, len(refs), len(refs))
    ours = metric.compute({k: v[idx] for k, v in stats.items()})
    cr, cr5 = radeval_reports(reference, [hyps[i] for i in idx], [refs[i] for i in idx])
    assert ours["clinical.chexbert.f1_micro14"] == pytest.approx(cr["micro avg"]["f1-score"], abs=1e-9)
    assert ours["clinical.chexbert.f1_macro5"] == pytest.approx(cr5["macro avg"]["f1-score"], abs=1e-9)
    assert np.mean(metric.per_sample(stats)["clinical.chexbert.f1_example14"]) == pytest.approx(
        metric.compute(stats)["clinical.chexbert.f1_example14"])


def test_missing_file_names_it(weights, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(weights, root)
    (root / "chexbert" / "bert-base-uncased" / "vocab.txt").unlink()
    with pytest.raises(MetricUnavailable, match=r"bert-base-uncased/vocab\.txt: missing weight file for chexbert"):
        run_family(chexbert.chexbert_factory(metric_context(root, tmp_path)), *report_pairs(2))


def test_changed_file_is_refused(weights, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(weights, root)
    with open(root / "chexbert" / "chexbert.pth", "ab") as f:
        f.write(b"\0")
    with pytest.raises(MetricUnavailable, match=r"chexbert\.pth: sha256 .* differs from the pinned"):
        run_family(chexbert.chexbert_factory(metric_context(root, tmp_path)), *report_pairs(2))


def test_unexpected_key_is_a_half_loaded_model(weights, tmp_path):
    from medbench.weights import pin

    root = tmp_path / "w"
    shutil.copytree(weights, root)
    path = root / "chexbert" / "chexbert.pth"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_state_dict"]["module.extra_head.weight"] = torch.zeros(2, 2)
    del ckpt["model_state_dict"]["module.linear_heads.13.bias"]
    torch.save(ckpt, path)
    pin(chexbert.CHEXBERT, root)
    metric = chexbert.chexbert_factory(metric_context(root, tmp_path))
    with pytest.raises(MetricUnavailable, match="half-loaded"):
        run_family(metric, *report_pairs(3))
