"""RaTEScore: entity-aware report similarity (Zhao et al. 2024) through radeval's RaTEScore.

radeval's `RaTEScore` takes both models as constructor arguments, so the local folders
``<weights>/ratescore/RaTE-NER-Deberta`` (DeBERTa-v3 token classifier) and
``<weights>/ratescore/BioLORD-2023-C`` (entity embeddings) are passed directly (each checked for
missing/unexpected keys first). Default affinity matrix ("long"), per-report F-score of the
entity-level precision and recall, 0.5 when either report has no entity (the package's rule; also
for a report without any sentence, which the package itself would misalign)::

    nlg.ratescore    mean per-report RaTEScore, higher is better

radeval's RaTEScore imports medspacy -> spacy -> thinc at import time (medspacy's PyRuSH sentence
splitter cuts the reports). On Python < 3.12 medspacy 1.3.1 pins spacy < 3.8, whose wheels are built
for numpy 1; scripts/setup.sh therefore installs spacy 3.8.18 / thinc 8.3.14 (numpy 2 builds) over that
pin (docs/decisions.md, issue 15). Where the stack still does not import, the family is skipped with
the import error.
"""
from __future__ import annotations

import numpy as np

from medbench.metrics.base import Metric, MetricUnavailable, Scored
from medbench.metrics.report_models._radeval import LocalWeights, device_of, radeval_import, strict_from_pretrained
from medbench.metrics.report_models.weights_specs import RATESCORE


def import_ratescore():
    try:
        return radeval_import("radeval.metrics.RaTEScore.scorer")
    except MetricUnavailable:
        raise
    except Exception as e:  # thinc/spacy binary mismatches raise ValueError at import
        raise MetricUnavailable(f"nlg.ratescore: radeval's RaTEScore cannot be imported here "
                                f"({type(e).__name__}: {str(e).splitlines()[0]}); it needs a spacy/thinc built for the "
                                "installed numpy: with numpy 2, pip install 'spacy==3.8.18' 'thinc==8.3.14' "
                                "(what scripts/setup.sh does)") from None


def load_ratescore(folder, device: str = "cpu", batch_size: int = 1):
    from transformers import AutoModel, AutoModelForTokenClassification

    scorer_mod = import_ratescore()
    ner, emb = folder / "RaTE-NER-Deberta", folder / "BioLORD-2023-C"
    strict_from_pretrained(AutoModelForTokenClassification, ner)
    strict_from_pretrained(AutoModel, emb, not_stored=("pooler.",))
    return scorer_mod.RaTEScore(bert_model=str(ner), eval_model=str(emb), batch_size=batch_size,
                                use_gpu=device.startswith("cuda"))


def has_sentences(text: str) -> bool:
    """Whether RaTEScore's own medspacy splitter finds a sentence (it drops empty reports silently)."""
    utils = radeval_import("radeval.metrics.RaTEScore.utils")
    return bool(utils.sentence_split([text])[0])


class RaTEScoreMetric(LocalWeights, Metric):
    name = "nlg.ratescore"
    shard_rows = True  # medbench.row_shards: each rank scores its batches under torchrun
    higher_is_better = {"nlg.ratescore": True}
    variant = "RaTEScore (radeval 2.2.1), RaTE-NER-Deberta + BioLORD-2023-C local weights, affinity matrix 'long'"

    def __init__(self, weights_root=None, device: str = "cpu"):
        self.weights_root, self.device = weights_root, device
        self._scorer = None
        self._scores: list[float] = []

    @property
    def scorer(self):
        if self._scorer is None:
            folder = self.located(RATESCORE).folder  # missing files first, then the import problem
            self._scorer = load_ratescore(folder, self.device)
        return self._scorer

    def update(self, batch: list[Scored]) -> None:
        """Reports without a sentence get 0.5 (the package's no-entity rule) and are not passed to it:
        RaTEScore 0.6 / radeval 2.2.1 drop them from one side, which shifts every later pair."""
        refs = [item.sample.report or "" for item in batch]
        hyps = [item.output.report or "" for item in batch]
        scorer = self.scorer
        keep = [i for i in range(len(batch)) if has_sentences(refs[i]) and has_sentences(hyps[i])]
        scores = np.full(len(batch), 0.5)
        if keep:
            got, _, _ = scorer.compute_score(candidate_list=[hyps[i] for i in keep], reference_list=[refs[i] for i in keep])
            scores[keep] = got
        self._scores.extend(float(v) for v in scores)

    def stats(self):
        return {"ratescore": np.asarray(self._scores, dtype=np.float64)}

    def restore(self, stats):
        self._scores = [float(v) for v in stats["ratescore"]]

    def compute(self, stats):
        v = stats["ratescore"]
        return {"nlg.ratescore": float(v.mean()) if len(v) else 0.0}

    def per_sample(self, stats):
        return {"nlg.ratescore": np.asarray(stats["ratescore"], float).tolist()}


def ratescore_factory(ctx) -> RaTEScoreMetric:
    """Cheap: weights and the package's import are checked at the first scored batch."""
    return RaTEScoreMetric(ctx.options.get("weights_root"), device_of(ctx))
