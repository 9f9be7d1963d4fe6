"""CheXpert-rule (surface): an offline re-implementation of stanfordmlgroup/chexpert-labeler.

Same output space (14 observations, 1 / 0 / -1 / blank), same clean step, same mention and
unmention phrase lists (substring search), same aggregation and No Finding logic as the original.
The original classifies each mention on a BLLIP dependency parse with NegBio patterns; that parser
cannot be obtained offline, so classification here uses NegEx/ConText-style surface triggers with
scopes (see `chexpert_phrases`), checked in the original's order: pre-negation uncertainty ->
negation -> post-negation uncertainty -> positive. It is *not* CheXbert and not the parser-based
labeler; publish its scores as "CheXpert-rule (surface)". Checked on 356 real-style report sentences
(tests/fixtures/labeler_real_phrasing.jsonl; accuracy per observation in docs/data.md)::

    lab = ChexpertRuleLabeler()
    lab.label("Mild cardiomegaly. No pleural effusion. Possible left lower lobe atelectasis.")
    # {'Cardiomegaly': 1, 'Atelectasis': -1, 'Pleural Effusion': 0}
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from medbench.labelers import chexpert_phrases as P

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1


# ---------------------------------------------------------------- 1-2. clean and split
_SPACER = str.maketrans({".": ". ", ",": ", "})


def clean(report: str) -> str:
    """The original's clean step: lower-case, and/or -> or, a/b -> a or b, '..' -> '.', space after , and ."""
    text = report.lower().replace("and/or", "or")
    text = re.sub(r"(?<=[a-zA-Z])/(?=[a-zA-Z])", " or ", text)
    text = text.replace("..", ".").translate(_SPACER)
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Split a cleaned report after . ! ? (newlines are not boundaries); drop empty sentences."""
    parts = re.split(r"(?<=[.!?])\s+", text)
    return [p.strip() for p in parts if re.search(r"[a-z0-9]", p)]


def extract_section(report: str, section: str, strict: bool = False) -> str:
    """Text of one section ('impression', 'findings'...) up to the next 'HEADER:'; whole text (or '' if strict) when absent."""
    m = re.search(rf"\b{re.escape(section)}\s*:", report, flags=re.IGNORECASE)
    if not m:
        return "" if strict else report
    rest = report[m.end():]
    nxt = re.search(r"\n\s*[A-Z][A-Z /]{2,}:|\b(?:FINDINGS|IMPRESSION|INDICATION|COMPARISON|HISTORY|TECHNIQUE)\s*:", rest)
    return rest[: nxt.start()] if nxt else rest


# ---------------------------------------------------------------- 3. mentions
@dataclass(frozen=True)
class Mention:
    observation: str
    phrase: str
    start: int
    end: int
    text: str


def _word(pattern: str) -> re.Pattern:
    return re.compile(rf"(?<!\w)(?:{pattern})(?!\w)")


class _Rules:
    """Compiled phrase and trigger tables (built once per labeler)."""

    def __init__(self):
        self.mentions = {obs: [(ph, re.compile(re.escape(ph))) for ph in phrases] for obs, phrases in P.MENTIONS.items()}
        unmentions = {**P.UNMENTIONS, **P.positional_unmentions()}
        self.unmentions = {obs: re.compile("|".join(re.escape(u) for u in us)) for obs, us in unmentions.items()}
        self.triggers = {
            rule: [(_word(p), d, w) for p, d, w in table]
            for rule, table in (("preneg", P.PRE_NEGATION_UNCERTAINTY), ("neg", P.NEGATION),
                                ("unc", P.POST_NEGATION_UNCERTAINTY), ("cardiac", P.CARDIAC_STABLE))
        }
        self.pseudo = [_word(p) for p in P.PSEUDO]
        self.obscured = _word(P.SILHOUETTE_OBSCURED)
        self.terminators = re.compile(P.TERMINATORS)
        self.forward_terminators = re.compile(P.FORWARD_TERMINATORS)
        self.coordinators = re.compile(P.COORDINATORS)
        self.always_uncertain = set(P.ALWAYS_UNCERTAIN)


def find_mentions(rules: _Rules, sentence: str) -> list[Mention]:
    """Every phrase match of every observation, minus those overlapping one of its unmentions."""
    found = []
    for obs, phrases in rules.mentions.items():
        blockers = rules.unmentions.get(obs)
        spans = [m.span() for m in blockers.finditer(sentence)] if blockers else []
        for phrase, rx in phrases:
            for m in rx.finditer(sentence):
                s, e = m.span()
                if any(s < ue and e > us for us, ue in spans):
                    continue
                found.append(Mention(obs, phrase, s, e, sentence[s:e]))
    return found


# ---------------------------------------------------------------- 4. classification
@dataclass(frozen=True)
class Trigger:
    start: int
    end: int
    rule: str  # preneg | neg | unc | cardiac | pseudo
    direction: str  # fwd | bwd | both
    window: int | None


class SentenceRules:
    """Triggers and terminators of one sentence; `classify` labels a mention inside it."""

    def __init__(self, rules: _Rules, sentence: str):
        self.rules, self.text = rules, sentence
        cands = [Trigger(m.start(), m.end(), rule, d, w)
                 for rule, table in rules.triggers.items() for rx, d, w in table for m in rx.finditer(sentence)]
        cands += [Trigger(m.start(), m.end(), "pseudo", "both", 0) for rx in rules.pseudo for m in rx.finditer(sentence)]
        # longest first; on a tie a post-trigger wins ("heart size normal." is predicative)
        cands.sort(key=lambda t: (-(t.end - t.start), t.direction != "bwd", t.start))
        kept: list[Trigger] = []
        for c in cands:
            if all(c.end <= k.start or c.start >= k.end for k in kept):
                kept.append(c)
        self.triggers = sorted((t for t in kept if t.rule != "pseudo"), key=lambda t: t.start)
        free = lambda m: all(m.end() <= k.start or m.start() >= k.end for k in kept)  # noqa: E731
        self.stops = [m.span() for m in rules.terminators.finditer(sentence) if free(m)]
        self.forward_stops = self.stops + [m.span() for m in rules.forward_terminators.finditer(sentence) if free(m)]
        self.obscured = [m.span() for m in rules.obscured.finditer(sentence)]

    def _clause(self, pos: int) -> tuple[int, int]:
        start = max([e for s, e in self.stops if e <= pos], default=0)
        end = min([s for s, e in self.stops if s >= pos], default=len(self.text))
        return start, end

    def covers(self, t: Trigger, m: Mention) -> bool:
        """Is mention m inside trigger t's scope?"""
        if t.direction in ("fwd", "both") and t.end <= m.start:
            lo, hi, stops, forward = t.end, m.start, self.forward_stops, True
        elif t.direction in ("bwd", "both") and t.start >= m.end:
            lo, hi, stops, forward = m.end, t.start, self.stops, False
        else:
            return False
        if any(lo <= s and e <= hi for s, e in stops):
            return False
        gap = self.text[lo:hi]
        if t.window is not None and len(re.findall(r"\w+", gap)) > t.window:
            return False
        if "," in gap:  # a comma is crossed only inside a coordinated list
            c0, c1 = self._clause(t.start)
            span = self.text[t.start:c1] if forward else self.text[c0:t.end]
            if not self.rules.coordinators.search(span):
                return False
        return True

    def classify(self, m: Mention) -> int:
        head = m.phrase.strip().split()[-1]
        if any(t.rule == "preneg" and self.covers(t, m) for t in self.triggers):
            return UNCERTAIN
        if any(t.rule == "neg" and self.covers(t, m) for t in self.triggers):
            return NEGATIVE
        if head == "silhouette" and any(self.covers(Trigger(s, e, "neg", "both", None), m) for s, e in self.obscured):
            return NEGATIVE
        if any(t.rule == "unc" and self.covers(t, m) for t in self.triggers):
            return UNCERTAIN
        if head in P.CARDIAC_HEADS and any(t.rule == "cardiac" and self.covers(t, m) for t in self.triggers):
            return UNCERTAIN
        if m.phrase in self.rules.always_uncertain:
            return UNCERTAIN
        return POSITIVE


# ---------------------------------------------------------------- 5. aggregation
def aggregate(observations: tuple[str, ...], mentions: list[tuple[Mention, int]]) -> dict[str, int]:
    """The original's per-report aggregation, chf/heart-failure rule and No Finding logic."""
    found: dict[str, list[int]] = {}
    no_finding = True
    for m, label in mentions:
        if m.observation != "Support Devices" and label in (POSITIVE, UNCERTAIN):
            no_finding = False
        if m.observation == "No Finding":
            continue
        if label in (POSITIVE, UNCERTAIN) and m.text in ("chf", "heart failure"):
            found.setdefault("Cardiomegaly", []).append(UNCERTAIN)
        found.setdefault(m.observation, []).append(label)
    if no_finding:
        found["No Finding"] = [POSITIVE]
    out = {}
    for obs in observations:
        if obs not in found:
            continue
        ls = found[obs]
        if len(ls) == 1:
            out[obs] = ls[0]
        elif NEGATIVE in ls and UNCERTAIN in ls:
            out[obs] = UNCERTAIN
        elif NEGATIVE in ls and POSITIVE in ls:
            out[obs] = POSITIVE
        elif UNCERTAIN in ls and POSITIVE in ls:
            out[obs] = POSITIVE
        else:
            out[obs] = ls[0]
    return out


class ChexpertRuleLabeler:
    """Report -> {observation: 1 | 0 | -1}; unmentioned observations are absent.

    section: None labels the whole report; e.g. 'impression' labels only that section (falling back
    to the whole report, or to an empty document when strict=True).
    """

    name = "chexpert-rule"
    domain = "cxr"
    display_name = "CheXpert-rule (surface)"
    observations = P.OBSERVATIONS

    def __init__(self, section: str | None = None, strict: bool = False):
        self.section, self.strict = section, strict
        self._rules = _Rules()

    def mentions(self, report: str) -> list[tuple[str, Mention, int]]:
        """(sentence, mention, label) for every mention: for debugging and per-sentence tests."""
        text = extract_section(report, self.section, self.strict) if self.section else report
        out = []
        for sentence in split_sentences(clean(text or "")):
            ctx = SentenceRules(self._rules, sentence)
            for m in find_mentions(self._rules, sentence):
                out.append((sentence, m, ctx.classify(m)))
        return out

    def label(self, report: str) -> dict[str, int]:
        if not isinstance(report, str):
            raise TypeError(f"chexpert-rule labels report strings, got {type(report).__name__}")
        return aggregate(self.observations, [(m, lab) for _, m, lab in self.mentions(report)])
