"""Progress bars on stderr for steps over ~2 s, silenced by ``medbench run --quiet``.

Every module that shows progress uses `bar` (a tqdm on stderr); `set_quiet(True)` turns all of
them off, including plain ``tqdm(...)`` calls elsewhere and in worker processes, through tqdm's
own ``TQDM_DISABLE`` environment override::

    from medbench.progress import bar
    for batch in bar(batches, desc="features", unit="batch"):
        ...
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable

QUIET_ENV = "MEDBENCH_QUIET"


_ORIGINAL_INIT = None


def set_quiet(quiet: bool) -> None:
    """Silence (or allow) every progress bar of this process and the processes it starts: tqdm reads
    TQDM_DISABLE when it is imported (worker processes), and the class already imported here is
    given ``disable=True`` as its default."""
    global _ORIGINAL_INIT
    from functools import partialmethod

    from tqdm import tqdm

    if quiet:
        os.environ[QUIET_ENV] = "1"
        os.environ["TQDM_DISABLE"] = "1"
        if _ORIGINAL_INIT is None:
            _ORIGINAL_INIT = tqdm.__init__
            tqdm.__init__ = partialmethod(_ORIGINAL_INIT, disable=True)
    else:
        os.environ.pop(QUIET_ENV, None)
        os.environ.pop("TQDM_DISABLE", None)
        if _ORIGINAL_INIT is not None:
            tqdm.__init__, _ORIGINAL_INIT = _ORIGINAL_INIT, None


def quiet() -> bool:
    return os.environ.get(QUIET_ENV, "") not in ("", "0")


def bar(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm on stderr, disabled when quiet; same keywords as tqdm (desc, total, unit, leave ...)."""
    from tqdm import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=quiet() or kwargs.pop("disable", False), **kwargs)


def note(message: str) -> None:
    """One status line on stderr (model loading, JVM start ...), unless quiet."""
    if not quiet():
        print(message, file=sys.stderr, flush=True)
