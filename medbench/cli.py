"""The `medbench` command line. Imports stay inside the subcommands so `--help` and `list` answer at once.

    medbench run --task joint_pairs --model oracle [--dataset cxr-phantom] [--n 200|all] [--seed 0] [--out runs]
    medbench list [tasks|models|metrics|datasets|extractors|labelers|downstream_models|weights] [--options NAME]
    medbench requests --task T [--dataset D] [--n N] --out DIR
    medbench report RUN_DIR
    medbench leaderboard --task T [--store S] [--out DIR]
    medbench compare BASELINE CANDIDATE [--gate gate.yaml]
    medbench weights list|check [DIR]|pin NAME [DIR]

Exit codes (docs/cli.md): 0 done; 1 a bug in medbench (traceback kept); 2 a mistake in the input,
shown as one line ``medbench: <message>`` (``--debug`` adds the traceback); 3 the run finished but
the task's primary metric is missing (``--allow-missing-primary`` accepts it); 4 the run finished
and was printed, but storing it failed (the run folder is kept); 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

LISTABLE = ("tasks", "models", "metrics", "datasets", "extractors", "labelers", "downstream_models", "weights")
EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_PRIMARY, EXIT_STORE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def _user_error(message: str):
    from medbench.errors import UserError

    return UserError(message)


def _kv(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _user_error(f"{flag} expects KEY=VALUE, got {item!r}")
        if key in out:
            raise _user_error(f"{flag} {key} is given twice ({key}={out[key]} and {item})")
        out[key] = value
    return out


def _n(text: str | None) -> int | None | str:
    """--n: a positive integer, or 'all' (every sample of the split); None = the task's default."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise _user_error(f"--n {text!r}: must be a positive integer or 'all'") from None
    if value < 1:
        raise _user_error(f"--n {value}: must be ≥ 1 (or 'all' for every sample of the split)")
    return value


def add_output_flags(p: argparse.ArgumentParser, top: bool = False) -> None:
    """--quiet / --verbose / --debug, accepted before or after the subcommand."""
    default = False if top else argparse.SUPPRESS  # a subcommand's absent flag keeps the top-level value
    p.add_argument("--quiet", "-q", action="store_true", default=default,
                   help="no progress bars or status lines on stderr (results and errors still print)")
    p.add_argument("--verbose", "-v", action="store_true", default=default,
                   help="also print the resolved configuration and the time each step took")
    p.add_argument("--debug", action="store_true", default=default, help="show the Python traceback of a user error too")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="a registered task (medbench list tasks) or the path of a task YAML")
    p.add_argument("--model", required=True,
                   help="a registered model (medbench list models), or outputs:DIR for files your own system wrote")
    p.add_argument("--dataset", help="a registered dataset, NAME:PATH, folder:PATH or manifest:FILE (default: the task's)")
    p.add_argument("--dataset-opt", action="append", metavar="K=V",
                   help="dataset option, e.g. size=128 (repeatable; medbench list --options DATASET)")
    p.add_argument("--domain", help="domain of a folder:/manifest: dataset when its labels.jsonl does not say (cxr, path)")
    p.add_argument("--name", metavar="TEXT", help="display name of this run in reports and leaderboards (default: the model spec)")
    p.add_argument("--train-dataset", metavar="SPEC",
                   help="take the train split (memorization, label thresholds, baselines) from this dataset, for "
                        "datasets without one such as MeDiM's flat folders")
    p.add_argument("--n", metavar="N|all", help="number of test samples, or 'all' (default: the task's); more than "
                                                "the dataset has is refused")
    p.add_argument("--seed", type=int, help="generation seed, ≥ 0 (default: the task's first seed)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="folder the run folder is created in (default: runs)")
    p.add_argument("--protocol", choices=("coco", "medim-paper"), help="text-metric protocol (default: the task's)")
    p.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail",
                   help="fail on invalid samples (default) or skip them and record which")
    p.add_argument("--model-path", type=Path, help="local weights folder for the model (models that take weights only)")
    p.add_argument("--model-opt", action="append", metavar="K=V",
                   help="model option, e.g. steps=32 (repeatable; medbench list --options MODEL)")
    p.add_argument("--metric-opt", action="append", metavar="K=V",
                   help="metric option, e.g. extractor=inception-v3-compat, weights=PATH, skip_empty=1 (repeatable; "
                        "each key must be declared by a metric family of the task: medbench list --options FAMILY)")
    p.add_argument("--weights", type=Path, metavar="DIR",
                   help="root folder of evaluator weights (default $MEDBENCH_WEIGHTS, else $MEDBENCH_HOME/weights)")
    p.add_argument("--batch-size", type=int, default=16, help="requests per model call, ≥ 1 (default 16)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per metric, ≥ 0 (0 disables CIs)")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu; default), cpu, cuda, cuda:N or mps")
    p.add_argument("--store", default="runs/medbench.sqlite", help="SQLite results store file ('' disables)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--quick", action="store_true", help="the task's reduced setting (used in CI)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON on stdout (the table goes to stderr)")
    p.add_argument("--allow-missing-primary", action="store_true",
                   help="exit 0 even when the task's primary metric could not be computed (default: exit 3)")


def run_config_from_args(args: argparse.Namespace):
    """The RunConfig of `medbench run` (the Python API builds the same through medbench.run_config)."""

    from medbench.run_config import make_run_config

    n = _n(args.n)
    cfg = make_run_config(task=args.task, model=args.model, dataset=args.dataset, n=None if n == "all" else n,
                          seed=args.seed, out=args.out, protocol=args.protocol, quick=args.quick,
                          dataset_options=_kv(args.dataset_opt, "--dataset-opt"),
                          model_options=_kv(args.model_opt, "--model-opt"),
                          metric_options=_kv(args.metric_opt, "--metric-opt"), model_path=args.model_path,
                          on_bad_sample=args.on_bad_sample, domain=args.domain, batch_size=args.batch_size,
                          n_boot=args.bootstrap, device=args.device, store=None, report=not args.no_report)
    if n == "all":
        cfg.n = None  # select_samples takes every complete pair of the split
    cfg.train_dataset = args.train_dataset or None
    cfg.name = args.name or None
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from medbench import console
    from medbench.run_checks import check_numbers, check_out, check_store
    from medbench.runner import execute

    check_numbers(args.seed or 0, args.batch_size, args.bootstrap, None)
    check_out(args.out)
    store = Path(args.store) if args.store else None
    if store is not None:
        check_store(store)  # a folder or a file that is not a medbench store is refused before any work
    if args.weights is not None:
        if not args.weights.is_dir():
            raise _user_error(f"--weights {args.weights}: not a folder (it holds one sub-folder per evaluator; "
                              "see medbench weights list)")
        os.environ["MEDBENCH_WEIGHTS"] = str(args.weights.resolve())
    cfg = run_config_from_args(args)
    if args.verbose:
        print(f"medbench: configuration: {cfg.identity()}", file=sys.stderr)
    run_dir, record = execute(cfg)
    if record is None:  # not rank 0 under torchrun
        return EXIT_OK
    key_metrics = cfg.task.key_metrics
    train = getattr(cfg, "train_dataset", None)
    note = f"train split from --train-dataset {train}" if train else None
    if not train and any("train split" in str(s.get("reason", "")) for s in record.get("skipped") or []):
        note = "this dataset has no train split: the families that need one were skipped; pass --train-dataset SPEC"
    from medbench.registry import registry

    lines = console.summary_lines(record, key_metrics, train_note=note, plugin_failures=registry().failures)
    if args.json:
        import json

        print(json.dumps(console.summary_json(record, run_dir, key_metrics), indent=1, default=str))
        if not args.quiet:
            print("\n".join(lines), file=sys.stderr)
    else:
        print("\n" + "\n".join(lines))
        print(f"\nrun folder: {run_dir}" + (f"\nreport:     {run_dir / 'report.html'}" if cfg.report and (run_dir / "report.html").exists() else ""))
    if args.verbose:
        print(f"medbench: seconds per step: {record.get('provenance', {}).get('seconds')}", file=sys.stderr)
    missing = console.primary_missing(record)
    if missing and not args.allow_missing_primary:
        print(f"medbench: {missing}; the run was not stored (pass --allow-missing-primary to accept it); "
              f"run folder: {run_dir}", file=sys.stderr)
        return EXIT_PRIMARY
    if store is not None:
        try:
            from medbench.store import Store

            Store(store).add_run(record, run_dir)
        except Exception as e:  # noqa: BLE001 - the run is done and printed: say why it is not stored
            print(f"medbench: the run is complete but was not stored in {store}: {type(e).__name__}: {e}; "
                  f"run folder kept: {run_dir}", file=sys.stderr)
            return EXIT_STORE
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from medbench.registry import registry
    from medbench.tasks import as_task

    reg = registry()
    if args.options:
        return _list_options(reg, args.options, args.kind)
    kinds = [args.kind] if args.kind else list(LISTABLE)
    for kind in kinds:
        print(f"{kind}:")
        for name in reg.names(kind):
            entry = reg.entries[kind][name]
            desc = as_task(entry.spec).description if kind == "tasks" else getattr(entry.spec, "description", "")
            print(f"  {name:<28} {entry.dist:<24} {desc}")
    for plugin, dist, error in reg.failures:
        print(f"plugin {plugin!r} ({dist}) failed to load: {error.strip().splitlines()[-1]}", file=sys.stderr)
    return EXIT_OK


OPTION_KINDS = ("models", "metrics", "datasets", "extractors")


def _list_options(reg, name: str, kind: str | None) -> int:
    """`medbench list [KIND] --options NAME`: the declared options of every plugin of that name."""
    from medbench.options import describe_all
    from medbench.run_checks import FILE_DATASET_OPTIONS, OUTPUTS_OPTIONS

    kinds = (kind,) if kind else OPTION_KINDS
    found = [(k, reg.entries[k][name].spec.options) for k in kinds if name in reg.entries[k]]
    builtin_forms = {"folder": ("datasets", FILE_DATASET_OPTIONS), "manifest": ("datasets", FILE_DATASET_OPTIONS),
                     "outputs": ("models", OUTPUTS_OPTIONS)}  # spelled folder:PATH, manifest:FILE, outputs:DIR
    if name in builtin_forms:
        found.append(builtin_forms[name])
    if not found:
        import difflib

        known = sorted({n for k in OPTION_KINDS for n in reg.entries[k]} | set(builtin_forms))
        near = difflib.get_close_matches(name, known, n=1)
        raise _user_error(f"--options {name}: no model, metric family, dataset or extractor has that name."
                          + (f" Did you mean {near[0]!r}?" if near else "") + f" Known: {', '.join(known)}")
    for k, options in found:
        print(f"{name} ({k[:-1]}) options:")
        for line in describe_all(options):
            print(f"  {line}")
    return EXIT_OK


def _subcommand(module: str, fn: str):
    def run(args):
        import importlib

        return getattr(importlib.import_module(module), fn)(args) or 0

    return run


def _version() -> str:
    import importlib.metadata as md

    try:
        return f"medbench {md.version('medbench')}"
    except md.PackageNotFoundError:
        return "medbench (not installed)"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medbench", description="Evaluate medical multimodal generative models.",
                                     epilog="exit codes: 0 done, 1 bug, 2 input error, 3 primary metric missing, "
                                            "4 not stored; see docs/cli.md")
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    add_output_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a task on a model and score it")
    add_run_args(p)
    add_output_flags(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("list", help="list registered plugins and where they came from")
    p.add_argument("kind", nargs="?", choices=LISTABLE, help="only this kind of plugin")
    p.add_argument("--options", metavar="NAME", help="print the declared options of a model, metric family, dataset or extractor")
    add_output_flags(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("requests", help="write what a system must answer for a task (manifest + input files)")
    _add_module_args(p, "medbench.requests_cmd", "requests", argv)
    add_output_flags(p)
    p.set_defaults(func=_subcommand("medbench.requests_cmd", "main_requests"))
    for name, module, help_text in (("report", "medbench.report", "write report.html for a run folder"),
                                    ("leaderboard", "medbench.leaderboard", "rank models of a task from the store"),
                                    ("compare", "medbench.compare", "paired comparison of two runs, with an optional CI gate"),
                                    ("weights", "medbench.weights", "list, check or pin the local weights evaluators need"),
                                    ("samples", "medbench.samples_cmd", "a run's per-sample log, worst cases first (samples.jsonl)")):
        p = sub.add_parser(name, help=help_text)
        _add_module_args(p, module, name, argv)
        add_output_flags(p)
        p.set_defaults(func=_subcommand(module, f"main_{name}"))
    return parser


def _add_module_args(p: argparse.ArgumentParser, module: str, name: str, argv: list[str]) -> None:
    """Options of report/leaderboard/compare live beside their code (imported only for that subcommand)."""
    if next((a for a in argv if not a.startswith("-")), None) != name:
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    import importlib

    getattr(importlib.import_module(module), f"add_{name}_args")(p)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    from medbench.progress import set_quiet

    quiet = bool(getattr(args, "quiet", False))
    if quiet:
        set_quiet(True)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("medbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `medbench ... | head`: the reader left; not an error of ours or the user's
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - the one place errors become exit codes
        return report_error(e, debug)
    finally:
        if quiet:  # main() called again in the same process (tests, notebooks) starts from the default
            set_quiet(False)


def report_error(exc: BaseException, debug: bool = False) -> int:
    """A user error: one line (traceback only with --debug), exit 2. Anything else: a bug, exit 1."""
    import traceback

    from medbench.errors import is_user_error, one_line

    if is_user_error(exc):
        if debug:
            traceback.print_exception(exc)
        print(f"medbench: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER
    traceback.print_exception(exc)
    print(f"medbench: internal error ({type(exc).__name__}): this is a bug in medbench, not in your input; "
          "please report it with the traceback above", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    raise SystemExit(main())
