"""Privacy (family ``privacy``): do generated images sit closer to training images than new real data does?

The memorization measure (medbench.metrics.memorization: nearest-training-neighbour distance, compared
with the held-out real images' own nearest-training distances) on the features the field uses for it —
RAD-DINO pooler embeddings, as CheXGenBench's latent-distance privacy metric — plus CheXGenBench's
latent distance to the prompt's own image::

    privacy.nn_closer_than_p1@rad-dino   share of generated images closer (cosine distance) to their nearest
                                         training image than the 1st percentile of the held-out real images'
                                         nearest-training distances (lower is better)
    privacy.nn_distance_ratio@rad-dino   median generated / median held-out nearest-training distance
                                         (< 1: closer to training than new real data is; higher is better)
    privacy.latent_distance@rad-dino     CheXGenBench's latent distance ||a - b|| / sqrt(d) between a generated
                                         image and the real image of its own sample (higher: less like it)

Option ``privacy_extractor`` changes the features (any registered extractor), ``privacy_distance``
the nearest-neighbour distance (cosine or l2). Per-sample statistics ``gen_nn``, ``real_nn``,
``latent``. CheXGenBench's siamese re-identification score is the separate family ``privacy.reid``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medbench import hookimpl
from medbench.metrics.base import Metric, MetricContext, MetricUnavailable, Scored
from medbench.metrics.image_labels import ImageEncoder, check_extractor
from medbench.metrics.memorization import closer_than_p1, nearest
from medbench.options import Option
from medbench.registry import MetricSpec

FAMILY = "image.privacy"
DEFAULT_EXTRACTOR = "rad-dino"
OPTIONS = (Option("privacy_extractor", str, DEFAULT_EXTRACTOR, "features of the nearest-training-image search"),
           Option("privacy_distance", str, "cosine", "nearest-neighbour distance", choices=("cosine", "l2")))


def latent_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CheXGenBench's latent_vector_distance per row: ||a - b|| / sqrt(d)."""
    return np.linalg.norm(a - b, axis=1) / np.sqrt(a.shape[1])


def _median(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


class Privacy(Metric):
    name = FAMILY

    def __init__(self, encoder: ImageEncoder, train: list | None = None, distance: str = "cosine"):
        self.encoder, self.train, self.distance = encoder, list(train or []), distance
        self.tag = encoder.extractor_name
        self.higher_is_better = {f"{FAMILY}.nn_closer_than_p1@{self.tag}": False,
                                 f"{FAMILY}.nn_distance_ratio@{self.tag}": True,
                                 f"{FAMILY}.latent_distance@{self.tag}": True}
        self._train_features = None
        self._train_ids: list[str] = []
        self._neighbours: list[dict[str, Any]] = []
        self._rows: dict[str, list[np.ndarray]] = {"gen_nn": [], "real_nn": [], "latent": []}

    @property
    def variant(self) -> str:
        return (f"{self.distance} distance on {self.tag} features to the nearest of {len(self._train_ids) or len(self.train)} "
                "training images; p1 = 1st percentile (linear) of the held-out real images' nearest-training distances; "
                "latent distance: ||gen - real|| / sqrt(d) to the sample's own real image (CheXGenBench)")

    @property
    def weights_sha256(self) -> dict[str, str]:
        from medbench.features.field_weights import provenance_of

        return provenance_of(getattr(self.encoder, "_extractor", None))

    def _setup(self) -> None:
        with_image = [s for s in self.train if s.image_path is not None]
        if not with_image:
            raise MetricUnavailable(f"{FAMILY}: needs the dataset's train split with images (MetricContext.train)")
        self._train_ids = [s.id for s in with_image]
        self._train_features = self.encoder.outputs([s.image_path for s in with_image])["features"]

    def _nn(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = np.isfinite(feats).all(1)
        idx = np.full(len(feats), -1, np.int64)
        dist = np.full(len(feats), np.nan)
        if ok.any():
            i, d = nearest(feats[ok], self._train_features, 1, self.distance)
            idx[ok], dist[ok] = i[:, 0], d[:, 0]
        return idx, dist

    def update(self, batch: list[Scored]) -> None:
        if self._train_features is None:
            self._setup()
        gen = self.encoder.outputs([s.output.image for s in batch])["features"]
        real = self.encoder.outputs([s.sample.image_path for s in batch])["features"]
        gi, gd = self._nn(gen)
        _, rd = self._nn(real)
        self._rows["gen_nn"].append(gd)
        self._rows["real_nn"].append(rd)
        self._rows["latent"].append(latent_distance(gen, real))
        for s, i, d in zip(batch, gi, gd):
            if i >= 0:
                self._neighbours.append({"id": s.sample.id, "train_id": self._train_ids[i], "distance": float(d)})

    def stats(self) -> dict[str, np.ndarray]:
        self.encoder.flush()
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in self._rows.items()}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        t = self.tag
        rm = _median(stats["real_nn"])
        lat = stats["latent"][np.isfinite(stats["latent"])]
        return {f"{FAMILY}.nn_closer_than_p1@{t}": closer_than_p1(stats["gen_nn"], stats["real_nn"]),
                f"{FAMILY}.nn_distance_ratio@{t}": _median(stats["gen_nn"]) / rm if rm > 0 else float("nan"),
                f"{FAMILY}.latent_distance@{t}": float(lat.mean()) if len(lat) else float("nan")}

    def extras(self) -> dict[str, Any]:
        st = self.stats()
        r = st["real_nn"][np.isfinite(st["real_nn"])]
        return {"extractor": self.tag, "distance": self.distance, "n_train": len(self._train_ids),
                "real_p1": float(np.percentile(r, 1)) if len(r) else None, "real_median": float(np.median(r)) if len(r) else None,
                "nearest_training": self._neighbours}


def factory(ctx: MetricContext) -> Privacy:
    name = ctx.options.get("privacy_extractor") or DEFAULT_EXTRACTOR
    check_extractor(FAMILY, name)
    distance = ctx.options.get("privacy_distance") or "cosine"
    if distance not in ("cosine", "l2"):
        raise ValueError(f"privacy_distance must be cosine or l2, not {distance!r}")
    return Privacy(ImageEncoder(name, None, ctx.domain, FAMILY, need_head=False), ctx.train, distance)


@hookimpl
def medbench_metrics():
    return [MetricSpec(FAMILY, factory, requires=("image",), kinds=("report->image", "prompt->pair"), options=OPTIONS,
                       description="privacy on RAD-DINO features: share of generated images nearer to a training image than "
                                   "held-out real images are, the distance ratio, and CheXGenBench's latent distance")]
