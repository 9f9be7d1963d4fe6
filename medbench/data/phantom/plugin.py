"""Registers the phantom datasets `cxr-phantom` and `path-phantom` (SYNTHETIC test data, not clinical).

Options (from the CLI as strings or from a task spec): size (32-256, default 64), n_train (4000),
n_val (500), n_test (1000), seed (0). The first load generates into the cache; later loads read it.
"""
from __future__ import annotations

from medbench import hookimpl
from medbench.registry import DatasetSpec

OPTIONS = {"size": 64, "n_train": 4000, "n_val": 500, "n_test": 1000, "seed": 0}


def phantom_options(options: dict | None) -> dict:
    """Defaults filled in, CLI strings coerced to int; unknown keys are an error naming the known ones."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS) - {"home"})
    if unknown:
        raise ValueError(f"unknown phantom dataset option(s) {unknown}; known: {sorted(OPTIONS)}")
    out = dict(OPTIONS)
    for key, value in options.items():
        if key == "home":
            out[key] = value
            continue
        try:
            out[key] = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"phantom dataset option {key} must be an integer, got {value!r}") from None
    return out


def _loader(domain: str):
    def load(options: dict | None = None):
        from medbench.data.folder import load_folder
        from medbench.data.phantom.generate import ensure_phantom

        root = ensure_phantom(domain, **phantom_options(options))
        return load_folder(root, name=f"{domain}-phantom", domain=domain)

    return load


@hookimpl
def medbench_datasets():
    return [
        DatasetSpec("cxr-phantom", _loader("cxr"),
                    "SYNTHETIC chest-radiograph-like phantom (not clinical data): cardiomegaly, pleural effusion, "
                    "pneumothorax, consolidation, lung lesion, edema, support devices; CheXpert-style labels"),
        DatasetSpec("path-phantom", _loader("path"),
                    "SYNTHETIC H&E-like tile phantom (not clinical data): tissue type, cellularity, pleomorphism, "
                    "mitoses, necrosis, inflammation"),
    ]
