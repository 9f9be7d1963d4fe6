"""Image-side labels from an extractor's label heads, shared by label fidelity and pair consistency.

The phantom encoder has one multi-label sigmoid head per domain (``logits:<domain>``). This module
turns images into probabilities over a fixed label list, turns label dicts into 0/1 targets, and fixes
one decision threshold per label on *real* images that are never the evaluated ones::

    heads = ImageEncoder("phantom-encoder", None, "cxr")           # nothing loaded yet
    names = heads.label_space(labeler.observations)                # encoder labels ∩ labeler observations
    p = heads.probabilities([pil_or_path_or_None, ...], names)     # (n, L), NaN rows for missing images
    thr, info = heads.thresholds(samples, names, "unc_pos", labeler)   # per-label F1-optimal cut, real images

Label mapping (CheXpert values 1 / 0 / -1 / blank): ``unc_pos`` (default) counts uncertain (-1) as
positive — phantom studies with an uncertain finding *show* it, subtly — ``pos`` counts only 1.
Blank and 0 are negative in both.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from medbench.metrics.base import MetricUnavailable
from medbench.records import Sample

MAPPINGS = {"pos": (1,), "unc_pos": (1, -1)}  # label values counted as positive
DEFAULT_MAPPING = "unc_pos"
THRESHOLD_SPLITS = ("val", "train")  # first one that has images and is not the evaluated split
MAX_THRESHOLD_IMAGES = 2000  # seeded subsample above this (fitting a 1-d cut needs no more)
_THRESHOLD_MEMO: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}


def mapping_or_error(mapping: str) -> str:
    if mapping not in MAPPINGS:
        raise ValueError(f"unknown label mapping {mapping!r}; choose one of {sorted(MAPPINGS)}")
    return mapping


def binarise(labels: Sequence[dict[str, int] | None], names: Sequence[str], mapping: str) -> np.ndarray:
    """(n, L) int64 0/1 targets from label dicts under `mapping`; blank (absent) counts as 0."""
    hot = MAPPINGS[mapping_or_error(mapping)]
    rows = [[int((d or {}).get(o) in hot) for o in names] for d in labels]
    return np.array(rows, dtype=np.int64).reshape(len(rows), len(names))


def sample_labels(sample: Sample, labeler) -> dict[str, int]:
    """The sample's own labels (labels.jsonl); without them, the labeler's reading of its report."""
    if sample.labels is not None:
        return sample.labels
    if sample.report is None:
        raise ValueError(f"sample {sample.id!r} has neither labels nor a report to derive target labels from")
    return labeler.label(sample.report)


def encoder_choice(options: dict[str, Any], key: str) -> tuple[str, str | None]:
    """(extractor name, weights) for a metric: ``options[key]`` (default phantom-encoder); the weights are
    ``options[key + '_weights']``, else ``options['weights']`` when ``options['extractor']`` names the same one."""
    name = options.get(key) or "phantom-encoder"
    weights = options.get(f"{key}_weights")
    if weights is None and (options.get("extractor") or "phantom-encoder") == name:
        weights = options.get("weights")
    return name, weights


def check_extractor(metric: str, extractor: str) -> None:
    """Cheap factory-time check: the extractor is registered. Weights are checked at first use (a
    factory also rebuilds stored runs for `compare`, where only the per-sample rows matter)."""
    from medbench.registry import registry

    base = "hf" if extractor.startswith("hf:") else extractor
    if base not in registry().entries["extractors"]:
        known = ", ".join(registry().names("extractors")) or "(none)"
        raise MetricUnavailable(f"{metric}: feature extractor {extractor!r} is not registered (known: {known})")


def check_labeler(metric: str, domain: str, labeler: str | None = None):
    """Cheap factory-time check: a labeler serves the domain (or the named one exists); returns its spec."""
    from medbench.labelers.plugin import labeler_spec_for

    try:
        return labeler_spec_for(domain, labeler)
    except KeyError as e:
        raise MetricUnavailable(f"{metric}: {e.args[0]}") from None


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


# ---- thresholds ---------------------------------------------------------------------------------

def f1_optimal_threshold(prob: np.ndarray, target: np.ndarray) -> float:
    """The cut maximising F1 of ``prob >= t`` on (prob, target); the midpoint to the next lower
    distinct score (so it generalises), 0.5 when the set has no positives. Ties: highest cut."""
    prob, target = np.asarray(prob, float), np.asarray(target, int)
    n_pos = int(target.sum())
    if n_pos == 0 or len(prob) == 0:
        return 0.5
    order = np.argsort(-prob, kind="stable")
    p, y = prob[order], target[order]
    tp = np.cumsum(y)
    predicted = np.arange(1, len(p) + 1)
    f1 = 2.0 * tp / (predicted + n_pos)
    f1[np.r_[p[1:] == p[:-1], False]] = -1.0  # a cut can only fall after the last of tied scores
    k = int(np.argmax(f1))
    return float(p[k]) if k == len(p) - 1 else float((p[k] + p[k + 1]) / 2.0)


def threshold_samples(train: list[Sample], dataset: Any, evaluated_split: str | None) -> tuple[str, list[Sample]]:
    """Real images to fix thresholds on: the val split when present and not the evaluated one (held out
    from both the encoder's training and the evaluation), else the train split."""
    for split in THRESHOLD_SPLITS:
        if split == evaluated_split:
            continue
        pool = train if split == "train" else (dataset.split(split) if dataset is not None else [])
        pool = [s for s in pool if s.image_path is not None]
        if pool:
            return split, pool
    return "", []


class ImageEncoder:
    """A registered extractor used through the feature cache: features, and probabilities of the
    domain's label head (`need_head`: that head must exist). Nothing loads before the first use."""

    def __init__(self, extractor: str, weights: str | None, domain: str, metric: str = "image labels",
                 need_head: bool = True):
        self.extractor_name, self.weights, self.domain, self.metric = extractor, weights, domain, metric
        self.need_head = need_head
        self._extractor = None
        self._cache = None

    @property
    def extractor(self):
        if self._extractor is None:
            from medbench.features import get_extractor

            try:
                ex = get_extractor(self.extractor_name, self.weights)
            except (FileNotFoundError, KeyError, ValueError) as e:
                raise MetricUnavailable(f"{self.metric} with extractor {self.extractor_name!r}: {e}") from e
            if self.need_head and self.domain not in getattr(ex, "label_names", {}):
                heads = sorted(getattr(ex, "label_names", {})) or "none"
                raise MetricUnavailable(f"{self.metric}: extractor {ex.name!r} has no label head for domain "
                                        f"{self.domain!r} (heads: {heads})")
            self._extractor = ex
        return self._extractor

    @property
    def weights_sha256(self) -> dict[str, str]:
        if self._extractor is None or not self._extractor.weights_sha256:
            return {}
        return {self._extractor.name: self._extractor.weights_sha256}

    def label_space(self, observations: Sequence[str]) -> tuple[str, ...]:
        """Encoder labels for the domain that the labeler also emits, in the encoder's head order."""
        names = tuple(n for n in self.extractor.label_names[self.domain] if n in set(observations))
        if not names:
            raise MetricUnavailable(f"{self.metric}: no label is shared by extractor {self.extractor.name!r} "
                                    f"({self.extractor.label_names[self.domain]}) and the labeler ({list(observations)})")
        return names

    def outputs(self, items: list) -> dict[str, np.ndarray]:
        """Every named extractor output per item (cached by image content), NaN rows for None items."""
        from medbench.features.cache import FeatureCache

        widths = self.extractor.outputs()
        out = {k: np.full((len(items), w), np.nan) for k, w in widths.items()}
        present = [i for i, it in enumerate(items) if it is not None]
        if present:
            if self._cache is None:
                self._cache = FeatureCache(self.extractor)
            got = self._cache.outputs([items[i] for i in present], progress=len(present) > 256)
            for k in widths:
                out[k][present] = got[k]
        return out

    def probabilities(self, items: list, names: Sequence[str]) -> np.ndarray:
        """(n, len(names)) sigmoid probabilities of the named labels; NaN rows where the item is None."""
        head = self.extractor.label_names[self.domain]
        cols = [head.index(n) for n in names]
        return sigmoid(self.outputs(items)[f"logits:{self.domain}"][:, cols])

    def flush(self) -> None:
        if self._cache is not None:
            self._cache.flush()

    def thresholds(self, pool: list[Sample], names: Sequence[str], mapping: str, labeler,
                   seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
        """Per-label F1-optimal thresholds on the real images of `pool` (targets: their labels).
        Memoised per process on (extractor, domain, labels, mapping, pool ids)."""
        ids = sorted(s.id for s in pool)
        key = hashlib.sha256(repr((self.extractor.key(), self.domain, tuple(names), mapping, ids, seed)).encode()).hexdigest()
        if key not in _THRESHOLD_MEMO:
            if len(pool) > MAX_THRESHOLD_IMAGES:
                keep = np.sort(np.random.default_rng([seed, 4242]).choice(len(pool), MAX_THRESHOLD_IMAGES, replace=False))
                pool = [pool[i] for i in keep]
            prob = self.probabilities([s.image_path for s in pool], names)
            target = binarise([sample_labels(s, labeler) for s in pool], names, mapping)
            thr = np.array([f1_optimal_threshold(prob[:, j], target[:, j]) for j in range(len(names))])
            info = {"n_images": len(pool), "positives": {n: int(target[:, j].sum()) for j, n in enumerate(names)},
                    "rule": "per-label F1-optimal cut on real images (midpoint between scores); 0.5 where no positives"}
            _THRESHOLD_MEMO[key] = (thr, info)
            self.flush()
        thr, info = _THRESHOLD_MEMO[key]
        return thr.copy(), dict(info)


def fit_label_space(family: str, heads: "ImageEncoder", labeler_spec, train: list[Sample], dataset: Any,
                    evaluated_split: str | None, mapping: str, seed: int) -> tuple[Any, list[str], np.ndarray, dict]:
    """At a family's first update: the labeler, the shared label space, and per-label thresholds fixed on
    held-out real images (val, else train) -> (labeler, names, thresholds, info)."""
    labeler = labeler_spec.factory()
    names = heads.label_space(labeler.observations)
    split, pool = threshold_samples(train, dataset, evaluated_split)
    if not pool:
        raise MetricUnavailable(f"{family}: no real images outside the evaluated split (val or train) to fix "
                                "the per-label thresholds on")
    threshold, info = heads.thresholds(pool, names, mapping, labeler, seed)
    return labeler, names, threshold, {"split": split, **info, "thresholds": dict(zip(names, threshold.tolist()))}

