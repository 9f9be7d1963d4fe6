"""nlg.medim-paper: identical to MeDiM's report_metric.py recipe run with nltk and `rouge` directly."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.meteor_score import single_meteor_score
from rouge import Rouge

from medbench.metrics.base import MetricContext, Scored
from medbench.metrics.text_medim import MedimPaperText, medbench_metrics, prep_report
from medbench.metrics.wordnet import ensure_wordnet
from medbench.records import Output, Request, Sample

from report_sentences import SENTENCES  # noqa: E402
EMPTY, BLANK, ROUGE_FAILS = 3, 7, 15


def radiology_corpus(n: int = 32, seed: int = 1) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref = rng.sample(SENTENCES, rng.randint(2, 5))
        hyp = [s if rng.random() < 0.6 else rng.choice(SENTENCES) for s in ref]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp[: rng.randint(1, len(hyp))]))
    hyps[EMPTY], hyps[BLANK] = "", "  \n"
    hyps[ROUGE_FAILS] = "..."  # `rouge` raises: no sentence left after splitting on "."
    return refs, hyps


def scored_batch(refs, hyps):
    out = []
    for i, (r, h) in enumerate(zip(refs, hyps)):
        sid = f"s{i:03d}"
        sample = Sample(id=sid, patient_id=f"p{i // 2}", domain="cxr", split="test", image_path=None, report=r)
        out.append(Scored(sample, Request("image->report", sid, seed=i, domain="cxr"), Output(sid, report=h)))
    return out


def report_metric_rows(refs, hyps, skip: bool):
    """The script's loop (UCSC-VLAA/MeDiM:report_metric.py) with the library calls made directly.
    skip=True: the script itself; skip=False: empty -> all 0, rouge failure -> ROUGE-L 0."""
    rouge_scorer, smoothie = Rouge(), SmoothingFunction().method1
    rows = []
    for ref, hyp in zip(refs, hyps):
        response, golden = hyp.strip(), ref.strip()
        if response == "":
            if not skip:
                rows.append([0.0] * 6)
            continue
        h, g = prep_report(response), prep_report(golden)
        assert h == list(filter(lambda val: val != "", str(response).lower().replace(".", " .").split(" ")))
        bleus = [sentence_bleu([g], h, weights=w, smoothing_function=smoothie)
                 for w in ([1], [0.5, 0.5], [1 / 3] * 3, [0.25] * 4)]
        try:
            rouge_l = rouge_scorer.get_scores(response.lower(), golden.lower())[0]["rouge-l"]["f"]
        except Exception:
            if skip:
                continue
            rouge_l = 0.0
        rows.append([*bleus, single_meteor_score(hypothesis=h, reference=g), rouge_l])
    return rows


def reference_means(rows):
    return {f"nlg.medim-paper.{s}": np.mean([r[k] for r in rows])
            for k, s in enumerate(("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rougeL"))}


@pytest.fixture(scope="module", autouse=True)
def wordnet():
    return ensure_wordnet()


@pytest.fixture(scope="module")
def corpus():
    return radiology_corpus()


def run(corpus, skip_empty=False, batch=5):
    refs, hyps = corpus
    metric = MedimPaperText(skip_empty=skip_empty)
    items = scored_batch(refs, hyps)
    for i in range(0, len(items), batch):
        metric.update(items[i:i + batch])
    stats = metric.stats()
    return metric, stats, metric.compute(stats)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("skip_empty", [False, True])
def test_parity_with_report_metric(corpus, skip_empty):
    _, _, values = run(corpus, skip_empty)
    expected = reference_means(report_metric_rows(*corpus, skip=skip_empty))
    assert set(values) == set(expected)
    for name, v in expected.items():
        assert values[name] == pytest.approx(v, abs=1e-12), name


def test_empty_scored_zero_and_counted(corpus):
    metric, stats, _ = run(corpus)
    extras = metric.extras()
    assert extras["empty_outputs"] == 2 and extras["empty_output_ids"] == [f"s{EMPTY:03d}", f"s{BLANK:03d}"]
    assert extras["rouge_failures"] == 1 and extras["rouge_failure_ids"] == [f"s{ROUGE_FAILS:03d}"]
    assert extras["skipped_ids"] == [] and stats["included"].sum() == len(corpus[0])
    for i in (EMPTY, BLANK):
        assert all(stats[s][i] == 0.0 for s in ("bleu1", "bleu4", "meteor", "rougeL"))
    assert stats["rougeL"][ROUGE_FAILS] == 0.0 and stats["bleu1"][ROUGE_FAILS] >= 0.0


def test_skip_empty_reproduces_skipping(corpus, tmp_path):
    spec = {s.name: s for s in medbench_metrics()}["nlg.medim-paper"]
    assert spec.protocol == "medim-paper" and spec.requires == ("report",)
    ctx = MetricContext(task=None, domain="cxr", protocol="medim-paper", seed=0, cache_dir=tmp_path,
                        options={"skip_empty": True})
    metric = spec.factory(ctx)
    assert metric.skip_empty
    metric.update(scored_batch(*corpus))
    extras = metric.extras()
    assert extras["skipped_ids"] == [f"s{i:03d}" for i in sorted((EMPTY, BLANK, ROUGE_FAILS))]
    assert extras["n_scored"] == len(corpus[0]) - 3


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("skip_empty", [False, True])
def test_resampled_rows_equal_reference_on_repeated_inputs(corpus, skip_empty):
    metric, stats, _ = run(corpus, skip_empty)
    refs, hyps = corpus
    idx = np.random.default_rng(7).integers(0, len(refs), size=len(refs))
    assert len(set(idx.tolist())) < len(idx)
    values = metric.compute({k: v[idx] for k, v in stats.items()})
    expected = reference_means(report_metric_rows([refs[i] for i in idx], [hyps[i] for i in idx], skip=skip_empty))
    for name, v in expected.items():
        assert values[name] == pytest.approx(v, abs=1e-12), name


def test_batch_size_independence(corpus):
    _, stats_many, values_many = run(corpus, batch=3)
    _, stats_one, values_one = run(corpus, batch=len(corpus[0]))
    for key in stats_many:
        np.testing.assert_array_equal(stats_many[key], stats_one[key])
    assert values_many == values_one


def test_ensure_wordnet_is_wordnet_30(wordnet):
    """nltk's global reader (built offline if needed) lists Debian's WordNet 3.0 offsets for 'effusion'."""
    index = Path("/usr/share/wordnet/index.noun")
    if not index.is_file():
        pytest.skip("Debian wordnet-base not installed")
    line = next(l for l in open(index) if l.startswith("effusion "))
    assert [s.offset() for s in wordnet.synsets("effusion", pos="n")] == [int(t) for t in line.split() if len(t) == 8 and t.isdigit()]
    assert wordnet.get_version() == "3.0"


def test_identical_reports_score_one(corpus):
    """An identical report: BLEU-1 exactly 1, nltk METEOR just under 1 (one chunk)."""
    metric = MedimPaperText()
    same, _ = metric.score_pair(corpus[0][0], corpus[0][0])
    assert same[4] > 0.99 and same[0] == pytest.approx(1.0)
