"""Declared options: what a plugin accepts through ``--model-opt``, ``--metric-opt`` and
``--dataset-opt`` (or the Python API), checked once by the harness before any work.

Every model, metric family, dataset and extractor declares its options as a tuple of `Option`
on its spec; `resolve` turns what the user gave (strings from the CLI, or Python values) into
typed values with the defaults filled in. Unknown keys, wrong types, NaN/inf and out-of-range
values are refused with one line that names the flag, the key and what is allowed::

    STEPS = Option("steps", int, 16, "sampler steps", low=1, high=4096)
    resolve((STEPS,), {"steps": "8"}, owner="model 'medim'", flag="--model-opt")   # {"steps": 8}
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from medbench.errors import UserError

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class OptionError(UserError):
    """An option value or key that is not accepted."""


@dataclass(frozen=True)
class Option:
    """One declared option. ``type``: int, float, bool, str or Path. ``low``/``high``: inclusive
    bounds for numbers; ``choices``: the allowed strings; ``check``: extra validation that raises
    ValueError with a message. ``default`` None means "not set" (the plugin decides)."""

    name: str
    type: type
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], None] | None = None

    def parse(self, raw: Any) -> Any:
        """A typed, validated value from a CLI string or a Python value; ValueError says why."""
        value = _convert(self.type, raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {raw!r}")
        if self.low is not None and value < self.low:
            raise ValueError(f"must be ≥ {self.low:g}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ValueError(f"must be ≤ {self.high:g}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            near = difflib.get_close_matches(str(value), self.choices, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"must be one of {', '.join(self.choices)}; got {value!r}{hint}")
        if self.check is not None:
            self.check(value)
        return value

    def describe(self) -> str:
        kind = "|".join(self.choices) if self.choices else self.type.__name__
        bounds = ""
        if self.low is not None or self.high is not None:
            bounds = f" in [{'' if self.low is None else f'{self.low:g}'}, {'' if self.high is None else f'{self.high:g}'}]"
        default = "" if self.default is None else f" (default {self.default})"
        return f"{self.name}={kind}{bounds}{default}  {self.help}".rstrip()


def _convert(typ: type, raw: Any) -> Any:
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise ValueError(f"must be a boolean (1/0, true/false), got {raw!r}")
    if typ is int:
        if isinstance(raw, bool):
            raise ValueError(f"must be an integer, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
    if typ is float:
        if isinstance(raw, bool):
            raise ValueError(f"must be a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {raw!r}") from None
    if typ is Path:
        text = str(raw)
        if not text or "\x00" in text:
            raise ValueError(f"must be a path, got {raw!r}")
        return Path(text).expanduser()
    if typ is str:
        if not isinstance(raw, (str, int, float)):
            raise ValueError(f"must be a string, got {type(raw).__name__}")
        return str(raw)
    raise TypeError(f"unsupported option type {typ!r}")


def _unknown(key: str, known: Iterable[str], owner: str, flag: str, verb: str = "has no option") -> OptionError:
    known = sorted(set(known))
    near = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    listed = ", ".join(known) if known else "(it takes none)"
    return OptionError(f"{flag} {key}: {owner} {verb} {key!r}.{hint} Known: {listed}")


def resolve(declared: Sequence[Option], given: Mapping[str, Any], *, owner: str, flag: str) -> dict[str, Any]:
    """Typed values for every declared option (defaults filled in); unknown keys are refused."""
    by_name = {o.name: o for o in declared}
    for key in given:
        if key not in by_name:
            raise _unknown(key, by_name, owner, flag)
    out = {}
    for opt in declared:
        if opt.name in given:
            try:
                out[opt.name] = opt.parse(given[opt.name])
            except ValueError as e:
                raise OptionError(f"{flag} {opt.name}={given[opt.name]}: {owner}: {opt.name} {e}") from None
        else:
            out[opt.name] = opt.default
    return out


def resolve_shared(groups: Mapping[str, Sequence[Option]], given: Mapping[str, Any], *, flag: str,
                   what: str = "metric families") -> dict[str, dict[str, Any]]:
    """Options shared by several consumers (``--metric-opt`` goes to every family of the run): a key
    must be declared by at least one of them; each gets typed values of the options it declares."""
    declared = {o.name for opts in groups.values() for o in opts}
    for key in given:
        if key not in declared:
            raise _unknown(key, declared, f"none of this run's {what} ({', '.join(groups) or 'none'})", flag,
                           verb="declares an option")
    return {owner: resolve(opts, {k: v for k, v in given.items() if k in {o.name for o in opts}}, owner=owner, flag=flag)
            for owner, opts in groups.items()}


def describe_all(declared: Sequence[Option]) -> list[str]:
    """One line per option, for `medbench list --options NAME`."""
    return [o.describe() for o in declared] or ["(no options)"]
