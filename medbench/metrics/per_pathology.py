"""Per-pathology image fidelity (family ``image.per_pathology``): CheXGenBench's conditional evaluation.

For every label of the domain's labeler (CheXpert's 14 for cxr), the generated images of the samples
whose prompt has that finding are compared with the real images of the same samples (in a t2i task
the prompt is the sample's own report, so "prompts with that finding" and "real images with it" are
the same rows — CheXGenBench keeps the real images with the label and the generated images of their
prompts). A sample has a finding when its label is 1 (CheXGenBench: ``== 1``; option
``per_pathology_mapping: unc_pos`` also counts -1); labels come from the dataset's labels, else the
labeler's reading of the report. Features: RAD-DINO pooler by default (CheXGenBench), option
``per_pathology_extractor``::

    image.per_pathology.<label>.fid@rad-dino     FID of that label's rows (torch-fidelity, as image.fidelity)
    image.per_pathology.<label>.kid@rad-dino     KID of that label's rows
    image.per_pathology.macro.fid@rad-dino       mean over the labels with enough samples
    image.per_pathology.macro.kid@rad-dino

<label> is the label name lower-cased with spaces as underscores (``pleural_effusion``). A label with
fewer than ``per_pathology_min_n`` (default 30) positive samples with both images is NaN and listed in
extras ``too_few`` with its count — never a number. Which labels are scored is fixed on the full
evaluated set (stats ``eligible``), so a bootstrap resample scores the same labels.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.metrics.fidelity import KID_SUBSET_SIZE, KID_SUBSETS, fid, kid
from medbench.metrics.image_labels import ImageEncoder, binarise, check_extractor, check_labeler, sample_labels
from medbench.options import Option
from medbench.registry import MetricSpec

FAMILY = "image.per_pathology"
DEFAULT_EXTRACTOR = "rad-dino"
MIN_N = 30
OPTIONS = (Option("per_pathology_extractor", str, DEFAULT_EXTRACTOR, "feature extractor of the per-label FID/KID"),
           Option("per_pathology_min_n", int, MIN_N, "fewest positive samples a label needs to be scored", low=2, high=10**7),
           Option("per_pathology_mapping", str, "pos", "labels counted as having the finding: pos (1, CheXGenBench) "
                                                       "or unc_pos (1 and -1)", choices=("pos", "unc_pos")))


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


class PerPathology(Metric):
    name = FAMILY
    max_bootstrap = 50  # every resample runs 2 x (labels) Fréchet/kernel distances

    def __init__(self, encoder: ImageEncoder, labeler_spec, labels: tuple[str, ...], min_n: int = MIN_N,
                 mapping: str = "pos", seed: int = 0):
        self.encoder, self.labeler_spec, self.labels = encoder, labeler_spec, tuple(labels)
        self.min_n, self.mapping, self.seed = min_n, mapping, seed
        self.tag = encoder.extractor_name
        names = {f"{FAMILY}.{slug(lab)}.{m}@{self.tag}": False for lab in self.labels for m in ("fid", "kid")}
        names |= {f"{FAMILY}.macro.fid@{self.tag}": False, f"{FAMILY}.macro.kid@{self.tag}": False}
        self.higher_is_better = names
        self._labeler = None
        self._rows: dict[str, list[np.ndarray]] = {"gen_features": [], "ref_features": [], "positive": []}

    @property
    def variant(self) -> str:
        return (f"CheXGenBench conditional evaluation: per label, generated vs real images of the samples whose labels "
                f"have it ({self.mapping}: {'1' if self.mapping == 'pos' else '1 or -1'}); features {self.tag}; FID/KID: "
                f"torch-fidelity functions (KID {KID_SUBSETS} subsets of min({KID_SUBSET_SIZE}, N)); labels with fewer "
                f"than {self.min_n} positives not scored; macro = mean over scored labels; labeler {self.labeler_spec.name}")

    @property
    def weights_sha256(self) -> dict[str, str]:
        from medbench.features.field_weights import provenance_of

        return provenance_of(getattr(self.encoder, "_extractor", None))

    def update(self, batch: list[Scored]) -> None:
        if self._labeler is None:
            self._labeler = self.labeler_spec.factory()
        gen = self.encoder.outputs([s.output.image for s in batch])["features"]
        ref = self.encoder.outputs([s.sample.image_path for s in batch])["features"]
        pos = binarise([sample_labels(s.sample, self._labeler) for s in batch], self.labels, self.mapping)
        self._rows["gen_features"].append(gen.astype(np.float32))
        self._rows["ref_features"].append(ref.astype(np.float32))
        self._rows["positive"].append(pos)

    def stats(self) -> dict[str, np.ndarray]:
        self.encoder.flush()
        if not self._rows["positive"]:
            return {"gen_features": np.zeros((0, 0), np.float32), "ref_features": np.zeros((0, 0), np.float32),
                    "positive": np.zeros((0, len(self.labels)), np.int64), "eligible": np.zeros((0, len(self.labels)), np.int64)}
        out = {k: np.concatenate(v) for k, v in self._rows.items()}
        counts = self._counts(out)
        out["eligible"] = np.tile((counts >= self.min_n).astype(np.int64), (len(out["positive"]), 1))
        return out

    @staticmethod
    def _valid(stats: dict[str, np.ndarray]) -> np.ndarray:
        if stats["gen_features"].size == 0:
            return np.zeros(len(stats["positive"]), bool)
        return np.isfinite(stats["gen_features"]).all(1) & np.isfinite(stats["ref_features"]).all(1)

    def _counts(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        return (stats["positive"][self._valid(stats)] == 1).sum(0)

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return self._compute(stats)

    def _compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        out = {k: float("nan") for k in self.higher_is_better}
        if not len(stats["positive"]):
            return out
        ok = self._valid(stats)
        eligible = stats["eligible"][0].astype(bool)
        fids, kids = [], []
        for j, lab in enumerate(self.labels):
            rows = ok & (stats["positive"][:, j] == 1)
            if not eligible[j] or rows.sum() < 2:
                continue
            g = stats["gen_features"][rows].astype(np.float64)
            r = stats["ref_features"][rows].astype(np.float64)
            out[f"{FAMILY}.{slug(lab)}.fid@{self.tag}"] = f = fid(g, r)
            out[f"{FAMILY}.{slug(lab)}.kid@{self.tag}"] = k = kid(g, r)[0]
            fids.append(f)
            kids.append(k)
        if fids:
            out[f"{FAMILY}.macro.fid@{self.tag}"] = float(np.mean(fids))
            out[f"{FAMILY}.macro.kid@{self.tag}"] = float(np.mean(kids))
        return out

    def extras(self) -> dict[str, Any]:
        st = self.stats()
        counts = self._counts(st) if len(st["positive"]) else np.zeros(len(self.labels), np.int64)
        values = self.compute(st)
        rows = []
        for j, lab in enumerate(self.labels):
            scored = bool(counts[j] >= self.min_n)
            rows.append({"label": lab, "key": slug(lab), "n": int(counts[j]), "scored": scored,
                         "fid": values[f"{FAMILY}.{slug(lab)}.fid@{self.tag}"] if scored else None,
                         "kid": values[f"{FAMILY}.{slug(lab)}.kid@{self.tag}"] if scored else None})
        return {"extractor": self.tag, "labeler": self.labeler_spec.name, "mapping": self.mapping, "min_n": self.min_n,
                "per_label": rows, "too_few": {r["label"]: r["n"] for r in rows if not r["scored"]},
                "missing_generated_images": int((~self._valid(st)).sum()) if len(st["positive"]) else 0,
                "notes": "per-label FID at small N is biased upward (roughly 1/N): compare a label across systems only "
                         "at the same N; CIs from at most 50 patient resamples"}


def factory(ctx: MetricContext) -> PerPathology:
    """Cheap: checks the extractor and labeler exist; weights load at the first update."""
    opts = ctx.options
    name = opts.get("per_pathology_extractor") or DEFAULT_EXTRACTOR
    check_extractor(FAMILY, name)
    spec = check_labeler(FAMILY, ctx.domain, opts.get("labeler"))
    try:
        labels = tuple(spec.factory().observations)
    except Exception as e:  # a labeler that cannot start here
        raise MetricUnavailable(f"{FAMILY}: labeler {spec.name!r} cannot start ({e})") from e
    encoder = ImageEncoder(name, None, ctx.domain, FAMILY, need_head=False)  # weights: the --weights root
    return PerPathology(encoder, spec, labels, min_n=int(opts.get("per_pathology_min_n") or MIN_N),
                        mapping=opts.get("per_pathology_mapping") or "pos", seed=ctx.seed)


@hookimpl
def medbench_metrics():
    return [MetricSpec(FAMILY, factory, requires=("image",), kinds=("report->image", "prompt->pair"), options=OPTIONS,
                       description="per-pathology FID/KID (CheXGenBench conditional evaluation): each label's generated vs "
                                   "real images on RAD-DINO features, per label with CIs and a macro mean; labels with "
                                   "too few samples reported as such")]
