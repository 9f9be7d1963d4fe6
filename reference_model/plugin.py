"""The `medim` model for medbench: MeDiM's MaskGIT sampler behind the model protocol.

    medbench run --task joint_pairs --model medim                    # the bundled tiny-phantom checkpoint
    medbench run --task t2i --model medim --model-path DIR           # any folder of the same layout

A checkpoint folder holds config.json (MeDiMConfig), model.safetensors (backbone), vq.json +
vq.safetensors (image tokenizer card and weights), text-tokenizer.json and manifest.json (sha256 of
every other file; write it with ``python -m reference_model.plugin manifest DIR``). Everything is
verified before use; nothing is ever downloaded.

Sampler settings come from ``--model-opt`` (context.options): steps, cfg, temperature, r_temp,
schedule, path, time, pad_bias, remask_rounds, remask_frac, batch_size; defaults are the checkpoint
config's sampler fields (sampler.py documents each).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from PIL import Image

from medbench import hookimpl
from medbench.options import Option, resolve
from medbench.records import Output, Request
from medbench.registry import ModelSpec

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "tiny-phantom"
MANIFEST = "manifest.json"
FILES = {  # file -> what it is and how it is made
    "config.json": "the MeDiM config (written by python -m reference_model.train)",
    "model.safetensors": "the MeDiM backbone weights (written by python -m reference_model.train)",
    "vq.json": "the image tokenizer card (written by python -m reference_model.train_vq)",
    "vq.safetensors": "the image tokenizer weights (written by python -m reference_model.train_vq)",
    "text-tokenizer.json": "the text tokenizer (written by python -m reference_model.text_tokenizer)",
}
KIND_TASK = {"report->image": "t2i", "image->report": "i2t", "prompt->pair": "prompted"}


def _positive(value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be > 0, got {value!r}")


def _size(value: str) -> None:
    w, sep, h = value.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise ValueError(f"must be WIDTHxHEIGHT in pixels, e.g. 512x512; got {value!r}")


# Declared --model-opt options (checked once by the harness); None = the checkpoint config's value.
OPTIONS = (
    Option("steps", int, None, "sampler steps", low=1, high=4096),
    Option("cfg", float, None, "classifier-free guidance scale", low=0, high=100),
    Option("temperature", float, None, "sampling temperature", low=0, high=100, check=_positive),
    Option("r_temp", float, None, "Gumbel noise on the reveal confidences", low=0, high=100),
    Option("schedule", str, None, "reveal schedule", choices=("arccos", "cosine", "linear")),
    Option("path", str, None, "sampling path", choices=("normalized", "reference")),
    Option("time", str, None, "time fed to the model", choices=("nominal", "mask_ratio")),
    Option("remask_rounds", int, None, "ReMDM-style remask rounds after sampling", low=0, high=1000),
    Option("remask_frac", float, None, "share of tokens remasked per round", low=0, high=1, check=_positive),
    Option("pad_bias", float, None, "logit bias on the pad token (a length penalty when negative)", low=-100, high=100),
    Option("batch_size", int, 32, "sampler batch size", low=1, high=4096),
)
OFFICIAL_OPTIONS = (  # the official release only
    Option("size", str, None, "size string when the request has no image, WIDTHxHEIGHT", check=_size),
    Option("mimic_prefix", bool, True, "prefix sentence of the MIMIC prompts (B.2)"),
)
OPTION_KEYS = {o.name: o.type for o in OPTIONS}


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
        raise ValueError(f"{folder / MANIFEST}: expected {{\"files\": {{name: sha256}}}} ({e})") from None
    digests = {}
    for name in FILES:
        if name not in expected:
            raise ValueError(f"{folder / MANIFEST}: no sha256 for {name}; rewrite the manifest")
        digests[name] = _sha256(folder / name)
        if digests[name] != expected[name]:
            raise ValueError(f"{folder / name}: sha256 mismatch (file {digests[name]}, {MANIFEST} expects "
                             f"{expected[name]}); the file is corrupt or from another checkpoint")
    return digests


class MedimModel:
    """A loaded MeDiM checkpoint answering medbench requests."""

    name = "medim"

    def __init__(self, folder: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu", options: dict | None = None,
                 image_size: int | None = None):
        from safetensors.torch import load_file

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
        state = load_file(str(self.folder / "model.safetensors"))
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{self.folder / 'model.safetensors'}: does not fit config.json "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        self.backbone.to(self.device).eval()
        self.tokens = self.backbone.tokens
        self.sampler = MaskGITSampler(self.backbone, self.cfg, self.tokens)
        self.prompted = "prompted" in self.cfg.data.get("layouts", LAYOUTS)
        self.options = self._parse_options(options or {})
        self.image_size = image_size

    @property
    def weights_sha256(self) -> dict[str, str]:
        """Recorded in run.json provenance."""
        return {str(self.folder / name): digest for name, digest in self.digests.items()}

    @staticmethod
    def _parse_options(options: dict) -> dict:
        """The given options, typed and checked against OPTIONS (the harness has done so already for a run)."""
        typed = resolve(OPTIONS, options, owner="model 'medim'", flag="--model-opt")
        return {k: v for k, v in typed.items() if k in options}

    # ------------------------------------------------------------------ request -> known tokens

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

    def _image_codes(self, requests: list[Request]) -> torch.Tensor:
        from reference_model.data import image_to_tensor

        n = self.tokens.image_len
        if requests[0].kind != "image->report":
            return torch.zeros(len(requests), n, dtype=torch.long)
        missing = [r.sample_id for r in requests if r.image is None]
        if missing:
            raise ValueError(f"image->report requests without an image: {missing[:5]}")
        pixels = torch.stack([image_to_tensor(r.image, self.image_tok.image_size) for r in requests])
        return self.image_tok.encode(pixels.to(self.device)).cpu()

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def _generate_batch(self, requests: list[Request]) -> list[Output]:
        from reference_model.data import pad_text, report_from_ids
        from reference_model.sampler import task_known_mask

        kind = requests[0].kind
        rows = [self._text_row(r) for r in requests]
        text = torch.stack([pad_text(ids, self.tokens.text_len, self.text_tok.pad_id)[0] for ids, _ in rows])
        x0 = self.tokens.make_state(text, self._image_codes(requests))
        prompt_len = torch.tensor([p for _, p in rows])
        known = task_known_mask(KIND_TASK[kind], self.tokens, len(requests), prompt_len)
        size_ids = None
        if self.cfg.size_cond_len:
            side = self.image_tok.image_size
            size_ids = torch.tensor([self.tokens.size_cond_ids(self.text_tok, side, side) for _ in requests])
        cond = self.tokens.cond_ids([r.domain for r in requests], size_ids)
        o = self.options
        state = self.sampler.generate(x0, known, cond, seeds=[r.seed for r in requests], steps=o.get("steps"),
                                      schedule=o.get("schedule"), temperature=o.get("temperature"),
                                      r_temp=o.get("r_temp"), cfg_scale=o.get("cfg"), path=o.get("path"),
                                      time=o.get("time"), remask_rounds=o.get("remask_rounds"),
                                      remask_frac=o.get("remask_frac"), pad_bias=o.get("pad_bias")).cpu()
        text_ids, codes = self.tokens.split_state(state)
        outputs = [Output(sample_id=r.sample_id) for r in requests]
        if kind in ("image->report", "prompt->pair"):
            for out, ids, (_, p) in zip(outputs, text_ids.tolist(), rows):
                out.report = report_from_ids(self.text_tok, ids[p:] if self.prompted else ids)
        if kind in ("report->image", "prompt->pair"):
            for out, img in zip(outputs, decode_images(self.image_tok, codes, requests, self.image_size, self.device)):
                out.image = img
        return outputs

    def generate(self, requests: list[Request]) -> list[Output]:
        """Outputs in request order; each request's seed fixes its result whatever the batch."""
        unknown = {r.kind for r in requests} - set(KIND_TASK)
        if unknown:
            raise ValueError(f"medim cannot answer request kinds {sorted(unknown)}; it supports {list(KIND_TASK)}")
        size = self.options.get("batch_size", 32)
        results: dict[int, Output] = {}
        for kind in KIND_TASK:  # one kind per sampler batch
            idx = [i for i, r in enumerate(requests) if r.kind == kind]
            for start in range(0, len(idx), size):
                chunk = idx[start:start + size]
                for i, out in zip(chunk, self._generate_batch([requests[i] for i in chunk])):
                    results[i] = out
        return [results[i] for i in range(len(requests))]


def decode_images(image_tok, codes: torch.Tensor, requests: list[Request], image_size: int | None,
                  device) -> list[Image.Image]:
    """VQ codes -> PIL images in each request's domain mode, resized to the dataset's size when given."""
    from reference_model.data import tensor_to_image

    images = []
    for x, r in zip(image_tok.decode(codes.to(device)).cpu(), requests):
        img = tensor_to_image(x, r.domain)
        if image_size and img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
        images.append(img)
    return images


def _factory(context) -> MedimModel:
    """The bundled checkpoint, a folder of ours (--model-path), or the official MeDiM release."""
    from reference_model.official import OfficialMedimModel, is_official_release

    if context.model_path and is_official_release(context.model_path):
        return OfficialMedimModel(context.model_path, device=context.device, options=context.options,
                                  image_size=context.image_size)
    folder = Path(context.model_path) if context.model_path else DEFAULT_CHECKPOINT
    return MedimModel(folder, device=context.device, options=context.options, image_size=context.image_size)


@hookimpl
def medbench_models():
    return [ModelSpec(name="medim", factory=_factory, kinds=tuple(KIND_TASK), options=OPTIONS + OFFICIAL_OPTIONS,
                      uses_model_path=True,
                      description="MeDiM reference model (masked discrete diffusion); bundled tiny phantom "
                                  "checkpoint by default, --model-path DIR otherwise")]


def main(argv: list[str] | None = None) -> None:
    """python -m reference_model.plugin manifest DIR | verify DIR"""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("manifest", "verify"):
        raise SystemExit("usage: python -m reference_model.plugin {manifest|verify} CHECKPOINT_DIR")
    if argv[0] == "manifest":
        print(write_manifest(argv[1]))
    else:
        print(json.dumps(verify_checkpoint(argv[1]), indent=2))


if __name__ == "__main__":
    main()
