"""medbench: evaluation and benchmarking for medical multimodal generative models.

Imports stay lazy here so that `medbench list` and `--help` answer at once.
"""
__version__ = "0.1.0"

from medbench.registry import hookimpl  # noqa: E402  (pluggy only: cheap)

__all__ = ["hookimpl", "__version__"]
