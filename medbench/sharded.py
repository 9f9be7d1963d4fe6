"""Sharded scoring under torchrun: every rank embeds its shard of the images, rank 0 scores once.

The expensive part of scoring is the feature pass (Inception, HF encoders, the phantom encoder)
over generated, reference and training images. Each rank runs the families' extractors over its
shard (item i goes to rank i % world) into the shared on-disk feature cache (medbench.features.cache:
content-keyed rows, atomic shard files, so ranks never see each other's half-written files);
after a barrier rank 0 scores every family as in one process and finds every row in the cache.
Rows are per image, so rank 0 computes exactly what one process computes::

    # every rank, after generation and a barrier
    prefetch_features(families, pairs, rank, world, train=dataset.split("train"))
    barrier()
    if rank == 0: score(families, pairs, ...)

Families expose their extractor as ``extractor`` (image.fidelity), ``heads`` / ``encoder``
(an `ImageEncoder`: label fidelity, pair consistency, memorization). Model-based text families
(`shard_rows`: BERTScore, CheXbert, RadGraph, RaTEScore, RadCliQ, GREEN) score their pair batches on
every rank (medbench.row_shards); the other text families are cheap and run on rank 0 only.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from medbench.metrics.base import Metric, Scored
from medbench.row_shards import batch_starts, write_rank_rows


def family_extractors(families: Iterable[Metric]) -> list[Any]:
    """The distinct feature extractors the families will run (by cache key), loaded; one that cannot
    load is left to rank 0, which records the family as skipped."""
    from medbench.features.base import FeatureExtractor
    from medbench.metrics.base import MetricUnavailable

    found: dict[str, Any] = {}
    for fam in families:
        for attr in ("extractor", "heads", "encoder"):
            obj = getattr(fam, attr, None)
            if obj is not None and not isinstance(obj, FeatureExtractor):
                try:
                    obj = obj.extractor  # an ImageEncoder loads its extractor on first use
                except (MetricUnavailable, AttributeError):
                    obj = None
            if isinstance(obj, FeatureExtractor):
                found.setdefault(obj.key(), obj)
    return list(found.values())


def needs_train_features(families: Iterable[Metric]) -> bool:
    return any(getattr(f, "name", "") == "memorization" and "image" in getattr(f, "parts", ()) for f in families)


def shard_images(pairs: Sequence[Scored], rank: int, world: int, train: Sequence = (), batch: int = 64) -> Iterable[list]:
    """This rank's images in batches: generated and reference images of its pairs, then its training images."""
    for start in batch_starts(len(pairs), rank, world, batch):  # pair batches round-robin (LazyPairs reads by slice)
        items = pairs[start:start + batch]
        out = [s.output.image for s in items if s.output.image is not None]
        out += [s.sample.image_path for s in items if s.sample.image_path is not None]
        yield out
    mine = [s.image_path for i, s in enumerate(train) if i % world == rank and s.image_path is not None]
    for start in range(0, len(mine), batch):
        yield mine[start:start + batch]


def prefetch_features(families: Sequence[Metric], pairs: Sequence[Scored], rank: int, world: int,
                      train: Sequence = (), batch: int = 64) -> int:
    """Embed this rank's shard with every extractor the families use into the shared cache; returns
    the number of images this rank looked up."""
    from medbench.features.cache import FeatureCache

    extractors = family_extractors(families)
    if not extractors:
        return 0
    train = train if needs_train_features(families) else ()
    n = 0
    caches = [FeatureCache(ex) for ex in extractors]
    try:
        for items in shard_images(pairs, rank, world, train, batch):
            n += len(items)
            for cache in caches:
                cache.outputs(items, batch_size=batch, progress=False)
    finally:
        for cache in caches:
            cache.flush()
    return n


def prefetch_run(cfg, dataset, samples: list, folder, rank: int, world: int, make_pairs, run_dir) -> int:
    """The runner's sharded pass: the run's metric families (built as rank 0 builds them, cheap
    factories) embed this rank's shard of the images, and its model-based text families score its
    pair batches into run_dir (medbench.row_shards); `make_pairs(entries)` gives the lazily read pairs."""
    from medbench.home import medbench_home
    from medbench.metrics.base import MetricContext
    from medbench.scoring import build_families, select_families

    entries, _ = folder.verified(cfg.task.request)
    ctx = MetricContext(task=cfg.task, domain=dataset.domain, protocol=cfg.protocol, seed=cfg.seed,
                        cache_dir=medbench_home(), run_dir=None, train=dataset.split("train"), reference=samples,
                        options=cfg.metric_options, device=cfg.device, dataset=dataset)
    specs, _ = select_families(list(cfg.task.metrics), cfg.protocol, cfg.task.request)
    families, _ = build_families(specs, ctx)
    pairs = make_pairs(entries)
    try:
        n = prefetch_features(families, pairs, rank, world, train=ctx.train)
        write_rank_rows(families, pairs, rank, world, run_dir)
        return n
    finally:
        for fam in families:
            fam.close()
