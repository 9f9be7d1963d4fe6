"""qa-findings rows not covered by the area files: C14, C31, C45, C48, C49, C50, P1, P3, S1, R2, O9.
Each asserts the exact outcome; the `cli` fixture also checks that nothing outside --out changed."""
import json
import pickle
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_line
from medbench.registry import DatasetSpec, build_registry, hookimpl

I2T = ("run", "--task", "i2t", "--model", "oracle")


class Payload:
    def __reduce__(self):
        import os

        return os.system, ("touch PWNED",)


def test_C14_a_huge_seed_works_and_is_recorded(cli, tiny_folder, tmp_path):
    seed = "99999999999999999999999"
    result = cli(*I2T, "--dataset", f"folder:{tiny_folder}", "--n", "4", "--seed", seed, "--json")
    assert result.rc == 0, result.err
    (run_json,) = (tmp_path / "out").glob("*/run.json")
    assert json.loads(run_json.read_text())["seed"] == int(seed)


def test_C31_leaderboard_of_an_unknown_task_or_a_missing_store(cli, tmp_path):
    result = cli("leaderboard", "--task", "nope", "--store", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "lb"))
    assert result.rc == 2 and result.err_lines == [result.err.strip()] and "none.sqlite does not exist" in result.err
    assert not (tmp_path / "none.sqlite").exists()  # a read-only open never creates a store


def test_C45_a_pickle_given_as_model_path_is_never_opened(cli, tmp_path):
    evil = tmp_path / "cwd" / "evil.pkl"
    evil.parent.mkdir(exist_ok=True)
    evil.write_bytes(pickle.dumps(Payload()))
    assert_one_line(cli("run", "--task", "i2t", "--model", "medim", "--model-path", str(evil)), 2, "evil.pkl")
    assert not (tmp_path / "cwd" / "PWNED").exists()


def test_C48_a_pickled_inception_weights_file_is_refused_by_weights_only(cli, tmp_path):
    import torch

    evil = tmp_path / "cwd" / "evil_zip.pt"
    evil.parent.mkdir(exist_ok=True)
    torch.save({"w": Payload()}, evil)
    result = cli("run", "--task", "t2i", "--model", "oracle", "--n", "4", "--metric-opt",
                 "extractor=inception-v3-compat", "--metric-opt", f"weights={evil}", "--allow-missing-primary")
    assert not (tmp_path / "cwd" / "PWNED").exists()
    assert result.rc == 0 and "Traceback" not in result.err, result.err  # the family is skipped, the run is kept
    (run_json,) = (tmp_path / "out").glob("*/run.json")
    skipped = {s["what"]: s["reason"] for s in json.loads(run_json.read_text())["skipped"]}
    assert "evil_zip.pt" in skipped["metric:image.fidelity"] and "weights_only" in skipped["metric:image.fidelity"]


def test_C49_an_hf_folder_with_only_a_pickle_is_skipped_with_the_reason(cli, tmp_path):
    folder = tmp_path / "cwd" / "hf"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    result = cli("run", "--task", "t2i", "--model", "oracle", "--n", "4", "--metric-opt", f"extractor=hf:{folder}",
                 "--allow-missing-primary")
    assert result.rc == 0, result.err
    assert "pickle" in result.out + result.err and not (tmp_path / "cwd" / "PWNED").exists()


def test_C50_downstream_with_missing_outputs_lists_them_before_any_training(cli, tmp_path):
    gen = tmp_path / "cwd" / "gen"
    gen.mkdir(parents=True)
    result = cli("run", "--task", "downstream_augmentation", "--model", f"outputs:{gen}", "--quick")
    assert_one_line(result, 2, str(gen), "no output for")


class ListDataset:
    @hookimpl
    def medbench_datasets(self):
        return [DatasetSpec("qa-garbage", lambda options=None: [1, 2, 3])]


def test_P3_a_dataset_whose_load_returns_a_list(monkeypatch, cli):
    import medbench.registry as registry_module

    reg = build_registry(extra_plugins=(ListDataset(),))
    monkeypatch.setattr(registry_module, "registry", lambda: reg)
    monkeypatch.setattr("medbench.data.resolve.registry", lambda: reg, raising=False)
    assert_one_line(cli(*I2T, "--dataset", "qa-garbage"), 2, "qa-garbage", "not a medbench Dataset")


def test_P1_a_plugin_that_fails_to_import_is_reported_and_the_rest_load():
    class Broken:
        @hookimpl
        def medbench_models(self):
            raise ImportError("qa-broken-min: missing dependency")

    reg = build_registry(extra_plugins=(Broken(),))
    assert any("qa-broken-min" in error for _, _, error in reg.failures)
    assert {"oracle", "random", "retrieval", "medim"} <= set(reg.names("models"))


def test_S1_three_runs_at_once_into_a_new_store_all_land(tmp_path):
    from medbench.store import Store

    path = tmp_path / "s.sqlite"
    template = {"schema_version": 2, "task": "i2t", "model": "oracle", "dataset": "cxr-phantom", "n": 1, "seed": 0,
                "protocol": "coco", "metrics": {"nlg.coco.bleu4": {"value": 1.0, "ci_low": None, "ci_high": None,
                                                                     "higher_is_better": True, "n": 1}},
                "primary_metric": "nlg.coco.bleu4", "provenance": {"finished": "2026-12-01T00:00:00+00:00"},
                "skipped": [], "options": {}}
    errors = []

    def add(i):
        try:
            run_dir = tmp_path / f"run{i}"
            run_dir.mkdir()
            Store(path).add_run({**template, "run_id": f"r{i}"}, run_dir)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with sqlite3.connect(path) as con:
        assert sorted(r[0] for r in con.execute("SELECT run_id FROM runs")) == ["r0", "r1", "r2"]


def test_O9_all_outputs_huge_are_scored_with_every_resize_recorded(cli, tiny_folder, tmp_path):
    gen = tmp_path / "cwd" / "huge"
    gen.mkdir(parents=True)
    ids = sorted(p.stem for p in (tiny_folder / "test").glob("*.png"))
    for sid in ids:
        Image.fromarray(np.full((1200, 1200), 90, np.uint8)).save(gen / f"{sid}.png")
    result = cli("run", "--task", "t2i", "--model", f"outputs:{gen}", "--dataset", f"folder:{tiny_folder}", "--n", "all",
                 "--allow-missing-primary")
    assert result.rc == 0, result.err
    (run_json,) = (tmp_path / "out").glob("*/run.json")
    record = json.loads(run_json.read_text())
    assert record["conversions"]["samples"] == len(ids)
