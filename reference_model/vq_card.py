"""The image-tokenizer card (vq.json) shared by the tiny VQ and the Chameleon VQGAN: its name, how it is
read, and the file hash it records. Both tokenizer modules import it; it imports neither.

    card, card_path = read_card("reference_model/checkpoints/tiny-phantom")   # folder or vq.json path
    sha256_file(card_path.parent / card["weights"]) == card["sha256"]
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

CARD_NAME = "vq.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_card(path: str | Path) -> tuple[dict, Path]:
    """(card, card path) for a folder holding vq.json or a card path; clear errors when absent."""
    path = Path(path)
    card_path = path / CARD_NAME if path.is_dir() else path
    if not card_path.is_file():
        raise FileNotFoundError(f"image tokenizer card not found: place {CARD_NAME} (written by "
                                f"`python -m reference_model.train_vq --out DIR`) at {card_path}")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{card_path}: not valid JSON ({e})") from None
    for key in ("kind", "weights", "sha256"):
        if key not in card:
            raise ValueError(f"{card_path}: missing key {key!r}")
    return card, card_path
