"""Rule-based pathology attribute labeler: report text -> {attribute: 1 | 0 | -1}, absent = not mentioned.

Exact on path-phantom reports (see medbench/data/phantom/path.py for the label definitions) and
tolerant of common real phrasing ("negative for malignancy", "hypercellular", "brisk mitotic
activity", "focal necrosis cannot be excluded", "lymphoplasmacytic infiltrate").

Per sentence and attribute: find a mention, then decide uncertain (hedge words) before negated
(negation words) before positive, in the order CheXpert's labeler uses. Cellularity and
pleomorphism are graded instead: the grade word decides 1 or 0. Over sentences: any 1 -> 1, else
any -1 -> -1, else 0.
"""
from __future__ import annotations

import re

OBSERVATIONS = ("Tumor", "High Cellularity", "Marked Pleomorphism", "Mitoses", "Necrosis", "Inflammation")

MENTIONS = {
    "Tumor": r"carcinoma|malignan|tumou?r|neoplas|sarcoma|lymphoma|melanoma|metasta",
    "High Cellularity": r"cellularity|hypercellular|hypocellular|paucicellular|\bcellular\b",
    "Marked Pleomorphism": r"pleomorph|nuclear atypia|anaplas",
    "Mitoses": r"mitos|mitotic",
    "Necrosis": r"necro",
    "Inflammation": r"inflamm|lymphocytic infiltrate|lymphoplasmacytic|lymphocytes|neutrophil|\binfiltrate",
}
BENIGN = r"\bbenign\b"  # a sentence calling the tissue benign without a tumor word negates Tumor
UNCERTAIN = r"\bpossible\b|\bpossibly\b|cannot (?:be )?exclude|cannot be ruled out|cannot rule out|\bmay\b|suspicious for|" \
            r"\bsuspect|questionable|\bprobable\b|\blikely\b|equivocal|\bcannot be excluded"
NEGATED = r"\bno\b|\bnot\b|\bwithout\b|negative for|\babsent\b|free of|\bnone\b|\bnor\b|\bdevoid of"
HIGH = r"\bhigh\b|\bhighly\b|hypercellular|\bincreased\b|\bdense(?:ly)?\b|\bmarked(?:ly)?\b"
LOW = r"\blow\b|hypocellular|paucicellular|\bdecreased\b|\bsparse(?:ly)?\b|\bscant\b"
MARKED = r"\bmarked(?:ly)?\b|\bsevere\b|\bprominent\b|\bstriking\b|\bhigh[- ]grade\b|\bbizarre\b"
NOT_MARKED = r"\bmild(?:ly)?\b|\bminimal\b|\bslight\b|\bmoderate(?:ly)?\b|\buniform\b|\blow[- ]grade\b|\bno\b|\bwithout\b"


def sentences(report: str) -> list[str]:
    text = re.sub(r"\s+", " ", report.lower())
    return [s.strip() for s in re.split(r"(?<=[.;!?])\s+|\n", text) if s.strip()]


def _polarity(sentence: str) -> int:
    if re.search(UNCERTAIN, sentence):
        return -1
    if re.search(NEGATED, sentence):
        return 0
    return 1


def _graded(sentence: str, high: str, low: str) -> int | None:
    """1 for the high grade word, 0 for the low one or a negation, None when no grade is given."""
    if re.search(low, sentence):
        return 0
    if re.search(high, sentence):
        return 1
    if re.search(NEGATED, sentence):
        return 0
    return None


class PathAttributeLabeler:
    name = "path-attributes"
    domain = "path"
    observations = OBSERVATIONS

    def label(self, report: str) -> dict[str, int]:
        found: dict[str, list[int]] = {k: [] for k in OBSERVATIONS}
        for s in sentences(report or ""):
            for obs, pattern in MENTIONS.items():
                if not re.search(pattern, s):
                    continue
                if obs == "High Cellularity":
                    v = _graded(s, HIGH, LOW)
                elif obs == "Marked Pleomorphism":
                    v = _graded(s, MARKED, NOT_MARKED)
                else:
                    v = _polarity(s)
                if v is not None:
                    found[obs].append(v)
            if re.search(BENIGN, s) and not re.search(MENTIONS["Tumor"], s):
                found["Tumor"].append(0)
        out = {}
        for obs, values in found.items():
            if values:
                out[obs] = 1 if 1 in values else -1 if -1 in values else 0
        return out
