"""The `medbench` command line. Imports stay inside the subcommands so `--help` and `list` answer at once.

    medbench run --task joint_pairs --model oracle [--dataset cxr-phantom] [--n 200] [--seed 0] [--out runs]
    medbench list [tasks|models|metrics|datasets|extractors|labelers|downstream_models]
    medbench report RUN_DIR
    medbench leaderboard --task T [--store S] [--out DIR]
    medbench compare BASELINE CANDIDATE [--gate gate.yaml]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

LISTABLE = ("tasks", "models", "metrics", "datasets", "extractors", "labelers", "downstream_models", "weights")


def _kv(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"medbench: {flag} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="a registered task name or a path to a task YAML")
    p.add_argument("--model", required=True, help="a registered model, or outputs:DIR for precomputed outputs")
    p.add_argument("--dataset", help="registered dataset name, folder:PATH or manifest:FILE (default: the task's)")
    p.add_argument("--dataset-opt", action="append", metavar="K=V", help="dataset option, e.g. size=128 (repeatable)")
    p.add_argument("--domain", help="domain of a folder:/manifest: dataset when its labels.jsonl does not say (cxr, path)")
    p.add_argument("--n", type=int, help="number of test samples (default: the task's)")
    p.add_argument("--seed", type=int, help="generation seed (default: the task's first seed)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default: runs)")
    p.add_argument("--protocol", choices=("coco", "medim-paper"), help="text-metric protocol (default: the task's)")
    p.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail",
                   help="fail on invalid samples (default) or skip them and record which")
    p.add_argument("--model-path", type=Path, help="local weights folder for the model")
    p.add_argument("--model-opt", action="append", metavar="K=V", help="model option, e.g. steps=32 (repeatable)")
    p.add_argument("--metric-opt", action="append", metavar="K=V",
                   help="metric option, e.g. extractor=inception-v3-compat, weights=PATH, skip_empty=1 (repeatable)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per metric (0 disables CIs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--store", default="runs/medbench.sqlite", help="SQLite results store ('' disables)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--quick", action="store_true", help="the task's reduced setting (used in CI)")


def cmd_run(args: argparse.Namespace) -> int:
    from medbench.runner import RunConfig, execute
    from medbench.tasks import load_task

    task = load_task(args.task)
    quick = task.options.get("quick", {}) if args.quick else {}
    cfg = RunConfig(task=task, model=args.model, dataset=args.dataset or quick.get("dataset", task.dataset), out=args.out,
                    seed=args.seed if args.seed is not None else task.seeds[0],
                    n=args.n or quick.get("n", task.n), protocol=args.protocol or task.protocol,
                    dataset_options=_kv(args.dataset_opt, "--dataset-opt"), model_path=args.model_path,
                    model_options=_kv(args.model_opt, "--model-opt"),
                    metric_options=_kv(args.metric_opt, "--metric-opt") | ({"quick": "1"} if args.quick else {}),
                    on_bad_sample=args.on_bad_sample, domain=args.domain, batch_size=args.batch_size, n_boot=args.bootstrap,
                    device=args.device, store=Path(args.store) if args.store else None, report=not args.no_report)
    run_dir, record = execute(cfg)
    if record is not None:
        print_table(record)
        print(f"\nrun folder: {run_dir}" + (f"\nreport:     {run_dir / 'report.html'}" if (run_dir / "report.html").exists() else ""))
    return 0


def print_table(record) -> None:
    print(f"\n{record['task']} · model {record['model']} · dataset {record['dataset']} · n={record['n']} · seed {record['seed']} · protocol {record['protocol']}")
    rows = [(name, m) for name, m in record["metrics"].items()]
    width = max((len(n) for n, _ in rows), default=10)
    print(f"{'metric':<{width}}  {'value':>9}  {'95% CI':>21}")
    for name, m in rows:
        ci = f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]" if m["ci_low"] is not None else ""
        arrow = "↑" if m["higher_is_better"] else "↓"
        value = f"{m['value']:.4f}" if m["value"] is not None else "nan"
        print(f"{name:<{width}}  {value:>9}  {ci:>21} {arrow}")
    for s in record["skipped"]:
        print(f"skipped {s['what']}: {s['reason']}")


def cmd_list(args: argparse.Namespace) -> int:
    from medbench.registry import registry
    from medbench.tasks import as_task

    reg = registry()
    kinds = [args.kind] if args.kind else list(LISTABLE)
    for kind in kinds:
        print(f"{kind}:")
        for name in reg.names(kind):
            entry = reg.entries[kind][name]
            desc = as_task(entry.spec).description if kind == "tasks" else getattr(entry.spec, "description", "")
            print(f"  {name:<28} {entry.dist:<24} {desc}")
    for plugin, dist, error in reg.failures:
        print(f"plugin {plugin!r} ({dist}) failed to load: {error.strip().splitlines()[-1]}", file=sys.stderr)
    return 0


def _subcommand(module: str, fn: str):
    def run(args):
        import importlib

        return getattr(importlib.import_module(module), fn)(args) or 0

    return run


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medbench", description="Evaluate medical multimodal generative models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a task on a model and score it")
    add_run_args(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("list", help="list registered plugins and where they came from")
    p.add_argument("kind", nargs="?", choices=LISTABLE)
    p.set_defaults(func=cmd_list)
    for name, module, help_text in (("report", "medbench.report", "write report.html for a run folder"),
                                    ("leaderboard", "medbench.leaderboard", "rank models of a task from the store"),
                                    ("compare", "medbench.compare", "paired comparison of two runs, with an optional CI gate"),
                                    ("weights", "medbench.weights", "list, check or pin the local weights evaluators need")):
        p = sub.add_parser(name, help=help_text)
        _add_module_args(p, module, name, argv)
        p.set_defaults(func=_subcommand(module, f"main_{name}"))
    return parser


def _add_module_args(p: argparse.ArgumentParser, module: str, name: str, argv: list[str]) -> None:
    """Options of report/leaderboard/compare live beside their code (imported only for that subcommand)."""
    if argv[:1] != [name]:
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    import importlib

    getattr(importlib.import_module(module), f"add_{name}_args")(p)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
