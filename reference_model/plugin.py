"""The `medim` model for medbench: MeDiM's MaskGIT sampler behind the model protocol.

    medbench run --task joint_pairs --model medim                    # the bundled tiny-phantom checkpoint
    medbench run --task t2i --model medim --model-path DIR           # any folder of the same layout
    medbench run --task t2i --model medim --model-path RELEASE_DIR   # the official MeDiM release

This module only registers the model (no torch at import, so `medbench list` answers at once): the
bundled layout is reference_model.bundled, the official release reference_model.official, and both
sample through one adapter, reference_model.adapter.MedimAdapter.

Sampler settings come from ``--model-opt`` (context.options): steps, cfg, temperature, r_temp,
schedule, path, time, pad_bias, remask_rounds, remask_frac, batch_size (reference_model.medim_options);
defaults are the checkpoint config's sampler fields (sampler.py documents each). The official release
also takes size=WxH and mimic_prefix.

    python -m reference_model.plugin manifest DIR | verify DIR      # a bundled-layout checkpoint's manifest
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from medbench import hookimpl
from medbench.registry import ModelSpec
from reference_model.medim_options import DEFAULT_CHECKPOINT, KIND_TASK, OFFICIAL_OPTIONS, OPTION_KEYS, OPTIONS  # noqa: F401
_MOVED = {"MedimModel", "write_manifest", "verify_checkpoint", "FILES", "MANIFEST"}  # now in reference_model.bundled


def __getattr__(name: str):
    """`from reference_model.plugin import MedimModel` keeps working (imported on first use, with torch)."""
    if name in _MOVED:
        from reference_model import bundled

        return getattr(bundled, name)
    if name == "decode_images":
        from reference_model.adapter import decode_images

        return decode_images
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _factory(context):
    """The bundled checkpoint, a folder of ours (--model-path), or the official MeDiM release."""
    from reference_model.official import is_official_release

    if context.model_path and is_official_release(context.model_path):
        from reference_model.official import OfficialMedimModel

        return OfficialMedimModel(context.model_path, device=context.device, options=context.options,
                                  image_size=context.image_size)
    from reference_model.bundled import MedimModel

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
    from reference_model.bundled import verify_checkpoint, write_manifest

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("manifest", "verify"):
        raise SystemExit("usage: python -m reference_model.plugin {manifest|verify} CHECKPOINT_DIR")
    if argv[0] == "manifest":
        print(write_manifest(argv[1]))
    else:
        print(json.dumps(verify_checkpoint(argv[1]), indent=2))


if __name__ == "__main__":
    main()
