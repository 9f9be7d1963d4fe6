"""GREEN: a 7B judge LLM counts clinically significant errors and matched findings per report pair.

Runs radeval's `GREEN` (the GREEN package's code) on the user's local GREEN-RadLlama2-7b folder, in
fp16 on one CUDA GPU; on the CPU the family is skipped with that reason (7B at ~14 GB is not a CPU
evaluator). Per report: matched / (matched + significant errors), 0 when nothing matched; a
judge answer GREEN cannot parse gives no score (NaN here, counted in extras, excluded from the mean)::

    nlg.green        mean GREEN score, higher is better
"""
from __future__ import annotations

import numpy as np

from medbench.metrics.base import Metric, MetricUnavailable, Scored
from medbench.metrics.report_models._radeval import LocalWeights, device_of, radeval_import
from medbench.metrics.report_models.weights_specs import GREEN


class GreenScore(LocalWeights, Metric):
    name = "nlg.green"
    shard_rows = True  # medbench.row_shards: each rank scores its batches under torchrun
    higher_is_better = {"nlg.green": True}
    variant = "GREEN (radeval 2.2.1 GREEN, GREEN-RadLlama2-7b local weights, fp16, greedy); unparsed answers excluded"
    max_bootstrap = None

    def __init__(self, weights_root, device: str, output_dir):
        self.weights_root, self.device, self.output_dir = weights_root, device, output_dir
        self._scorer = None
        self._scores: list[float] = []

    @property
    def scorer(self):
        if self._scorer is None:
            folder = self.located(GREEN).folder / "GREEN-radllama2-7b"
            if self.device == "cpu":
                raise MetricUnavailable("nlg.green: GREEN runs a 7B judge LLM in fp16 and needs a CUDA GPU "
                                        "(run with --device cuda); skipped on the CPU")
            green = radeval_import("radeval.metrics.green_score.green")
            self._scorer = green.GREEN(model_name=str(folder),
                                       output_dir=str(self.output_dir), num_gpus=1)
        return self._scorer

    def update(self, batch: list[Scored]) -> None:
        refs = [item.sample.report or "" for item in batch]
        hyps = [item.output.report or "" for item in batch]
        _, _, scores, _ = self.scorer(refs, hyps)
        self._scores.extend(np.nan if s is None else float(s) for s in scores)

    def stats(self) -> dict[str, np.ndarray]:
        return {"green": np.asarray(self._scores, dtype=np.float64)}

    def restore(self, stats):
        self._scores = [float(v) for v in stats["green"]]

    def compute(self, stats: dict[str, np.ndarray]) -> dict[str, float]:
        v = stats["green"][np.isfinite(stats["green"])]
        return {"nlg.green": float(v.mean()) if len(v) else float("nan")}

    def per_sample(self, stats):
        return {"nlg.green": [None if not np.isfinite(v) else float(v) for v in stats["green"]]}

    def extras(self):
        v = np.asarray(self._scores)
        return {"unparsed": int((~np.isfinite(v)).sum()), "n": len(v)}


def green_factory(ctx) -> GreenScore:
    """Cheap: weights and the GPU are checked at the first scored batch."""
    return GreenScore(ctx.options.get("weights_root"), device_of(ctx), ctx.run_dir or ctx.cache_dir)
