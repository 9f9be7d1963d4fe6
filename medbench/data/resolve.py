"""Turn a dataset spec from the command line into a validated Dataset.

A spec is one of:

    NAME            a registered dataset (``medbench list datasets``), e.g. ``cxr-phantom``
    folder:PATH     an image + report folder (see `medbench.data.folder`)
    manifest:FILE   a JSONL or CSV manifest (see `medbench.data.manifest`)
    NAME:PATH       a registered dataset read from a local copy, e.g. ``iu-xray:/data/openi``
                    (the path is passed to its ``load`` as ``options["path"]``)

Every dataset is validated (`medbench.data.validate`) and the bad-sample policy applied:
"fail" (default) raises `DatasetError` listing every bad sample; "skip" leaves them out and
keeps them in ``dataset.bad`` for the run record.

Usage::

    ds = load_dataset("folder:/data/mimic", on_bad_sample="skip")
"""
from __future__ import annotations

from pathlib import Path

from medbench.data.base import Dataset
from medbench.data.folder import load_folder
from medbench.data.manifest import load_manifest
from medbench.data.validate import MAX_REPORT_CHARS, DatasetError, apply_policy, validate

__all__ = ["load_dataset", "load_unvalidated", "DatasetError"]


def load_unvalidated(spec: str, options: dict | None = None, *, domain: str | None = None) -> Dataset:
    """Load a spec without validation (the loaders' own findings are in ``.bad``).

    options for folder:/manifest: ``name`` (default: the spec) and ``max_report_chars``; for a
    registered dataset they are passed to its ``load(options)``. `domain` applies to files only.
    """
    options = dict(options or {})
    kind, sep, target = spec.partition(":")
    if sep and kind in ("folder", "manifest"):
        if not target:
            raise DatasetError(f"dataset spec {spec!r} names no path (write {kind}:PATH)")
        path = Path(target).expanduser()
        name = options.pop("name", spec)
        max_chars = int(options.pop("max_report_chars", MAX_REPORT_CHARS))
        if options:
            raise DatasetError(f"unknown option(s) for {kind}: datasets: {', '.join(sorted(options))} "
                               f"(known: name, max_report_chars)")
        loader = load_folder if kind == "folder" else load_manifest
        return loader(path, name=name, domain=domain, max_report_chars=max_chars)
    from medbench.registry import registry

    if sep:  # NAME:PATH, a registered dataset read from a local copy (iu-xray:/data/openi)
        if not target:
            raise DatasetError(f"dataset spec {spec!r} names no path (write {kind}:PATH)")
        spec, options = kind, {**options, "path": target}
    dataset = registry().get("datasets", spec).load(options)
    if not isinstance(dataset, Dataset):
        raise DatasetError(f"dataset {spec!r}: its load() returned {type(dataset).__name__}, not a medbench Dataset")
    return dataset


def load_dataset(spec: str, options: dict | None = None, *, on_bad_sample: str = "fail",
                 domain: str | None = None, check_images: bool = True, progress: bool = False) -> Dataset:
    """Load, validate and apply the bad-sample policy ("fail" or "skip")."""
    dataset = load_unvalidated(spec, options, domain=domain)
    max_chars = int((options or {}).get("max_report_chars", MAX_REPORT_CHARS))
    bad = validate(dataset, check_images=check_images, max_report_chars=max_chars, progress=progress)
    return apply_policy(dataset, bad, on_bad_sample)
