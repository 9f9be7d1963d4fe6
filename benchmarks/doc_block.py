"""Replace a marked block of a Markdown file: everything between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``."""
from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_block(path: Path, name: str, body: str) -> None:
    """Write `body` between the two markers of `name` in `path` (markers kept); the file must have them."""
    begin, end = markers(name)
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: no {begin} ... {end} block to write into")
    start, stop = doc.index(begin) + len(begin), doc.index(end)
    path.write_text(doc[:start] + "\n" + body.strip("\n") + "\n" + doc[stop:])
