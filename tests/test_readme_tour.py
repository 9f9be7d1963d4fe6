"""Every command of the README's tour runs as written (in a scratch copy of the places it names)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and line != "source .venv/bin/activate"]


def test_the_tour_has_no_placeholders():
    commands = tour_commands()
    assert len(commands) >= 8
    for command in commands:
        assert command.startswith("medbench ") and not re.search(r"<[^>]+>|\.\.\.|/path/to|DIR\b", command), command


@pytest.mark.slow
def test_every_tour_command_runs_as_written(tmp_path, medbench_home):
    """The tour runs from a folder holding what it names of the repository (reports/gates), with the venv's
    medbench first on PATH, as after `source .venv/bin/activate`."""
    shutil.copytree(ROOT / "reports" / "gates", tmp_path / "reports" / "gates")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MEDBENCH_HOME": str(medbench_home), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    for command in tour_commands():
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    assert list((tmp_path / "runs").glob("i2t-retrieval-cxr-phantom-*/report.html"))
    assert (tmp_path / "my-system" / "requests.jsonl").is_file()
    assert list((tmp_path / "runs").glob("i2t-retrieval-cxr-phantom-*/compare-vs-*.html"))  # in the candidate's folder
