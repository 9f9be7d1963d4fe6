"""Image–text alignment (family ``alignment``): does a generated image match its text, for a medical CLIP?

BiomedCLIP (medbench.features.biomedclip) embeds each generated image and the text it should show —
the request's report for report->image, the generated report for prompt->pair — and scores their
cosine similarity (open_clip's normalised embeddings; the logit scale is left out, so values are in
[-1, 1]). Like pair consistency, the raw number is bracketed on REAL data from the same samples:

    alignment.cosine@biomedclip           generated image vs its text
    alignment.cosine_ceiling@biomedclip   real image vs its own report (matched real pairs)
    alignment.cosine_floor@biomedclip     real image vs the report of another evaluated sample (a seeded
                                          derangement, as pair consistency's floor)
    alignment.cosine_relative@biomedclip  (cosine - floor) / (ceiling - floor): 0 = unrelated, 1 = real pairs

Per-sample statistics ``gen``, ``real``, ``shuffled`` (cosines, NaN where the generated image is
missing), so a patient resample moves the value and both brackets together. CheXGenBench's alignment
score uses BioViL-T (hi-ml-multimodal), which is not installed here: this is the BiomedCLIP score.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.metrics.image_labels import ImageEncoder, check_extractor
from medbench.metrics.pair_consistency import derangement
from medbench.registry import MetricSpec

FAMILY = "image.alignment"
EXTRACTOR = "biomedclip"
OPTIONS = ()


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


class Alignment(Metric):
    name = FAMILY

    def __init__(self, encoder: ImageEncoder, reference: list | None = None, seed: int = 0):
        self.encoder, self.reference, self.seed = encoder, list(reference or []), seed
        self.tag = encoder.extractor_name
        self.higher_is_better = {f"{FAMILY}.{n}@{self.tag}": True
                                 for n in ("cosine", "cosine_ceiling", "cosine_floor", "cosine_relative")}
        self._partner: dict[str, str] | None = None
        self._rows: dict[str, list[np.ndarray]] = {"gen": [], "real": [], "shuffled": []}

    @property
    def variant(self) -> str:
        return (f"{self.tag}: cosine of open_clip encode_image and encode_text embeddings (no logit scale); text = the "
                "request's report (report->image) or the generated report (prompt->pair); ceiling = real image vs its "
                "own report; floor = real image vs a seeded derangement of the evaluated reports")

    @property
    def weights_sha256(self) -> dict[str, str]:
        from medbench.features.field_weights import provenance_of

        return provenance_of(getattr(self.encoder, "_extractor", None))

    def _partners(self) -> dict[str, str]:
        if self._partner is None:
            ids = [s.id for s in self.reference]
            if len(ids) < 2:
                raise MetricUnavailable(f"{FAMILY}: the shuffled-pair floor needs at least 2 evaluated samples")
            reports = [s.report or "" for s in self.reference]
            self._partner = {ids[i]: reports[j] for i, j in enumerate(derangement(len(ids), self.seed))}
        return self._partner

    def _text_cosines(self, items: list, texts: list[str]) -> np.ndarray:
        from medbench.features.biomedclip import cosine

        img = self.encoder.outputs(items)["features"]
        out = np.full(len(items), np.nan)
        ok = np.isfinite(img).all(1)
        if ok.any():
            txt = self.encoder.extractor.text_features([t for t, k in zip(texts, ok) if k])
            out[ok] = cosine(img[ok], txt)
        return out

    def update(self, batch: list[Scored]) -> None:
        partners = self._partners()
        for s in batch:
            if s.sample.image_path is None or s.sample.report is None:
                raise ValueError(f"{FAMILY}: reference sample {s.sample.id!r} needs an image and a report for the brackets")
            if s.sample.id not in partners:
                raise ValueError(f"{FAMILY}: sample {s.sample.id!r} is not among the evaluated reference samples")
        texts = [(s.output.report if s.request.kind == "prompt->pair" else s.request.report) or "" for s in batch]
        self._rows["gen"].append(self._text_cosines([s.output.image for s in batch], texts))
        real_items = [s.sample.image_path for s in batch]
        self._rows["real"].append(self._text_cosines(real_items, [s.sample.report for s in batch]))
        self._rows["shuffled"].append(self._text_cosines(real_items, [partners[s.sample.id] for s in batch]))

    def stats(self) -> dict[str, np.ndarray]:
        self.encoder.flush()
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in self._rows.items()}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        t = self.tag
        gen, ceil, floor = _nanmean(stats["gen"]), _nanmean(stats["real"]), _nanmean(stats["shuffled"])
        span = ceil - floor
        return {f"{FAMILY}.cosine@{t}": gen, f"{FAMILY}.cosine_ceiling@{t}": ceil, f"{FAMILY}.cosine_floor@{t}": floor,
                f"{FAMILY}.cosine_relative@{t}": (gen - floor) / span if span > 0 else float("nan")}

    def extras(self) -> dict[str, Any]:
        st = self.stats()
        return {"extractor": self.tag, "missing_generated_images": int((~np.isfinite(st["gen"])).sum()),
                "notes": "a system is read by its position between the shuffled floor and the matched-real ceiling; "
                         "BiomedCLIP is a general biomedical CLIP (PubMed figures), not trained on chest X-ray reports only"}


def factory(ctx: MetricContext) -> Alignment:
    check_extractor(FAMILY, EXTRACTOR)
    return Alignment(ImageEncoder(EXTRACTOR, None, ctx.domain, FAMILY, need_head=False),
                     reference=ctx.reference, seed=ctx.seed)


@hookimpl
def medbench_metrics():
    return [MetricSpec(FAMILY, factory, requires=("image",), kinds=("report->image", "prompt->pair"), options=OPTIONS,
                       description="image-text alignment: BiomedCLIP cosine of each generated image with its text, between "
                                   "matched real pairs (ceiling) and shuffled real pairs (floor)")]
