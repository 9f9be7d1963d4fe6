"""Fixtures of the adversarial suite: `cli(*argv)` runs medbench in-process in a scratch folder and
checks nothing outside --out changed (see cli_helpers.run_cli)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import run_cli  # noqa: E402


@pytest.fixture
def cli(tmp_path):
    def call(*argv, **kw):
        return run_cli(tmp_path, *argv, **kw)

    return call
