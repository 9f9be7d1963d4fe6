"""Convert the public Chameleon / Liquid `vqgan.ckpt` + `vqgan.yaml` into a safetensors tokenizer folder.

    python -m reference_model.convert_vqgan --ckpt chameleon/vqgan.ckpt --yaml chameleon/vqgan.yaml \\
        --out reference_model/checkpoints/chameleon-vqgan [--sha256 EXPECTED_CKPT_SHA256]

Steps: verify the checkpoint's sha256 (when given) -> ``torch.load(weights_only=True)`` (a checkpoint that
needs arbitrary unpickling is refused, with how to re-save it) -> take its ``state_dict`` -> drop the
training-only ``loss.*`` tensors (discriminator, LPIPS) and wrapper prefixes -> check every key and shape
against ChameleonVQGAN built from the yaml -> write ``vqgan.safetensors`` and the card ``vq.json``
(kind "chameleon-vqgan", config, sha256 of the source files and of the output), then reload it strictly.
The folder loads with ``load_chameleon_vqgan(DIR)`` or ``reference_model.vq.load_image_tokenizer(DIR)``.
"""
from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import torch
from safetensors.torch import save_file

from reference_model.chameleon_vqgan import WEIGHTS_NAME, ChameleonVQGAN, ChameleonVQGANConfig, load_chameleon_vqgan
from reference_model.vq import CARD_NAME, sha256_file

DROP_PREFIXES = ("loss.",)  # VQLPIPSWithDiscriminator: discriminator and perceptual network, training only
STRIP_PREFIXES = ("module.", "model.vqmodel.", "vqmodel.")  # DDP wrapper; transformers' Chameleon naming

RESAVE_HINT = (
    "Only if you trust the file's origin, re-save its tensors in an environment where unpickling it is acceptable:\n"
    "    import torch\n"
    "    ckpt = torch.load('vqgan.ckpt', map_location='cpu', weights_only=False)  # runs the pickle: trusted files only\n"
    "    torch.save({'state_dict': {k: v for k, v in ckpt['state_dict'].items() if isinstance(v, torch.Tensor)}},\n"
    "               'vqgan_state_dict.ckpt')\n"
    "and convert vqgan_state_dict.ckpt instead (record the original file's sha256 with --source-sha256)."
)


def load_original_state_dict(ckpt: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, read with torch.load(weights_only=True); clear errors otherwise."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"VQGAN checkpoint not found: place vqgan.ckpt (Chameleon release, or the HF space "
                                f"Junfeng5/Liquid_demo chameleon/vqgan.ckpt) at {ckpt}")
    try:
        obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:300]
        raise ValueError(f"{ckpt}: refusing to load: it contains Python objects other than tensors and plain containers, "
                         f"so torch.load(weights_only=True) cannot read it safely ({first}). Loading it with "
                         f"weights_only=False would execute arbitrary code from the file.\n{RESAVE_HINT}") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{ckpt}: not a readable PyTorch checkpoint ({e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]  # Lightning checkpoint: state_dict + epoch, global_step, optimizer states, ...
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj  # a bare state dict
    else:
        top = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{ckpt}: expected a Lightning checkpoint with a 'state_dict' entry or a bare state dict, got {top}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{ckpt}: state_dict entries that are not tensors: {bad[:10]}")
    return state


def clean_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(model tensors with wrapper prefixes stripped, names of the dropped training-only tensors)."""
    kept, dropped = {}, []
    for key, value in state.items():
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key.startswith(DROP_PREFIXES):
            dropped.append(key)
        elif key in kept:
            raise ValueError(f"key {key!r} occurs twice after stripping the prefixes {STRIP_PREFIXES}")
        else:
            kept[key] = value
    return kept, dropped


def check_keys(state: dict[str, torch.Tensor], cfg: ChameleonVQGANConfig, source: str):
    """Every architecture key present with its shape and nothing else; the error lists what differs."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ChameleonVQGAN(cfg).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} != {expected[k]}" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        parts = [f"{name} ({len(items)}): {items[:8]}{' ...' if len(items) > 8 else ''}"
                 for name, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise ValueError(f"{source}: does not match the Chameleon VQGAN architecture of the yaml config; "
                         + "; ".join(parts) + ". Check that the yaml belongs to this checkpoint.")


def convert(ckpt: str | Path, yaml_path: str | Path, out: str | Path, expected_sha256: str | None = None,
            source_sha256: str | None = None) -> Path:
    """Convert and verify; returns the path of the written card."""
    ckpt, out = Path(ckpt), Path(out)
    digest = sha256_file(ckpt) if ckpt.is_file() else None
    if expected_sha256 and digest and digest != expected_sha256.lower():
        raise ValueError(f"{ckpt}: sha256 mismatch (file {digest}, expected {expected_sha256}); "
                         f"the download is corrupt or a different checkpoint")
    cfg = ChameleonVQGANConfig.from_yaml(yaml_path)
    state, dropped = clean_keys(load_original_state_dict(ckpt))
    check_keys(state, cfg, str(ckpt))

    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    save_file(tensors, str(weights), metadata={"kind": ChameleonVQGAN.kind, "source_sha256": digest})
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in tensors.values()})
    card = {
        "kind": ChameleonVQGAN.kind,
        "config": cfg.to_dict(),
        "weights": WEIGHTS_NAME,
        "sha256": sha256_file(weights),
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "source": {"ckpt": ckpt.name, "ckpt_sha256": digest, "original_sha256": source_sha256,
                   "yaml": Path(yaml_path).name, "yaml_sha256": sha256_file(yaml_path),
                   "dropped_keys": len(dropped), "dropped_prefixes": sorted({k.split(".")[1] for k in dropped if "." in k})},
        "converted_by": "python -m reference_model.convert_vqgan",
    }
    card_path = out / CARD_NAME
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    load_chameleon_vqgan(out)  # strict reload of what was written (sha256, keys, shapes)
    return card_path


def main(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="the original vqgan.ckpt")
    p.add_argument("--yaml", required=True, help="its vqgan.yaml")
    p.add_argument("--out", required=True, help="output folder (vqgan.safetensors + vq.json)")
    p.add_argument("--sha256", help="expected sha256 of --ckpt; conversion stops on mismatch")
    p.add_argument("--source-sha256", help="sha256 of the original file, recorded when --ckpt is a re-saved copy")
    args = p.parse_args(argv)
    try:
        card = convert(args.ckpt, args.yaml, args.out, args.sha256, args.source_sha256)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"convert_vqgan: error: {e}") from None
    info = json.loads(card.read_text())
    print(f"wrote {card.parent / info['weights']} (sha256 {info['sha256']}) and {card}; "
          f"dropped {info['source']['dropped_keys']} training-only tensors")


if __name__ == "__main__":
    main()
