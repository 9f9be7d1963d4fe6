"""nlg.coco: parity with pycocoevalcap 1.2 (called directly), resampling, empties, batching.

The METEOR tests share one JVM for the whole module (20-60 s to load the paraphrase table on a busy
machine, hence `slow`); pycocoevalcap's own Meteor.compute_score runs on that same process through a
subclass that only skips starting another JVM. Everything else runs without METEOR.
"""
from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from medbench.metrics.base import MetricContext, MetricUnavailable, Scored
from medbench.metrics.java_meteor import MeteorJVM, meteor_from_stats, parse_stats, segment_score
from medbench.metrics.text_coco import (
    CocoText, coco_scores, make_spice, medbench_metrics, ptb_tokenize, spice_missing_reason,
)
from medbench.records import Output, Request, Sample

from report_sentences import SENTENCES  # noqa: E402


def radiology_corpus(n: int = 36, seed: int = 0) -> tuple[list[str], list[str]]:
    """References of 2-5 sentences; hypotheses keep each sentence w.p. 0.6, else substitute; a few edge cases."""
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref = rng.sample(SENTENCES, rng.randint(2, 5))
        hyp = [s if rng.random() < 0.6 else rng.choice(SENTENCES) for s in ref]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp[: rng.randint(1, len(hyp))]))
    hyps[3] = ""                 # empty output
    hyps[7] = "   "              # whitespace only
    hyps[11] = refs[11]          # perfect match (METEOR's one-chunk rule)
    hyps[15] = "..."             # nothing left after PTB punctuation removal
    return refs, hyps


def scored_batch(refs, hyps, start=0):
    out = []
    for i, (r, h) in enumerate(zip(refs, hyps), start):
        sid = f"s{i:03d}"
        sample = Sample(id=sid, patient_id=f"p{i // 2}", domain="cxr", split="test", image_path=None, report=r)
        out.append(Scored(sample, Request("image->report", sid, seed=i, domain="cxr"), Output(sid, report=h)))
    return out


class SharedMeteor(Meteor):
    """pycocoevalcap's Meteor, unchanged, on an already running JVM with the same command line."""

    def __init__(self, process):
        self.meteor_p = process
        self.lock = threading.Lock()

    def __del__(self):
        pass


@pytest.fixture(scope="module")
def jvm():
    j = MeteorJVM()
    yield j
    j.close()


@pytest.fixture(scope="module")
def corpus():
    return radiology_corpus()


@pytest.fixture(scope="module")
def tokenized(corpus):
    """gts/res exactly as COCOEvalCap builds them: pycocoevalcap's own PTBTokenizer."""
    refs, hyps = corpus
    gts = PTBTokenizer().tokenize({i: [{"caption": r}] for i, r in enumerate(refs)})
    res = PTBTokenizer().tokenize({i: [{"caption": h}] for i, h in enumerate(hyps)})
    return gts, res


def score_in_batches(corpus, size, **kwargs):
    refs, hyps = corpus
    metric = CocoText(**kwargs)
    batch = scored_batch(refs, hyps)
    for i in range(0, len(batch), size):
        metric.update(batch[i:i + size])
    stats = metric.stats()
    return metric, stats, metric.compute(stats)


@pytest.fixture(scope="module")
def scored(corpus):
    return score_in_batches(corpus, 5, with_meteor=False)


@pytest.fixture(scope="module")
def scored_meteor(jvm, corpus):
    return score_in_batches(corpus, 5, meteor=jvm)


def repeat(d: dict, idx) -> dict:
    return {j: d[int(i)] for j, i in enumerate(idx)}


def test_ptb_tokenizer_matches_pycocoevalcap(corpus, tokenized):
    refs, hyps = corpus
    gts, res = tokenized
    ours = ptb_tokenize(refs + hyps)
    assert ours[: len(refs)] == [gts[i][0] for i in range(len(refs))]
    assert ours[len(refs):] == [res[i][0] for i in range(len(hyps))]


def test_ptb_tokenizer_keeps_alignment_on_line_breaks():
    out = ptb_tokenize(["left\reffusion.", "line\u2028separator", "No pneumothorax.", ""])
    assert out == ["left effusion", "line separator", "no pneumothorax", ""]


def test_bleu_rouge_cider_parity(tokenized, scored):
    gts, res = tokenized
    _, _, values = scored
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        assert values[f"nlg.coco.bleu{k + 1}"] == pytest.approx(bleu[k], abs=1e-12)
    assert values["nlg.coco.rougeL"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    assert values["nlg.coco.cider"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)


@pytest.mark.slow
def test_meteor_parity(jvm, tokenized, scored_meteor):
    gts, res = tokenized
    _, stats, values = scored_meteor
    reference, segments = SharedMeteor(jvm.process).compute_score(gts, res)
    assert values["nlg.coco.meteor"] == pytest.approx(reference, abs=1e-9)
    ours = [segment_score(row) for row in stats["meteor"]]
    np.testing.assert_allclose(ours, segments, rtol=0, atol=1e-12)


def bootstrap_index(n):
    idx = np.random.default_rng(3).integers(0, n, size=n)
    assert len(set(idx.tolist())) < len(idx)  # has repeats
    return idx


def test_resampled_rows_equal_reference_on_repeated_inputs(tokenized, scored):
    gts, res = tokenized
    metric, stats, _ = scored
    idx = bootstrap_index(len(gts))
    values = metric.compute({k: v[idx] for k, v in stats.items()})
    g, r = repeat(gts, idx), repeat(res, idx)
    bleu, _ = Bleu(4).compute_score(g, r, verbose=0)
    for k in range(4):
        assert values[f"nlg.coco.bleu{k + 1}"] == pytest.approx(bleu[k], abs=1e-12)
    assert values["nlg.coco.rougeL"] == pytest.approx(Rouge().compute_score(g, r)[0], abs=1e-12)
    # CIDEr-D: IDF stays that of the full evaluated set, so a resample is the mean of fixed per-report scores
    per_report = Cider().compute_score(gts, res)[1]
    assert values["nlg.coco.cider"] == pytest.approx(float(np.mean(per_report[idx])), abs=1e-12)


@pytest.mark.slow
def test_meteor_resampled_equals_reference_on_repeated_inputs(jvm, tokenized, scored_meteor):
    gts, res = tokenized
    metric, stats, _ = scored_meteor
    idx = bootstrap_index(len(gts))
    value = metric.compute({k: v[idx] for k, v in stats.items()})["nlg.coco.meteor"]
    assert value == pytest.approx(SharedMeteor(jvm.process).compute_score(repeat(gts, idx), repeat(res, idx))[0], abs=1e-9)


@pytest.mark.slow
def test_meteor_aggregate_matches_jar_on_resampled_stats(jvm, scored_meteor):
    _, stats, _ = scored_meteor
    rows = stats["meteor"][np.random.default_rng(5).integers(0, len(stats["meteor"]), size=50)]
    lines = [" ".join(repr(float(v)) for v in row) for row in rows]
    _, aggregate = jvm.evaluate(lines)
    assert meteor_from_stats(rows) == pytest.approx(aggregate, abs=1e-12)
    assert parse_stats(lines[0]).tolist() == rows[0].tolist()


def test_empty_outputs_are_scored_zero_and_counted(corpus, scored):
    _, hyps = corpus
    metric, stats, _ = scored
    empty = [i for i, h in enumerate(hyps) if not h.strip()]
    extras = metric.extras()
    assert extras["empty_outputs"] == len(empty) == 2
    assert extras["empty_output_ids"] == [f"s{i:03d}" for i in empty]
    assert len(stats["rougeL"]) == len(hyps)  # nothing dropped
    for i in empty:
        assert stats["bleu"][i][0] == 0 and stats["bleu"][i][6:].sum() == 0
        assert stats["rougeL"][i] == 0.0 and stats["cider"][i] == 0.0


@pytest.mark.slow
def test_meteor_empty_output_scores_zero(corpus, scored_meteor):
    _, stats, values = scored_meteor
    empty = [i for i, h in enumerate(corpus[1]) if not h.strip()]
    assert [segment_score(stats["meteor"][i]) for i in empty] == [0.0] * len(empty)
    assert stats["meteor"].shape == (len(corpus[1]), 23) and 0 < values["nlg.coco.meteor"] < 1


def test_batch_size_independence(corpus, scored):
    _, stats, values = scored
    _, stats_one, values_one = score_in_batches(corpus, len(corpus[0]), with_meteor=False)
    for key in stats:
        np.testing.assert_array_equal(stats_one[key], stats[key])
    assert values_one == values


@pytest.mark.slow
def test_meteor_batch_size_independence(jvm, corpus, scored_meteor):
    _, stats_one, _ = score_in_batches(corpus, len(corpus[0]), meteor=jvm)
    np.testing.assert_array_equal(stats_one["meteor"], scored_meteor[1]["meteor"])


def test_coco_scores_one_shot(corpus, tokenized, scored):
    refs, hyps = corpus
    gts, res = tokenized
    _, _, values = scored
    quick = coco_scores(refs, hyps, with_meteor=False)
    assert set(quick) == {"bleu1", "bleu2", "bleu3", "bleu4", "rougeL", "cider"}
    for name, v in quick.items():
        assert v == values[f"nlg.coco.{name}"]
    with pytest.raises(ValueError, match="2 references but 1"):
        coco_scores(["a", "b"], ["a"], with_meteor=False)


def test_plugin_specs_and_spice_unavailable(tmp_path):
    specs = {s.name: s for s in medbench_metrics()}
    assert specs["nlg.coco"].protocol == "coco" and specs["nlg.coco"].requires == ("report",)
    assert set(specs["nlg.coco"].kinds) == {"image->report", "prompt->pair"}
    assert set(CocoText.higher_is_better) == {f"nlg.coco.{s}" for s in
                                              ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rougeL", "cider")}
    ctx = MetricContext(task=None, domain="cxr", protocol="coco", seed=0, cache_dir=tmp_path)
    metric = specs["nlg.coco"].factory(ctx)
    assert metric._meteor is None  # factory is cheap: no JVM before the first update
    metric.close()
    if spice_missing_reason() is not None:
        with pytest.raises(MetricUnavailable, match="stanford-corenlp-3.6.0"):
            make_spice(ctx)


def test_a_spare_jvm_started_ahead_is_the_one_the_family_uses():
    from medbench.metrics import java_meteor
    from medbench.metrics.text_coco import CocoText

    if java_meteor.java_missing_reason():
        pytest.skip(java_meteor.java_missing_reason())
    java_meteor.start_spare()
    spare = java_meteor._SPARE[0]
    metric = CocoText()
    metric.add("No pleural effusion.", "No effusion.", "s1")
    assert metric._meteor is spare and not java_meteor._SPARE
    assert metric.compute(metric.stats())["nlg.coco.meteor"] > 0
    metric.close()
