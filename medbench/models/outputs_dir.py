"""`outputs:DIR`: evaluate what any external system generated.

DIR holds files named by sample id: ``<id>.png`` (or .jpg/.jpeg) and/or ``<id>.txt`` (UTF-8).
Missing ids are an error that lists them; unreadable files are errors naming the file.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from medbench.models.base import ModelContext
from medbench.records import Output, Request, produces

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class OutputsDirModel:
    def __init__(self, ctx: ModelContext):
        if not ctx.arg:
            raise ValueError("outputs:DIR needs a folder, e.g. --model outputs:/path/to/generated")
        self.root = Path(ctx.arg).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: outputs folder does not exist")
        self.name = f"outputs:{self.root.name}"

    def check(self, requests: list[Request]) -> None:
        """Fail before generation with the full list of ids that have no output file."""
        missing = []
        for r in requests:
            for modality in produces(r.kind):
                if self._path(r.sample_id, modality) is None:
                    missing.append(f"{r.sample_id} ({modality})")
        if missing:
            shown = ", ".join(missing[:50]) + (f" ... and {len(missing) - 50} more" if len(missing) > 50 else "")
            raise FileNotFoundError(f"{self.root}: no output for {len(missing)} requested sample(s): {shown}")

    def _path(self, sample_id: str, modality: str) -> Path | None:
        suffixes = IMAGE_SUFFIXES if modality == "image" else (".txt",)
        return next((p for p in (self.root / f"{sample_id}{s}" for s in suffixes) if p.exists()), None)

    def generate(self, requests: list[Request]) -> list[Output]:
        self.check(requests)
        outs = []
        for r in requests:
            out = Output(r.sample_id)
            want = produces(r.kind)
            if "image" in want:
                path = self._path(r.sample_id, "image")
                try:
                    with Image.open(path) as im:
                        im.load()
                        out.image = im.copy()
                except Exception as e:
                    raise ValueError(f"{path}: unreadable image ({e})") from e
            if "report" in want:
                path = self._path(r.sample_id, "report")
                try:
                    out.report = path.read_bytes().decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path}: report is not UTF-8 (byte {e.start})") from e
            outs.append(out)
        return outs
