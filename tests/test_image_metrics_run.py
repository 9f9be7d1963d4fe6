"""A t2i run with the field's image families: without weights each family is skipped with the missing file
named; with the tiny real-architecture weights (pinned) every family scores and run.json records them, and
`medbench compare` / its gate work on the families' stored per-sample statistics. Each test runs a whole t2i
run (~30 s on one core): marked slow."""
import json

import pytest

import tiny_image_models as tiny
from medbench.cli import main

FAMILIES_WITH_WEIGHTS = {"image.fidelity@rad-dino": "rad-dino/config.json",
                         "image.fidelity@xrv-densenet121": "xrv-densenet121/densenet121-res224-all.safetensors",
                         "image.fidelity@biomedclip": "biomedclip/open_clip_config.json",
                         "image.per_pathology": "rad-dino/config.json", "image.alignment": "biomedclip/open_clip_config.json",
                         "image.privacy": "rad-dino/config.json", "image.privacy.reid": "chexgenbench-reid/siamese_resnet50.pth"}


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tiny.write_all(tmp_path_factory.mktemp("weights"))
    tiny.pin_all(root)
    return root


@pytest.fixture(autouse=True)
def _offline(no_network):
    """Every test here runs with sockets refused (the no_network fixture of tests/conftest.py)."""


def run_t2i(tiny_folder, out, weights, *extra):
    assert main(["run", "--task", "t2i", "--model", "oracle", "--dataset", f"folder:{tiny_folder}", "--out", str(out),
                 "--weights", str(weights), "--store", "", "--no-report", "--bootstrap", "20", *extra]) == 0
    (record,) = out.glob("*/run.json")
    return json.loads(record.read_text())


def test_t2i_without_weights_names_each_missing_file(tiny_folder, tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    rec = run_t2i(tiny_folder, tmp_path / "runs", empty)
    skipped = {s["what"]: s["reason"] for s in rec["skipped"]}
    for family, missing in FAMILIES_WITH_WEIGHTS.items():
        assert str(empty / missing) in skipped[f"metric:{family}"], (family, skipped.get(f"metric:{family}"))
    assert "image.diversity.ms_ssim" in rec["metrics"]  # needs no weights


def test_t2i_with_tiny_weights_scores_every_family(tiny_folder, tmp_path, weights):
    rec = run_t2i(tiny_folder, tmp_path / "runs", weights, "--metric-opt", "per_pathology_min_n=3")
    skipped = {s["what"]: s["reason"] for s in rec["skipped"]}
    assert not any(f"metric:{f}" in skipped for f in FAMILIES_WITH_WEIGHTS), skipped
    m = rec["metrics"]
    for name in ("image.fid@rad-dino", "image.fid@xrv-densenet121", "image.fid@biomedclip", "image.per_pathology.macro.fid@rad-dino",
                 "image.alignment.cosine@biomedclip", "image.alignment.cosine_ceiling@biomedclip", "image.privacy.nn_closer_than_p1@rad-dino",
                 "image.privacy.reid.score@chexgenbench-siamese", "image.diversity.ms_ssim"):
        assert name in m and m[name]["value"] is not None, name
    # the oracle returns the real images: alignment equals its ceiling, MS-SSIM equals the real bracket
    assert m["image.alignment.cosine@biomedclip"]["value"] == pytest.approx(m["image.alignment.cosine_ceiling@biomedclip"]["value"])
    assert m["image.diversity.ms_ssim"]["value"] == pytest.approx(m["image.diversity.ms_ssim_real"]["value"])
    assert m["image.per_pathology.cardiomegaly.fid@rad-dino"]["ci_low"] is not None
    weights = rec["provenance"]["weights_sha256"]
    assert any(k.startswith("rad-dino/") and v.endswith("(local pin, not the published file)") for k, v in weights.items())


def test_compare_and_gate_on_the_image_families(tiny_folder, tmp_path, weights, capsys):
    opts = ("--metric-opt", "per_pathology_min_n=3")
    run_t2i(tiny_folder, tmp_path / "oracle", weights, *opts)
    assert main(["run", "--task", "t2i", "--model", "random", "--dataset", f"folder:{tiny_folder}", "--out",
                 str(tmp_path / "random"), "--weights", str(weights), "--store", "", "--no-report", "--bootstrap", "20",
                 *opts]) == 0
    (oracle,), (rand,) = (tmp_path / "oracle").glob("*/"), (tmp_path / "random").glob("*/")
    capsys.readouterr()
    assert main(["compare", str(oracle), str(rand), "--no-html", "--n-perm", "200"]) == 0
    table = capsys.readouterr().out
    for name in ("image.fid@rad-dino", "image.alignment.cosine@biomedclip", "image.diversity.ms_ssim",
                 "image.privacy.nn_closer_than_p1@rad-dino", "image.per_pathology.macro.fid@rad-dino"):
        assert name in table, name
    gate = tmp_path / "gate.yaml"  # the random model must fail a gate on RAD-DINO FID
    gate.write_text("- {metric: image.fid@rad-dino, direction: lower, tolerance: 0.0, alpha: 0.5}\n")
    assert main(["compare", str(oracle), str(rand), "--no-html", "--n-perm", "200", "--gate", str(gate)]) == 1
