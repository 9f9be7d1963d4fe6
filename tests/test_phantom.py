"""Phantom datasets: determinism, layout, patient splits, report/label agreement, visible findings."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medbench.data.phantom import cxr, path
from medbench.data.phantom.generate import SPLITS, ensure_phantom, phantom_root
from medbench.data.phantom.plugin import medbench_datasets, phantom_options
from medbench.labelers.path_attributes import PathAttributeLabeler

SMALL = dict(size=32, n_train=30, n_val=8, n_test=12)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / split / "labels.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("domain", ["cxr", "path"])
def test_same_seed_same_bytes_other_seed_other_bytes(domain, tmp_path):
    a = ensure_phantom(domain, **SMALL, seed=3, home=tmp_path / "a")
    b = ensure_phantom(domain, **SMALL, seed=3, home=tmp_path / "b")
    c = ensure_phantom(domain, **SMALL, seed=4, home=tmp_path / "c")
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    assert fa.keys() != fc.keys() or any(fa[k] != fc[k] for k in fa)
    assert a.name == b.name != c.name  # the folder name carries the parameter hash


def test_worker_count_does_not_change_bytes(tmp_path):
    opts = dict(size=32, n_train=60, n_val=6, n_test=6, seed=1)  # >= POOL_MIN_PATIENTS patients: the pool is used
    one = ensure_phantom("cxr", **opts, home=tmp_path / "one", workers=1)
    two = ensure_phantom("cxr", **opts, home=tmp_path / "two", workers=2)
    assert _files(one) == _files(two)


def test_layout_counts_and_patient_splits(home):
    root = ensure_phantom("cxr", **SMALL)
    assert root == phantom_root("cxr", **SMALL) and root.parent == home / "phantoms"
    assert "SYNTHETIC" in json.loads((root / "phantom.json").read_text())["notice"]
    patients = {}
    for split in SPLITS:
        rows = _rows(root, split)
        assert len(rows) == SMALL[f"n_{split}"]
        stems = {p.stem for p in (root / split).glob("*.png")}
        assert stems == {p.stem for p in (root / split).glob("*.txt")} == {r["id"] for r in rows}
        for r in rows:
            assert set(r) == {"id", "patient_id", "domain", "labels", "prompt", "attributes"} and r["domain"] == "cxr"
            assert set(r["labels"]) <= set(cxr.OBSERVATIONS) and set(r["labels"].values()) <= {1, 0, -1}
            assert r["prompt"].endswith(".") and (root / split / f"{r['id']}.txt").read_text(encoding="utf-8").strip()
            patients.setdefault(r["patient_id"], set()).add(split)
        with Image.open(root / split / f"{rows[0]['id']}.png") as im:
            assert im.size == (32, 32) and im.mode == "L"
    assert all(len(s) == 1 for s in patients.values())  # no patient straddles splits
    assert sum(SMALL[f"n_{s}"] for s in SPLITS) > len(patients)  # several studies per patient
    again = ensure_phantom("cxr", **SMALL)  # second call reuses the cache
    assert again == root


def test_rejects_bad_sizes_and_options(home):
    for size in (16, 31, 257, 512):
        with pytest.raises(ValueError, match="size must be an integer from 32 to 256"):
            ensure_phantom("cxr", size=size)
    with pytest.raises(ValueError, match="unknown phantom domain"):
        ensure_phantom("mri")
    with pytest.raises(ValueError, match="has no option 'sizes'"):
        phantom_options({"sizes": "64"})
    assert phantom_options({"size": "48", "seed": "7"})["size"] == 48


def test_plugin_loads_a_dataset_through_the_folder_loader(home):
    specs = {s.name: s for s in medbench_datasets()}
    assert set(specs) == {"cxr-phantom", "path-phantom"}
    options = {k: str(v) for k, v in SMALL.items()}  # the CLI passes strings
    ds = specs["path-phantom"].load(options)
    assert ds.name == "path-phantom" and ds.domain == "path" and not ds.bad
    assert len(ds.split("train")) == SMALL["n_train"] and len(ds.split("test")) == SMALL["n_test"]
    s = ds.split("test")[0]
    assert s.labels and s.prompt and s.report and s.load_image().size == (32, 32) and s.patient_id in s.id


# ---------------------------------------------------------------- reports agree with labels
def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{[^}]+\}", template)
    return re.compile(".+?".join(re.escape(p) for p in parts), re.IGNORECASE)


CXR_WORDS = {"Cardiomegaly": r"cardiomegaly|heart|cardiac", "Pleural Effusion": r"effusion", "Pneumothorax": r"pneumothorax",
             "Consolidation": r"consolidation", "Lung Lesion": r"nodule|mass", "Edema": r"edema|congestion",
             "Support Devices": r"tube|catheter|pacemaker"}


def test_cxr_reports_state_every_label_and_mention_nothing_else():
    rng = np.random.default_rng(0)
    seen = {name: set() for name in cxr.FINDINGS}
    for p in range(300):
        for spec in cxr.sample_patient(rng, 3):
            text = cxr.report(spec, rng)
            sents = re.split(r"(?<=\.) ", text)
            labels = cxr.labels(spec)
            for name in cxr.FINDINGS:
                hits = [s for s in sents if re.search(CXR_WORDS[name], s, re.IGNORECASE)]
                if name not in labels:
                    assert not hits, (name, text)
                    continue
                v = labels[name]
                seen[name].add(v)
                table = cxr.PHRASES[name]
                templates = ([t for k in ("ett", "cvc", "pacemaker") for t in table[k]] if name == "Support Devices" else
                             table[v] + table.get("bilateral", []) * (v == 1) + table.get("clear", []) * (v == 0))
                assert len(hits) >= 1 and all(any(_pattern(t).fullmatch(s) for t in templates) for s in hits), (name, v, text)
            assert ("No Finding" in labels) == (not any(labels.get(n) in (1, -1) for n in cxr.FINDINGS if n != "Support Devices"))
    for name in cxr.FINDINGS:
        assert seen[name] == ({1} if name == "Support Devices" else {1, 0, -1}), name


def test_path_labeler_is_exact_on_phantom_reports():
    rng = np.random.default_rng(0)
    labeler = PathAttributeLabeler()
    seen = {k: set() for k in path.OBSERVATIONS}
    for p in range(300):
        for spec in path.sample_patient(rng, 3):
            text = path.report(spec, rng)
            expected = path.labels(spec)
            assert labeler.label(text) == expected, text
            for k, v in expected.items():
                seen[k].add(v)
    assert seen["Mitoses"] == seen["Necrosis"] == {1, 0, -1} and seen["Tumor"] == {0, 1}
    assert labeler.label("Benign breast tissue. Negative for malignancy. Focal necrosis cannot be excluded.") == \
        {"Tumor": 0, "Necrosis": -1}


def test_chexpert_rule_labeler_reproduces_cxr_labels():
    """The other half of the contract: the CheXpert-rule labeler reads the phantom reports exactly."""
    rule = pytest.importorskip("medbench.labelers.chexpert_rule").ChexpertRuleLabeler()
    rng = np.random.default_rng(1)
    for p in range(300):
        for spec in cxr.sample_patient(rng, 3):
            text = cxr.report(spec, rng)
            assert rule.label(text) == cxr.labels(spec), text


# ---------------------------------------------------------------- findings are visible
def _balanced_accuracy_per_label(root: Path, domain: str, features) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = {}
    for split in ("train", "test"):
        rows = _rows(root, split)
        X = np.stack([features(np.asarray(Image.open(root / split / f"{r['id']}.png"), np.float32) / 255) for r in rows])
        data[split] = (X, [r["labels"] for r in rows])
    scores = {}
    names = cxr.FINDINGS if domain == "cxr" else path.OBSERVATIONS
    for name in names:
        (Xtr, Ltr), (Xte, Lte) = data["train"], data["test"]
        keep_tr = [i for i, lab in enumerate(Ltr) if lab.get(name, 0) != -1 and (domain == "cxr" or name in lab)]
        keep_te = [i for i, lab in enumerate(Lte) if lab.get(name, 0) != -1 and (domain == "cxr" or name in lab)]
        ytr = np.array([Ltr[i].get(name, 0) == 1 for i in keep_tr])
        yte = np.array([Lte[i].get(name, 0) == 1 for i in keep_te])
        assert 10 <= ytr.sum() <= len(ytr) - 10 and 5 <= yte.sum() <= len(yte) - 5, (name, ytr.sum(), yte.sum())
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300, class_weight="balanced"))
        clf.fit(Xtr[keep_tr], ytr)
        scores[name] = balanced_accuracy_score(yte, clf.predict(Xte[keep_te]))
    return scores


def _cxr_features(img):
    """Downsampled pixels plus the strongest small bright spots (image minus its 5x5 local mean)."""
    pad = np.pad(img, 2, mode="edge")
    local = sum(pad[i:i + img.shape[0], j:j + img.shape[1]] for i in range(5) for j in range(5)) / 25
    contrast = np.sort((img - local)[8:-8, 8:-8].ravel())
    return np.concatenate([img.reshape(16, 4, 16, 4).mean((1, 3)).ravel(), contrast[-12:] * 10, contrast[:12] * 10])


def _path_features(img):
    """Colour histograms of optical density plus sorted 8x8-block statistics (translation invariant)."""
    od = -np.log(np.clip(img, 1 / 255, 1))
    hist = np.concatenate([np.histogram(od[..., c], bins=16, range=(0, 2.5))[0] for c in range(3)]) / od[..., 0].size
    dark = od[..., 0] > 0.9  # red-channel density is mostly haematoxylin
    blocks = [np.sort(b.reshape(8, 8, 8, 8).mean((1, 3)).ravel()) for b in (od[..., 0], od[..., 1], dark)]
    return np.concatenate([hist, *blocks, [od[..., 0].std(), dark.mean()]])


def test_cxr_findings_are_recoverable_from_pixels(tmp_path):
    root = ensure_phantom("cxr", size=64, n_train=500, n_val=0, n_test=300, seed=0, home=tmp_path)
    scores = _balanced_accuracy_per_label(root, "cxr", _cxr_features)
    low = {k: round(v, 3) for k, v in scores.items() if v < 0.75}
    assert not low, scores


def test_path_attributes_are_recoverable_from_pixels(tmp_path):
    root = ensure_phantom("path", size=64, n_train=500, n_val=0, n_test=300, seed=0, home=tmp_path)
    scores = _balanced_accuracy_per_label(root, "path", _path_features)
    low = {k: round(v, 3) for k, v in scores.items() if v < 0.75}
    assert not low, scores


@pytest.mark.slow
def test_default_phantoms_generate_within_90_seconds(tmp_path):
    start = time.perf_counter()
    for domain in ("cxr", "path"):
        ensure_phantom(domain, home=tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed <= 90, f"generating both default phantoms took {elapsed:.1f} s"


def test_cache_name_follows_the_generator_source(tmp_path, monkeypatch):
    """A change to the drawing code gives a new cache folder even if nobody bumps GENERATOR_VERSION."""
    from medbench.data.phantom import generate

    before = phantom_root("cxr", home=tmp_path)
    assert generate._params("cxr", 64, 4000, 500, 1000, 0)["generator_source"] == generate.source_digest()
    monkeypatch.setattr(generate, "source_digest", lambda: "0" * 16)
    after = phantom_root("cxr", home=tmp_path)
    assert after != before and after.parent == before.parent
