"""Image fidelity on each named field extractor: families ``image.fidelity@<extractor>``.

The same family as ``image.fidelity`` (medbench.metrics.fidelity: one cached feature pass, FID / KID /
precision-recall / density-coverage / the real-vs-real FID floor, patient-bootstrap CIs), with the
extractor fixed by the family name instead of an option, so one task can list several::

    metrics: [image.fidelity, image.fidelity@rad-dino, image.fidelity@xrv-densenet121, image.fidelity@biomedclip]
    -> image.fid@phantom-encoder, image.fid@rad-dino, image.kid@rad-dino, image.precision@rad-dino, ...

``image.fidelity@rad-dino`` is CheXGenBench's headline (FID on RAD-DINO pooler features; KID and PRDC
k=5 on the same features). Weights come from the weights root (``--weights DIR`` / ``$MEDBENCH_WEIGHTS``);
a missing file skips the family with that file named.
"""
from __future__ import annotations

from medbench import hookimpl
from medbench.features.field_weights import provenance_of
from medbench.metrics.base import MetricContext
from medbench.metrics.fidelity import KID_SUBSET_SIZE, KID_SUBSETS, ImageFidelity, make_extractor
from medbench.options import Option
from medbench.registry import MetricSpec

EXTRACTORS = {"rad-dino": "CheXGenBench's RAD-DINO pooler (CLS) features",
              "rad-dino-mean": "RAD-DINO mean-pooled patch tokens",
              "xrv-densenet121": "torchxrayvision DenseNet-121 features2 (RoentGen-era X-ray backbone)",
              "biomedclip": "BiomedCLIP image embeddings",
              "inception-v3-compat": "torch-fidelity's Inception-v3 (comparability with general-domain FID)"}
OPTIONS = (Option("kid_subsets", int, KID_SUBSETS, "KID subsets", low=1, high=100000),
           Option("kid_subset_size", int, KID_SUBSET_SIZE, "KID subset size (capped at N)", low=2, high=1000000))


def family(extractor: str) -> str:
    return f"image.fidelity@{extractor}"


def factory_for(extractor: str):
    def factory(ctx: MetricContext) -> ImageFidelity:
        opts = ctx.options
        weights = opts.get("inception_weights") if extractor == "inception-v3-compat" else None  # None: the --weights root
        metric = ImageFidelity(make_extractor(extractor, weights), seed=ctx.seed,
                               kid_subsets=int(opts.get("kid_subsets") or KID_SUBSETS),
                               kid_subset_size=int(opts.get("kid_subset_size") or KID_SUBSET_SIZE))
        metric.name = family(extractor)
        metric.weights_sha256 = provenance_of(metric.extractor)  # per file, pinned files marked (run.json)
        return metric
    return factory


@hookimpl
def medbench_metrics():
    specs = []
    for name, what in EXTRACTORS.items():
        opts = OPTIONS + ((Option("inception_weights", str, None, "torch-fidelity Inception weights file"),)
                          if name == "inception-v3-compat" else ())
        specs.append(MetricSpec(family(name), factory_for(name), requires=("image",), kinds=("report->image", "prompt->pair"),
                                description=f"FID, KID, precision/recall, density/coverage and the FID floor on {what}",
                                options=opts))
    return specs
