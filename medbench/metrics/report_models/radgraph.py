"""F1-RadGraph: entity/relation overlap of RadGraph annotations, through radeval's vendored radgraph 0.1.18.

The published archive (``radgraph-xl.tar.gz``: config.json, vocabulary/, weights.th) is extracted
once into ``$MEDBENCH_HOME/report-models/radgraph/<archive sha256>/`` (tar members checked, data
filter), and its config.json's embedder name is pointed at the user's local ``embedder/`` folder
(the published config names a hub id, which radeval would fetch). radeval's `F1RadGraph` then
loads it from there (its download is skipped for a non-empty folder); weights.th is read with
weights_only=True and strict keys. Rewards per report (radgraph's compute_reward)::

    nlg.radgraph.f1_simple     entity (tokens, label) F1
    nlg.radgraph.f1_partial    entity F1 plus relation presence ("partial": what RadEval and the
                               BioNLP-2024 task call F1-RadGraph)
    nlg.radgraph.f1_complete   entity + relations F1

each the mean over reports of the per-report reward (an empty report scores 0), higher is better.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from medbench.home import medbench_home
from medbench.metrics.base import Metric, MetricUnavailable, Scored
from medbench.metrics.report_models._radeval import LocalWeights, device_of, radeval_import
from medbench.metrics.report_models.weights_specs import RADGRAPH_XL
from medbench.weights import Located

LEVELS = ("simple", "partial", "complete")
ARCHIVE_MEMBERS = ("config.json", "weights.th", "vocabulary")


def prepare_archive(located: Located, model_type: str) -> Path:
    """The radgraph cache folder (``<cache>/<model_type>/``) for this archive, its embedder local."""
    archive = located.path(f"{model_type}.tar.gz")
    cache = medbench_home() / "report-models" / "radgraph" / located.sha256[f"{model_type}.tar.gz"][:16]
    model_dir = cache / model_type
    if not (model_dir / "weights.th").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{model_type}.", dir=cache))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                names = {m.name.split("/")[0] for m in tar.getmembers()}
                if not set(ARCHIVE_MEMBERS) <= names:
                    raise MetricUnavailable(f"{archive}: not a RadGraph archive (has {sorted(names)[:6]}, needs {list(ARCHIVE_MEMBERS)})")
                tar.extractall(tmp, filter="data")
            if not model_dir.exists():
                tmp.rename(model_dir)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise MetricUnavailable(f"{archive}: cannot read the RadGraph archive ({e})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    config = json.loads((model_dir / "config.json").read_text())
    local = str(located.path("embedder"))
    for bert in (config["dataset_reader"]["token_indexers"]["bert"], config["model"]["embedder"]["token_embedders"]["bert"]):
        bert.setdefault("medbench_published_model_name", bert["model_name"])
        bert["model_name"] = local
    tmp_cfg = model_dir / f"config.json.{os.getpid()}.tmp"
    tmp_cfg.write_text(json.dumps(config, indent=1))
    tmp_cfg.replace(model_dir / "config.json")
    return cache


def load_f1radgraph(located: Located, model_type: str, device: str = "cpu"):
    core = radeval_import("radeval.metrics.radgraph._vendor.core")
    cache = prepare_archive(located, model_type)
    try:
        return core.F1RadGraph(reward_level="all", model_type=model_type, model_cache_dir=str(cache),
                               cuda=0 if device.startswith("cuda") else -1, batch_size=1)
    except RuntimeError as e:  # load_state_dict(strict=True)
        raise MetricUnavailable(f"{located.path(model_type + '.tar.gz')}: weights.th does not match the DyGIE model "
                                f"({str(e).splitlines()[0]}); refusing a half-loaded model") from None


class RadGraphF1(LocalWeights, Metric):
    name = "nlg.radgraph"
    shard_rows = True  # medbench.row_shards: each rank scores its batches under torchrun

    def __init__(self, weights_root=None, model_type: str = "radgraph-xl", device: str = "cpu"):
        self.weights_root, self.model_type, self.device = weights_root, model_type, device
        self._scorer = None
        self._rows: dict[str, list[float]] = {lv: [] for lv in LEVELS}
        self.higher_is_better = {f"nlg.radgraph.f1_{lv}": True for lv in LEVELS}
        self.variant = (f"radgraph 0.1.18 (radeval 2.2.1 vendored), model {model_type}, rewards simple/partial/complete "
                        "per report, averaged; empty report = 0")

    @property
    def scorer(self):
        if self._scorer is None:
            self._scorer = load_f1radgraph(self.located(RADGRAPH_XL), self.model_type, self.device)
        return self._scorer

    def update(self, batch: list[Scored]) -> None:
        refs = [item.sample.report or "" for item in batch]
        hyps = [item.output.report or "" for item in batch]
        _, rewards, _, _ = self.scorer(refs=refs, hyps=hyps)
        for lv, values in zip(LEVELS, rewards):
            self._rows[lv].extend(float(v) for v in values)

    def stats(self) -> dict[str, np.ndarray]:
        return {lv: np.asarray(v, dtype=np.float64) for lv, v in self._rows.items()}

    def restore(self, stats):
        self._rows = {lv: [float(v) for v in stats[lv]] for lv in LEVELS}

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        return {f"nlg.radgraph.f1_{lv}": float(stats[lv].mean()) if len(stats[lv]) else 0.0 for lv in LEVELS}

    def per_sample(self, stats):
        return {f"nlg.radgraph.f1_{lv}": np.asarray(stats[lv], float).tolist() for lv in LEVELS}


def radgraph_factory(ctx) -> RadGraphF1:
    """Cheap: the weights are checked (and the model loaded) at the first scored batch."""
    return RadGraphF1(ctx.options.get("weights_root"), "radgraph-xl", device_of(ctx))
