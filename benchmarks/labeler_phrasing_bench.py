"""Per-observation accuracy of CheXpert-style labeling on the real-phrasing sentence set.

    python benchmarks/labeler_phrasing_bench.py [--classifier surface|context|negex] [--show-errors] [--set FILE]

--set defaults to the test set (tests/fixtures/labeler_real_phrasing.jsonl); benchmarks/labeler_holdout.jsonl
holds 72 further sentences written after the triggers were fixed, to measure them out of sample.

All classifiers share chexpert-rule's clean step, sentence split, mention phrase lists and
aggregation (so the comparison isolates how each mention is called positive / negative /
uncertain):

    surface   medbench's triggers (medbench.labelers.chexpert_phrases), the shipped labeler
    context   medspaCy's ConText with its default rule set (negated -> 0, possible -> -1)
    negex     negspacy's Negex with the en_clinical termset (negation only: nothing is uncertain)

context and negex need medspacy / negspacy importable (they are not medbench dependencies; spaCy
3.7 wheels want numpy < 2, so run them in a side environment with this repository on PYTHONPATH).
Accuracy per observation counts every sentence where the observation is expected or predicted.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SET = ROOT / "tests" / "fixtures" / "labeler_real_phrasing.jsonl"

from medbench.labelers import chexpert_rule as R  # noqa: E402
from medbench.labelers.chexpert_phrases import OBSERVATIONS  # noqa: E402


def surface():
    return R.ChexpertRuleLabeler().label


def _library_labeler(call):
    """A labeler that classifies each chexpert-rule mention with `call(sentence, start, end) -> label`."""
    rules = R._Rules()

    def label(report: str) -> dict:
        mentions = []
        for sentence in R.split_sentences(R.clean(report)):
            for m in R.find_mentions(rules, sentence):
                mentions.append((m, call(sentence, m.start, m.end)))
        return R.aggregate(OBSERVATIONS, mentions)
    return label


def one_sentence(nlp, sentence):
    """A spaCy doc of one sentence (chexpert-rule already split the report)."""
    doc = nlp.make_doc(sentence)
    for i, token in enumerate(doc):
        token.is_sent_start = i == 0
    return doc


def context():
    import medspacy

    nlp = medspacy.load(enable=["medspacy_context"])
    ctx = nlp.get_pipe("medspacy_context")

    def call(sentence, start, end):
        doc = one_sentence(nlp, sentence)
        doc.ents = [doc.char_span(start, end, label="MENTION", alignment_mode="expand")]
        span = ctx(doc).ents[0]
        return 0 if span._.is_negated else -1 if span._.is_uncertain else 1
    return _library_labeler(call)


def negex():
    import spacy
    from negspacy.negation import Negex
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    neg = Negex(nlp, "negex", termset("en_clinical").get_patterns(), ["MENTION"], "negex", [])

    def call(sentence, start, end):
        doc = one_sentence(nlp, sentence)
        doc.ents = [doc.char_span(start, end, label="MENTION", alignment_mode="expand")]
        return 0 if neg(doc).ents[0]._.negex else 1
    return _library_labeler(call)


def score(label, rows):
    per = defaultdict(lambda: [0, 0])
    exact, errors = 0, []
    for r in rows:
        got, want = label(r["text"]), r["expected"]
        exact += got == want
        if got != want:
            errors.append((r["text"], want, got))
        for obs in set(got) | set(want):
            per[obs][0] += got.get(obs) == want.get(obs)
            per[obs][1] += 1
    return exact, per, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", choices=("surface", "context", "negex"), default="surface")
    ap.add_argument("--show-errors", action="store_true")
    ap.add_argument("--set", type=Path, default=SET, help="a JSONL of {text, expected}")
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.set.read_text().splitlines() if line.strip()]
    exact, per, errors = score({"surface": surface, "context": context, "negex": negex}[args.classifier](), rows)
    print(f"{args.classifier}: {exact}/{len(rows)} sentences exactly right ({exact / len(rows):.1%})")
    print("| observation | n | accuracy |\n|---|---:|---:|")
    for obs in OBSERVATIONS:
        ok, n = per.get(obs, (0, 0))
        print(f"| {obs} | {n} | {ok / n:.1%} |" if n else f"| {obs} | 0 | - |")
    if args.show_errors:
        for text, want, got in errors:
            print(f"{text!r}\n   want {want}\n   got  {got}")


if __name__ == "__main__":
    main()
