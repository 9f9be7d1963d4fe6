"""Clinical efficacy metric: parity with scikit-learn's precision_recall_fscore_support."""
from __future__ import annotations


import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from medbench.labelers.chexpert_phrases import COMPETITION5, OBSERVATIONS
from medbench.metrics.base import MetricContext, MetricUnavailable, Scored
from medbench.metrics.clinical import ClinicalEfficacy, binarise, clinical_factory, confusion_rows, medbench_metrics
from medbench.records import Output, Request, Sample

AVERAGES = {"14": OBSERVATIONS, "5": COMPETITION5}


def sklearn_values(ref: np.ndarray, hyp: np.ndarray, cols: list[int]) -> dict[str, tuple[float, float, float]]:
    """scikit-learn on the binarised matrices: micro over `cols`; macro over the cols with any positive."""
    micro = precision_recall_fscore_support(ref, hyp, labels=cols, average="micro", zero_division=0)[:3]
    present = [c for c in cols if ref[:, c].any() or hyp[:, c].any()]
    macro = precision_recall_fscore_support(ref, hyp, labels=present, average="macro", zero_division=0)[:3] if present else (0.0,) * 3
    return {"micro": micro, "macro": macro}


def assert_parity(values: dict[str, float], refs, hyps):
    for mapping in ("pos", "unc_pos"):
        R, H = binarise(refs, OBSERVATIONS, mapping), binarise(hyps, OBSERVATIONS, mapping)
        for suffix, obs in AVERAGES.items():
            sk = sklearn_values(R, H, [OBSERVATIONS.index(o) for o in obs])
            for avg in ("micro", "macro"):
                for q, v in zip(("precision", "recall", "f1"), sk[avg]):
                    assert values[f"clinical.ce_{q}.{avg}{suffix}.{mapping}"] == pytest.approx(float(v), abs=1e-12)


def random_labels(rng, n) -> list[dict[str, int]]:
    """Label dicts with 1 / 0 / -1 / blank; rare labels so some have no positives at all."""
    out = []
    for _ in range(n):
        d = {}
        for j, o in enumerate(OBSERVATIONS):
            u = rng.random()
            if u < 0.02 * (j % 5):
                d[o] = 1
            elif u < 0.03 * (j % 5):
                d[o] = -1
            elif u < 0.5:
                d[o] = 0
        out.append(d)
    return out


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return MetricContext(task=None, domain="cxr", protocol="coco", seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def scored(ref: str, hyp: str | None, i: int) -> Scored:
    s = Sample(id=f"s{i}", patient_id=f"p{i // 2}", domain="cxr", split="test", image_path=None, report=ref)
    return Scored(s, Request("image->report", s.id, i, "cxr"), Output(s.id, report=hyp))


def test_compute_matches_sklearn_on_random_matrices(ctx):
    rng = np.random.default_rng(1)
    m = clinical_factory(ctx)
    refs, hyps = random_labels(rng, 200), random_labels(rng, 200)
    stats = {}
    for mapping in ("pos", "unc_pos"):
        cells = confusion_rows(binarise(refs, OBSERVATIONS, mapping), binarise(hyps, OBSERVATIONS, mapping))
        stats.update({f"{c}.{mapping}": v for c, v in cells.items()})
    values = m.compute(stats)
    assert set(values) == set(m.higher_is_better) and all(m.higher_is_better.values())
    assert_parity(values, refs, hyps)
    for _ in range(5):  # bootstrap resamples equal sklearn on the resampled matrices
        idx = rng.integers(0, 200, 200)
        assert_parity(m.compute({k: v[idx] for k, v in stats.items()}), [refs[i] for i in idx], [hyps[i] for i in idx])


def test_end_to_end_on_reports(ctx):
    cxr = pytest.importorskip("medbench.data.phantom.cxr")
    rng = np.random.default_rng(3)
    refs = [cxr.report(spec, rng) for _ in range(20) for spec in cxr.sample_patient(rng, 2)]
    hyps = [refs[i] for i in rng.permutation(len(refs))]
    hyps[0], hyps[1] = "", None  # empty outputs are labeled (and scored), not skipped
    m = clinical_factory(ctx)
    for start in range(0, len(refs), 7):  # batch-size independent
        m.update([scored(r, h, start + j) for j, (r, h) in enumerate(zip(refs[start:start + 7], hyps[start:start + 7]))])
    st = m.stats()
    assert all(v.shape == (len(refs), 14) for v in st.values())
    lab = m.labeler
    ref_labels, hyp_labels = [lab.label(r) for r in refs], [lab.label(h or "") for h in hyps]
    values = m.compute(st)
    assert_parity(values, ref_labels, hyp_labels)
    idx = np.random.default_rng(0).integers(0, len(refs), len(refs))
    assert_parity(m.compute({k: v[idx] for k, v in st.items()}), [ref_labels[i] for i in idx], [hyp_labels[i] for i in idx])

    oracle = clinical_factory(ctx)
    oracle.update([scored(r, r, i) for i, r in enumerate(refs)])
    assert all(v == 1.0 for k, v in oracle.compute(oracle.stats()).items() if ".micro" in k)
    table = oracle.extras()["per_label"]["pos"]
    assert [row["label"] for row in table] == list(OBSERVATIONS)
    assert all(row["fp"] == 0 and row["fn"] == 0 for row in table)
    assert sum(row["support"] for row in table) == int(binarise(ref_labels, OBSERVATIONS, "pos").sum())


def test_names_spec_and_errors(ctx, tmp_path):
    (spec,) = medbench_metrics()
    assert spec.name == "clinical" and spec.requires == ("report",) and "report->image" not in spec.kinds
    m = clinical_factory(ctx)
    assert "clinical.ce_f1.micro14.pos" in m.higher_is_better and "clinical.ce_f1.macro5.unc_pos" in m.higher_is_better
    assert len(m.higher_is_better) == 3 * 2 * 2 * 2
    # non-cxr domains average over all the labeler's observations
    other = ClinicalEfficacy(m.labeler_spec, {"_all": OBSERVATIONS}, OBSERVATIONS)
    assert "clinical.ce_precision.macro_all.pos" in other.higher_is_better
    bad = MetricContext(task=None, domain="mri", protocol="coco", seed=0, cache_dir=tmp_path)
    with pytest.raises(MetricUnavailable, match="no labeler registered for domain 'mri'.*chexpert-rule"):
        clinical_factory(bad)
    with pytest.raises(ValueError, match="no reference report"):
        m.update([scored(None, "x", 0)])


def test_zero_division_policy(ctx):
    m = clinical_factory(ctx)
    m.update([scored("No pneumothorax.", "No pneumothorax.", 0), scored("Small left effusion.", "Mild cardiomegaly.", 1)])
    v = m.compute(m.stats())
    # labels in play under pos: No Finding (TP), Pleural Effusion (FN), Cardiomegaly (FP); others excluded from macro
    assert v["clinical.ce_f1.macro14.pos"] == pytest.approx(1 / 3)
    assert v["clinical.ce_f1.micro14.pos"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert v["clinical.ce_f1.macro5.pos"] == 0.0 and v["clinical.ce_precision.micro5.pos"] == 0.0
    empty = clinical_factory(ctx)
    empty.update([scored("No pneumothorax.", "No pneumothorax.", 0)])
    assert empty.compute(empty.stats())["clinical.ce_f1.macro5.pos"] == 0.0  # nothing positive anywhere


def test_labeler_plugin_and_lookup():
    from medbench.labelers.plugin import labeler_for, labeler_spec_for, medbench_labelers

    names = {s.name: s.domain for s in medbench_labelers()}
    assert names == {"chexpert-rule": "cxr", "path-attributes": "path"}
    assert labeler_for("cxr").name == "chexpert-rule"
    assert labeler_spec_for("path").name == "path-attributes"
    with pytest.raises(KeyError, match="Known labelers"):
        labeler_for("mri")


def test_path_domain_when_available(tmp_path):
    pytest.importorskip("medbench.labelers.path_attributes")
    ctx = MetricContext(task=None, domain="path", protocol="coco", seed=0, cache_dir=tmp_path)
    m = clinical_factory(ctx)
    assert all(".micro_all." in k or ".macro_all." in k for k in m.higher_is_better)
