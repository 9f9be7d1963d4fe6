"""RaTEScore: medbench's family vs radeval's RaTEScore on tiny DeBERTa-v2 NER + MPNet models in the real layout.

The project's environment (scripts/setup.sh) installs a spaCy that imports beside numpy 2, so an import
failure of radeval's RaTEScore fails here instead of skipping. No socket opens: the import (medspacy's
pipeline), the tiny models and both scorers run with connections refused."""
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_report_models import WEIGHT_KINDS, build_ratescore, metric_context, parity_weights, report_pairs, run_family  # noqa: E402

from medbench.metrics.base import MetricUnavailable  # noqa: E402
from medbench.metrics.report_models import ratescore  # noqa: E402


@pytest.fixture(scope="module")
def offline():
    """Connections refused for the module (the function-scoped ``no_network`` comes after module fixtures)."""
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def package(offline):
    try:
        return ratescore.import_ratescore()
    except MetricUnavailable as e:
        pytest.fail(f"{e} (scripts/setup.sh installs the spaCy that imports here)")


@pytest.fixture(scope="module", params=WEIGHT_KINDS)
def parity(request, tmp_path_factory, package) -> Path:
    return parity_weights(request, tmp_path_factory, build_ratescore, ("ratescore",))


def test_medspacy_splits_with_the_installed_spacy(package):
    """The splitter RaTEScore uses (medspacy's PyRuSH) on the installed spaCy: the sentences of a report."""
    with pytest.raises(OSError, match="network access in a test"):
        socket.create_connection(("127.0.0.1", 9))
    utils = ratescore.radeval_import("radeval.metrics.RaTEScore.utils")
    assert utils.nlp.pipe_names == ["medspacy_pyrush"]  # radeval asks for "medspacy_conte" (sic): PyRuSH only
    sents, starts = utils.sentence_split(["No acute process. Heart size is normal.\nLungs clear.", "Dr. Smith: 3.5 cm nodule."])
    # what medspacy 1.3.1 gives on spaCy 3.7.5 too (numpy 1 side environment), "Dr." cut included
    assert sents == ["No acute process.", "Heart size is normal.", "Lungs clear.", "Dr.", "Smith: 3.5 cm nodule."]
    assert starts == [1, 0, 0, 1, 0]


def test_parity_with_radeval(parity, package, tmp_path):
    refs, hyps = report_pairs(12, seed=4)
    hyps[5] = "Heart size is normal."  # the package misaligns empty reports: compare on non-empty ones here
    metric = ratescore.ratescore_factory(metric_context(parity, tmp_path))
    stats = run_family(metric, refs, hyps, batch=5)
    folder = parity / "ratescore"
    ref = package.RaTEScore(bert_model=str(folder / "RaTE-NER-Deberta"), eval_model=str(folder / "BioLORD-2023-C"))
    want, _, _ = ref.compute_score(candidate_list=hyps, reference_list=refs)
    assert np.std(want) > 1e-3, "scores do not vary: the parity would be vacuous"
    np.testing.assert_allclose(stats["ratescore"], want, atol=1e-6)
    assert metric.compute(stats)["nlg.ratescore"] == pytest.approx(float(np.mean(want)), abs=1e-6)


def test_empty_report_scores_half_and_shifts_nothing(parity, package, tmp_path):
    refs, hyps = report_pairs(8, seed=5)  # hypothesis 5 is empty
    hyps[2] = "  "
    metric = ratescore.ratescore_factory(metric_context(parity, tmp_path))
    stats = run_family(metric, refs, hyps)
    folder = parity / "ratescore"
    ref = package.RaTEScore(bert_model=str(folder / "RaTE-NER-Deberta"), eval_model=str(folder / "BioLORD-2023-C"))
    rest = [i for i in range(8) if i not in (2, 5)]
    want, _, _ = ref.compute_score(candidate_list=[hyps[i] for i in rest], reference_list=[refs[i] for i in rest])
    assert stats["ratescore"][2] == stats["ratescore"][5] == 0.5
    assert len(ref.compute_score(candidate_list=hyps, reference_list=refs)[0]) < len(hyps)  # the package's own defect
    np.testing.assert_allclose(stats["ratescore"][rest], want, atol=1e-6)
