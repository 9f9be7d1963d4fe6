"""The plain records that travel between stages: samples, requests, outputs.

Data flows one way (DESIGN §2): a Dataset yields Samples, the runner turns them into Requests,
a Model answers with Outputs, metrics score (Sample, Output) pairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

Split = Literal["train", "val", "test"]
RequestKind = Literal["report->image", "image->report", "prompt->pair"]
REQUEST_KINDS: tuple[str, ...] = ("report->image", "image->report", "prompt->pair")


@dataclass(frozen=True)
class Sample:
    """One study: an image and/or its report, with optional labels.

    labels: observation -> 1 (positive), 0 (negative), -1 (uncertain); absent keys are blank.
    prompt: a short request text for prompted pair generation; when None the first sentence
    of the report is used (MeDiM's convention).
    """

    id: str
    patient_id: str
    domain: str
    split: Split
    image_path: Path | None
    report: str | None
    labels: dict[str, int] | None = None
    prompt: str | None = None

    def load_image(self) -> Image.Image:
        """The image as a PIL image (fully decoded, file closed); .dcm through `medbench.data.dicom`."""
        if self.image_path is None:
            raise ValueError(f"sample {self.id!r} has no image")
        if str(self.image_path).lower().endswith(".dcm"):
            from medbench.data.dicom import read_dicom

            return read_dicom(self.image_path).image
        with Image.open(self.image_path) as im:
            im.load()
            return im.copy()

    def prompt_text(self) -> str:
        if self.prompt:
            return self.prompt
        if not self.report:
            raise ValueError(f"sample {self.id!r} has neither a prompt nor a report")
        head = self.report.strip().split(".")[0].strip()
        return head + "."


@dataclass(frozen=True)
class Request:
    """One thing a model must produce.

    kind 'report->image' gives `report`; 'image->report' gives `image`; 'prompt->pair' gives `prompt`.
    `seed` is derived from the run seed and the sample id, so results do not depend on batching or
    on how requests are sharded over processes.
    """

    kind: RequestKind
    sample_id: str
    seed: int
    domain: str
    report: str | None = None
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    prompt: str | None = None


@dataclass
class Output:
    """What a model returned for one request: an image, a report, or both."""

    sample_id: str
    image: Image.Image | None = None
    report: str | None = None


def produces(kind: str) -> tuple[str, ...]:
    """Which modalities a request kind must produce."""
    return {"report->image": ("image",), "image->report": ("report",), "prompt->pair": ("image", "report")}[kind]
