"""Evaluator and model weights: the user's files, in one documented layout, checked before use.

Nothing is downloaded. Each evaluator that needs weights declares a `WeightsSpec` (through the
``medbench_weights`` hook): the files it needs, their sizes and sha256, the licence and where a
user gets them. The files live under one root, one folder per spec::

    <root>/<spec.name>/<file>        root = --weights DIR, else $MEDBENCH_WEIGHTS, else $MEDBENCH_HOME/weights

`locate` checks that every file is there, is a regular file and has the pinned sha256; anything
else raises `WeightsError` naming the exact file and where to put it. A file whose published hash
medbench does not know (``sha256=None``) is accepted and its hash recorded. For weights that are
not the published files (a fine-tune, the tests' tiny models), ``medbench weights pin NAME``
writes ``<root>/<name>/medbench-pin.json`` with their hashes: they are then accepted as
*unverified* and run.json says so.

    medbench weights list            what each evaluator needs, and where it goes
    medbench weights check [DIR]     what is present and valid under DIR (default: the root above)
    medbench weights pin NAME [DIR]  accept the files now in DIR/NAME as local, unverified weights
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from medbench.errors import UserError
from medbench.home import medbench_home

PIN_FILE = "medbench-pin.json"


class WeightsError(UserError):
    """Weights missing, misplaced or not the expected bytes; the message names the file."""


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to the spec's folder, e.g. "chexbert.pth" or "model/config.json"
    sha256: str | None = None  # the published file's hash; None when medbench does not know it
    size: int | None = None  # bytes, for the listing


@dataclass(frozen=True)
class WeightsSpec:
    name: str  # folder name under the weights root, e.g. "chexbert"
    files: tuple[WeightFile, ...]
    licence: str = ""
    source: str = ""  # where a user gets the files (a page to read, never fetched by medbench)
    description: str = ""
    used_by: tuple[str, ...] = ()  # metric families / extractors / models that need it


@dataclass
class Located:
    """Weights found and checked: their folder and each file's sha256. ``verified``: every file matched
    its published hash. False when a file was accepted through a local pin, or when medbench knows no
    published hash for it (``unchecked`` lists those; their hashes are recorded all the same)."""

    spec: WeightsSpec
    folder: Path
    sha256: dict[str, str] = field(default_factory=dict)
    verified: bool = True
    pinned: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return self.folder / name

    def provenance(self) -> dict[str, str]:
        """File -> sha256 for run.json (``provenance.weights_sha256``), marked where not the published file."""
        def tag(name: str) -> str:
            if name in self.pinned:
                return " (local pin, not the published file)"
            return " (no published sha256 known to medbench: unchecked)" if name in self.unchecked else ""

        return {f"{self.spec.name}/{k}": v + tag(k) for k, v in self.sha256.items()}


def weights_root(explicit: str | os.PathLike | None = None) -> Path:
    """--weights DIR, else $MEDBENCH_WEIGHTS, else $MEDBENCH_HOME/weights."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("MEDBENCH_WEIGHTS")
    return Path(env).expanduser() if env else medbench_home() / "weights"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, cached beside medbench's other caches by (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = medbench_home() / "weights-sha256.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    cache[key] = h.hexdigest()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only home only costs the next run a re-hash
    return cache[key]


def _pins(folder: Path) -> dict[str, str]:
    pin = folder / PIN_FILE
    if not pin.is_file():
        return {}
    try:
        data = json.loads(pin.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data["files"].items()}
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise WeightsError(f"{pin}: not a medbench pin file ({e}); delete it or run `medbench weights pin`") from None


def locate(spec: WeightsSpec, root: str | os.PathLike | None = None) -> Located:
    """Check every file of `spec` under the root; WeightsError names the first problem found."""
    folder = weights_root(root) / spec.name
    pins = _pins(folder)
    found = Located(spec, folder, verified=True)
    for wf in spec.files:
        path = folder / wf.path
        where = f"put {wf.path}" + (f" (sha256 {wf.sha256[:12]}…)" if wf.sha256 else "") + f" at {path}"
        get = f"; get it from {spec.source}" if spec.source else ""
        if not path.exists():
            raise WeightsError(f"{path}: missing weight file for {spec.name}: {where}{get} (see `medbench weights list`)")
        if path.is_symlink() and not path.resolve().is_file() or not path.is_file():
            raise WeightsError(f"{path}: not a regular file ({spec.name} needs the file itself here)")
        digest = sha256_of(path)
        if wf.sha256 and digest != wf.sha256:
            if pins.get(wf.path) == digest:
                found.pinned.append(wf.path)
            else:
                raise WeightsError(f"{path}: sha256 mismatch for {spec.name} (file {digest[:12]}…, expected {wf.sha256[:12]}…): "
                                   f"not the published file; replace it{get}, or accept it as local weights with "
                                   f"`medbench weights pin {spec.name}`")
        elif wf.sha256 is None and wf.path in pins and pins[wf.path] != digest:
            raise WeightsError(f"{path}: sha256 {digest[:12]}… differs from the pinned {pins[wf.path][:12]}… in {folder / PIN_FILE}")
        elif wf.sha256 is None and wf.path in pins:
            found.pinned.append(wf.path)
        elif wf.sha256 is None:
            found.unchecked.append(wf.path)
        found.sha256[wf.path] = digest
    found.verified = not found.pinned and not found.unchecked
    return found


def pin(spec: WeightsSpec, root: str | os.PathLike | None = None) -> Path:
    """Record the current files' hashes as accepted local weights; returns the pin file."""
    folder = weights_root(root) / spec.name
    files = {}
    for wf in spec.files:
        path = folder / wf.path
        if not path.is_file():
            raise WeightsError(f"{path}: missing weight file for {spec.name}; nothing pinned")
        files[wf.path] = sha256_of(path)
    out = folder / PIN_FILE
    out.write_text(json.dumps({"spec": spec.name, "files": files}, indent=1))
    return out


def specs() -> list[WeightsSpec]:
    from medbench.registry import registry

    reg = registry()
    return [reg.entries["weights"][n].spec for n in reg.names("weights")]


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "check", "pin"), help="list what is needed, check what is present, or pin local files")
    p.add_argument("target", nargs="*", help="check: [DIR]; pin: NAME [DIR]")


def main_weights(args: argparse.Namespace) -> int:
    by_name = {s.name: s for s in specs()}
    if args.action == "list":
        root = weights_root()
        print(f"weights root: {root}  (--weights DIR or MEDBENCH_WEIGHTS to change)")
        for s in by_name.values():
            print(f"\n{s.name}: {s.description}  [used by: {', '.join(s.used_by) or '-'}]")
            print(f"  licence: {s.licence or '?'}; get it from: {s.source or '?'}")
            for wf in s.files:
                print(f"  {root / s.name / wf.path}  {_human(wf.size)}  sha256 {wf.sha256 or '(not pinned by medbench)'}")
        return 0
    if args.action == "check":
        root = args.target[0] if args.target else None
        bad = 0
        for s in by_name.values():
            try:
                found = locate(s, root)
                notes = (["local pin: not the published files"] if found.pinned else []) + \
                        ([f"no published sha256 known for {len(found.unchecked)} file(s): present, not checked"]
                         if found.unchecked else [])
                print(f"ok       {s.name}" + (f"  ({'; '.join(notes)})" if notes else ""))
            except WeightsError as e:
                bad += 1
                print(f"missing  {s.name}: {e}")
        print(f"{len(by_name) - bad} of {len(by_name)} present under {weights_root(root)}")
        return 0
    if not args.target:
        raise UserError("medbench weights pin NAME [DIR]: give the name of a weights folder (see `medbench weights list`)")
    name = args.target[0]
    if name not in by_name:
        raise UserError(f"medbench weights pin: unknown weights {name!r}; known: {', '.join(by_name) or '(none)'}")
    print(f"pinned: {pin(by_name[name], args.target[1] if len(args.target) > 1 else None)}")
    return 0
