"""The metric contract: an accumulator over (sample, output) pairs with per-sample statistics.

A metric family (e.g. ``nlg.coco``) produces several named values (``nlg.coco.bleu4`` ...). It is
fed in batches with `update`, then `stats()` returns per-sample *sufficient statistics*: a dict of
numpy arrays whose first axis is the scored samples, in update order. `compute(stats)` is a pure
function of such a dict, so the statistics module can resample rows (patients) for bootstrap CIs
and paired tests without regenerating or re-extracting anything::

    m = factory(ctx)
    for batch in batches: m.update(batch)           # batch: list[Scored]
    st = m.stats()
    values = m.compute(st)                           # {"nlg.coco.bleu4": 0.31, ...}
    resampled = m.compute({k: v[idx] for k, v in st.items()})

Context that does not depend on the scored samples (reference features of the training set, the
IDF table of a fixed reference corpus...) lives on the metric object, not in `stats`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medbench.records import Output, Request, Sample


class MetricUnavailable(RuntimeError):
    """Raised by a metric factory when the metric cannot run here; the message says why and how to fix."""


@dataclass(frozen=True)
class Scored:
    """One scored item: the reference sample, the request made, and what the model produced."""

    sample: Sample
    request: Request
    output: Output


@dataclass
class MetricContext:
    """What a metric factory may use. ``train`` is the dataset's train split (for memorization,
    retrieval-style brackets); ``reference`` is the evaluated split (test); ``options`` holds
    CLI/task options such as ``extractor``, ``weights``, ``skip_empty``."""

    task: Any  # medbench.tasks.TaskSpec
    domain: str
    protocol: str
    seed: int
    cache_dir: Path
    run_dir: Path | None = None
    train: list[Sample] = field(default_factory=list)
    reference: list[Sample] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    dataset: Any = None  # the whole loaded medbench Dataset (every split), for task-level metrics


class Metric(ABC):
    """Base class of every metric family. Subclasses set the class attributes and implement
    `update`, `stats` and `compute`."""

    name: str = ""  # family name, e.g. "nlg.coco"
    variant: str = ""  # implementation/variant description recorded in run.json
    higher_is_better: dict[str, bool] = {}  # full metric name -> direction (every name compute returns)
    max_bootstrap: int | None = None  # cap on bootstrap resamples for families whose compute is expensive
    shard_rows: bool = False  # one stats row per pair, batches scored independently: sharded under torchrun
    gathered_rows: dict[str, int] | None = None  # set by medbench.row_shards: pair rows each rank delivered

    @abstractmethod
    def update(self, batch: list[Scored]) -> None: ...

    @abstractmethod
    def stats(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]: ...

    def extras(self) -> dict[str, Any]:
        """JSON-able detail for reports (per-label tables, brackets, nearest-neighbour ids...)."""
        return {}

    def per_sample(self, stats: dict[str, np.ndarray]) -> dict[str, list]:
        """Per-sample values for samples.jsonl: {"<family>.<name>": one value per scored sample}.

        Default: every 1-D numeric stats column. Families override it to export better values
        (sentence-level scores, labels and their agreement, nearest neighbours ...). Families
        whose stats rows are not the scored samples (`row_patients`) export nothing by default."""
        if self.row_patients() is not None:
            return {}
        lengths = {len(v) for v in stats.values() if np.ndim(v) >= 1}
        n = lengths.pop() if len(lengths) == 1 else None
        out = {}
        for key, value in stats.items():
            arr = np.asarray(value)
            if arr.ndim == 1 and (n is None or len(arr) == n) and arr.dtype.kind in "biuf":
                out[f"{self.name}.{key}"] = arr.tolist()
        return out

    def per_sample_direction(self, key: str) -> bool | None:
        """Whether a higher per-sample value is better (None: no direction); default from
        `higher_is_better` when the key is also a metric name."""
        return self.higher_is_better.get(key)

    def warnings(self, stats: dict[str, np.ndarray], values: dict[str, float]) -> list[str]:
        """Messages about values that are unreliable on these samples (run.json ``warnings``)."""
        return []

    def confidence_intervals(self, stats: dict[str, np.ndarray], patient_ids: list[str], *, n_boot: int,
                             seed: int) -> dict[str, tuple[float | None, float | None]]:
        """95 % CIs: by default a patient bootstrap of the rows. Families whose rows are not the
        scored samples (e.g. downstream test samples x training seeds) override this."""
        from medbench.stats.bootstrap import bootstrap_ci

        return bootstrap_ci(self.compute, stats, patient_ids, n_boot=n_boot, seed=seed)

    @property
    def gathered_weights(self) -> dict[str, str]:
        """Weights (name -> sha256) the ranks that scored this family's shards loaded."""
        return self.__dict__.setdefault("_gathered_weights", {})

    def restore(self, stats: dict[str, np.ndarray]) -> None:
        """Hold `stats` (every pair's rows, gathered from the ranks' shards) as if `update` had produced
        them; required of `shard_rows` families (medbench.row_shards)."""
        raise NotImplementedError(f"{self.name}: shard_rows families implement restore")

    def row_patients(self) -> list[str] | None:
        """Patient ids of the stats rows when they are not the scored samples (None: they are)."""
        return None

    def close(self) -> None:
        """Release external resources (a JVM, a thread pool)."""
