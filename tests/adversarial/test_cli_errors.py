"""qa-findings rows C1–C43 (CLI flags and specs): each bad input is refused before any work with
exit 2 and one line naming the value and what to do; nothing is written outside --out."""
import json
import os
from pathlib import Path

import pytest

from cli_helpers import assert_one_line

I2T = ("run", "--task", "i2t", "--model", "oracle")
T2I = ("run", "--task", "t2i", "--model", "oracle")


def no_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.parametrize("row, argv, words", [
    ("C1", ("run", "--task", "t2", "--model", "oracle"), ("unknown task 't2'", "Did you mean 't2i'?")),
    ("C1", ("run", "--task", "joint-pairs", "--model", "oracle"), ("unknown task 'joint-pairs'", "'joint_pairs'")),
    ("C2", ("run", "--task", "i2t", "--model", "retreival"), ("unknown model 'retreival'", "Did you mean 'retrieval'?")),
    ("C3", ("run", "--task", "i2t", "--model", "output:somewhere"), ("unknown model 'output'", "Did you mean outputs:DIR")),
    ("C4", I2T + ("--dataset", "cxr-phantm"), ("unknown dataset 'cxr-phantm'", "Did you mean 'cxr-phantom'?")),
    ("C5", I2T + ("--dataset", "folders:somewhere"), ("unknown dataset 'folders'", "Did you mean folder:PATH")),
    ("C7", T2I + ("--metric-opt", "extractor=incepton"), ("extractor=incepton", "not a registered extractor",
                                                            "did you mean 'inception-v3-compat'?")),
    ("C8", I2T + ("--metric-opt", "bogus=1"), ("--metric-opt bogus", "Known:")),
    ("C9", I2T + ("--n", "0"), ("--n 0", "≥ 1", "all")),
    ("C10", I2T + ("--n", "-5"), ("--n -5", "≥ 1")),
    ("C10", I2T + ("--n", "many"), ("--n 'many'", "positive integer or 'all'")),
    ("C13", I2T + ("--seed", "-1"), ("--seed -1", "≥ 0")),
    ("C15", I2T + ("--bootstrap", "-5"), ("--bootstrap -5", "≥ 0")),
    ("C16", I2T + ("--batch-size", "0"), ("--batch-size 0", "≥ 1")),
    ("C17", I2T + ("--batch-size", "-3"), ("--batch-size -3", "≥ 1")),
    ("C21", I2T + ("--device", "foo"), ("--device 'foo'", "auto, cpu, cuda")),
    ("C21", ("run", "--task", "i2t", "--model", "retrieval", "--model-opt", "stepz=4"),
     ("--model-opt stepz", "model 'retrieval' has no option 'stepz'")),
    ("C21", ("run", "--task", "i2t", "--model", "retrieval", "--model-path", "."), ("--model-path", "takes no weights")),
    ("C22", ("run", "--task", "i2t", "--model", "medim", "--model-opt", "temperature=nan"), ("temperature=nan", "finite")),
    ("C23", ("run", "--task", "i2t", "--model", "medim", "--model-opt", "cfg=inf"), ("cfg=inf", "finite")),
    ("C23", ("run", "--task", "i2t", "--model", "medim", "--model-opt", "steps=0"), ("steps=0", "≥ 1")),
    ("C24", ("run", "--task", "i2t", "--model", "medim", "--model-opt", "stepz=4"), ("stepz", "Did you mean 'steps'?")),
    ("C25", I2T + ("--dataset", "path-phantom", "--dataset-opt", "size=nan"), ("size=nan", "must be an integer")),
    ("C25", I2T + ("--dataset-opt", "size=-1"), ("size=-1", "≥ 32")),
    ("C25", I2T + ("--dataset-opt", "bogus=1"), ("bogus", "has no option 'bogus'")),
    ("C26", I2T + ("--dataset-opt", "n_test=0"), ("n_test=0", "≥ 1")),
    ("C28", I2T + ("--dataset-opt", "size"), ("--dataset-opt expects KEY=VALUE", "'size'")),
    ("C42", ("run", "--task", "tasks/nope.yaml", "--model", "oracle"), ("tasks/nope.yaml", "task file not found")),
])
def test_refused_in_one_line_before_any_work(cli, tmp_path, row, argv, words):
    assert_one_line(cli(*argv), 2, *words)
    no_run_folder(tmp_path)


def test_C12_seed_not_an_integer_is_argparse_usage_error(cli):
    result = cli(*I2T, "--seed", "abc")
    assert result.rc == 2 and "invalid int value: 'abc'" in result.err and "Traceback" not in result.err


def test_C27_folder_dataset_option_out_of_range(cli, tiny_folder):
    for value, word in (("nan", "must be an integer"), ("-1", "≥ 1")):
        assert_one_line(cli(*I2T, "--dataset", f"folder:{tiny_folder}", "--dataset-opt", f"max_report_chars={value}"), 2,
                        f"max_report_chars={value}", word)


def test_C18_out_is_a_file(cli, tmp_path):
    target = tmp_path / "out-file"
    target.write_text("keep me")
    assert_one_line(cli(*I2T, "--out", str(target), out=target), 2, f"--out {target}", "is a file, not a folder")
    assert target.read_text() == "keep me"


def test_C19_store_is_a_directory(cli, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert_one_line(cli(*I2T, "--store", str(folder)), 2, str(folder), "is a folder, not a store file")
    no_run_folder(tmp_path)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_C20_cuda_on_a_machine_without_one(cli, tmp_path):
    assert_one_line(cli("run", "--task", "i2t", "--model", "medim", "--device", "cuda"), 2, "--device cuda", "no CUDA device")
    assert_one_line(cli("run", "--task", "i2t", "--model", "medim", "--device", "cuda:1"), 2, "--device cuda:1")


def test_C29_argparse_choices(cli):
    for argv in ((*I2T, "--protocol", "bleu"), ("list", "modelz")):
        result = cli(*argv)
        assert result.rc == 2 and "invalid choice" in result.err and "Traceback" not in result.err


def test_C30_report_of_a_missing_run_folder(cli, tmp_path):
    result = cli("report", str(tmp_path / "nope"))
    assert_one_line(result, 2, "nope")


def test_C43_missing_model_path(cli, tmp_path):
    assert_one_line(cli("run", "--task", "i2t", "--model", "medim", "--model-path", str(tmp_path / "nope")), 2,
                    "--model-path", "nope", "no such file or folder")


def test_twenty_user_errors_print_one_line_and_no_traceback(cli, tmp_path, tiny_folder):
    """Acceptance of issue 13.4: 20 different user errors through `medbench run`."""
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\nname: y\n")
    cases = [
        ("--task", "t2"), ("--model", "retreival"), ("--model", "output:x"), ("--dataset", "cxr-phantm"),
        ("--dataset", "folders:x"), ("--metric-opt", "extractor=incepton"), ("--metric-opt", "bogus=1"), ("--n", "0"),
        ("--n", "-5"), ("--seed", "-1"), ("--bootstrap", "-5"), ("--batch-size", "0"), ("--device", "foo"),
        ("--model-opt", "stepz=4"), ("--dataset-opt", "size=nan"), ("--dataset-opt", "size"),
        ("--task", str(bad_yaml)), ("--task", "tasks/nope.yaml"), ("--dataset", f"folder:{tmp_path / 'missing'}"),
        ("--store", str(tmp_path)),
    ]
    assert len(cases) == 20 and len(set(cases)) == 20
    for flag, value in cases:
        argv = {"--task": "i2t", "--model": "oracle"}
        argv[flag] = value
        flat = ["run"] + [x for kv in argv.items() for x in kv]
        result = cli(*flat)
        assert result.rc == 2, (flag, value, result.err)
        assert "Traceback" not in result.err and len(result.err_lines) == 1, (flag, value, result.err)
    no_run_folder(tmp_path)


def test_debug_shows_the_traceback_of_a_user_error(cli):
    result = cli("run", "--task", "t2", "--model", "oracle", "--debug")
    assert result.rc == 2 and "Traceback" in result.err and result.err_lines[-1].startswith("medbench: unknown task")


def test_list_options_prints_declared_options(cli):
    result = cli("list", "--options", "medim")
    assert result.rc == 0 and "steps=int in [1, 4096]" in result.out and "temperature=float" in result.out
    assert "extractor=str" in cli("list", "--options", "image.fidelity").out
    assert "size=int in [32, 256] (default 64)" in cli("list", "--options", "cxr-phantom").out
    assert_one_line(cli("list", "--options", "medimm"), 2, "--options medimm", "Did you mean 'medim'?")


def test_version(cli):
    result = cli("--version")
    assert result.rc == 0 and result.out.startswith("medbench ")


def test_every_run_flag_has_help():
    import argparse

    from medbench.cli import add_output_flags, add_run_args

    parser = argparse.ArgumentParser()
    add_run_args(parser)
    add_output_flags(parser)
    missing = [a.dest for a in parser._actions if not a.help and a.dest != "help"]
    assert not missing, missing


def test_run_json_summary_and_quiet(cli, tiny_folder):
    result = cli("run", "--task", "i2t", "--model", "oracle", "--dataset", f"folder:{tiny_folder}", "--json",
                 "--n", "all", "--metric-opt", "memorization_ngram=4")
    assert result.rc == 0, result.err
    summary = json.loads(result.out)
    assert summary["n"] == 10 and summary["primary_metric"]["name"] == "nlg.coco.bleu4"
    assert summary["primary_metric"]["value"] == pytest.approx(1.0)
    record = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    assert record["options"]["metric"] == {"memorization_ngram": 4}  # typed, not the string "4"
    assert result.err == ""  # --quiet: no progress bars, no table on stderr


def test_primary_metric_missing_exits_3_unless_allowed(cli, tmp_path, tiny_folder):
    from medbench.metrics.text_coco import spice_missing_reason

    if not spice_missing_reason():
        pytest.skip("SPICE runs here, so its family is not skipped")
    task = tmp_path / "spice_task.yaml"
    task.write_text("name: spice_primary\ndataset: cxr-phantom\nrequest: image->report\n"
                    "metrics: [nlg.coco.spice, memorization]\nn: 8\nprimary_metric: nlg.coco.spice\n")
    store = tmp_path / "out" / "s.sqlite"
    argv = ("run", "--task", str(task), "--model", "oracle", "--dataset", f"folder:{tiny_folder}", "--store", str(store))
    result = cli(*argv)
    assert result.rc == 3
    assert "the task's primary metric nlg.coco.spice is missing: its family was skipped" in result.err
    assert "MISSING" in result.out and "skipped" in result.out and not store.exists()
    allowed = cli(*argv, "--allow-missing-primary")
    assert allowed.rc == 0 and store.exists()


def test_a_store_write_that_fails_still_prints_the_table(cli, tmp_path, tiny_folder, monkeypatch):
    """Fault injection: the disk fails at the store step (sqlite raises); the table is printed first."""
    import sqlite3

    from medbench.store import Store

    def full_disk(self, record, run_dir=None):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "add_run", full_disk)
    store = tmp_path / "out" / "s.sqlite"
    result = cli("run", "--task", "i2t", "--model", "oracle", "--dataset", f"folder:{tiny_folder}", "--n", "4",
                 "--store", str(store))
    assert result.rc == 4
    assert "nlg.coco.bleu4" in result.out and "run folder:" in result.out
    assert "was not stored" in result.err and "database or disk is full" in result.err
    run_dir = Path(result.err.split("run folder kept: ")[1].strip())
    assert (run_dir / "run.json").is_file()


def test_weights_flag_sets_the_root(cli, tmp_path):
    assert_one_line(cli(*I2T, "--weights", str(tmp_path / "nope")), 2, "--weights", "not a folder")
    os.environ.pop("MEDBENCH_WEIGHTS", None)


def test_an_internal_error_keeps_its_traceback_and_says_it_is_a_bug(capsys):
    from medbench.cli import report_error

    try:
        {}["missing"]  # a KeyError that is not an unknown-plugin error: a bug, not the user's input
    except KeyError as e:
        assert report_error(e) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("medbench: internal error (KeyError): this is a bug")


def test_C11_n_above_what_the_dataset_has_is_refused(cli, tiny_folder):
    assert_one_line(cli(*I2T, "--dataset", f"folder:{tiny_folder}", "--n", "100000"), 2, "--n 100000", "has only 10")
