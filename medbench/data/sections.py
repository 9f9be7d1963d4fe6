"""Report preprocessing as a named protocol: which section, what happens to de-identification
placeholders, case and tokens. Papers differ exactly here, so the choice has a short name that goes
into ``dataset.preprocessing["report"]`` (run.json) and can be quoted in metric variants.

Sections follow the MIMIC-CXR section parser the field uses (MIT-LCP mimic-cxr ``txt/``): a heading
is an upper-case name followed by a colon at the start of a line (``FINDINGS:``, `` IMPRESSION:``);
the text before the first heading is the *preamble*; heading names are normalised (``IMPRESSIONS``,
``CONCLUSION`` and ``FINDINGS AND IMPRESSION`` count as impression, ``FINDING`` as findings, common
misspellings by closeness). A report with no FINDINGS and no IMPRESSION may fall back to its last
paragraph (``fallback=last_paragraph``, as the MIMIC-CXR ``create_section_files.py`` does).

=================  =====================================================================
option             values
=================  =====================================================================
section            findings+impression (default) | findings | impression | full
fallback           none (default: the sample is bad) | last_paragraph
deid               keep (default: ``___`` / ``XXXX`` left as written) | drop | mask (one ``[deid]``)
case               keep (default) | lower
tokens             keep (default) | words (lower-cased words and ``.`` only, R2Gen-style)
=================  =====================================================================

The name lists only what differs from the defaults after the section, e.g. ``findings|deid=keep``
is spelled ``findings``; ``impression|deid=drop|lower``.

Usage::

    proto = ReportProtocol(section="findings", deid="drop")
    proto.name                          # 'findings|deid=drop'
    proto.apply(raw_report_text)        # (text, None) or (None, "no FINDINGS section in the report")
"""
from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass

from medbench.options import Option

SECTIONS = ("findings+impression", "findings", "impression", "full")
FALLBACKS = ("none", "last_paragraph")
DEID = ("keep", "drop", "mask")
CASES = ("keep", "lower")
TOKENS = ("keep", "words")
DEID_MASK = "[deid]"

# A heading: start of a line (optional indent), upper-case words, a colon. The MIMIC parser's
# pattern is "\n ([A-Z ()/,-]+):\s"; the start of the text counts as a line start here too.
_HEADING = re.compile(r"(?:^|\n)[ \t]*([A-Z][A-Z ()/,&-]*[A-Z)])[ \t]*:(?=\s|$)")
# ___ (MIMIC-CXR, any run of 2+ underscores) and XXXX (IU X-Ray, any run of 2+ X as a word)
_DEID = re.compile(r"_{2,}|(?<![A-Za-z])X{2,}(?![A-Za-z])")
_CANONICAL = {
    "findings": "findings", "finding": "findings", "reference findings": "findings", "chest, two views": "findings",
    "impression": "impression", "impressions": "impression", "conclusion": "impression", "conclusions": "impression",
    "findings and impression": "impression", "findings/impression": "impression", "impression and findings": "impression",
    "summary": "impression", "opinion": "impression",
    "indication": "indication", "reason for examination": "indication", "reason for exam": "indication",
    "clinical indication": "indication", "history": "history", "clinical history": "history",
    "clinical information": "history", "patient history": "history", "comparison": "comparison",
    "comparisons": "comparison", "comparison exam": "comparison", "technique": "technique",
    "examination": "examination", "exam": "examination", "type of examination": "examination",
    "recommendation": "recommendations", "recommendations": "recommendations", "recommendation(s)": "recommendations",
    "notification": "notification", "addendum": "addendum", "wet read": "wet read", "wetread": "wet read",
}

OPTIONS = (
    Option("section", str, "findings+impression", "report section(s) to use", choices=SECTIONS),
    Option("fallback", str, "none", "when the section is absent: none (bad sample) or the last paragraph",
           choices=FALLBACKS),
    Option("deid", str, "keep", "de-identification placeholders (___, XXXX): keep, drop or mask as [deid]",
           choices=DEID),
    Option("case", str, "keep", "keep or lower the case of the report text", choices=CASES),
    Option("tokens", str, "keep", "keep the text or reduce it to words and '.' (R2Gen-style)", choices=TOKENS),
)


def heading_name(raw: str) -> str:
    """A heading as the MIMIC parser normalises it: lower-case, known aliases, misspellings by closeness."""
    name = " ".join(raw.lower().split())
    if name in _CANONICAL:
        return _CANONICAL[name]
    close = difflib.get_close_matches(name, ("findings", "impression", "indication", "comparison"), n=1, cutoff=0.8)
    return close[0] if close else name


def split_sections(text: str) -> dict[str, str]:
    """{normalised heading: text}; text before the first heading is 'preamble'. A repeated heading is joined."""
    heads = list(_HEADING.finditer(text))
    out: dict[str, str] = {}
    pre = text[: heads[0].start()] if heads else text
    if pre.strip():
        out["preamble"] = pre.strip()
    for m, nxt in zip(heads, heads[1:] + [None]):
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        name = heading_name(m.group(1))
        out[name] = f"{out[name]} {body}".strip() if name in out else body
    return out


def last_paragraph(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    return paragraphs[-1] if paragraphs else ""


@dataclass(frozen=True)
class ReportProtocol:
    section: str = "findings+impression"
    fallback: str = "none"
    deid: str = "keep"
    case: str = "keep"
    tokens: str = "keep"

    def __post_init__(self):
        for opt in OPTIONS:
            opt.parse(getattr(self, opt.name))  # ValueError naming the allowed values

    @classmethod
    def from_options(cls, options: dict) -> "ReportProtocol":
        return cls(**{o.name: options[o.name] for o in OPTIONS if options.get(o.name) is not None})

    @property
    def name(self) -> str:
        parts = [self.section]
        parts += [f"{o.name}={getattr(self, o.name)}" for o in OPTIONS[1:3] if getattr(self, o.name) != o.default]
        parts += [v for v in (self.case, self.tokens) if v != "keep"]
        return "|".join(parts)

    def describe(self) -> dict:
        """For ``dataset.preprocessing["report"]``: the name and every setting."""
        return {"protocol": self.name, **asdict(self)}

    def choose(self, text: str, parts: dict[str, str] | None = None) -> str:
        """The chosen section text ('' when absent and no fallback applies), before cleaning.
        `parts`: sections already known (IU X-Ray's XML); by default `split_sections(text)`."""
        if self.section == "full":
            return text.strip()
        parts = split_sections(text) if parts is None else parts
        wanted = {"findings+impression": ("findings", "impression")}.get(self.section, (self.section,))
        chosen = " ".join(parts[w] for w in wanted if parts.get(w))
        if not chosen and self.fallback == "last_paragraph" and not ({"findings", "impression"} & set(parts)):
            chosen = last_paragraph(text)
        return chosen

    def clean(self, text: str) -> str:
        if self.deid == "drop":
            text = re.sub(r"\s+(?=[.,;:])", "", _DEID.sub(" ", text))
        elif self.deid == "mask":
            text = _DEID.sub(DEID_MASK, text)
        if self.tokens == "words":
            return words(text)
        text = " ".join(text.split())
        return text.lower() if self.case == "lower" else text

    def apply(self, text: str, parts: dict[str, str] | None = None) -> tuple[str | None, str | None]:
        """(report, None), or (None, why) when the section is missing or nothing is left."""
        chosen = self.choose(text, parts)
        if not chosen:
            return None, f"no {self.section.upper().replace('+', ' or ')} section in the report"
        cleaned = self.clean(chosen)
        if not cleaned.strip(" ."):
            return None, f"nothing left of the {self.section.upper()} text after deid={self.deid}"
        return cleaned, None


def words(text: str) -> str:
    """Lower-cased words with ' .' after each sentence, punctuation dropped (R2Gen's clean_report style)."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text.lower()):
        tokens = re.findall(r"[a-z0-9]+", sentence.replace(DEID_MASK, " deidmask "))
        tokens = [DEID_MASK if t == "deidmask" else t for t in tokens]
        if tokens:
            out.append(" ".join(tokens) + " .")
    return " ".join(out)
