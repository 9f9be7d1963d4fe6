"""`medbench run` end to end on a tiny real folder dataset: records, resume, sharding, outputs:DIR."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medbench.cli import main
from medbench.errors import UserError
from medbench.runrecord import SCHEMA_VERSION

MEDBENCH = [sys.executable, "-m", "medbench"]


def run_cli(*args: str) -> Path:
    assert main(["run", *args, "--store", "", "--no-report", "--bootstrap", "50"]) == 0


def only_run(out: Path) -> dict:
    records = list(out.glob("*/run.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def test_oracle_and_random_write_records(tiny_folder, tmp_path):
    for model in ("oracle", "random"):
        run_cli("--task", "i2t", "--model", model, "--dataset", f"folder:{tiny_folder}", "--protocol", "medim-paper",
                "--out", str(tmp_path / model))
    oracle, rand = only_run(tmp_path / "oracle"), only_run(tmp_path / "random")
    assert oracle["n"] == 10 and oracle["schema_version"] == SCHEMA_VERSION and oracle["status"] == "complete"
    b_oracle = oracle["metrics"]["nlg.medim-paper.bleu4"]
    assert b_oracle["value"] == pytest.approx(1.0)
    assert rand["metrics"]["nlg.medim-paper.bleu4"]["value"] < b_oracle["value"]
    prov = oracle["provenance"]
    assert prov["dataset_sha256"] and prov["outputs_sha256"] and prov["packages"]["torch"] != "not installed"
    for m in oracle["metrics"].values():
        assert m["ci_low"] is None or m["ci_low"] <= m["value"] + 1e-12 <= m["ci_high"] + 2e-12


def test_same_command_same_numbers(tiny_folder, tmp_path):
    for out in ("a", "b"):
        run_cli("--task", "i2t", "--model", "random", "--dataset", f"folder:{tiny_folder}", "--protocol", "medim-paper",
                "--out", str(tmp_path / out), "--seed", "7")
    assert only_run(tmp_path / "a")["metrics"] == only_run(tmp_path / "b")["metrics"]


def test_retrieval_all_kinds(tiny_folder, tmp_path):
    for task in ("t2i", "i2t", "joint_pairs"):
        out = tmp_path / task
        main(["run", "--task", task, "--model", "retrieval", "--dataset", f"folder:{tiny_folder}", "--out", str(out),
              "--store", "", "--no-report", "--bootstrap", "0", "--protocol", "medim-paper"])
        files = list((next(out.iterdir()) / "outputs").iterdir())
        assert any(f.suffix == (".txt" if task == "i2t" else ".png") for f in files)


def test_outputs_dir_missing_ids_are_listed(tiny_folder, tmp_path, capsys):
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "test000.txt").write_text("No pleural effusion.")
    capsys.readouterr()
    try:
        rc = main(["run", "--task", "i2t", "--model", f"outputs:{gen}", "--dataset", f"folder:{tiny_folder}", "--out",
                   str(tmp_path / "o"), "--store", "", "--no-report", "--n", "10"])
        err = capsys.readouterr().err
    except UserError as e:  # a CLI that does not turn user errors into exit 2
        rc, err = 2, str(e)
    assert rc == 2
    assert "no output for 9 requested sample(s)" in err and "test001" in err and str(gen) in err
    assert not (tmp_path / "o").exists()  # refused before any run folder is made


def test_outputs_dir_scores_like_the_oracle(tiny_folder, tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    for txt in (tiny_folder / "test").glob("*.txt"):
        (gen / txt.name).write_text(txt.read_text())
    run_cli("--task", "i2t", "--model", f"outputs:{gen}", "--dataset", f"folder:{tiny_folder}", "--protocol", "medim-paper",
            "--out", str(tmp_path / "o"))
    assert only_run(tmp_path / "o")["metrics"]["nlg.medim-paper.bleu4"]["value"] == pytest.approx(1.0)


SLOW_PLUGIN = '''
import time
from medbench import hookimpl
from medbench.registry import ModelSpec
from medbench.records import Output

class Slow:
    name = "slow"
    def __init__(self, ctx):
        self.reports = [s.report for s in ctx.train]
    def generate(self, requests):
        time.sleep(0.4)
        return [Output(r.sample_id, report=self.reports[r.seed % len(self.reports)]) for r in requests]

@hookimpl
def medbench_models():
    return [ModelSpec("slow", Slow, kinds=("image->report",))]
'''


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_metrics(tiny_folder, tmp_path):
    """A run killed mid-generation and restarted ends with the numbers of an uninterrupted run."""
    plugin_dir = tmp_path / "plug"
    plugin_dir.mkdir()
    (plugin_dir / "slow_plugin.py").write_text(SLOW_PLUGIN)
    runner = tmp_path / "runner.py"
    runner.write_text("import sys, slow_plugin\nfrom medbench.registry import build_registry, registry\n"
                      "import medbench.registry as r\nr.registry = lambda: _R\n_R = build_registry((slow_plugin,))\n"
                      "import medbench.scoring, medbench.runner\nmedbench.scoring.registry = r.registry\nmedbench.runner.registry = r.registry\n"
                      "from medbench.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    args = ["run", "--task", "i2t", "--model", "slow", "--dataset", f"folder:{tiny_folder}", "--protocol", "medim-paper",
            "--batch-size", "1", "--store", "", "--no-report", "--bootstrap", "50"]
    killed = subprocess.Popen([sys.executable, str(runner), *args, "--out", str(tmp_path / "k")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        logs = list((tmp_path / "k").glob("*/outputs/index.rank0.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not list((tmp_path / "k").glob("*/run.json"))
    subprocess.run([sys.executable, str(runner), *args, "--out", str(tmp_path / "k")], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, str(runner), *args, "--out", str(tmp_path / "u")], env=env, check=True, capture_output=True)
    assert only_run(tmp_path / "k")["metrics"] == only_run(tmp_path / "u")["metrics"]


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tiny_folder, tmp_path):
    args = ["run", "--task", "i2t", "--model", "random", "--dataset", f"folder:{tiny_folder}", "--protocol", "medim-paper",
            "--store", "", "--no-report", "--bootstrap", "50", "--batch-size", "2"]
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", "29533", "-m", "medbench", *args,
                    "--out", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    main([*args, "--out", str(tmp_path / "single")])
    dist, single = only_run(tmp_path / "dist"), only_run(tmp_path / "single")
    assert dist["provenance"]["world_size"] == 2
    assert dist["metrics"] == single["metrics"]
    logs = sorted(p.name for p in next((tmp_path / "dist").iterdir()).joinpath("outputs").glob("index.rank*.jsonl"))
    assert logs == ["index.rank0.jsonl", "index.rank1.jsonl"]
