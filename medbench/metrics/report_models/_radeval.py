"""Importing radeval 2.2.1 offline, and loading Hugging Face models from local folders strictly.

Two defects of the radeval 2.2.1 wheel are worked around here, nowhere else:

- ``radeval/utils.py`` calls ``nltk.download("punkt_tab")`` at import time (a network call that
  fails offline and is never needed by the metrics medbench uses): it is suppressed while
  radeval is imported;
- its vendored RadGraph imports itself as ``RadEval.…`` (the maintainer's case-insensitive file
  system); an import alias maps ``RadEval.X`` to the very same ``radeval.X`` module objects.

    from medbench.metrics.report_models._radeval import radeval_import
    core = radeval_import("radeval.metrics.radgraph._vendor.core")
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

from medbench.metrics.base import MetricUnavailable


class _CaseAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``RadEval.X`` -> the already-imported (or now imported) ``radeval.X`` module itself."""

    def find_spec(self, name, path=None, target=None):
        if name == "RadEval" or name.startswith("RadEval."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module("radeval" + spec.name[len("RadEval"):])

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def _no_nltk_download():
    import nltk

    real = nltk.download
    nltk.download = lambda *a, **k: True  # radeval's import-time punkt_tab fetch: never needed here
    try:
        yield
    finally:
        nltk.download = real


def radeval_import(module: str):
    """Import a radeval module offline; MetricUnavailable when radeval is not installed."""
    if not any(isinstance(f, _CaseAlias) for f in sys.meta_path):
        sys.meta_path.insert(0, _CaseAlias())
    try:
        with _no_nltk_download():
            importlib.import_module("radeval")
            return importlib.import_module(module)
    except ImportError as e:
        raise MetricUnavailable(f"{module}: cannot import ({e}); install medbench's 'field' extra "
                                "(pip install 'medbench[field]', radeval==2.2.1)") from None


class LocalWeights:
    """Mixin: the family's weights are checked at its first scored batch, not when it is built, so a
    family rebuilt only to recompute stored statistics (compare, leaderboard) needs no weights.
    Subclasses set ``weights_root`` and list their specs in ``weight_specs``."""

    weights_root = None
    weight_specs: tuple = ()

    def located(self, spec):
        from medbench.weights import WeightsError, locate

        cache = self.__dict__.setdefault("_located", {})
        if spec.name not in cache:
            try:
                cache[spec.name] = locate(spec, self.weights_root)
            except WeightsError as e:
                raise MetricUnavailable(str(e)) from None
        return cache[spec.name]

    @property
    def weights_sha256(self) -> dict[str, str]:
        out = dict(self.gathered_weights)  # loaded by the ranks that scored its shards (medbench.row_shards)
        for found in self.__dict__.get("_located", {}).values():
            out.update(found.provenance())
        return out


class HalfLoaded(MetricUnavailable):
    """A checkpoint whose keys do not match the architecture (a model that would be half-loaded)."""


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load report (medbench checks the loading info itself)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def strict_from_pretrained(auto_class, folder: Path, *, head_prefixes: tuple[str, ...] = (),
                           not_stored: tuple[str, ...] = (), **kwargs):
    """``auto_class.from_pretrained(folder)`` that refuses missing keys (other than ``not_stored``
    modules the metric never uses, e.g. a pooler absent from MLM checkpoints) and unexpected keys
    (other than the pretraining heads named in ``head_prefixes``)."""
    with quiet_transformers():  # the load report is checked below, not printed
        model, info = auto_class.from_pretrained(str(folder), output_loading_info=True, local_files_only=True, **kwargs)
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(not_stored)]
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith(head_prefixes)]
    mismatched = list(info.get("mismatched_keys", []))
    if missing or unexpected or mismatched:
        raise HalfLoaded(f"{folder}: checkpoint does not match {auto_class.__name__} "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]}, mismatched {mismatched[:3]}); "
                         "refusing a half-loaded model: put the published files there")
    return model


def device_of(ctx) -> str:
    import torch

    dev = str(getattr(ctx, "device", "cpu") or "cpu")
    return dev if dev.startswith("cuda") and torch.cuda.is_available() else "cpu"
