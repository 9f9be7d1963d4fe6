"""The labeler contract shared by the clinical, pair-consistency and downstream metrics."""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Labeler(Protocol):
    name: str  # e.g. "chexpert-rule"
    domain: str  # dataset domain it serves, e.g. "cxr" or "path"
    observations: tuple[str, ...]  # every label it can emit, in a fixed order

    def label(self, report: str) -> dict[str, int]:
        """{observation: 1 | 0 | -1}; unmentioned observations are absent (blank)."""
        ...


def label_many(labeler: Labeler, reports: list[str]) -> list[dict[str, int]]:
    return [labeler.label(r) for r in reports]
