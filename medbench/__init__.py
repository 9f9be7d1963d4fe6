"""medbench: evaluation and benchmarking for medical multimodal generative models.

Imports stay lazy here so that `medbench list` and `--help` answer at once.
"""
__version__ = "0.1.0"

import os as _os

# Nothing is downloaded at run time, whatever the caller's environment says: the hub clients read
# these when they are first imported, and medbench only ever loads local folders.
for _flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE",
              "HF_HUB_DISABLE_TELEMETRY"):
    _os.environ[_flag] = "1"

from medbench.registry import hookimpl  # noqa: E402  (pluggy only: cheap)

API = ("evaluate", "score_reports", "score_images", "compare", "RunResult", "Scores")  # medbench/api.py, docs/api.md

__all__ = ["hookimpl", "__version__", *API]


def __getattr__(name: str):
    """``medbench.evaluate`` etc. import medbench.api (and through it torch, PIL...) only when first used."""
    if name == "compare":  # the submodule medbench.compare, made callable as api.compare (see its end)
        import importlib

        return importlib.import_module("medbench.compare")
    if name in API:
        from medbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'medbench' has no attribute {name!r}")
