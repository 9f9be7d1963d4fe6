"""Declared options shared by several metric families (``--metric-opt KEY=VALUE``).

A family lists the ones it reads in its MetricSpec ``options=``; the harness checks every
``--metric-opt`` key against the families of the run and passes typed values in ``ctx.options``::

    MetricSpec("image.fidelity", factory, options=(EXTRACTOR, WEIGHTS, KID_SUBSETS, KID_SUBSET_SIZE))
"""
from __future__ import annotations

import difflib

from medbench.options import Option


def check_extractor_name(name: str) -> None:
    """A registered extractor, or ``hf:FOLDER`` (ValueError with the known names and the closest)."""
    from medbench.registry import registry

    if name.startswith("hf:"):
        if not name[3:]:
            raise ValueError("hf: needs a local model folder, e.g. hf:/weights/rad-dino")
        return
    known = registry().names("extractors")
    if name not in known:
        heads = {k.split("-")[0]: k for k in known}  # "incepton" is close to "inception", not to "inception-v3-compat"
        near = difflib.get_close_matches(name, known, n=1) or [heads[h] for h in difflib.get_close_matches(name, heads, n=1)]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"is not a registered extractor{hint}; known: {', '.join(known)}, hf:FOLDER")


def _extractor(name: str, what: str) -> Option:
    return Option(name, str, None, f"feature extractor for {what}: a registered one (medbench list extractors) "
                                   "or hf:FOLDER (default phantom-encoder)", check=check_extractor_name)


EXTRACTOR = _extractor("extractor", "image fidelity (and the other image families unless set apart)")
WEIGHTS = Option("weights", str, None, "local weights (file or folder) for the extractor named by extractor=")
LABEL_EXTRACTOR = _extractor("label_extractor", "label heads (label fidelity, pair consistency)")
LABEL_EXTRACTOR_WEIGHTS = Option("label_extractor_weights", str, None, "local weights for label_extractor")
MEMORIZATION_EXTRACTOR = _extractor("memorization_extractor", "memorization's nearest-neighbour search")
MEMORIZATION_EXTRACTOR_WEIGHTS = Option("memorization_extractor_weights", str, None, "local weights for memorization_extractor")
LABELER = Option("labeler", str, None, "report labeler (medbench list labelers; default: the domain's built-in)")
LABEL_MAPPING = Option("label_mapping", str, None, "label values counted positive: pos (1) or unc_pos (1 and -1; default)",
                       choices=("pos", "unc_pos"))
