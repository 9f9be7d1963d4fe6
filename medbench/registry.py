"""The strict plugin registry: what plugins contribute, where it came from, what failed.

Plugins are discovered through the entry-point group ``medbench`` (built-ins first, then the
others by name). A plugin that fails to import, or one of whose contribution hooks raises or
clashes with a name already taken, is recorded with its error and unregistered: none of its
contributions are kept and none of its hooks (``medbench_run_start`` ...) is called. Names are
unique; asking for an unknown name raises `UnknownPluginError` (a KeyError and a UserError) that
lists the known ones and suggests the closest, or the ``outputs:DIR`` / ``folder:PATH`` forms.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata as md
import traceback
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Callable

import pluggy

from medbench import hookspecs
from medbench.errors import UnknownPluginError
from medbench.options import Option

hookimpl = pluggy.HookimplMarker("medbench")
GROUP = "medbench"
KINDS = ("datasets", "tasks", "models", "metrics", "extractors", "labelers", "downstream_models", "weights")
BUILTIN_DIST = "medbench"
# spelled-out forms that are not registered names (they carry a path): unknown-name hints point at them
PATH_FORMS = {"models": {"outputs": "outputs:DIR (precomputed outputs of any system)"},
              "datasets": {"folder": "folder:PATH (an image + report folder)", "manifest": "manifest:FILE (JSONL or CSV)"}}


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
    uses_model_path: bool | None = None  # False: --model-path is refused (None: the model decides)
    options_for: Callable[[str | None], tuple[Option, ...]] | None = None  # options that depend on NAME:ARG

    def declared_options(self, arg: str | None = None) -> tuple[Option, ...]:
        return self.options_for(arg) if self.options_for is not None else self.options


@dataclass(frozen=True)
class MetricSpec:
    """A metric family. ``requires``: output modalities it needs; ``protocol``: the text protocol
    it belongs to (None = any). ``kinds``: request kinds it applies to. ``produces``: fnmatch
    patterns of the metric names it can report (``nlg.coco.bleu[1-4]``, ``image.fid@*``); a task's
    primary metric is checked against them at load time (empty = not declared, not checked)."""

    name: str
    factory: Callable[..., Any]  # (MetricContext) -> Metric
    requires: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("report->image", "image->report", "prompt->pair")
    protocol: str | None = None
    description: str = ""
    options: tuple[Option, ...] = ()  # declared options (medbench.options), checked once by the harness
    produces: tuple[str, ...] = ()

    def can_produce(self, metric: str) -> bool:
        return any(fnmatch.fnmatchcase(metric, pattern) for pattern in self.produces)


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
            raise UnknownPluginError(self.unknown_message(kind, name))
        return table[name].spec

    def unknown_message(self, kind: str, name: str) -> str:
        known = sorted(self.entries[kind])
        forms = PATH_FORMS.get(kind, {})
        near = difflib.get_close_matches(name, [*known, *forms], n=1, cutoff=0.6)
        if near and near[0] in forms:
            hint = f" Did you mean {forms[near[0]]}?"
        else:
            hint = f" Did you mean {near[0]!r}?" if near else ""
        listed = ", ".join([*known, *(f.split(" ")[0] for f in forms.values())]) or "(none)"
        broken = "".join(f"; plugin {p!r} ({d}) failed to load: {e.strip().splitlines()[-1]}" for p, d, e in self.failures)
        return f"unknown {kind[:-1].replace('_', ' ')} {name!r}.{hint} Known: {listed}{broken}"

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
    builtin_first = lambda e: (not _dist_label(e).startswith(BUILTIN_DIST + " "), e.name)  # noqa: E731
    for ep in sorted(md.entry_points(group=GROUP), key=builtin_first):
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
        try:
            contributed = _contributions(reg, plugin_name, dist, module)
        except Exception:  # the whole plugin goes: no half-registered plugin, no hooks of it called
            reg.failures.append((plugin_name, dist, traceback.format_exc(limit=3)))
            pm.unregister(module)
            continue
        for kind, name, entry in contributed:
            reg.entries[kind][name] = entry
    return reg


def _contributions(reg: Registry, plugin_name: str, dist: str, module: Any) -> list[tuple[str, str, Entry]]:
    """Everything one plugin contributes, checked against the names already taken."""
    out: list[tuple[str, str, Entry]] = []
    mine: set[tuple[str, str]] = set()
    for kind in KINDS:
        fn = getattr(module, f"medbench_{kind}", None)
        if fn is None:
            continue
        for spec in fn() or []:
            name = _entry_name(kind, spec)
            if name in reg.entries[kind] or (kind, name) in mine:
                other = reg.entries[kind].get(name)
                by = f"{other.plugin!r} ({other.dist})" if other else "itself"
                raise ValueError(f"{kind[:-1]} {name!r} is contributed by both {by} and {plugin_name!r} ({dist})")
            mine.add((kind, name))
            out.append((kind, name, Entry(spec, plugin_name, dist)))
    return out


@cache
def registry() -> Registry:
    """The process-wide registry (built on first use)."""
    return build_registry()
