"""Phrase and trigger lists of the CheXpert-rule (surface) labeler, as plain data.

Mention lists follow stanfordmlgroup/chexpert-labeler's ``phrases/mention`` files (re-expressed
here; a leading/trailing space plays the role of the original's underscore word boundary). The
classification rules of the original are dependency-graph patterns (``patterns/*.txt``); here they
are re-expressed as NegEx/ConText-style surface triggers with a direction and a scope:

- ``fwd``: the trigger governs mentions after it, ``bwd``: mentions before it, ``both``: either;
- scope ends at the sentence end or a terminator (see `TERMINATORS`); a comma is crossed only
  inside a coordinated list (the clause contains "and"/"or"/"nor");
- ``window``: at most that many words between trigger and mention (None = clause scope).

Every trigger is a regular expression matched on the cleaned (lower-case) sentence with word
boundaries; overlapping triggers are resolved longest-first, so "cannot exclude" wins over "not".
"""
from __future__ import annotations

OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
COMPETITION5 = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")

# ---------------------------------------------------------------- mentions (substring search)
MENTIONS: dict[str, list[str]] = {
    "Atelectasis": ["atelecta", "collapse"],
    "Cardiomegaly": ["cardiomegaly", "the heart", "heart size", "cardiac enlargement", "cardiac size",
                     "cardiac shadow", "cardiac contour", "cardiac silhouette", "enlarged heart"],
    "Consolidation": ["consolidat"],
    "Edema": ["edema", "heart failure", "chf", "vascular congestion", "pulmonary congestion", "indistinctness",
              "vascular prominence"],
    "Enlarged Cardiomediastinum": [" mediastinum", "cardiomediastinum", "contour", "mediastinal configuration",
                                   "mediastinal silhouette", "pericardial silhouette",
                                   "cardiac silhouette and vascularity"],
    "Fracture": ["fracture"],
    "Lung Lesion": ["mass", "nodular density", "nodular densities", "nodular opacity", "nodular opacities",
                    "nodular opacification", "nodule", "lump", "cavitary lesion", "carcinoma", "neoplasm", "tumor"],
    "Lung Opacity": ["opaci", "decreased translucency", "increased density", "airspace disease", "air-space disease",
                     "air space disease", "infiltrate", "infiltration", "interstitial marking", "interstitial pattern",
                     "interstitial lung", "reticular pattern", "reticular marking", "reticulation",
                     "parenchymal scarring", "peribronchial thickening", "wall thickening", "scar"],
    "Pleural Effusion": ["pleural fluid", "effusion"],
    "Pleural Other": ["pleural thickening", "fibrosis", "fibrothorax", "pleural scar", "pleural parenchymal scar",
                      "pleuro-parenchymal scar", "pleuro-pericardial scar"],
    "Pneumonia": ["pneumonia", "infection", "infectious process", "infectious"],
    "Pneumothorax": ["pneumothorax", "pneumothoraces"],
    "Support Devices": ["pacer", " line ", "lines", "picc", "tube", "valve", "catheter", "pacemaker", "hardware",
                        "arthroplast", "marker", "icd", "defib", "device", "drain ", "plate", "screw", "cannula",
                        "apparatus", "coil", "support", "equipment", "mediport"],
    # Not a list of normal phrases: other abnormalities whose positive/uncertain mention vetoes No Finding.
    "No Finding": ["emphysema", "blunt", "density", "elevation", "eventration", "scoliosis", "degenera", "calcifi",
                   "hyperinflation", "bronchospasm", "asthma", "hernia", "copd", "interstitial markings", "plaque",
                   "osteophytosis", "aortic disease", "bronchiolitis", "airways disease", "thickening",
                   "cephalization", "aspiration", "bullae", "hyperinflat", "contusion", "atherosclero", "osteopenia",
                   "metastasis", "granuloma", "pneumomediastinum", "pneumoperitoneum", "osteodystrophy", "cuffing",
                   "irregular lucency", "inflam", "fissure", "hypertension", "prominen", "kyphosis", "defib",
                   "hyperexpansion", "bullet", "reticula", "thoracentesis", "bronchitis", "volume loss", "deformity",
                   "hemorrhage", "hematoma", "radiopaque", "aerophagia", "arthropathy", "tracheostomy"],
}

UNMENTIONS: dict[str, list[str]] = {
    "Lung Lesion": ["calcified nodul", "massive", "massengale"],
    "Lung Opacity": ["pleural scar"],
    "Pleural Effusion": ["pericardial effusion"],
}
POSITIONAL_HEADS = ("over the", "overly the", "in the")
POSITIONAL_SIDES = ("", " superior", " left", " right")


def positional_unmentions() -> dict[str, list[str]]:
    """The original's generated unmentions ("tip over the cardiac silhouette" is not a cardiac mention).

    Built exactly as chexpert-labeler's ``add_unmention_phrases``: Cardiomegaly mentions other than
    cardiomegaly/cardiac enlargement with "the " removed; Enlarged Cardiomediastinum mentions as they
    are (so " mediastinum" yields a double space that never matches cleaned text, as in the original).
    """
    heads = [h + s for h in POSITIONAL_HEADS for s in POSITIONAL_SIDES]
    cardio = [h + " " + m.replace("the ", "") for h in heads for m in MENTIONS["Cardiomegaly"]
              if m not in ("cardiomegaly", "cardiac enlargement")]
    medi = [h + " " + m for h in heads for m in MENTIONS["Enlarged Cardiomediastinum"]]
    return {"Cardiomegaly": cardio, "Enlarged Cardiomediastinum": medi}


# ---------------------------------------------------------------- classification triggers
# (regex, direction, window). Order of the rule sets is the original's: pre-negation uncertainty,
# negation, post-negation uncertainty; a mention governed by none is positive.
_EXCLUDE = r"(?:excluded|ruled out)"
PRE_NEGATION_UNCERTAINTY = [
    (r"(?:cannot|can not|could not|can't) (?:be )?(?:entirely |completely |definitely )?(?:exclude|rule out)", "fwd", None),
    (r"(?:cannot|can not|could not|can't|may not|is not|are not|not) (?:be )?(?:entirely |completely |definitely )?" + _EXCLUDE, "bwd", None),
    (r"no evidence to rule out", "fwd", None),
    # "heart size is upper limits normal or mildly enlarged": a hedge between normal and enlarged
    (r"(?:(?:at )?(?:the )?upper limits? (?:of )?|top |high |borderline )?normal,? or (?:\w+ly )?(?:enlarged|increased|prominent)",
     "bwd", None),
    (r"no new(?: area of| areas of)?", "fwd", None),
]

NEGATION = [
    # pre-triggers: no X, without X, negative for X ...
    (r"no evidence of|no evidence for|no signs? of|no findings? of|no definite|no obvious|no focal|no focus of", "fwd", None),
    (r"without evidence of|without evidence for|without development of|without findings of", "fwd", None),
    (r"no|not|without|nor|absence of|negative for|free of|clear of|rather than", "fwd", None),
    (r"(?:interval )?resolution of|removal of|disappearance of|drainage of|clearing of|history of", "fwd", None),
    (r"(?:to )?exclude|(?:to )?rule out", "fwd", None),
    (r"normal|unremarkable", "fwd", None),  # normal heart size, unremarkable mediastinum
    # post-triggers: X is absent / has resolved / is normal ...
    (r"(?:is|are|now|has|have|been|otherwise)? ?(?:absent|resolved|cleared|removed)", "bwd", None),
    (r"(?:is|are) no longer (?:seen|visualized|present|evident|identified|demonstrated)|no longer (?:seen|visualized|present|evident)", "bwd", None),
    (r"(?:is|are|was|were) not (?:seen|identified|present|evident|demonstrated)", "bwd", None),
    (r"(?:is|are) not enlarged|not enlarged", "bwd", None),
    (r"(?:is|are|appears?|remains?|otherwise|now)? ?(?:normal|unremarkable)(?: in (?:size|appearance|caliber|contour))?"
     r"(?=\s*(?:$|[.,;:]|and\b|or\b|but\b|with\b|without\b|for\b|given\b|allowing\b))", "bwd", None),
    (r"(?:of |is |are )?(?:normal|unremarkable) (?:size|caliber|appearance|configuration|contour)", "bwd", None),
    (r"(?:at the |at )?upper limits? (?:of )?normal|within normal limits", "bwd", None),
]
SILHOUETTE_OBSCURED = r"obscur\w*"  # "X silhouette is obscured" is negative for a silhouette mention

POST_NEGATION_UNCERTAINTY = [
    (r"may|might|could|would|possible|possibly|presumably|probable|probably|likely|less likely|questionable"
     r"|question of|suspect|suspected|suspicious for|suspicion for|suspicion of|worrisome for|concern for"
     r"|concerning for|suggestion of|favor|favors|consider|considered|maybe|differential diagnosis includes"
     r"|differential includes|differential diagnosis|compatible with|secondary to"
     r"|correlate clinically for|clinical correlation for|correlation for symptoms of", "fwd", None),
    (r"(?:is|are) suspected|(?:is|are) possible|(?:is|are) questionable|(?:is|are) (?:less )?likely"
     r"|(?:may|might|could|can) (?:also )?(?:be )?(?:\w+ly )?(?:present|enlarged|seen|noted|appear)"
     r"|(?:is|are) (?:poorly|incompletely) (?:evaluated|assessed|visualized)|poorly evaluated"
     r"|(?:is|are|was|were) not (?:well )?(?:evaluated|visualized|assessed)|not clearly (?:seen|visualized)"
     r"|(?:is|are|was|were) not appreciated|(?:cannot|can not) be (?:evaluated|assessed)", "bwd", None),
    (r"versus|vs|obscur\w*|borderline|suspected", "both", None),
    (r"or", "both", 2),  # X or Y: the two coordinated nouns, not a subject three words back
]

# Mentions that the original always calls uncertain unless negated (post-negation patterns).
ALWAYS_UNCERTAIN = ("vascular congestion", "pulmonary congestion", "indistinctness", "vascular prominence")

# CheXpert additions: stable/unchanged cardiac and mediastinal statements are uncertain. They apply only
# to mentions whose head word is one of CARDIAC_HEADS ("heart size is stable" but not "stable cardiomegaly").
CARDIAC_HEADS = ("cardiomediastinal", "pericardial", "mediastinal", "mediastinum", "cardiomediastinum", "contour",
                 "configuration", "silhouette", "size", "heart", "shadow")
CARDIAC_STABLE = [
    (r"(?:but |and )?(?:stable|unchanged)|not changed|no change in|without change in|similar to (?:the )?(?:prior|previous)"
     r"|similar in appearance|stable appearance of|not significantly changed", "both", None),
]

# Matched so that they consume their words, then ignored (NegEx pseudo-triggers).
PSEUDO = [
    r"no (?:significant |interval |significant interval )?(?:change|increase|decrease|worsening)",
    r"not only|gram negative|no longer|consistent with|not necessarily|without change",
]

# Scope terminators. FORWARD_TERMINATORS end only a pre-trigger's scope ("no effusion and the heart is
# enlarged"), they may sit inside a subject list that a post-trigger reaches back over.
TERMINATORS = r";|:|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bwhich\b|\bexcept\b|\baside from\b|\bapart from\b" \
              r"|\bwith\b|\bwhereas\b|\bwhile\b"
FORWARD_TERMINATORS = r"\band\b(?= (?:the|a|an|there)\b)|\bthere (?:is|are|was|were|has been|have been)\b"
COORDINATORS = r"\b(?:and|or|nor)\b"
