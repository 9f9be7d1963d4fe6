"""Content digests: what a run id, resume and provenance depend on instead of path strings.

`weights_digest(path)` hashes every regular file of a ``--model-path`` (a file or a folder, walked
in sorted order; symlinks are followed, the names are relative to the folder). `outputs:DIR`
digests come from `medbench.models.outputs_dir` (only the files that will be scored). Usage::

    d = weights_digest(Path("checkpoints/tiny"))
    d["sha256"], d["files"]            # overall digest, {relative path: sha256}
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digest_of(files: dict[str, str]) -> str:
    """One sha256 over a {name: sha256} mapping (order-independent)."""
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def weights_digest(path: Path) -> dict:
    """{"kind": "weights", "sha256", "files": {relpath: sha256}} of a file or folder.

    A path that does not exist gets {"kind": "weights", "sha256": None, "missing": str(path)}: the
    model's own loader then says what is missing, and the run id still changes with the path.
    """
    path = Path(path).expanduser()
    if path.is_file():
        files = {path.name: file_sha256(path)}
    elif path.is_dir():
        files = {}
        for folder, dirs, names in os.walk(path, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                full = Path(folder) / name
                if name.startswith(".") or not full.is_file():
                    continue
                files[full.relative_to(path).as_posix()] = file_sha256(full)
    else:
        return {"kind": "weights", "sha256": None, "missing": str(path)}
    return {"kind": "weights", "sha256": digest_of(files), "files": files}
