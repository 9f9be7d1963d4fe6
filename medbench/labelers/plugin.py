"""Built-in labelers, registered through the ``medbench`` entry-point group, and `labeler_for`."""
from __future__ import annotations

from medbench import hookimpl
from medbench.labelers.base import Labeler
from medbench.registry import LabelerSpec, registry


def _chexpert_rule() -> Labeler:
    from medbench.labelers.chexpert_rule import ChexpertRuleLabeler

    return ChexpertRuleLabeler()


def _path_attributes() -> Labeler:
    from medbench.labelers.path_attributes import PathAttributeLabeler

    return PathAttributeLabeler()


@hookimpl
def medbench_labelers():
    return [
        LabelerSpec("chexpert-rule", "cxr", _chexpert_rule,
                    "CheXpert-rule (surface): offline re-implementation of the rule-based CheXpert labeler "
                    "(phrase lists + NegEx-style negation/uncertainty); not CheXbert"),
        LabelerSpec("path-attributes", "path", _path_attributes,
                    "pathology report attributes (tissue, cellularity, pleomorphism, mitoses, necrosis, inflammation)"),
    ]


BUILTIN = ("chexpert-rule", "path-attributes")


def labeler_spec_for(domain: str, name: str | None = None) -> LabelerSpec:
    """The LabelerSpec for a dataset domain (or the one named). With several for one domain the
    built-in wins, so a third-party labeler is used when asked for by name. KeyError lists what exists."""
    reg = registry()
    if name is not None:
        return reg.get("labelers", name)
    specs = [reg.get("labelers", n) for n in reg.names("labelers")]
    matches = [s for s in specs if s.domain == domain]
    if not matches:
        known = ", ".join(f"{s.name} ({s.domain})" for s in specs) or "(none)"
        raise KeyError(f"no labeler registered for domain {domain!r}. Known labelers: {known}")
    return sorted(matches, key=lambda s: (s.name not in BUILTIN, s.name))[0]


def labeler_for(domain: str, name: str | None = None) -> Labeler:
    """A ready labeler for a dataset domain (or the one named)."""
    return labeler_spec_for(domain, name).factory()
