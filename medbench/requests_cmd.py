"""`medbench requests`: write exactly what a system must answer for a task, so any system can be
scored through ``--model outputs:DIR``.

    medbench requests --task i2t --n 50 --out my-requests
    # -> my-requests/requests.jsonl   one request a line (below)
    #    my-requests/inputs/          the input files: <stem>.png (image->report), <stem>.txt (report->image)
    # your system writes <stem>.png and/or <stem>.txt into a folder OUT, then:
    medbench run --task i2t --n 50 --model outputs:OUT

Each line of requests.jsonl: ``id`` (the sample id), ``stem`` (the file stem its answers must
have), ``kind``, ``seed`` (the per-request seed the runner gives models), ``domain``, the input
(``prompt``; ``report`` and ``report_path``; or ``image_path``, all paths relative to the folder),
``outputs`` (the file names to write) and, when an image is expected, ``image_size`` [width, height]
and ``image_mode`` (the dataset's own: L for grayscale, RGB). Sample selection and request
construction are the runner's own (`select_samples`, `make_request`), so the same ``--task``,
``--dataset``, ``--n`` and ``--seed`` given to ``medbench run`` score exactly these requests.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from medbench.errors import UserError

MANIFEST = "requests.jsonl"


def add_requests_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="a registered task or the path of a task YAML")
    p.add_argument("--dataset", help="a registered dataset, NAME:PATH, folder:PATH or manifest:FILE (default: the task's)")
    p.add_argument("--dataset-opt", action="append", metavar="K=V", help="dataset option (repeatable)")
    p.add_argument("--domain", help="domain of a folder:/manifest: dataset when its labels.jsonl does not say")
    p.add_argument("--n", metavar="N|all", help="number of samples, or 'all' (default: the task's)")
    p.add_argument("--seed", type=int, help="run seed (default: the task's first seed); gives each request its seed")
    p.add_argument("--quick", action="store_true", help="the task's reduced setting, as medbench run --quick")
    p.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail", help="as for medbench run")
    p.add_argument("--out", type=Path, required=True, help="an empty or new folder for requests.jsonl and inputs/")


def main_requests(args: argparse.Namespace) -> int:
    from medbench.cli import _kv, _n
    from medbench.run_checks import check_dataset, check_numbers

    n = _n(args.n)
    check_numbers(args.seed or 0, 1, 0, None)
    task, dataset_spec, n = _task_and_dataset(args.task, args.dataset, n, args.quick)
    options = check_dataset(dataset_spec, _kv(args.dataset_opt, "--dataset-opt"), "--dataset-opt")
    seed = args.seed if args.seed is not None else task.seeds[0]
    lines = write_requests(task, dataset_spec, options, n, seed, Path(args.out), domain=args.domain,
                           on_bad_sample=args.on_bad_sample)
    print(f"{lines} requests written to {Path(args.out) / MANIFEST} (inputs in {Path(args.out) / 'inputs'})")
    return 0


def _task_and_dataset(task_arg: str, dataset: str | None, n, quick: bool):
    from medbench.tasks import load_task

    task = load_task(task_arg)
    reduced = task.options.get("quick", {}) if quick else {}
    spec = dataset or reduced.get("dataset", task.dataset)
    if n is None:
        n = reduced.get("n", task.n)
    return task, spec, None if n == "all" else n


def write_requests(task, dataset_spec: str, dataset_options: dict, n: int | None, seed: int, out: Path,
                   domain: str | None = None, on_bad_sample: str = "fail") -> int:
    """Write requests.jsonl and inputs/ for the task's first n samples; returns the number of requests."""
    from medbench.data.resolve import load_dataset
    from medbench.records import produces
    from medbench.run_checks import check_sample_count
    from medbench.runner import make_request, select_samples
    from medbench.safe_names import file_stem

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: " + ("is a file" if not out.is_dir() else "is not empty")
                        + "; give a new or empty folder for the requests")
    dataset = load_dataset(dataset_spec, dataset_options, on_bad_sample=on_bad_sample, domain=domain)
    split = dataset.split(task.split)
    samples = select_samples(split, n)
    check_sample_count(n, len(select_samples(split, None)), dataset_spec, task.split)
    if not samples:
        raise UserError(f"dataset {dataset_spec!r} has no complete image-report pairs in split {task.split!r}")
    wanted = produces(task.request)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    (tmp / "inputs").mkdir(parents=True)
    with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
        for sample in samples:
            f.write(json.dumps(_entry(task, sample, seed, wanted, file_stem(sample.id), tmp, make_request)) + "\n")
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(tmp, out)
    return len(samples)


def _entry(task, sample, seed: int, wanted: tuple[str, ...], stem: str, folder: Path, make_request) -> dict:
    req = make_request(task, sample, seed)
    entry = {"id": sample.id, "stem": stem, "kind": req.kind, "seed": req.seed, "domain": req.domain}
    if req.prompt is not None:
        entry["prompt"] = req.prompt
    if req.report is not None:
        path = Path("inputs") / f"{stem}.txt"
        (folder / path).write_text(req.report, encoding="utf-8")
        entry |= {"report": req.report, "report_path": str(path)}
    if req.image is not None:
        path = Path("inputs") / f"{stem}.png"
        req.image.save(folder / path, format="PNG")
        entry["image_path"] = str(path)
    entry["outputs"] = [f"{stem}.png" if m == "image" else f"{stem}.txt" for m in wanted]
    if "image" in wanted:
        size, mode = _reference_size_mode(sample)
        entry |= {"image_size": list(size) if size else None, "image_mode": mode}
    return entry


def _reference_size_mode(sample) -> tuple[tuple[int, int] | None, str | None]:
    """The evaluated sample's own image size and mode: what a generated image should match."""
    from PIL import Image

    if sample.image_path is None:
        return None, None
    if str(sample.image_path).lower().endswith(".dcm"):
        image = sample.load_image()
        return image.size, image.mode
    with Image.open(sample.image_path) as im:
        return im.size, im.mode
