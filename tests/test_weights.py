"""medbench.weights: the layout, sha256 checks, local pins and the `medbench weights` command."""
import hashlib

import pytest

from medbench import weights as W
from medbench.cli import main

DATA = b"tiny weights"
SPEC = W.WeightsSpec("toy", (W.WeightFile("model/weights.bin", hashlib.sha256(DATA).hexdigest(), len(DATA)),),
                     licence="MIT", source="the toy page", used_by=("nlg.toy",))
UNPINNED = W.WeightsSpec("free", (W.WeightFile("a.safetensors"),))


def put(root, spec, data=DATA, name=None):
    path = root / spec.name / (name or spec.files[0].path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_root_follows_flag_then_env_then_home(tmp_path, monkeypatch, medbench_home):
    monkeypatch.delenv("MEDBENCH_WEIGHTS", raising=False)
    assert W.weights_root() == medbench_home / "weights"
    monkeypatch.setenv("MEDBENCH_WEIGHTS", str(tmp_path / "env"))
    assert W.weights_root() == tmp_path / "env"
    assert W.weights_root(tmp_path / "flag") == tmp_path / "flag"


def test_missing_file_names_it_and_where_to_get_it(tmp_path):
    with pytest.raises(W.WeightsError) as e:
        W.locate(SPEC, tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "toy" / "model" / "weights.bin") in msg and "the toy page" in msg and "\n" not in msg


def test_published_file_is_verified(tmp_path):
    put(tmp_path, SPEC)
    found = W.locate(SPEC, tmp_path)
    assert found.verified and found.sha256 == {"model/weights.bin": hashlib.sha256(DATA).hexdigest()}
    assert found.path("model/weights.bin").read_bytes() == DATA
    assert list(found.provenance()) == ["toy/model/weights.bin"]


def test_other_bytes_are_refused_until_pinned(tmp_path):
    put(tmp_path, SPEC, b"a fine-tune")
    with pytest.raises(W.WeightsError, match="sha256 mismatch"):
        W.locate(SPEC, tmp_path)
    W.pin(SPEC, tmp_path)
    found = W.locate(SPEC, tmp_path)
    assert not found.verified
    assert "local pin" in next(iter(found.provenance().values()))
    put(tmp_path, SPEC, b"changed after pinning")
    with pytest.raises(W.WeightsError, match="sha256 mismatch"):
        W.locate(SPEC, tmp_path)


def test_unpinned_spec_records_the_hash_unverified_and_a_pin_guards_it(tmp_path):
    put(tmp_path, UNPINNED, b"x")
    found = W.locate(UNPINNED, tmp_path)
    assert not found.verified and found.unchecked == ["a.safetensors"] and found.sha256["a.safetensors"]
    assert "unchecked" in found.provenance()["free/a.safetensors"]
    W.pin(UNPINNED, tmp_path)
    put(tmp_path, UNPINNED, b"y")
    with pytest.raises(W.WeightsError, match="differs from the pinned"):
        W.locate(UNPINNED, tmp_path)


def test_directory_in_place_of_a_file_and_a_broken_pin_file(tmp_path):
    (tmp_path / "toy" / "model" / "weights.bin").mkdir(parents=True)
    with pytest.raises(W.WeightsError, match="not a regular file"):
        W.locate(SPEC, tmp_path)
    (tmp_path / "toy" / W.PIN_FILE).write_text("[1, 2]")
    with pytest.raises(W.WeightsError, match="not a medbench pin file"):
        W.locate(SPEC, tmp_path)


def test_hash_cache_sees_a_rewritten_file(tmp_path):
    path = put(tmp_path, SPEC, b"one")
    first = W.sha256_of(path)
    path.write_bytes(b"two, longer")
    assert W.sha256_of(path) == hashlib.sha256(b"two, longer").hexdigest() != first


def test_weights_command_lists_and_checks(tmp_path, capsys):
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert "weights root:" in listing
    assert main(["weights", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"present under {tmp_path}" in out
    assert not any(tmp_path.iterdir())


def test_hub_access_is_off_whatever_the_environment_says():
    """`import medbench` forces the hub clients offline even when the caller's environment allows them."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "DIFFUSERS_OFFLINE": "0"}
    code = ("import os, medbench, huggingface_hub.constants as c; "
            "print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'], os.environ['DIFFUSERS_OFFLINE'], c.HF_HUB_OFFLINE)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "1", "True"]
