"""The ``file-datasets`` entry point.

``folder:PATH`` and ``manifest:FILE`` are resolved by `medbench.data.resolve`, not registered
here, because they take a path rather than a name. This plugin registers no named dataset.
"""
from __future__ import annotations

from medbench import hookimpl


@hookimpl
def medbench_datasets():
    return []
