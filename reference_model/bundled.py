"""The bundled MeDiM checkpoints (ours: trained by reference_model.train) behind the medbench model protocol.

    model = MedimModel("reference_model/checkpoints/tiny-phantom")   # or any folder of the same layout
    model.generate(requests)

A checkpoint folder holds config.json (MeDiMConfig), model.safetensors (backbone), vq.json +
vq.safetensors (image tokenizer card and weights), text-tokenizer.json and manifest.json (sha256 of
every other file; write it with ``python -m reference_model.plugin manifest DIR``, or make the whole
folder from a training run with ``python -m reference_model.export RUN_DIR OUT``). Everything is
verified before use; nothing is ever downloaded. Sampling is reference_model.adapter.MedimAdapter's.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from medbench.errors import UserError
from medbench.records import Request
from reference_model.adapter import MedimAdapter
from reference_model.checkpoint import read_weights
from reference_model.medim_options import DEFAULT_CHECKPOINT

MANIFEST = "manifest.json"
FILES = {  # file -> what it is and how it is made
    "config.json": "the MeDiM config (written by python -m reference_model.train)",
    "model.safetensors": "the MeDiM backbone weights (written by python -m reference_model.train)",
    "vq.json": "the image tokenizer card (written by python -m reference_model.train_vq)",
    "vq.safetensors": "the image tokenizer weights (written by python -m reference_model.train_vq)",
    "text-tokenizer.json": "the text tokenizer (written by python -m reference_model.text_tokenizer)",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(folder: str | Path) -> Path:
    """Record the sha256 of every checkpoint file present in `folder` (run after training)."""
    folder = Path(folder)
    files = {name: _sha256(folder / name) for name in FILES if (folder / name).is_file()}
    path = folder / MANIFEST
    path.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n")
    return path


def verify_checkpoint(folder: str | Path) -> dict[str, str]:
    """Check that every file is present and matches manifest.json; returns {file: sha256}."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MeDiM checkpoint folder not found: {folder}")
    for name, what in FILES.items():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"MeDiM checkpoint is missing {name} ({what}): place it at {folder / name}")
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"MeDiM checkpoint has no {MANIFEST}: place one at {folder / MANIFEST} "
                                f"(python -m reference_model.plugin manifest {folder})")
    try:
        expected = json.loads((folder / MANIFEST).read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{folder / MANIFEST}: expected {{\"files\": {{name: sha256}}}} ({e})") from None
    digests = {}
    for name in FILES:
        if name not in expected:
            raise UserError(f"{folder / MANIFEST}: no sha256 for {name}; rewrite the manifest")
        digests[name] = _sha256(folder / name)
        if digests[name] != expected[name]:
            raise UserError(f"{folder / name}: sha256 mismatch (file {digests[name]}, {MANIFEST} expects "
                            f"{expected[name]}); the file is corrupt or from another checkpoint")
    return digests


class MedimModel(MedimAdapter):
    """A loaded MeDiM checkpoint answering medbench requests."""

    name = "medim"

    def __init__(self, folder: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu", options: dict | None = None,
                 image_size: int | None = None):
        from reference_model.autoregressive import ARSampler
        from reference_model.backbone import MeDiMBackbone
        from reference_model.config import load_config
        from reference_model.data import LAYOUTS
        from reference_model.sampler import MaskGITSampler
        from reference_model.text_tokenizer import TextTokenizer
        from reference_model.vq import load_image_tokenizer

        self.folder = Path(folder)
        self.digests = verify_checkpoint(self.folder)
        self.cfg = load_config(self.folder / "config.json")
        self.device = torch.device(device)
        self.image_tok = load_image_tokenizer(self.folder, device=self.device)
        self.text_tok = TextTokenizer.from_file(self.folder / "text-tokenizer.json")
        got = (self.text_tok.vocab_size, self.image_tok.codebook_size, tuple(self.image_tok.grid))
        want = (self.cfg.text_vocab_size, self.cfg.image_codebook_size, tuple(self.cfg.image_grid))
        if got != want:
            raise ValueError(f"{self.folder}: config.json expects (text vocab, codebook, grid) = {want}, "
                             f"the bundled tokenizers give {got}")
        self.backbone = MeDiMBackbone(self.cfg)
        state = read_weights(self.folder / "model.safetensors")
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{self.folder / 'model.safetensors'}: does not fit config.json "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        self.backbone.to(self.device).eval()
        self.tokens = self.backbone.tokens
        sampler_cls = ARSampler if self.cfg.objective == "ar" else MaskGITSampler
        self.sampler = sampler_cls(self.backbone, self.cfg, self.tokens)
        self.prompted = "prompted" in self.cfg.data.get("layouts", LAYOUTS)
        self.options = self._parse_options(options or {})
        self.image_size = image_size

    @property
    def weights_sha256(self) -> dict[str, str]:
        """Recorded in run.json provenance."""
        return {str(self.folder / name): digest for name, digest in self.digests.items()}

    def _text_row(self, req: Request) -> tuple[list[int], int]:
        """(text ids before padding, prompt_len) of the known text for one request."""
        from reference_model.data import layout_ids

        tok = self.text_tok
        if req.kind == "report->image":
            if not req.report:
                raise ValueError(f"request {req.sample_id!r} (report->image) has no report")
            return layout_ids(tok, req.report, None, "report")[0], 0
        if req.kind == "prompt->pair":
            if not req.prompt:
                raise ValueError(f"request {req.sample_id!r} (prompt->pair) has no prompt")
            if self.prompted:
                ids = [tok.bos_id] + tok.encode(req.prompt.strip()) + [tok.eos_id]
            else:  # MeDiM's convention: the prompt is the first sentence of the report
                ids = [tok.bos_id] + tok.encode(req.prompt.strip())
            return ids, min(len(ids), self.tokens.text_len)
        return [], 0

    def _size_ids(self, requests: list[Request]) -> torch.Tensor | None:
        if not self.cfg.size_cond_len:
            return None
        side = self.image_tok.image_size
        return torch.tensor([self.tokens.size_cond_ids(self.text_tok, side, side) for _ in requests])

    def _report(self, ids: list[int], prompt_len: int, req: Request) -> str:
        from reference_model.data import report_from_ids

        return report_from_ids(self.text_tok, ids[prompt_len:] if self.prompted else ids)
