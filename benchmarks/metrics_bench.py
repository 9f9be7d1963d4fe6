"""Metric-suite performance, as ratios against the reference libraries measured in the same run.

    python benchmarks/metrics_bench.py [--pairs 5000] [--images 2000] [--large-images 20000] [--write docs/benchmarks.md]

1. COCO text metrics on N report pairs: medbench's nlg.coco vs pycocoevalcap's scorers called directly;
   the medim-paper protocol vs nltk + rouge called directly (the paper script's per-report loop).
2. FID/KID/PRC on N generated vs N reference phantom images: medbench's image.fidelity (cold feature
   cache) vs torch_fidelity.calculate_metrics with the same extractor; density/coverage vs prdc; the
   same at --large-images N (the train split drawn that large, every image distinct).
3. Bootstrap CI time (1,000 patient resamples, the families' fast path) as a share of the metric time.
4. Peak memory of a 20,000-sample vs a 2,000-sample image-fidelity evaluation (streamed features and k-NN).
Numbers are also checked for equality, so a fast-but-wrong path cannot win.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from doc_block import write_block

ROOT = Path(__file__).resolve().parents[1]


def phantom_samples(domain: str, split: str, n: int):
    """The first n samples of a split; the train split is drawn larger when n needs it (every image distinct)."""
    from medbench.data.resolve import load_dataset

    opts = {"n_train": str(n)} if split == "train" and n > 4000 else {}
    ds = load_dataset(f"{domain}-phantom", opts, check_images=False)
    return ds.split(split)[:n]


def scored(refs, hyps=None, images=None):
    from medbench.metrics.base import Scored
    from medbench.records import Output, Request

    out = []
    for i, s in enumerate(refs):
        req = Request(kind="image->report", sample_id=s.id, seed=0, domain=s.domain)
        out.append(Scored(s, req, Output(s.id, report=hyps[i] if hyps else None, image=images[i] if images else None)))
    return out


def bench_text(n: int) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from medbench.metrics.text_coco import CocoText

    samples = phantom_samples("cxr", "train", n)
    rng = np.random.default_rng(0)
    hyps = [samples[j].report for j in rng.permutation(len(samples))]
    t0 = time.perf_counter()
    m = CocoText()
    for i in range(0, len(samples), 64):
        m.update(scored(samples[i:i + 64], hyps[i:i + 64]))
    stats = m.stats()
    ours = m.compute(stats)
    m.close()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": s.report}] for i, s in enumerate(samples)})
    res = tok.tokenize({i: [{"caption": h}] for i, h in enumerate(hyps)})
    ref = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    ref.update({f"bleu{k + 1}": b for k, b in enumerate(bleu)})
    meteor = Meteor()
    ref["meteor"], _ = meteor.compute_score(gts, res)
    del meteor
    ref["rougeL"], _ = Rouge().compute_score(gts, res)
    ref["cider"], _ = Cider().compute_score(gts, res)
    t_ref = time.perf_counter() - t0
    diff = max(abs(ours[f"nlg.coco.{k}"] - v) for k, v in ref.items())
    t0 = time.perf_counter()
    m.confidence_intervals(stats, [s.patient_id for s in samples], n_boot=1000, seed=0)
    t_ci = time.perf_counter() - t0
    return {"n": n, "medbench_s": t_ours, "reference_s": t_ref, "max_abs_diff": diff, "ci_s": t_ci}


def bench_medim_text(n: int) -> dict:
    """nlg.medim-paper vs the paper script's loop (nltk sentence_bleu method1, single_meteor_score, rouge)."""
    import warnings

    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from nltk.translate.meteor_score import single_meteor_score
    from rouge import Rouge

    from medbench.metrics.text_medim import BLEU_WEIGHTS, MedimPaperText, prep_report
    from medbench.metrics.wordnet import ensure_wordnet

    samples = phantom_samples("cxr", "train", n)
    rng = np.random.default_rng(1)
    hyps = [samples[j].report for j in rng.permutation(len(samples))]
    ensure_wordnet()
    t0 = time.perf_counter()
    m = MedimPaperText()
    for i in range(0, len(samples), 64):
        m.update(scored(samples[i:i + 64], hyps[i:i + 64]))
    stats = m.stats()
    ours = m.compute(stats)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    smooth, rouge, rows = SmoothingFunction().method1, Rouge(), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s, h in zip(samples, hyps):
            ref_t, hyp_t = prep_report(s.report.strip()), prep_report(h.strip())
            bleus = [sentence_bleu([ref_t], hyp_t, weights=w, smoothing_function=smooth) for w in BLEU_WEIGHTS]
            rl = rouge.get_scores(h.strip().lower(), s.report.strip().lower())[0]["rouge-l"]["f"]
            rows.append([*bleus, single_meteor_score(hypothesis=hyp_t, reference=ref_t), rl])
    ref = dict(zip(("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rougeL"), np.mean(rows, axis=0)))
    t_ref = time.perf_counter() - t0
    diff = max(abs(ours[f"nlg.medim-paper.{k}"] - v) for k, v in ref.items())
    t0 = time.perf_counter()
    m.confidence_intervals(stats, [s.patient_id for s in samples], n_boot=1000, seed=0)
    t_ci = time.perf_counter() - t0
    return {"n": n, "medbench_s": t_ours, "reference_s": t_ref, "max_abs_diff": diff, "ci_s": t_ci}


def bench_fid(n: int, ci: bool = True) -> dict:
    import torch_fidelity

    from medbench.features import get_extractor
    from medbench.features.torch_fidelity_bridge import UInt8Images, register_with_torch_fidelity
    from medbench.metrics.fidelity import ImageFidelity

    refs = phantom_samples("cxr", "train", 2 * n)
    gen_paths = [s.image_path for s in refs[n:]]
    refs = refs[:n]
    ex = get_extractor("phantom-encoder")
    with tempfile.TemporaryDirectory() as home:

        old_home = os.environ.get("MEDBENCH_HOME")
        os.environ["MEDBENCH_HOME"] = home  # cold cache
        try:
            from PIL import Image

            t0 = time.perf_counter()
            m = ImageFidelity(ex)
            for i in range(0, n, 64):
                ims = [Image.open(p) for p in gen_paths[i:i + 64]]
                m.update(scored(refs[i:i + 64], images=ims))
            stats = m.stats()
            ours = m.compute(stats)
            t_ours = time.perf_counter() - t0
        finally:
            if old_home is None:
                os.environ.pop("MEDBENCH_HOME")
            else:
                os.environ["MEDBENCH_HOME"] = old_home
    name = register_with_torch_fidelity(ex)
    t0 = time.perf_counter()
    ref = torch_fidelity.calculate_metrics(input1=UInt8Images(gen_paths), input2=UInt8Images([s.image_path for s in refs]),
                                           fid=True, kid=True, prc=True, feature_extractor=name, cuda=False, verbose=False,
                                           cache=False, batch_size=64, kid_subset_size=min(1000, n))
    t_ref = time.perf_counter() - t0
    import prdc

    pr = prdc.compute_prdc(real_features=stats["ref_features"].astype(np.float64),
                           fake_features=stats["gen_features"].astype(np.float64), nearest_k=5)
    t0 = time.perf_counter()
    if ci:
        m.confidence_intervals(stats, [s.patient_id for s in refs], n_boot=1000, seed=0)
    t_ci = time.perf_counter() - t0 if ci else None
    t = "phantom-encoder"
    return {"n": n, "medbench_s": t_ours, "reference_s": t_ref, "ci_s": t_ci,
            "fid_rel_diff": abs(ours[f"image.fid@{t}"] / ref["frechet_inception_distance"] - 1),
            "kid_rel_diff": abs(ours[f"image.kid@{t}"] / ref["kernel_inception_distance_mean"] - 1),
            "prc_abs_diff": max(abs(ours[f"image.precision@{t}"] - ref["precision"]), abs(ours[f"image.recall@{t}"] - ref["recall"])),
            "dc_abs_diff": max(abs(ours[f"image.density@{t}"] - float(pr["density"])), abs(ours[f"image.coverage@{t}"] - float(pr["coverage"])))}


MEMORY_CHILD = """
import resource, sys, numpy as np
from PIL import Image
from medbench.features import get_extractor
from medbench.metrics.fidelity import ImageFidelity
sys.path.insert(0, {bench!r})
from metrics_bench import phantom_samples, scored
n, n_boot = int(sys.argv[1]), int(sys.argv[2])
pool = phantom_samples("cxr", "train", 4000)
m = ImageFidelity(get_extractor("phantom-encoder"), kid_subsets=10)
rng = np.random.default_rng(0)
patients = []
for i in range(0, n, 64):
    refs = [pool[(i + j) % len(pool)] for j in range(min(64, n - i))]
    ims = [Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)) for _ in refs]  # never all in memory
    m.update(scored(refs, images=ims))
    patients += [f"{{s.patient_id}}/{{i + j}}" for j, s in enumerate(refs)]  # a pool sample reused is another patient
stats = m.stats()
m.compute(stats)
compute_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if n_boot:
    m.confidence_intervals(stats, patients, n_boot=n_boot, seed=0)
print(compute_kb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_memory(small: int, large: int, n_boot: int = 100) -> dict:
    """Peak RSS of a child process scoring n samples, after compute and after n_boot fast-path resamples
    (one weight block of resamples is alive at a time, so 100 show the peak of any number)."""
    code = MEMORY_CHILD.format(bench=str(ROOT / "benchmarks"))
    peaks = {}
    for n in (small, large):
        out = subprocess.run([sys.executable, "-c", code, str(n), str(n_boot)], capture_output=True, text=True, check=True)
        peaks[n] = [int(v) / 1024 for v in out.stdout.strip().splitlines()[-1].split()]
    return {"small": small, "large": large, "n_boot": n_boot, "small_mb": peaks[small][0], "large_mb": peaks[large][0],
            "ratio": peaks[large][0] / peaks[small][0], "small_ci_mb": peaks[small][1], "large_ci_mb": peaks[large][1],
            "ci_ratio": peaks[large][1] / peaks[small][1]}


def fid_row(fid: dict) -> str:
    return (f"| FID + KID + PRC, {fid['n']:,} vs {fid['n']:,} images, phantom-encoder, cold cache | {fid['medbench_s']:.1f} s | "
            f"torch_fidelity.calculate_metrics {fid['reference_s']:.1f} s | {fid['medbench_s'] / fid['reference_s']:.2f}× | "
            f"rel. Δ FID {fid['fid_rel_diff']:.1e}, KID {fid['kid_rel_diff']:.1e}; |Δ| P/R {fid['prc_abs_diff']:.1e}, "
            f"density/coverage vs prdc {fid['dc_abs_diff']:.1e} |")


def markdown(text: dict, medim: dict, fid: dict, mem: dict, large: dict | None = None) -> str:
    def ratio(d):
        return d["medbench_s"] / d["reference_s"]

    return "\n".join([
        "| measurement | medbench | reference (same run) | ratio | agreement |",
        "|---|---|---|---|---|",
        f"| COCO text metrics, {text['n']:,} pairs (PTB tok + BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D) | {text['medbench_s']:.1f} s | "
        f"pycocoevalcap scorers {text['reference_s']:.1f} s | {ratio(text):.2f}× | max |Δ| {text['max_abs_diff']:.1e} |",
        f"| medim-paper text metrics, {medim['n']:,} pairs (nltk BLEU-1..4 method1, nltk METEOR, rouge ROUGE-L) | "
        f"{medim['medbench_s']:.1f} s | the paper's loop over nltk + rouge {medim['reference_s']:.1f} s | {ratio(medim):.2f}× | "
        f"max |Δ| {medim['max_abs_diff']:.1e} |",
        fid_row(fid), *([fid_row(large)] if large else []),
        f"| 95 % CI, 1,000 patient resamples: coco text | {text['ci_s']:.1f} s | metric time {text['medbench_s']:.1f} s | "
        f"{text['ci_s'] / text['medbench_s']:.3f}× of metric time | |",
        f"| 95 % CI, 1,000 patient resamples: medim-paper text | {medim['ci_s']:.1f} s | metric time {medim['medbench_s']:.1f} s | "
        f"{medim['ci_s'] / medim['medbench_s']:.3f}× of metric time | |",
        f"| 95 % CI, 1,000 patient resamples: image fidelity | {fid['ci_s']:.1f} s | metric time {fid['medbench_s']:.1f} s | "
        f"{fid['ci_s'] / fid['medbench_s']:.2f}× of metric time | |",
        f"| peak memory, image.fidelity over {mem['large']:,} vs {mem['small']:,} samples | {mem['large_mb']:.0f} MB | "
        f"{mem['small_mb']:.0f} MB | {mem['ratio']:.2f}× (target ≤ 1.3×) | |"])


def memory_markdown(mem: dict) -> str:
    return "\n".join([
        "| measurement | large | small | ratio |", "|---|---|---|---|",
        f"| peak RSS, image.fidelity (features streamed, k-NN in blocks) over {mem['large']:,} vs {mem['small']:,} samples | "
        f"{mem['large_mb']:.0f} MB | {mem['small_mb']:.0f} MB | {mem['ratio']:.2f}× (target ≤ 1.3×) |",
        f"| the same, then {mem['n_boot']} fast-path bootstrap resamples (one weight block alive at a time: the peak of "
        f"any number) | {mem['large_ci_mb']:.0f} MB | {mem['small_ci_mb']:.0f} MB | {mem['ci_ratio']:.2f}× |",
        f"\n`python benchmarks/metrics_bench.py --only memory --memory {mem['small']} {mem['large']} --write docs/benchmarks.md`"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--large-images", type=int, default=0, help="also FID/KID/PRC at this N vs torch-fidelity (no CI)")
    ap.add_argument("--memory", type=int, nargs=2, default=[2000, 20000])
    ap.add_argument("--only", choices=["memory"], help="measure only this part (written to its own block)")
    ap.add_argument("--write", type=Path, help="replace the metrics_bench (and metrics_bench_memory) blocks of this Markdown file")
    args = ap.parse_args()
    mem = bench_memory(*args.memory)
    print(json.dumps(mem))
    if args.write:
        write_block(args.write, "metrics_bench_memory", memory_markdown(mem))
    if args.only == "memory":
        return
    text = bench_text(args.pairs)
    print(json.dumps(text))
    medim = bench_medim_text(args.pairs)
    print(json.dumps(medim))
    fid = bench_fid(args.images)
    print(json.dumps(fid))
    large = bench_fid(args.large_images, ci=False) if args.large_images else None
    print(json.dumps(large))
    table = markdown(text, medim, fid, mem, large) + (f"\n\nLoad average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
                                               f"(2 shared cores); command: `python benchmarks/metrics_bench.py "
                                               f"--pairs {args.pairs} --images {args.images} --large-images {args.large_images} "
                                               f"--memory {args.memory[0]} {args.memory[1]}`.")
    print(table)
    if args.write:
        write_block(args.write, "metrics_bench", table)


if __name__ == "__main__":
    main()
