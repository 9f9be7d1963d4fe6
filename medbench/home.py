"""Where medbench keeps what it builds: phantoms, feature caches, WordNet, token caches."""
from __future__ import annotations

import os
from pathlib import Path


def medbench_home() -> Path:
    """``$MEDBENCH_HOME``, default ``~/.cache/medbench`` (created on demand by the users)."""
    return Path(os.environ.get("MEDBENCH_HOME") or Path.home() / ".cache" / "medbench").expanduser()
