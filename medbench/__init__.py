"""medbench: evaluation and benchmarking for medical multimodal generative models.

Imports stay lazy here so that `medbench list` and `--help` answer at once.
"""
__version__ = "0.1.0"

import os as _os

# Nothing is downloaded at run time: the hub clients read these when they are first imported.
for _flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE"):
    _os.environ.setdefault(_flag, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from medbench.registry import hookimpl  # noqa: E402  (pluggy only: cheap)

__all__ = ["hookimpl", "__version__"]
