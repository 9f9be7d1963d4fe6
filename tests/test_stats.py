"""Patient bootstrap CIs and the paired permutation test."""
import numpy as np
import pytest

from medbench.stats.bootstrap import bootstrap_ci, patient_groups, resample_indices
from medbench.stats.paired import paired_compare


def mean_metric(stats):
    return {"m": float(stats["x"].mean())}


def test_resample_keeps_patients_whole():
    patients = ["a", "a", "b", "c", "c", "c"]
    groups = {tuple(g) for g in map(tuple, patient_groups(patients))}
    for idx in resample_indices(patients, 50, seed=1):
        # every run of indices belonging to one patient appears complete
        pos = 0
        while pos < len(idx):
            g = next(g for g in groups if g[0] == idx[pos])
            assert tuple(idx[pos:pos + len(g)]) == g
            pos += len(g)


def test_bootstrap_ci_coverage_of_a_known_mean():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 60
    for t in range(trials):
        x = rng.normal(1.0, 1.0, size=80)
        lo, hi = bootstrap_ci(mean_metric, {"x": x}, [str(i) for i in range(80)], n_boot=300, seed=t)["m"]
        covered += lo <= 1.0 <= hi
    assert covered / trials >= 0.85  # nominal 95 %, percentile bootstrap at n=80


def test_bootstrap_is_seeded():
    x = np.arange(30, dtype=float)
    pats = [str(i // 3) for i in range(30)]
    assert bootstrap_ci(mean_metric, {"x": x}, pats, n_boot=100, seed=3) == bootstrap_ci(mean_metric, {"x": x}, pats, n_boot=100, seed=3)


def test_clustered_ci_is_wider_than_iid_when_patients_correlate():
    rng = np.random.default_rng(1)
    patient_effect = np.repeat(rng.normal(0, 1, 20), 5)
    x = patient_effect + rng.normal(0, 0.1, 100)
    clustered = bootstrap_ci(mean_metric, {"x": x}, [str(i // 5) for i in range(100)], n_boot=400, seed=0)["m"]
    iid = bootstrap_ci(mean_metric, {"x": x}, [str(i) for i in range(100)], n_boot=400, seed=0)["m"]
    assert clustered[1] - clustered[0] > 1.5 * (iid[1] - iid[0])


def test_paired_identical_systems_are_not_different():
    x = np.random.default_rng(2).random(50)
    res = paired_compare(mean_metric, {"x": x}, {"x": x.copy()}, [str(i) for i in range(50)], n_perm=200, n_boot=200)["m"]
    assert res.diff == 0 and res.p_value == 1.0


def test_paired_detects_a_real_shift_and_not_noise():
    rng = np.random.default_rng(3)
    a = rng.random(60)
    shifted = paired_compare(mean_metric, {"x": a}, {"x": a + 0.1}, [str(i) for i in range(60)], n_perm=500, n_boot=300)["m"]
    assert shifted.p_value < 0.01 and shifted.ci_low > 0
    null_p = [paired_compare(mean_metric, {"x": a}, {"x": a + rng.normal(0, 0.05, 60)}, [str(i) for i in range(60)],
                             n_perm=200, n_boot=50, seed=s)["m"].p_value for s in range(20)]
    assert np.mean(np.asarray(null_p) < 0.05) <= 0.25


def test_paired_rejects_misaligned_runs():
    with pytest.raises(ValueError, match="same samples"):
        paired_compare(mean_metric, {"x": np.zeros(3)}, {"x": np.zeros(4)}, ["a", "b", "c"])
