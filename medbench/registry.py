"""The strict plugin registry: what plugins contribute, where it came from, what failed.

Plugins are discovered through the entry-point group ``medbench`` (built-ins included). A plugin
that fails to import is recorded with its error and the others still load. Names are unique;
asking for an unknown name raises a KeyError that lists the known ones.
"""
from __future__ import annotations

import difflib
import importlib.metadata as md
import traceback
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Callable

import pluggy

from medbench import hookspecs
from medbench.options import Option

hookimpl = pluggy.HookimplMarker("medbench")
GROUP = "medbench"
KINDS = ("datasets", "tasks", "models", "metrics", "extractors", "labelers", "downstream_models", "weights")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Callable[..., Any]  # (options: dict) -> Dataset
    description: str = ""
    options: tuple[Option, ...] = ()  # declared options (medbench.options), checked once by the harness


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., Any]  # (ModelContext) -> Model
    kinds: tuple[str, ...] = ("report->image", "image->report", "prompt->pair")
    description: str = ""
    options: tuple[Option, ...] = ()  # declared options (medbench.options), checked once by the harness


@dataclass(frozen=True)
class MetricSpec:
    """A metric family. ``requires``: output modalities it needs; ``protocol``: the text protocol
    it belongs to (None = any). ``kinds``: request kinds it applies to."""

    name: str
    factory: Callable[..., Any]  # (MetricContext) -> Metric
    requires: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("report->image", "image->report", "prompt->pair")
    protocol: str | None = None
    description: str = ""
    options: tuple[Option, ...] = ()  # declared options (medbench.options), checked once by the harness


@dataclass(frozen=True)
class ExtractorSpec:
    name: str
    factory: Callable[..., Any]  # (weights: str | None) -> FeatureExtractor
    description: str = ""
    options: tuple[Option, ...] = ()  # declared options (medbench.options), checked once by the harness


@dataclass(frozen=True)
class LabelerSpec:
    name: str
    domain: str
    factory: Callable[..., Any]  # () -> Labeler
    description: str = ""


@dataclass(frozen=True)
class DownstreamSpec:
    name: str
    factory: Callable[..., Any]
    description: str = ""


@dataclass
class Entry:
    spec: Any
    plugin: str  # entry-point name
    dist: str  # distribution name and version


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (plugin, dist, error)
    pm: pluggy.PluginManager | None = None

    def get(self, kind: str, name: str) -> Any:
        table = self.entries[kind]
        if name not in table:
            known = sorted(table)
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            broken = "".join(f"\n  plugin {p!r} ({d}) failed to load: {e.splitlines()[-1]}" for p, d, e in self.failures)
            raise KeyError(f"unknown {kind[:-1]} {name!r}.{hint} Known: {', '.join(known) or '(none)'}{broken}")
        return table[name].spec

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def hook(self):
        return self.pm.hook


def _dist_label(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "?"


def _entry_name(kind: str, spec: Any) -> str:  # weights: medbench.weights.WeightsSpec
    if kind == "tasks":
        from medbench.tasks import task_name

        return task_name(spec)
    return spec.name


def build_registry(extra_plugins: tuple[Any, ...] = ()) -> Registry:
    """Load every entry point of the group, collect contributions, record failures."""
    pm = pluggy.PluginManager("medbench")
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm)
    plugins: list[tuple[str, str, Any]] = []
    for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
            plugins.append((ep.name, _dist_label(ep), module))
        except Exception:  # a broken plugin must not stop the others
            reg.failures.append((ep.name, _dist_label(ep), traceback.format_exc(limit=3)))
    for obj in extra_plugins:
        pm.register(obj)
        plugins.append((getattr(obj, "__name__", type(obj).__name__), "local", obj))
    for plugin_name, dist, module in plugins:
        for kind in KINDS:
            fn = getattr(module, f"medbench_{kind}", None)
            if fn is None:
                continue
            try:
                contributed = fn() or []
                for spec in contributed:
                    name = _entry_name(kind, spec)
                    table = reg.entries[kind]
                    if name in table:
                        other = table[name]
                        raise ValueError(f"{kind[:-1]} {name!r} is contributed by both {other.plugin!r} ({other.dist}) and {plugin_name!r} ({dist})")
                    table[name] = Entry(spec, plugin_name, dist)
            except Exception:
                reg.failures.append((plugin_name, dist, traceback.format_exc(limit=3)))
    return reg


@cache
def registry() -> Registry:
    """The process-wide registry (built on first use)."""
    return build_registry()
