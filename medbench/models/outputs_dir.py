"""`outputs:DIR`: evaluate what any external system generated.

DIR holds one file per requested sample and modality, named by the sample's file stem
(`medbench.safe_names.file_stem`: the id itself when it is a safe file name, else
``~<slug>~<sha256-16>``): ``<stem>.png`` (or .jpg/.jpeg, suffix in any case) and/or ``<stem>.txt``
(UTF-8). Other files are ignored. DIR is validated like a dataset, with the folder loader's rules
(`medbench.data.validate`): only regular files inside DIR are read (no symlinks leaving it, no
FIFOs or devices, no directories named like outputs), images must decode completely, be 8-bit
L/RGB/RGBA/LA/P and match their suffix; reports must be UTF-8, without NUL bytes, at most
MAX_REPORT_CHARS long (empty reports are allowed and score zero); one id must not have two images
(``.png`` next to ``.PNG`` or ``.jpg``) or two reports. Every missing or bad file is listed in one
`OutputsDirError`, before anything is generated.

The run id depends on the *contents* of the files that will be scored (`identity`), never on
the DIR path: rewrite DIR and rerun, and the new files are scored. Usage::

    model = OutputsDirModel(ctx)             # ctx.arg = DIR
    model.identity(requests)                 # validates, hashes: {"kind": "outputs-dir", "sha256", "files"}
    outputs = model.generate(requests)       # re-checks each file's sha256 as it reads it
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from PIL import Image

from medbench.data.validate import MAX_REPORT_CHARS, file_problem, image_problems, read_report
from medbench.errors import UserError
from medbench.identity import digest_of
from medbench.models.base import ModelContext
from medbench.records import Output, Request, produces
from medbench.safe_names import file_stem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
REPORT_SUFFIXES = (".txt",)
SHOWN = 50


class OutputsDirError(UserError):
    """Files of an outputs:DIR that are missing or cannot be scored; the message lists every one."""


class OutputsDirModel:
    def __init__(self, ctx: ModelContext):
        if not ctx.arg:
            raise UserError("outputs:DIR needs a folder, e.g. --model outputs:/path/to/generated")
        self.root = Path(ctx.arg).expanduser()
        if not self.root.is_dir():
            raise UserError(f"{self.root}: outputs folder does not exist (--model outputs:DIR)")
        self.name = f"outputs:{self.root.name}"
        self.max_report_chars = int(ctx.options.get("max_report_chars", MAX_REPORT_CHARS)) if ctx.options else MAX_REPORT_CHARS
        self._files: dict[str, dict[str, tuple[Path, str]]] = {}  # id -> modality -> (path, sha256)
        self.sources: dict[str, dict[str, str]] = {}  # id -> modality -> file read (for the run record)

    def _scan(self) -> dict[str, dict[str, list[str]]]:
        """stem -> modality -> entry names in DIR (any entry type: directories named like outputs count)."""
        found: dict[str, dict[str, list[str]]] = {}
        with os.scandir(self.root) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                suffix = suffix.lower()
                modality = "image" if suffix in IMAGE_SUFFIXES else "report" if suffix in REPORT_SUFFIXES else None
                if modality:
                    found.setdefault(stem, {}).setdefault(modality, []).append(entry.name)
        return found

    def identity(self, requests: list[Request]) -> dict:
        """Validate every file the requests need and hash it; the digest enters the run id."""
        scan = self._scan()
        missing, bad, found = [], [], []
        for r in requests:
            stem = file_stem(r.sample_id)
            for modality in produces(r.kind):
                names = sorted(scan.get(stem, {}).get(modality, []))
                if not names:
                    missing.append(f"{r.sample_id} ({modality}: {stem}{'.png' if modality == 'image' else '.txt'})")
                elif len(names) > 1:
                    named = self.root / f"{stem}{'.png' if modality == 'image' else '.txt'}"
                    bad.append(f"{named}: several {modality} files for one id: {', '.join(names)} (sample {r.sample_id!r})")
                else:
                    found.append((r.sample_id, modality, self.root / names[0]))
        images = [f for f in found if f[1] == "image"]
        problems = dict(zip(images, image_problems([p for _, _, p in images], self.root)))
        for sid, modality, path in found:
            problem = (problems[(sid, modality, path)] if modality == "image"
                       else read_report(path, self.max_report_chars, allow_empty=True, root=self.root)[1])
            if problem:
                bad.append(f"{path}: {problem} (sample {sid!r})")
            else:
                self._files.setdefault(sid, {})[modality] = (path, _sha256(path))
        if missing or bad:
            parts = []
            if missing:
                shown = ", ".join(missing[:SHOWN]) + (f" ... and {len(missing) - SHOWN} more" if len(missing) > SHOWN else "")
                parts.append(f"no output for {len(missing)} requested sample(s): {shown} "
                             f"(`medbench requests` lists every expected file name)")
            if bad:
                parts.append(f"{len(bad)} file(s) cannot be scored:\n  " + "\n  ".join(bad))
            raise OutputsDirError(f"{self.root}: " + "\n".join(parts))
        files = {f"{sid}:{m}": sha for sid, mods in self._files.items() for m, (_, sha) in mods.items()
                 if sid in {r.sample_id for r in requests}}
        return {"kind": "outputs-dir", "sha256": digest_of(files), "files": len(files)}

    check = identity  # the runner calls check() before generation

    def generate(self, requests: list[Request]) -> list[Output]:
        todo = [r for r in requests if r.sample_id not in self._files]
        if todo:
            self.identity(todo)
        outs = []
        for r in requests:
            out = Output(r.sample_id)
            for modality in produces(r.kind):
                path, digest = self._files[r.sample_id][modality]
                data = _read_checked(path, digest, self.root)
                if modality == "image":
                    with Image.open(io.BytesIO(data)) as im:
                        im.load()
                        out.image = im.copy()
                else:
                    out.report = data.decode("utf-8-sig").strip()
                self.sources.setdefault(r.sample_id, {}).update({modality: str(path), f"{modality}_sha256": digest})
            outs.append(out)
        return outs


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _read_checked(path: Path, digest: str, root: Path) -> bytes:
    if problem := file_problem(path, root):
        raise OutputsDirError(f"{path}: {problem} (it changed while the run was reading {root})")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise OutputsDirError(f"{path}: changed since the run started (its sha256 entered the run id); rerun to score the new files")
    return data
