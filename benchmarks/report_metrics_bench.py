"""Report-metric throughput: medbench's families vs the packages called directly on the same inputs.

    python benchmarks/report_metrics_bench.py [--pairs 256] [--weights DIR] [--device cpu|cuda] [--write docs/report-metrics.md]

Without --weights it builds the tests' tiny random models (tests/tiny_report_models.py) in a temp
folder; with --weights it uses the published files under DIR. Model loading is excluded on both
sides; medbench is timed as a run scores (batches of 64, then stats + compute), the package as its
own API is called (radeval's CheXbert get_labels + the classification_report calls of its forward;
radeval's BertScore wrapper; radeval's F1RadGraph). Best of --repeats, and the numbers are checked
equal so a fast-but-wrong path cannot win. Target: ratio <= 1.05.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]


def race(a, b, repeats: int) -> tuple[float, object, float, object]:
    """Best-of-`repeats` seconds of a() and b(), alternating so load on shared cores hits both alike."""
    ta, tb, va, vb = [], [], None, None
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            va, vb = (out, vb) if fn is a else (va, out)
    return min(ta), va, min(tb), vb


def ours(metric_factory, ctx, pairs, repeats: int, batch: int = 64):
    """medbench's scoring as a run does it; the families are built (weights checked) before timing."""
    fresh = []
    for _ in range(repeats):
        m = metric_factory(ctx)
        m._scorer = scorer_cache.get(type(m))  # model already loaded: time the scoring only
        m._evaluator = evaluator_cache.get(type(m))
        fresh.append(m)

    def go():
        m = fresh.pop()
        for i in range(0, len(pairs), batch):
            m.update(pairs[i:i + batch])
        return m.compute(m.stats())
    return go


scorer_cache: dict = {}
evaluator_cache: dict = {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--weights", type=Path, help="folder with the published files (default: tiny models)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--families", default="chexbert,bertscore,radgraph", help="comma-separated subset to time")
    ap.add_argument("--write", type=Path, help="write the table into this Markdown file's report-metrics-bench block")
    args = ap.parse_args()

    import torch
    from sklearn.metrics import classification_report
    from tiny_report_models import build_bertscore_distilbert, build_chexbert, build_radgraph, metric_context, report_pairs, scored_pairs

    from medbench.metrics.report_models import bertscore, chexbert, radgraph
    from medbench.metrics.report_models._radeval import radeval_import

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    root = args.weights
    if root is None:
        root = tmp / "weights"
        for build in (build_chexbert, build_bertscore_distilbert, build_radgraph):
            build(root)
    ctx = metric_context(root, tmp)
    ctx.device = args.device
    refs, hyps = report_pairs(args.pairs, seed=7)
    pairs = scored_pairs(refs, hyps)
    rows = []

    todo = set(args.families.split(","))

    # CheXbert
    m = chexbert.chexbert_factory(ctx) if "chexbert" in todo else None
    if m is not None:
        evaluator_cache[type(m)] = m.evaluator
        ev = m.evaluator

        def package_chexbert():
            r, h = ev.get_labels(refs), ev.get_labels(hyps)
            return classification_report(r, h, output_dict=True, zero_division=0)["micro avg"]["f1-score"]
        t_ours, v_ours, t_pkg, v_pkg = race(ours(chexbert.chexbert_factory, ctx, pairs, args.repeats), package_chexbert, args.repeats)
        assert abs(v_ours["clinical.chexbert.f1_micro14"] - v_pkg) < 1e-9
        rows.append(("clinical.chexbert", "radeval F1CheXbert.get_labels x2 + classification_report", t_ours, t_pkg))

    if "bertscore" in todo:
        m = bertscore.bertscore_factory(ctx)
        scorer_cache[type(m)] = m.scorer
        wrapper = radeval_import("radeval.metrics.bertscore.bertscore").BertScore(
            model_type=str(root / "bertscore-distilbert-base-uncased"), num_layers=5, rescale_with_baseline=False)
        t_ours, v_ours, t_pkg, v_pkg = race(ours(bertscore.bertscore_factory, ctx, pairs, args.repeats),
                                            lambda: wrapper(refs, hyps)[0], args.repeats)
        assert abs(v_ours["nlg.bertscore.f1@distilbert-base-uncased-L5"] - v_pkg) < 1e-5
        rows.append(("nlg.bertscore", "radeval BertScore(refs, hyps), batch 64", t_ours, t_pkg))

    if "radgraph" in todo:
        m = radgraph.radgraph_factory(ctx)
        scorer_cache[type(m)] = m.scorer
        pkg = m.scorer  # the package's F1RadGraph object itself (loaded once, shared)
        t_ours, v_ours, t_pkg, v_pkg = race(ours(radgraph.radgraph_factory, ctx, pairs, args.repeats),
                                            lambda: pkg(refs=refs, hyps=hyps)[0][1], args.repeats)
        assert abs(v_ours["nlg.radgraph.f1_partial"] - v_pkg) < 1e-9
        rows.append(("nlg.radgraph", "radeval F1RadGraph(refs, hyps)", t_ours, t_pkg))

    weights = "published weights" if args.weights else "tiny random models (tests/tiny_report_models.py)"
    lines = [f"{args.pairs} report pairs, {weights}, device {args.device}, {torch.get_num_threads()} threads, best of {args.repeats}, alternating.",
             "", "| family | package called directly | medbench s | package s | ratio |", "|---|---|---|---|---|"]
    lines += [f"| `{n}` | {what} | {a:.3f} | {b:.3f} | {a / b:.3f} |" for n, what, a, b in rows]
    table = "\n".join(lines)
    print(table)
    if args.write:
        from doc_block import write_block

        write_block(args.write, "report-metrics-bench", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
