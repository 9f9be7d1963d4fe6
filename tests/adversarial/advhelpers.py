"""Helpers of the adversarial suite (qa-findings rows O*, F*, M*, R*): a sandbox whose every file
outside --out is fingerprinted before and after, small fast tasks, and a CLI call that returns
(exit code, stderr, run folder)."""
from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from medbench.cli import main
from medbench.errors import UserError

def _root_conftest():
    spec = importlib.util.spec_from_file_location("medbench_tests_root_conftest", Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_tiny_folder = _root_conftest().write_tiny_folder

TASKS = {  # fast tasks: one cheap family each, primary metric present
    "adv_i2t": ("image->report", "[nlg]", "nlg.medim-paper.bleu4"),
    "adv_t2i": ("report->image", "[image.fidelity]", "image.fid@phantom-encoder"),
    "adv_joint": ("prompt->pair", "[nlg]", "nlg.medim-paper.bleu4"),
}


def fingerprint(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file and link under root, except the tree `skip`."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents:
            continue
        st = p.lstat()
        out[str(p.relative_to(root))] = (0, 0) if p.is_dir() and not p.is_symlink() else (st.st_size, st.st_mtime_ns)
    return out


@dataclass
class Sandbox:
    """root/ holds everything a test makes; runs go to a deep root/a/b/c/d/e/f/out so that a
    traversal of six '..' still lands inside root and is caught by the fingerprint."""

    root: Path

    def __post_init__(self):
        self.out = self.root / "a" / "b" / "c" / "d" / "e" / "f" / "out"
        self.data = self.root / "data"
        self.before: dict | None = None
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for name in TASKS:
            self.task(name)

    def task(self, name: str) -> Path:
        kind, metrics, primary = TASKS[name]
        path = self.root / "tasks" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"name: {name}\ndescription: adversarial test task\ndataset: cxr-phantom\nsplit: test\n"
                        f"request: {kind}\nmetrics: {metrics}\nn: 16\nseeds: [0]\nprotocol: medim-paper\n"
                        f"primary_metric: {primary}\n")
        return path

    def seal(self) -> None:
        """Fingerprint everything outside --out (call after the inputs are made)."""
        self.before = fingerprint(self.root, self.out)

    def assert_nothing_outside_out(self) -> None:
        assert self.before is not None, "seal() the sandbox first"
        after = fingerprint(self.root, self.out)
        added = sorted(set(after) - set(self.before))
        changed = sorted(k for k in self.before if k in after and after[k] != self.before[k])
        removed = sorted(set(self.before) - set(after))
        assert not added and not changed and not removed, f"written outside --out: added {added}, changed {changed}, removed {removed}"


def run(sandbox: Sandbox, capsys, *args: str, task: str = "adv_i2t", n: int = 16) -> tuple[int, str, Path | None]:
    """`medbench run` in-process: (exit code, stderr, the run folder when one was made)."""
    capsys.readouterr()
    argv = ["run", "--task", str(sandbox.root / "tasks" / f"{task}.yaml") if task in TASKS else task, "--n", str(n), "--out", str(sandbox.out),
            "--store", "", "--no-report", "--bootstrap", "0", "--protocol", "medim-paper", *args]
    try:
        rc = main(argv)
    except UserError as e:  # a CLI that does not yet turn user errors into exit 2
        rc, err = 2, str(e)
    else:
        err = capsys.readouterr().err
    runs = [d for d in sandbox.out.iterdir() if (d / "status.json").exists()] if sandbox.out.exists() else []
    latest = max(runs, key=lambda d: (d / "status.json").stat().st_mtime_ns, default=None)
    return rc, err, latest


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def samples(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def tiny_dataset(sandbox: Sandbox, **kw) -> Path:
    return write_tiny_folder(sandbox.data, **kw)


def oracle_outputs(dataset: Path, target: Path, kinds=("image", "report")) -> Path:
    """An outputs:DIR holding every test sample's own image and report (oracle quality)."""
    target.mkdir(parents=True, exist_ok=True)
    for png in sorted((dataset / "test").glob("*.png")):
        if "image" in kinds:
            shutil.copy(png, target / png.name)
        if "report" in kinds:
            shutil.copy(png.with_suffix(".txt"), target / (png.stem + ".txt"))
    return target
