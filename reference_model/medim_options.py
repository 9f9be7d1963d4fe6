"""The `medim` model's declared options, request kinds and default checkpoint (no torch: `medbench list`
reads them at once).

    parse_options({"steps": "8"})                      # {"steps": 8}: only what was given, typed
    parse_options({"size": "512x512"}, OFFICIAL_OPTIONS)
"""
from __future__ import annotations

from pathlib import Path

from medbench.options import Option, resolve

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "tiny-phantom"  # what `--model medim` runs by default
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
    Option("order", str, None, "which masked positions each step reveals", choices=("confidence", "left_to_right")),
    Option("batch_size", int, 32, "sampler batch size", low=1, high=4096),
)
OFFICIAL_OPTIONS = (  # the official release only
    Option("size", str, None, "size string when the request has no image, WIDTHxHEIGHT", check=_size),
    Option("mimic_prefix", bool, True, "prefix sentence of the MIMIC prompts (B.2)"),
)
OPTION_KEYS = {o.name: o.type for o in OPTIONS}


def parse_options(options: dict, declared: tuple[Option, ...] = OPTIONS, owner: str = "model 'medim'") -> dict:
    """The given options, typed and checked (the harness has done so already for a run); unset (None) skipped."""
    given = {k: v for k, v in options.items() if v is not None}
    typed = resolve(declared, given, owner=owner, flag="--model-opt")
    return {k: v for k, v in typed.items() if k in given}
