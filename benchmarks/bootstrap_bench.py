"""Cost of 1,000 patient-bootstrap resamples next to the metric's own compute, fast path vs direct.

    python benchmarks/bootstrap_bench.py [--n 2000] [--dim 256] [--write docs/benchmarks.md]

Image fidelity on N feature rows (d = --dim, the phantom encoder's width; synthetic Gaussian features,
the cost does not depend on their values): `compute` once (torch-fidelity FID/KID with 100 subsets,
PRC, PRDC, the floor) vs 1,000 resamples by `weighted_compute`, and a direct-path estimate from 20
resamples. Clinical efficacy on N label rows likewise. Ratios, on whatever load the machine has
(printed with the load average).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from doc_block import write_block


def timed(fn, *args, **kw) -> float:
    t0 = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t0


def patients(n: int) -> list[str]:
    return [f"p{i // 3}" for i in range(n)]  # three studies per patient


def bench_fidelity(n: int, dim: int) -> dict:
    from medbench.features import get_extractor
    from medbench.metrics.fidelity import ImageFidelity
    from medbench.stats.bootstrap import bootstrap_draws, bootstrap_ci_weighted

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(n, dim)).astype(np.float32)
    stats = {"ref_features": ref, "gen_features": (0.8 * ref + 0.6 * rng.normal(size=ref.shape)).astype(np.float32)}
    m = ImageFidelity(get_extractor("phantom-encoder", None))
    t_metric = timed(m.compute, stats)
    t_fast = timed(bootstrap_ci_weighted, m.weighted_compute, stats, patients(n), n_boot=1000, seed=0)
    t_direct = timed(bootstrap_draws, m.compute, stats, patients(n), n_boot=3, seed=0) * 1000 / 3
    return {"family": f"image.fidelity (N={n}, d={dim})", "metric_s": t_metric, "fast_s": t_fast, "direct_s": t_direct}


def bench_clinical(n: int) -> dict:
    from types import SimpleNamespace

    from medbench.labelers.chexpert_phrases import OBSERVATIONS
    from medbench.metrics.base import MetricContext
    from medbench.metrics.clinical import binarise, clinical_factory, confusion_rows
    from medbench.stats.bootstrap import bootstrap_ci, bootstrap_ci_weighted

    rng = np.random.default_rng(1)
    ctx = MetricContext(task=SimpleNamespace(request="image->report"), domain="cxr", protocol="coco", seed=0, cache_dir=Path("."))
    m = clinical_factory(ctx)
    labels = lambda: [{o: int(rng.choice([1, 0, -1])) for o in OBSERVATIONS if rng.random() < 0.4} for _ in range(n)]  # noqa: E731
    ref, hyp = labels(), labels()
    stats = {}
    for mapping in ("pos", "unc_pos"):
        cells = confusion_rows(binarise(ref, OBSERVATIONS, mapping), binarise(hyp, OBSERVATIONS, mapping))
        stats.update({f"{c}.{mapping}": v for c, v in cells.items()})
    t_metric = timed(m.compute, stats)
    t_fast = timed(bootstrap_ci_weighted, m.weighted_compute, stats, patients(n), n_boot=1000, seed=0)
    t_direct = timed(bootstrap_ci, m.compute, stats, patients(n), n_boot=100, seed=0) * 10
    return {"family": f"clinical (N={n}, compute only)", "metric_s": t_metric, "fast_s": t_fast, "direct_s": t_direct}


def table(rows: list[dict], load: str, argv: str) -> str:
    out = ["| family | 1,000 resamples, fast / one compute | fast vs direct path | direct / one compute |",
           "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['family']} | {r['fast_s'] / r['metric_s']:.2f}× | {r['direct_s'] / r['fast_s']:.0f}× faster | "
                   f"{r['direct_s'] / r['metric_s']:.0f}× |")
    out.append(f"\nMeasured by `python benchmarks/bootstrap_bench.py {argv}`, one BLAS thread, load average at the end: {load} "
               "(2 shared cores). The direct path is estimated from 3 (fidelity) / 100 (clinical) resamples.")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    rows = [bench_fidelity(args.n, args.dim), bench_clinical(args.n)]
    for r in rows:
        print(r, flush=True)
    text = table(rows, " ".join(f"{x:.1f}" for x in os.getloadavg()), f"--n {args.n} --dim {args.dim}")
    print(text)
    if args.write:
        write_block(args.write, "bootstrap-bench", text)


if __name__ == "__main__":
    main()
