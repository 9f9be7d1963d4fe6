"""A dataset is a list of samples per split, plus a fingerprint for provenance."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from medbench.records import Sample


@dataclass
class Dataset:
    name: str
    domain: str
    samples: list[Sample]
    source: str = ""  # where it came from (a folder, a manifest, a generator and its seed)
    bad: list["BadSample"] = field(default_factory=list)  # filled by validation
    # what was done to the files on the way in (report sections, DICOM conversion), for run.json;
    # a dataset holding .dcm images gets the DICOM pipeline recorded under "image" automatically
    preprocessing: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a user should know about how it loaded (run.json warnings)

    def __post_init__(self):
        if "image" not in self.preprocessing and any(
                s.image_path is not None and str(s.image_path).lower().endswith(".dcm") for s in self.samples):
            from medbench.data.dicom import DICOM_PIPELINE

            self.preprocessing = {**self.preprocessing, "image": DICOM_PIPELINE}

    def split(self, split: str) -> list[Sample]:
        return [s for s in self.samples if s.split == split]

    def manifest_sha256(self) -> str:
        """sha256 over (id, split, patient, report, image path, labels) of every sample."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: (s.split, s.id)):
            row = [s.id, s.split, s.patient_id, s.domain, s.report, str(s.image_path) if s.image_path else None, s.labels]
            h.update(json.dumps(row, sort_keys=True).encode())
        return h.hexdigest()


def dataset_domain(samples: list[Sample], fallback: str, where: str) -> tuple[str, list[str]]:
    """The domain of a file dataset and, when its samples disagree ("mixed"), a note saying which
    samples made it so: the families that need one domain (clinical, label fidelity, pair consistency)
    cannot run on a mixed dataset, and the user should see why."""
    from collections import Counter

    counts = Counter(s.domain for s in samples)
    if not counts:
        return fallback, []
    if len(counts) == 1:
        return next(iter(counts)), []
    main = counts.most_common(1)[0][0]
    strays = [s.id for s in samples if s.domain != main]
    shown = ", ".join(f"{d!r} ({n})" for d, n in counts.most_common())
    return "mixed", [f"{where}: the samples disagree on their domain ({shown}), so the dataset is 'mixed' and the "
                     f"families that need one domain are skipped; the samples not {main!r}: "
                     f"{', '.join(strays[:10])}{' ...' if len(strays) > 10 else ''} (fix their \"domain\" or drop it)"]


@dataclass(frozen=True)
class BadSample:
    """One sample that failed validation: which file and what is wrong with it."""

    id: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f" (sample {self.id!r})" if self.id else "")
