"""CheXpert-rule (surface) on real radiology phrasing: tests/fixtures/labeler_real_phrasing.jsonl.

Each line holds a report sentence (or a short report) in MIMIC-CXR / IU X-Ray style and the labels
stanfordmlgroup/chexpert-labeler's rules give it (14 observations, 1 / 0 / -1, absent = blank,
No Finding by the original's rule); docs/data.md lists where medbench decides differently.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medbench.labelers.chexpert_phrases import OBSERVATIONS
from medbench.labelers.chexpert_rule import ChexpertRuleLabeler

ROWS = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "labeler_real_phrasing.jsonl")
        .read_text(encoding="utf-8").splitlines() if line.strip()]
LABELER = ChexpertRuleLabeler()


def test_the_set_covers_every_observation_and_each_label_kind():
    assert len(ROWS) >= 300
    assert len({r["text"] for r in ROWS}) == len(ROWS)
    seen = {(obs, v) for r in ROWS for obs, v in r["expected"].items()}
    for obs in OBSERVATIONS[1:]:
        assert {(obs, 1), (obs, 0)} <= seen, obs
        if obs != "Support Devices":
            assert (obs, -1) in seen, obs
    assert ("No Finding", 1) in seen
    assert {r["group"] for r in ROWS} >= {"cardiac", "mediastinum", "lists", "no finding", "deid"}


@pytest.mark.parametrize("text, expected", [
    ("Heart and mediastinum normal.", {"Enlarged Cardiomediastinum": 0, "No Finding": 1}),  # "heart" alone: no mention
    ("The heart and mediastinal contours are stable.", {"Cardiomegaly": -1, "Enlarged Cardiomediastinum": -1}),
    ("Heart size is upper limits normal or mildly enlarged.", {"Cardiomegaly": -1}),
])
def test_the_three_sentences_of_the_issue(text, expected):
    assert {r["text"]: r["expected"] for r in ROWS}[text] == expected
    assert LABELER.label(text) == expected


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}:{r['text'][:40]}" for i, r in enumerate(ROWS)])
def test_sentence(row):
    assert LABELER.label(row["text"]) == row["expected"]
