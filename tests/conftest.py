"""Shared fixtures: an isolated MEDBENCH_HOME and a tiny real folder dataset."""
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FINDINGS = [
    ("Cardiomegaly", "The heart is enlarged.", "Heart size is normal."),
    ("Pleural Effusion", "There is a small left pleural effusion.", "No pleural effusion."),
    ("Pneumothorax", "There is a right pneumothorax.", "No pneumothorax."),
]


@pytest.fixture(scope="session", autouse=True)
def medbench_home(tmp_path_factory):
    """One cache for the whole test session (WordNet copy, phantoms, features), never the user's.

    Set MEDBENCH_TEST_HOME to reuse a cache across sessions."""
    home = os.environ.get("MEDBENCH_TEST_HOME") or str(tmp_path_factory.mktemp("medbench_home"))
    old = os.environ.get("MEDBENCH_HOME")
    os.environ["MEDBENCH_HOME"] = home
    yield Path(home)
    if old is None:
        os.environ.pop("MEDBENCH_HOME", None)
    else:
        os.environ["MEDBENCH_HOME"] = old


def write_tiny_folder(root: Path, n_train: int = 12, n_test: int = 10, seed: int = 0) -> Path:
    """A small chest-like folder dataset: train/ and test/ with png + txt + labels.jsonl."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "labels.jsonl", "w") as lab:
            for i in range(n):
                sid = f"{split}{i:03d}"
                flags = rng.random(len(FINDINGS)) < 0.4
                img = np.full((32, 32), 60, np.uint8)
                for k, on in enumerate(flags):
                    if on:
                        img[4 + 8 * k:10 + 8 * k, 4:28] = 200
                img = (img + rng.integers(0, 20, img.shape)).astype(np.uint8)
                Image.fromarray(img).save(d / f"{sid}.png")
                text = " ".join(pos if on else neg for (_, pos, neg), on in zip(FINDINGS, flags))
                (d / f"{sid}.txt").write_text("Frontal chest radiograph. " + text)
                labels = {name: int(on) for (name, _, _), on in zip(FINDINGS, flags)}
                lab.write(json.dumps({"id": sid, "patient_id": f"{split}-p{i // 2}", "domain": "cxr", "labels": labels}) + "\n")
    return root


@pytest.fixture(scope="module")
def text_weights(tmp_path_factory) -> Path:
    """A weights root with tiny real-architecture CheXbert and BERTScore (distilbert) checkpoints, pinned."""
    from tiny_report_models import build_bertscore_distilbert, build_chexbert

    root = tmp_path_factory.mktemp("weights")
    build_chexbert(root)
    build_bertscore_distilbert(root)
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return write_tiny_folder(tmp_path / "data")


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every socket connection: a test using it proves the code under test never reaches the network."""
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
