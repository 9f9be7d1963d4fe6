"""File names made from user data (sample ids, task names, model and dataset specs).

Nothing a user writes may steer where medbench writes: a sample id such as ``../../x``, ``/etc/x``
or one holding a NUL or a newline never reaches the file system as it is.

`file_stem(id)` is the stem of a sample's output files (``<stem>.png`` / ``<stem>.txt``), in a run's
``outputs/`` folder and in an ``outputs:DIR`` a system wrote:

- an id that is already a safe, portable file name is its own stem: at most 120 bytes of UTF-8, no
  ``/`` or ``\\``, no control character (NUL, newline, tab ...), not starting with ``.``, ``~`` or a
  space, not ending with ``.`` or a space, and no ``:*?"<>|`` (refused by Windows file systems);
- any other id is encoded as ``~<slug>~<hash>``: ``slug`` keeps the id's letters, digits and
  ``-_.`` (others become ``_``, at most 60 characters) and ``hash`` is the first 16 hex digits of
  sha256(id as UTF-8). Plain stems never start with ``~``, so the two kinds never collide.

The mapping is recorded (``id`` and ``file_stem`` in ``outputs/index.rank*.jsonl`` and in
``samples.jsonl``), and ``medbench requests`` lists the expected names. `slug(text)` makes the
parts of a run folder name. Usage::

    file_stem("cxr-p01-s0")        # 'cxr-p01-s0'
    file_stem("../../etc/passwd")  # '~.._.._etc_passwd~<16 hex>'
    inside(out, out / name)        # True when the path stays under out
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

MAX_STEM_BYTES = 120
_FORBIDDEN = set('/\\:*?"<>|')
_SLUG_KEEP = re.compile(r"[^A-Za-z0-9._-]")


def is_plain(name: str) -> bool:
    """True when `name` can be used as a file stem as it is (see the module docstring)."""
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_STEM_BYTES:
        return False
    if name[0] in ".~ " or name[-1] in ". ":
        return False
    return not any(c in _FORBIDDEN or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name)


def file_stem(sample_id: str) -> str:
    """The file stem of a sample's outputs: the id itself when plain, else ``~<slug>~<hash16>``."""
    if is_plain(sample_id):
        return sample_id
    digest = hashlib.sha256(sample_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"~{_SLUG_KEEP.sub('_', sample_id)[:60]}~{digest}"


def slug(text: str, limit: int = 40) -> str:
    """A run-folder-name part: letters, digits, '-' and '_' only (never '.', so never '..')."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "-", text)[:limit].strip("-_")
    return out or "x"


def inside(root: Path, path: Path) -> bool:
    """True when `path` (resolved, symlinks followed) lies under `root` (resolved)."""
    root, path = Path(root).resolve(), Path(path).resolve()
    return path == root or root in path.parents


def case_insensitive(folder: Path) -> bool:
    """Whether `folder`'s file system folds case (macOS, Windows defaults), by probing a temp file."""
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(prefix=".medbench-case-", dir=folder) as f:
        name = Path(f.name).name
        return (folder / name.upper()).exists() if name.upper() != name else False


def case_collisions(ids: list[str]) -> list[list[str]]:
    """Groups of ids whose file stems differ only in case (one file on a case-insensitive file system)."""
    groups: dict[str, list[str]] = {}
    for sid in ids:
        groups.setdefault(file_stem(sid).casefold(), []).append(sid)
    return [g for g in groups.values() if len(g) > 1]
