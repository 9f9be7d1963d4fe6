"""Plugins: a throwaway package pip-installed from a temp dir contributes a model that `medbench run`
uses; a broken plugin is reported and does not stop the others; names are unique."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medbench.registry import ModelSpec, build_registry, hookimpl

PIP = [sys.executable, "-m", "pip"]


def make_package(root: Path, name: str, body: str) -> Path:
    pkg = root / name
    (pkg / name).mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name.replace('_', '-')}"
        version = "0.0.1"
        [project.entry-points.medbench]
        {name} = "{name}.plugin"
        """))
    (pkg / name / "__init__.py").write_text("")
    (pkg / name / "plugin.py").write_text(textwrap.dedent(body))
    return pkg


ECHO = """
from medbench import hookimpl
from medbench.registry import ModelSpec
from medbench.records import Output

class Echo:
    name = "echo"
    def __init__(self, ctx):
        self.first = ctx.train[0].report
    def generate(self, requests):
        return [Output(r.sample_id, report=self.first) for r in requests]

@hookimpl
def medbench_models():
    return [ModelSpec("echo", Echo, kinds=("image->report",), description="repeats the first training report")]
"""

BROKEN = """
raise ImportError("this plugin is broken on purpose")
"""


@pytest.fixture
def installed(tmp_path):
    pkgs = [make_package(tmp_path, "medbench_echo_plugin", ECHO), make_package(tmp_path, "medbench_broken_plugin", BROKEN)]
    for pkg in pkgs:
        subprocess.run([*PIP, "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(pkg)], check=True,
                       capture_output=True)
    yield
    subprocess.run([*PIP, "uninstall", "-q", "-y", "medbench-echo-plugin", "medbench-broken-plugin"], capture_output=True)


@pytest.mark.slow
def test_installed_plugin_is_listed_and_used(installed, tiny_folder, tmp_path):
    listed = subprocess.run([sys.executable, "-m", "medbench", "list", "models"], capture_output=True, text=True, check=True)
    line = next(line for line in listed.stdout.splitlines() if line.strip().startswith("echo"))
    assert "medbench-echo-plugin 0.0.1" in line
    assert "medbench_broken_plugin" in listed.stderr and "broken on purpose" in listed.stderr
    assert "oracle" in listed.stdout  # the broken plugin did not stop the others
    out = tmp_path / "runs"
    subprocess.run([sys.executable, "-m", "medbench", "run", "--task", "i2t", "--model", "echo", "--dataset", f"folder:{tiny_folder}",
                    "--protocol", "medim-paper", "--out", str(out), "--store", "", "--no-report", "--bootstrap", "20"],
                   check=True, capture_output=True, text=True)
    record = json.loads(next(out.glob("*/run.json")).read_text())
    assert record["model"] == "echo" and "nlg.medim-paper.bleu1" in record["metrics"]


class _Dup:
    @staticmethod
    @hookimpl
    def medbench_models():
        return [ModelSpec("oracle", object)]


def test_duplicate_names_are_reported_not_overwritten():
    reg = build_registry((_Dup,))
    assert reg.entries["models"]["oracle"].plugin == "builtin-models"
    assert any("contributed by both" in err for _, _, err in reg.failures)


def test_unknown_name_suggests_the_closest():
    reg = build_registry()
    with pytest.raises(KeyError, match="Did you mean 'oracle'"):
        reg.get("models", "oracel")
