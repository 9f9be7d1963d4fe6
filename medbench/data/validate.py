"""Validation: list every bad sample with its file and the reason, then fail or skip.

Two places find bad samples:

- the file loaders (`folder`, `manifest`) check what only they can see: report files that are
  not UTF-8, empty or too long, images without reports and reports without images, malformed
  label lines, label ids with no files. They record those in ``dataset.bad`` and leave the
  samples out (a Sample cannot hold undecodable text, and nothing is ever substituted);
- `validate` checks any Dataset (phantoms and plugin datasets included): images that are
  missing, unreadable, truncated or of an odd mode, empty or over-long reports, label values
  outside {1, 0, -1}, duplicate ids, and patients that appear in more than one split.

`apply_policy` then either raises `DatasetError` listing all of them ("fail", the default) or
returns the dataset without them, keeping the list in ``dataset.bad`` ("skip").

Usage::

    bad = validate(dataset)
    dataset = apply_policy(dataset, bad, "skip")
"""
from __future__ import annotations

import io
import os
import stat
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageFile

from medbench.data.base import BadSample, Dataset
from medbench.errors import UserError
from medbench.records import Sample

MAX_REPORT_CHARS = 20_000
LABEL_VALUES = (1, 0, -1)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")  # .dcm through medbench.data.dicom
IMAGE_MODES = ("L", "RGB", "RGBA", "LA", "P")  # 8-bit modes every consumer can convert safely
POLICIES = ("fail", "skip")
_FORMAT_OF_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its CRC: the last 8 bytes of a complete PNG
MAX_IMAGE_BYTES = 1 << 30  # 1 GiB: larger image files are refused before reading
MAX_LINE_BYTES = 1 << 20  # 1 MiB: a labels/manifest line longer than this is refused, not read whole


class DatasetError(UserError):
    """A dataset cannot be used as it is; the message says which files and why."""


# ---------------------------------------------------------------- rules shared with the loaders


def report_problem(text: str, max_chars: int = MAX_REPORT_CHARS) -> str | None:
    """Why a report text is unusable (empty or over-long), or None."""
    if not text.strip():
        return "empty report"
    if len(text) > max_chars:
        return f"report too long: {len(text)} characters (limit {max_chars})"
    return None


def file_problem(path: Path, root: Path | None = None) -> str | None:
    """Why `path` must not be opened, or None: missing, a symlink loop, not a regular file (a
    directory, FIFO, device, socket: checked with os.stat, so a FIFO never blocks), or, when `root`
    is given, a symlink that leads outside `root`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "file not found (or a symlink to nothing)" if os.path.islink(path) else "file not found"
    except OSError as e:
        if e.errno == 40:  # ELOOP
            return "symlink loop (too many levels of symbolic links)"
        return f"cannot read file: {e.strerror or e}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        kind = "FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "device or socket"
        return f"not a regular file (a {kind})"
    if root is not None:
        real, base = os.path.realpath(path), os.path.realpath(root)
        if os.path.commonpath([real, base]) != base:
            return f"symlink leads outside {root} (to {real})"
    return None


def bounded_lines(path: Path, limit: int = MAX_LINE_BYTES):
    """(line number, bytes) for every line of a text file, reading at most `limit` bytes a line;
    a longer line is yielded as None (the caller reports it) and skipped to its end."""
    with open(path, "rb") as f:
        number = 0
        while True:
            raw = f.readline(limit + 1)
            if not raw:
                return
            number += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                while (rest := f.readline(limit)) and not rest.endswith(b"\n"):
                    pass
                yield number, None
                continue
            yield number, raw


def report_bytes_problem(data: bytes) -> str | None:
    """NUL bytes have no place in a report (a binary file, or UTF-16 read as UTF-8)."""
    at = data.find(b"\x00")
    return f"report contains NUL bytes (first at byte offset {at})" if at >= 0 else None


def read_report(path: Path, max_chars: int = MAX_REPORT_CHARS, *, allow_empty: bool = False,
                root: Path | None = None) -> tuple[str | None, str | None]:
    """Read a report file as UTF-8 (a BOM is allowed). Returns (text, None) or (None, reason).

    Only regular files are opened (see `file_problem`); at most 4*max_chars+4 bytes are read.
    allow_empty: an empty report is returned as "" (model outputs: scored as zero) instead of refused.
    """
    if problem := file_problem(path, root):
        return None, problem if problem != "file not found" else "report file not found"
    try:
        with open(path, "rb") as f:
            data = f.read(4 * max_chars + 4)  # UTF-8 uses at most 4 bytes a character
            longer = bool(f.read(1))
    except OSError as e:
        return None, f"cannot read report file: {e.strerror or e}"
    if longer:
        return None, f"report too long: more than {4 * max_chars} bytes (limit {max_chars} characters)"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"report is not UTF-8: invalid byte 0x{data[e.start]:02x} at byte offset {e.start}"
    if problem := report_bytes_problem(data):
        return None, problem
    text = text.strip()
    if allow_empty and not text:
        return "", None
    problem = report_problem(text, max_chars)
    return (None, problem) if problem else (text, None)


def normalize_labels(raw) -> tuple[dict[str, int] | None, str | None]:
    """CheXpert-style labels {observation: 1|0|-1}; None/"" mean blank and are dropped.

    Accepts integral floats (1.0, as CheXpert CSVs write them) and their strings. Returns
    (labels, None) or (None, reason).
    """
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        return None, f"labels must be a JSON object {{observation: 1|0|-1}}, got {type(raw).__name__}"
    labels: dict[str, int] = {}
    for obs, value in raw.items():
        if value is None or value == "":
            continue
        number = _label_number(value)
        if number is None:
            return None, f"label {obs!r} = {value!r} is not one of 1, 0, -1 (or null/blank)"
        labels[str(obs)] = number
    return labels, None


def _label_number(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and value in LABEL_VALUES:
        return int(value)
    return None


def image_problem(path: Path, root: Path | None = None) -> str | None:
    """Why an image file is unusable, or None. Decodes it fully (PIL open + load; DICOM by `dicom.read_dicom`)."""
    if problem := file_problem(path, root):
        return problem if problem != "file not found" else "image file not found"
    if (size := os.path.getsize(path)) > MAX_IMAGE_BYTES:
        return f"image file too large: {size} bytes (limit {MAX_IMAGE_BYTES})"
    if str(path).lower().endswith(".dcm"):
        return _dicom_problem(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        return "image file not found"
    except OSError as e:
        return f"cannot read image file: {e.strerror or e}"
    if not data:
        return "empty image file (0 bytes)"
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, (width, height) = im.format, im.mode, im.size
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:  # PIL only warns up to twice this
                return (f"image of {width}x{height} = {width * height:,} pixels is above PIL's decompression-bomb "
                        f"limit ({Image.MAX_IMAGE_PIXELS:,} pixels); downscale it first")
            im.load()
    except Image.UnidentifiedImageError:
        return "not an image PIL can read (unknown or corrupt format)"
    except Image.DecompressionBombError as e:
        return f"image refused as a decompression bomb: {e}"
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return f"truncated or corrupt image: {e}"
    if width == 0 or height == 0:
        return f"image has zero size ({width}x{height})"
    if fmt == "PNG" and not data.endswith(_PNG_END):
        return "truncated PNG: the file does not end with the IEND chunk"
    if fmt == "JPEG" and b"\xff\xd9" not in data[-1024:]:
        return "truncated JPEG: no end-of-image marker (FFD9) at the end of the file"
    if mode not in IMAGE_MODES:
        return (f"unsupported image mode {mode!r} ({fmt}); expected 8-bit {', '.join(IMAGE_MODES)} "
                f"(convert 16-bit or CMYK images to 8-bit L or RGB first)")
    expected = _FORMAT_OF_SUFFIX.get(os.path.splitext(path)[1].lower())
    if expected and fmt != expected:
        return f"file name says {expected} but the content is {fmt}"
    return None


def _dicom_problem(path: Path) -> str | None:
    from medbench.data.dicom import DicomError, read_dicom

    try:
        read_dicom(path)
    except DicomError as e:
        return str(e).removeprefix(f"{path}: ")
    return None


# ---------------------------------------------------------------- validation of a whole dataset


def sample_path(dataset: Dataset, sample: Sample) -> str:
    """The file that names a sample in messages: its image, else the dataset source and id."""
    if sample.image_path is not None:
        return str(sample.image_path)
    return f"{dataset.source or dataset.name}#{sample.id}"


def validate(dataset: Dataset, *, check_images: bool = True, max_report_chars: int = MAX_REPORT_CHARS,
             workers: int | None = None, progress: bool = False) -> list[BadSample]:
    """Every bad sample of `dataset`: the loader's findings (``dataset.bad``) plus the checks above.

    check_images=False skips decoding (existence is still checked). Images are decoded on a few
    threads (`workers`, default min(4, CPUs)).
    """
    bad: list[BadSample] = list(dataset.bad)
    samples = dataset.samples

    def add(sample: Sample, reason: str) -> None:
        bad.append(BadSample(sample.id, sample_path(dataset, sample), reason))

    for s in samples:
        if s.image_path is None and s.report is None:
            add(s, "sample has neither an image nor a report")
        if s.report is not None and (problem := report_problem(s.report, max_report_chars)):
            add(s, problem)
        _, problem = normalize_labels(s.labels)
        if problem:
            add(s, problem)

    with_images = [s for s in samples if s.image_path is not None]
    for s, problem in zip(with_images, _image_problems(with_images, check_images, workers, progress)):
        if problem:
            add(s, problem)

    by_id: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_id[s.id].append(s)
    for sample_id, group in by_id.items():
        if len(group) > 1:
            for s in group:
                others = ", ".join(f"{sample_path(dataset, o)} ({o.split})" for o in group if o is not s)
                add(s, f"duplicate id {sample_id!r} in split {s.split}: also {others}")

    splits_of_patient: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in samples:
        splits_of_patient[s.patient_id][s.split] += 1
    for s in samples:
        counts = splits_of_patient[s.patient_id]
        if len(counts) > 1:
            where = ", ".join(f"{split}: {n}" for split, n in sorted(counts.items()))
            add(s, f"patient {s.patient_id!r} appears in more than one split ({where} samples); "
                   f"splits must be disjoint by patient")
    return bad


def _image_problems(samples: list[Sample], check_images: bool, workers: int | None, progress: bool):
    if not check_images:
        return ["image file not found" if not os.path.isfile(s.image_path) else None for s in samples]
    return image_problems([s.image_path for s in samples], workers=workers, progress=progress)


def image_problems(paths: list[Path], root: Path | None = None, *, workers: int | None = None,
                   progress: bool = False) -> list[str | None]:
    """`image_problem` of every path, decoded on a few threads, with truncated loading forced off."""
    workers = workers or min(4, os.cpu_count() or 1)
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image must fail, never load half-grey
    try:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda p: image_problem(p, root), paths, chunksize=64)
            if progress:
                from tqdm import tqdm

                results = tqdm(results, total=len(paths), desc="validating images", unit="img")
            return list(results)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


# ---------------------------------------------------------------- the policy


def format_bad(bad: list[BadSample]) -> str:
    return "\n".join(f"  {b}" for b in bad)


def apply_policy(dataset: Dataset, bad: list[BadSample], on_bad_sample: str = "fail") -> Dataset:
    """'fail': raise DatasetError listing every bad sample; 'skip': drop them, keep the list in .bad."""
    if on_bad_sample not in POLICIES:
        raise ValueError(f"on_bad_sample must be one of {', '.join(POLICIES)}, got {on_bad_sample!r}")
    if not bad:
        return replace(dataset, bad=[])
    if on_bad_sample == "fail":
        raise DatasetError(
            f"dataset {dataset.name!r} ({dataset.source or 'no source'}) has {len(bad)} bad sample(s):\n"
            f"{format_bad(bad)}\n"
            f"Fix these files, or run with --on-bad-sample skip to leave them out "
            f"(the run record then counts and names them)."
        )
    dropped = {b.id for b in bad}
    kept = [s for s in dataset.samples if s.id not in dropped]
    if not kept:
        raise DatasetError(f"dataset {dataset.name!r}: every sample is bad, nothing left after skipping:\n{format_bad(bad)}")
    return replace(dataset, samples=kept, bad=list(bad))
