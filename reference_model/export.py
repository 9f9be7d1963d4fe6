"""Turn a training run into an evaluable MeDiM checkpoint folder (the bundled layout) with its manifest.

    python -m reference_model.train --config tiny-phantom --out runs/tiny-phantom
    python -m reference_model.export runs/tiny-phantom checkpoints/my-medim
    medbench run --task joint_pairs --model medim --model-path checkpoints/my-medim

From RUN_DIR it takes checkpoint/config.json and checkpoint/model.safetensors (the weights are loaded
strictly into MeDiMBackbone first: a checkpoint that does not fit its config is refused), and log.jsonl /
summary.json as train-log.jsonl / train-summary.json; from the config's ``data.tokenizer_dir`` (or
``--tokenizer-dir``) vq.json, its weights and text-tokenizer.json. Then it writes manifest.json and loads
the folder as `medim` would. Runs on Llama-tokenized flat folders (paper scale) have no bundled layout:
they are refused with what to do instead.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = {"log.jsonl": "train-log.jsonl", "summary.json": "train-summary.json"}  # copied when present


def _tokenizer_dir(cfg, given: str | Path | None) -> Path:
    if given is not None:
        return Path(given)
    if "tokenizer_dir" not in cfg.data:
        raise ValueError(f"config {cfg.name!r} names no data.tokenizer_dir: pass --tokenizer-dir DIR (vq.json + "
                         f"text-tokenizer.json)")
    tok_dir = Path(cfg.data["tokenizer_dir"])
    return tok_dir if tok_dir.is_absolute() else REPO / tok_dir


def check_weights(cfg, weights: Path) -> None:
    """The run's weights load into MeDiMBackbone(cfg) with no missing or unexpected key."""
    from safetensors.torch import load_file

    from reference_model.backbone import MeDiMBackbone

    missing, unexpected = MeDiMBackbone(cfg).load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: does not fit its config.json (missing {missing[:5]}, unexpected {unexpected[:5]})")


def export(run_dir: str | Path, out: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write the checkpoint folder `out` from `run_dir`; returns the manifest path."""
    from reference_model.bundled import MedimModel, write_manifest
    from reference_model.config import load_config
    from reference_model.vq_card import CARD_NAME, read_card

    run_dir, out = Path(run_dir), Path(out)
    ckpt = run_dir / "checkpoint"
    for name in ("config.json", "model.safetensors"):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"{ckpt / name} not found: RUN_DIR is the --out folder of python -m reference_model.train")
    cfg = load_config(ckpt / "config.json")
    if "flat_cache" in cfg.data and cfg.data.get("text_kind", "llama") == "llama":
        raise ValueError(f"config {cfg.name!r} trains on Llama-tokenized flat folders; the bundled layout holds a "
                         f"text-tokenizer.json, so export that run with reference_model.official.reference_to_official "
                         f"into the official release layout instead")
    tok_dir = _tokenizer_dir(cfg, tokenizer_dir)
    card, card_path = read_card(tok_dir)
    sources = {"config.json": ckpt / "config.json", "model.safetensors": ckpt / "model.safetensors",
               CARD_NAME: card_path, "text-tokenizer.json": tok_dir / cfg.data.get("text_tokenizer", "text-tokenizer.json")}
    if card["weights"] != "vq.safetensors":
        raise ValueError(f"{card_path}: the bundled layout expects the tokenizer weights as vq.safetensors, the card "
                         f"names {card['weights']!r}")
    sources["vq.safetensors"] = card_path.parent / card["weights"]
    sources.update({dst: run_dir / src for src, dst in RUN_FILES.items() if (run_dir / src).is_file()})
    absent = [str(p) for p in sources.values() if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"cannot export {run_dir}: missing {', '.join(absent)}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; export into a new folder")
    check_weights(cfg, sources["model.safetensors"])
    out.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        shutil.copyfile(src, out / name)
    manifest = write_manifest(out)
    MedimModel(out)  # loads exactly as `--model medim --model-path OUT` will
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export a MeDiM training run as an evaluable checkpoint folder.")
    ap.add_argument("run_dir", help="the --out folder of python -m reference_model.train")
    ap.add_argument("out", help="new checkpoint folder (for medbench run --model medim --model-path OUT)")
    ap.add_argument("--tokenizer-dir", help="folder with vq.json and text-tokenizer.json (default: the config's)")
    a = ap.parse_args(argv)
    manifest = export(a.run_dir, a.out, a.tokenizer_dir)
    print(json.dumps({"checkpoint": a.out, "manifest": str(manifest),
                      "files": json.loads(manifest.read_text())["files"]}, indent=1))


if __name__ == "__main__":
    main()
