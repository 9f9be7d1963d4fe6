"""qa-findings rows C44–C47 (hostile --model-path checkpoints): every one is refused with exit 2 and one line
naming the file; no pickle is ever opened (a payload would create PWNED)."""
import pickle
import shutil

import pytest

from cli_helpers import assert_one_line
from reference_model.medim_options import DEFAULT_CHECKPOINT

RUN = ("run", "--task", "i2t", "--model", "medim", "--n", "2", "--bootstrap", "0", "--store", "", "--no-report")


class Payload:
    def __reduce__(self):
        import os

        return os.system, ("touch PWNED",)


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(DEFAULT_CHECKPOINT, folder)
    return folder


def test_C44_one_flipped_byte_is_a_sha256_mismatch(cli, checkpoint, tmp_path):
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert_one_line(cli(*RUN, "--model-path", str(checkpoint), "--out", str(tmp_path / "out")), 2,
                    str(weights), "sha256 mismatch")


def test_C46_a_pickle_named_model_safetensors_is_refused_unopened(cli, checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (checkpoint / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    from reference_model.bundled import write_manifest

    write_manifest(checkpoint)  # the manifest now vouches for the pickle: only the format check is left
    assert_one_line(cli(*RUN, "--model-path", str(checkpoint), "--out", str(tmp_path / "out")), 2,
                    "model.safetensors", "not a readable safetensors file")
    assert not (tmp_path / "PWNED").exists()


def test_C47_a_pickle_as_the_vq_weights_fails_its_card(cli, checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vq = next(checkpoint.glob("vq*.safetensors"))
    vq.write_bytes(pickle.dumps(Payload()))
    from reference_model.bundled import write_manifest

    write_manifest(checkpoint)
    assert_one_line(cli(*RUN, "--model-path", str(checkpoint), "--out", str(tmp_path / "out")), 2,
                    vq.name, "sha256 mismatch")
    assert not (tmp_path / "PWNED").exists()
