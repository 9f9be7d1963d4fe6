"""Registers the phantom datasets `cxr-phantom` and `path-phantom` (SYNTHETIC test data, not clinical).

Options (declared in OPTIONS, from the CLI as strings or from a task spec): size (32-256, default 64),
n_train (4000), n_val (500), n_test (1000), seed (0). The first load generates into the cache; later loads read it.
"""
from __future__ import annotations

from medbench import hookimpl
from medbench.options import Option, resolve
from medbench.registry import DatasetSpec

OPTIONS = (
    Option("size", int, 64, "image side in pixels", low=32, high=256),
    Option("n_train", int, 4000, "train studies", low=1, high=1_000_000),
    Option("n_val", int, 500, "val studies", low=0, high=1_000_000),
    Option("n_test", int, 1000, "test studies", low=1, high=1_000_000),
    Option("seed", int, 0, "generator seed", low=0),
)


def phantom_options(options: dict | None) -> dict:
    """Typed values with the defaults filled in (`home` passes through for tests); unknown keys,
    non-integers and out-of-range values are an OptionError naming the known options."""
    given = dict(options or {})
    home = given.pop("home", None)
    out = resolve(OPTIONS, given, owner="the phantom dataset", flag="--dataset-opt")
    return out | ({"home": home} if home is not None else {})


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
                    "pneumothorax, consolidation, lung lesion, edema, support devices; CheXpert-style labels",
                    options=OPTIONS),
        DatasetSpec("path-phantom", _loader("path"),
                    "SYNTHETIC H&E-like tile phantom (not clinical data): tissue type, cellularity, pleomorphism, "
                    "mitoses, necrosis, inflammation", options=OPTIONS),
    ]
