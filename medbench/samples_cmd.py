"""`medbench samples RUN`: the per-sample log of a run, worst (or best) cases first.

    medbench samples runs/i2t-oracle-... --sort nlg.coco.bleu4_sentence --worst 20
    medbench samples RUN --list                      # the score columns and their direction
    medbench samples RUN --sort memorization.nn_distance --best 5 --json

"Worst" follows the column's direction recorded in run.json ``per_sample`` (lowest first when
higher is better, highest first when lower is better; ``--ascending``/``--descending`` decide for
columns without one). Rows whose value is missing (null) come last.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path

from medbench.errors import UserError
from medbench.samples_log import read_samples


def add_samples_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run folder (holds run.json and samples.jsonl)")
    p.add_argument("--sort", metavar="SCORE", help="a score column of samples.jsonl (see --list)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--worst", type=int, metavar="N", help="show the N worst samples by --sort (default 20)")
    which.add_argument("--best", type=int, metavar="N", help="show the N best samples by --sort")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--ascending", action="store_true", help="for a column with no direction: low values are worst")
    order.add_argument("--descending", action="store_true", help="for a column with no direction: high values are worst")
    p.add_argument("--list", action="store_true", help="list the score columns and their direction")
    p.add_argument("--json", action="store_true", help="print the selected samples.jsonl lines as JSON")


def _direction(run_dir: Path, key: str) -> bool | None:
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return ((record.get("per_sample") or {}).get(key) or {}).get("higher_is_better")


def ranked(rows: list[dict], key: str, higher_is_better: bool, worst: bool) -> list[dict]:
    """Rows ordered worst-first (or best-first); rows without a numeric value last."""
    have = [r for r in rows if isinstance((r.get("scores") or {}).get(key), (int, float)) and not isinstance(r["scores"][key], bool)]
    rest = [r for r in rows if r not in have]
    low_first = higher_is_better == worst
    return sorted(have, key=lambda r: r["scores"][key], reverse=not low_first) + rest


def _short(text, width: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def main_samples(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except BrokenPipeError:  # `medbench samples RUN ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(args: argparse.Namespace) -> int:
    rows = read_samples(args.run_dir)
    columns = sorted({k for r in rows for k in (r.get("scores") or {})})
    if args.list or not args.sort:
        for key in columns:
            direction = _direction(args.run_dir, key)
            arrow = {True: "higher is better", False: "lower is better", None: "no direction"}[direction]
            print(f"{key:<48} {arrow}")
        if not args.sort and not args.list:
            print("medbench samples: pass --sort SCORE to rank samples by one of these columns", file=sys.stderr)
        return 0
    if args.sort not in columns:
        near = difflib.get_close_matches(args.sort, columns, n=1)
        raise UserError(f"{args.run_dir / 'samples.jsonl'}: no score column {args.sort!r}"
                        + (f" (did you mean {near[0]!r}?)" if near else "") + "; `--list` shows them")
    direction = _direction(args.run_dir, args.sort)
    if direction is None:
        direction = not args.descending  # default: low values are the worst
    if args.ascending:
        direction = True
    count = args.best if args.best is not None else (args.worst if args.worst is not None else 20)
    if count < 1:
        raise UserError(f"--worst/--best {count}: must be at least 1")
    chosen = ranked(rows, args.sort, direction, worst=args.best is None)[:count]
    if args.json:
        print(json.dumps(chosen, indent=1, ensure_ascii=False))
        return 0
    print(f"{'worst' if args.best is None else 'best'} {len(chosen)} of {len(rows)} by {args.sort} "
          f"({'higher' if direction else 'lower'} is better)")
    for r in chosen:
        value = r["scores"].get(args.sort)
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else "–"
        out = r.get("outputs") or {}
        print(f"{shown:>10}  {r['id']}")
        if out.get("report") is not None:
            print(f"{'':>12}generated: {_short(out['report'])}")
            print(f"{'':>12}reference: {_short((r.get('reference') or {}).get('report'))}")
        if out.get("image_path"):
            print(f"{'':>12}image:     {args.run_dir / out['image_path']}")
    return 0
