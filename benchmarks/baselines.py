"""The phantom leaderboard: every built-in model on every built-in task, measured by medbench itself.

    python benchmarks/baselines.py [--models oracle retrieval medim random] [--tasks t2i i2t joint_pairs]
                                   [--out runs/baselines] [--write docs/benchmarks.md]

Runs each (task, model) pair with default settings into one store, writes the leaderboards, and prints
(or writes into docs/benchmarks.md) a table of each task's key metrics with 95 % CIs, with a mark
where a model's CI does not overlap `random`'s.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from doc_block import write_block

KEY_METRICS = {
    "t2i": ["image.fid@phantom-encoder", "image.label_fidelity.auroc_macro", "image.label_fidelity.f1_macro",
            "memorization.nn_closer_than_p1"],
    "i2t": ["nlg.coco.bleu4", "nlg.coco.meteor", "nlg.coco.cider", "clinical.ce_f1.micro14.unc_pos",
            "report.coherence.contradiction_rate"],
    "joint_pairs": ["pair.consistency.f1", "pair.consistency.f1_relative", "image.fid@phantom-encoder",
                    "nlg.coco.bleu4", "clinical.ce_f1.micro14.unc_pos", "report.coherence.contradiction_rate"],
}


def run(task: str, model: str, out: Path, store: Path, extra: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "medbench", "run", "--task", task, "--model", model, "--out", str(out), "--store", str(store),
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    folder = proc.stdout.split("run folder:")[-1].split()[0]
    return json.loads((Path(folder) / "run.json").read_text()), time.perf_counter() - t0


def fmt(m: dict | None) -> str:
    if m is None or m["value"] is None:
        return "—"
    ci = f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m["ci_low"] is not None else ""
    return f"{m['value']:.3f}{ci}"


def separated(m: dict | None, ref: dict | None) -> bool:
    """CIs do not overlap."""
    if not m or not ref or m["ci_low"] is None or ref["ci_low"] is None:
        return False
    return m["ci_low"] > ref["ci_high"] or m["ci_high"] < ref["ci_low"]


def table(records: dict[tuple[str, str], tuple[dict, float]], tasks: list[str], models: list[str]) -> str:
    lines = []
    for task in tasks:
        keys = KEY_METRICS[task]
        rec0 = records[(task, models[0])][0]
        lines += ["", f"**{task}** (cxr-phantom, n = {rec0['n']}, seed 0, {rec0['bootstrap']} bootstrap resamples; "
                      "† = CI does not overlap `random`'s)", "",
                  "| model | " + " | ".join(f"`{k}` {'↑' if _hib(records, task, k) else '↓'}" for k in keys) + " | wall s |",
                  "|---|" + "---|" * (len(keys) + 1)]
        for model in models:
            rec, secs = records[(task, model)]
            base = records.get((task, "random"), ({"metrics": {}}, 0))[0]["metrics"]
            cells = [fmt(rec["metrics"].get(k)) + (" †" if model != "random" and separated(rec["metrics"].get(k), base.get(k)) else "")
                     for k in keys]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {secs:.0f} |")
    return "\n".join(lines)


def _hib(records, task, key) -> bool:
    for (t, _), (rec, _) in records.items():
        if t == task and key in rec["metrics"]:
            return rec["metrics"][key]["higher_is_better"]
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["oracle", "retrieval", "medim", "random"])
    ap.add_argument("--tasks", nargs="+", default=["t2i", "i2t", "joint_pairs"])
    ap.add_argument("--out", type=Path, default=Path("runs/baselines"))
    ap.add_argument("--n", type=int, help="samples per task (default: the task's)")
    ap.add_argument("--bootstrap", type=int, help="bootstrap resamples (default: medbench's)")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    extra = (["--n", str(args.n)] if args.n else []) + (["--bootstrap", str(args.bootstrap)] if args.bootstrap else [])
    store = args.out / "medbench.sqlite"
    records = {}
    for task in args.tasks:
        for model in args.models:
            records[(task, model)] = run(task, model, args.out, store, extra)
            print(f"{task} {model}: {records[(task, model)][1]:.0f} s", flush=True)
        subprocess.run([sys.executable, "-m", "medbench", "leaderboard", "--task", task, "--store", str(store),
                        "--out", str(args.out / f"leaderboard-{task}")], check=True, capture_output=True)
    text = table(records, args.tasks, args.models)
    print(text)
    if args.write:
        write_block(args.write, "baselines", text)


if __name__ == "__main__":
    main()
