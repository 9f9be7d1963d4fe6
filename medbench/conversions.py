"""What the harness changes in an output image before scoring it, recorded per sample.

medbench never rescales bit depth (16-bit, float and CMYK outputs are refused). What it does do,
the metrics' preprocessing does to an output that differs from the dataset's images: resize it
to the compared size, drop its alpha channel (composited onto black), convert grey <-> RGB. The
runner compares each output's logged size and mode with its reference image (read from the file
header only) and records one line per change: in samples.jsonl (``conversions``) and, counted, in
run.json (``conversions``); a run with any gets a warning. Usage::

    ref = image_header(sample.image_path)            # ((w, h), mode) or None
    changes = conversions_of(entry, ref)             # ["resize 1x1 -> 64x64", ...]
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

ALPHA_MODES = ("RGBA", "LA", "PA")


def image_header(path: Path | None) -> tuple[tuple[int, int], str] | None:
    """(size, mode) from an image file's header without decoding it; None when unknown (DICOM, no image)."""
    if path is None or str(path).lower().endswith(".dcm"):
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            return tuple(im.size), im.mode
    except (OSError, ValueError):
        return None


def native_size(headers: list[tuple[tuple[int, int], str] | None]) -> tuple[tuple[int, int] | None, str | None]:
    """The dataset's most common image (size, mode): what models are asked to produce."""
    known = [h for h in headers if h is not None]
    if not known:
        return None, None
    size = Counter(h[0] for h in known).most_common(1)[0][0]
    mode = Counter(h[1] for h in known).most_common(1)[0][0]
    return size, mode


def _channels(mode: str) -> str:
    return "grey" if mode in ("L", "LA", "1", "I", "F", "I;16") else "RGB"


def conversions_of(entry: dict, reference: tuple[tuple[int, int], str] | None) -> list[str]:
    """The changes scoring makes to one logged output image (entry: its resume-log line)."""
    if not entry.get("image_size"):
        return []
    size, mode = tuple(entry["image_size"]), entry.get("image_mode") or "?"
    out = []
    if mode in ALPHA_MODES or (mode == "P" and entry.get("image_alpha")):
        out.append(f"alpha dropped ({mode} -> {'L' if mode == 'LA' else 'RGB'}, composited onto black)")
    if reference is not None:
        ref_size, ref_mode = reference
        if size != tuple(ref_size):
            out.append(f"resize {size[0]}x{size[1]} -> {ref_size[0]}x{ref_size[1]} (the reference image's size)")
        if _channels(mode) != _channels(ref_mode):
            out.append(f"mode {mode} -> {ref_mode} ({_channels(mode)} output, {_channels(ref_mode)} reference)")
    return out


def summarize(per_sample: list[list[str]], reference: tuple[tuple[int, int] | None, str | None]) -> dict:
    """run.json ``conversions``: samples per kind of change, samples with any, the dataset's size/mode."""
    counts = Counter(change.split(" ", 1)[0] if not change.startswith("alpha") else "alpha"
                     for changes in per_sample for change in changes)
    size, mode = reference
    return {"counts": dict(sorted(counts.items())), "samples": sum(1 for c in per_sample if c),
            "reference": {"size": list(size) if size else None, "mode": mode}, "recorded": True}
