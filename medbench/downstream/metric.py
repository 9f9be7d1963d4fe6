"""The ``downstream`` metric family: train downstream models per arm and seed, score them on real test pairs.

`update` receives the generated pairs (the model under test answered prompts of a generation pool
that is disjoint from the test split). `stats()` then, once: draws the real train subsets, trains
every downstream model (``medbench_downstream_models``) on every arm x seed with the same number of
optimiser steps and batch size, predicts the real test subset, and keeps per-test-sample statistics:

    classifier.target            (n, L)      report-derived test labels (uncertain counted positive)
    classifier.<arm>.prob        (n, S, L)   predicted probabilities per seed
    captioner.<arm>.bleu         (n, S, 10)  pycocoevalcap BLEU counts (PTB tokens) per seed
    captioner.<arm>.meteor       (n, S, 23)  METEOR 1.5 statistics per seed (if enabled)
    captioner.<arm>.ce           (n, S, 3)   clinical TP/FP/FN (labeler on generated vs reference report)

Rows are *test samples*, not the scored (generated) samples: ``row_patients()`` says whose they are.
`compute` is pure: per arm, each seed's corpus value (macro AUROC, macro F1, corpus BLEU, METEOR, micro
CE-F1), averaged over seeds; and ``...gain.<arm>`` = value(arm) - value(real), paired by test sample
and seed. `confidence_intervals` resamples test patients *and* training seeds (two-level bootstrap);
`extras` adds paired approximate-randomisation p-values (Holm-adjusted), per-seed values and the
utility curve (metric vs synthetic share at fixed training-set size).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from medbench.downstream.contract import TrainSet
from medbench.downstream.arms import REAL, Settings, arm_names, image_tensor, plan_arms, ratio_of
from medbench.metrics.base import Metric, MetricContext, Scored
from medbench.metrics.clinical import averages, binarise, confusion_rows
from medbench.stats.bootstrap import patient_groups

FAMILY = "downstream"
CLASSIFIER_SCORES = ("auroc", "f1")
CAPTIONER_SCORES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "ce_f1")


# ----------------------------------------------------------------------------- training (serial or in worker processes)

def _fit(job):
    import torch

    model, train, test_images, seed, budget = job
    threads, cpu = torch.get_num_threads(), time.process_time()
    torch.set_num_threads(1)  # one thread per training: the same numbers serially or in workers
    try:
        return model.fit_predict(train, test_images, seed=seed, **budget), time.process_time() - cpu
    finally:
        torch.set_num_threads(threads)


def train_jobs(jobs: list[tuple], workers: int) -> list:
    """fit_predict every (model, train set, test images, seed, budget) job: [(prediction, CPU seconds)] in job order.
    ``workers`` > 1 runs them in that many spawned processes (each single-threaded)."""
    if workers <= 1 or len(jobs) < 2:
        return [_fit(j) for j in tqdm(jobs, desc="downstream: train arms", unit="model")]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(tqdm(pool.map(_fit, jobs), total=len(jobs), desc=f"downstream: train arms ({workers} workers)", unit="model"))


# ----------------------------------------------------------------------------- per-sample scores -> values

def auroc_columns(target: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Per-column ROC AUC (Mann-Whitney U with average ranks for ties); NaN where a class is absent."""
    from scipy.stats import rankdata

    target = np.asarray(target, dtype=bool)
    pos = target.sum(0)
    neg = len(target) - pos
    ranks = rankdata(prob, axis=0)
    u = (ranks * target).sum(0) - pos * (pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pos > 0) & (neg > 0), u / (pos * neg), np.nan)


def classifier_values(target: np.ndarray, prob: np.ndarray, seeds: np.ndarray | None = None) -> dict[str, list[float]]:
    """Per seed: macro AUROC over labels with both classes present; macro F1 at p >= 0.5 (clinical's macro)."""
    seeds = range(prob.shape[1]) if seeds is None else seeds
    out: dict[str, list[float]] = {"auroc": [], "f1": []}
    for s in seeds:
        auc = auroc_columns(target, prob[:, s])
        out["auroc"].append(float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan"))
        cells = confusion_rows(target.astype(np.int64), (prob[:, s] >= 0.5).astype(np.int64))
        out["f1"].append(averages(cells["tp"].sum(0), cells["fp"].sum(0), cells["fn"].sum(0))["macro"]["f1"])
    return out


def captioner_values(parts: dict[str, np.ndarray], seeds: np.ndarray | None = None) -> dict[str, list[float]]:
    """Per seed: corpus BLEU-1..4 and METEOR from summed statistics, micro CE-F1 from summed TP/FP/FN."""
    from medbench.metrics.java_meteor import meteor_from_stats
    from medbench.metrics.text_coco import bleu_from_rows

    seeds = range(parts["bleu"].shape[1]) if seeds is None else seeds
    out: dict[str, list[float]] = {}
    for s in seeds:
        for k, b in enumerate(bleu_from_rows(parts["bleu"][:, s])):
            out.setdefault(f"bleu{k + 1}", []).append(b)
        if "meteor" in parts:
            out.setdefault("meteor", []).append(meteor_from_stats(parts["meteor"][:, s]))
        tp, fp, fn = parts["ce"][:, s].sum(0)
        out.setdefault("ce_f1", []).append(float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0)
    return out


def score_reports(model: str, refs: list[str], hyps: dict[str, list[list[str]]], labeler, meteor=None) -> dict[str, np.ndarray]:
    """Per-sample statistics of generated test reports: {model.arm.bleu|meteor|ce: (n, S, ...)}.
    ``meteor``: a running `MeteorJVM` (METEOR statistics are skipped without one)."""
    from medbench.metrics.java_meteor import parse_stats
    from medbench.metrics.text_coco import bleu_row, ptb_tokenize

    obs = tuple(labeler.observations)
    n = len(refs)
    flat = [h for arm in hyps for seed_hyps in hyps[arm] for h in seed_hyps]
    tokens = ptb_tokenize(refs + flat)
    ref_tok, hyp_tok = tokens[:n], tokens[n:]
    ref_lab = binarise([labeler.label(r) for r in refs], obs, "pos")
    out, k = {}, 0
    for arm, per_seed in hyps.items():
        bleu, met, ce = [], [], []
        for seed_hyps in per_seed:
            toks = hyp_tok[k:k + n]
            k += n
            bleu.append(np.stack([bleu_row(h, r) for h, r in zip(toks, ref_tok)]))
            if meteor is not None:
                met.append(np.stack([parse_stats(meteor.stats_line(h, [r])) for h, r in zip(toks, ref_tok)]))
            cells = confusion_rows(ref_lab, binarise([labeler.label(h) for h in seed_hyps], obs, "pos"))
            ce.append(np.stack([cells[c].sum(1) for c in ("tp", "fp", "fn")], 1))
        out[f"{model}.{arm}.bleu"] = np.stack(bleu, 1)
        out[f"{model}.{arm}.ce"] = np.stack(ce, 1)
        if meteor is not None:
            out[f"{model}.{arm}.meteor"] = np.stack(met, 1)
    return out


class DownstreamAugmentation(Metric):
    name = FAMILY

    def __init__(self, ctx: MetricContext, settings: Settings, models: dict[str, Any]):
        """``models``: {name: DownstreamModel} (see `medbench.downstream`)."""
        self.ctx, self.settings, self.downstream = ctx, settings, models
        self.arms = arm_names(settings.arms, settings.ratios)
        self.model_arms = {m: arm_names(settings.arms, settings.ratios if m in settings.sweep_models else ())
                           for m in settings.models}
        self.models = list(settings.models)
        self.variant = settings.describe()
        self.higher_is_better = {n: True for n in self.metric_names()}
        self._images: list[Any] = []
        self._reports: list[str] = []
        self._ids: list[str] = []
        self._stats: dict[str, np.ndarray] | None = None
        self._info: dict[str, Any] = {}
        self._cis: dict[str, tuple[float | None, float | None]] | None = None

    # ------------------------------------------------------------------ names
    def scores_of(self, model: str) -> tuple[str, ...]:
        kind = self.downstream[model].kind
        if kind == "labels":
            return CLASSIFIER_SCORES
        return tuple(s for s in CAPTIONER_SCORES if s != "meteor" or self.settings.meteor)

    def metric_names(self) -> list[str]:
        names = []
        for model in self.models:
            for score in self.scores_of(model):
                names += [f"{FAMILY}.{model}.{score}.{arm}" for arm in self.model_arms[model]]
                names += [f"{FAMILY}.{model}.{score}.gain.{arm}" for arm in self.model_arms[model] if arm != REAL]
        return names

    # ------------------------------------------------------------------ accumulate generated pairs
    def update(self, batch: list[Scored]) -> None:
        for item in batch:
            out = item.output
            if out.image is None or out.report is None:
                raise ValueError(f"downstream: generated pair for prompt {item.sample.id!r} lacks an image or a report "
                                 "(the task needs prompt->pair outputs)")
            self._images.append(image_tensor([out.image], self.settings.image_size, self._mode())[0])
            self._reports.append(out.report)
            self._ids.append(item.sample.id)
        self._stats = None

    def _mode(self) -> str:
        if "mode" not in self._info:
            first = next((s for s in self._dataset().split("train") if s.image_path is not None), None)
            if first is None:
                raise ValueError("downstream: the dataset's train split has no images")
            self._info["mode"] = "L" if first.load_image().mode in ("L", "I", "I;16", "1") else "RGB"
        return self._info["mode"]

    def _dataset(self):
        if self.ctx.dataset is None:
            raise ValueError("downstream: the metric context carries no dataset (MetricContext.dataset); "
                             "the runner must pass the loaded dataset so real train/test pairs can be read")
        return self.ctx.dataset

    # ------------------------------------------------------------------ train and score
    def stats(self) -> dict[str, np.ndarray]:
        if self._stats is None:
            self._stats = self._train_and_score()
        return {k: v.copy() for k, v in self._stats.items()}

    def _train_and_score(self) -> dict[str, np.ndarray]:
        st, t_start = self.settings, time.perf_counter()
        wants_text = any(self.downstream[m].kind == "report" for m in self.models)
        meteor = None
        if st.meteor and wants_text:
            from medbench.metrics.java_meteor import MeteorJVM

            meteor = MeteorJVM()  # loads its paraphrase table (~20 s) while the models train
        try:
            return self._train_and_score_with(meteor, t_start)
        finally:
            if meteor is not None:
                meteor.close()

    def _train_and_score_with(self, meteor, t_start: float) -> dict[str, np.ndarray]:
        from medbench.labelers.plugin import labeler_for
        from medbench.runner import select_samples

        import torch

        st = self.settings
        dataset = self._dataset()
        if self.ctx.task is not None and getattr(self.ctx.task, "split", None) == "test":
            raise ValueError("downstream: the generation pool must be disjoint from the test split, but the task "
                             "draws its prompts from split 'test' (use split: val)")
        test = select_samples(dataset.split("test"), st.test_n)
        overlap = sorted(set(self._ids) & {s.id for s in test})
        if overlap:
            raise ValueError(f"downstream: {len(overlap)} generation prompts come from test samples ({overlap[:5]}): "
                             "the generation pool must be disjoint from the test split")
        if not test:
            raise ValueError(f"downstream: dataset {dataset.name!r} has no complete pairs in its test split")
        pool = [s for s in select_samples(dataset.split("train"), 10 ** 9) if s.id not in set(self._ids)]
        labeler = labeler_for(self.ctx.domain, self.ctx.options.get("labeler"))
        obs = tuple(labeler.observations)
        plans = {seed: plan_arms(len(pool), len(self._ids), st.real_train, st.arms, st.ratios, seed) for seed in st.seeds}
        needed = sorted({int(i) for plan in plans.values() for real, _ in plan.values() for i in real})
        where = {i: k for k, i in enumerate(needed)}
        mode, size = self._mode(), st.image_size
        real_images = image_tensor([pool[i].load_image() for i in tqdm(needed, desc="downstream: load real", leave=False)], size, mode)
        real_reports = [pool[i].report for i in needed]
        test_images = image_tensor([s.load_image() for s in test], size, mode)
        synth_images = torch.stack(self._images) if self._images else torch.zeros(0, real_images.shape[1], size, size, dtype=torch.uint8)

        lab = lambda reports: binarise([labeler.label(r) for r in reports], obs, "unc_pos")  # noqa: E731
        real_y, synth_y, test_y = lab(real_reports), lab(self._reports), lab([s.report for s in test])
        cols = [j for j in range(len(obs)) if st.min_support <= test_y[:, j].sum() <= len(test) - st.min_support]
        label_names = tuple(obs[j] for j in cols)
        out: dict[str, np.ndarray] = {"classifier.target": test_y[:, cols]} if any(
            self.downstream[m].kind == "labels" for m in self.models) else {}

        arm_sizes, jobs = {}, []
        for model, arm, seed in [(m, arm, seed) for m in self.models for arm in self.model_arms[m] for seed in st.seeds]:
            real_idx, synth_idx = plans[seed][arm]
            r = np.array([where[int(i)] for i in real_idx], dtype=np.int64)
            train = TrainSet(images=torch.cat([real_images[r], synth_images[synth_idx]]),
                             reports=[real_reports[i] for i in r] + [self._reports[i] for i in synth_idx],
                             labels=np.concatenate([real_y[r], synth_y[synth_idx]])[:, cols],
                             label_names=label_names,
                             synthetic=np.r_[np.zeros(len(r), bool), np.ones(len(synth_idx), bool)])
            arm_sizes[arm] = {"real": len(r), "synthetic": len(synth_idx)}
            jobs.append(((model, arm), self.downstream[model], train, test_images, seed, st.budget(model)))
        preds: dict[tuple[str, str], list] = {}
        cpu: dict[str, float] = {}
        for key, (pred, seconds) in zip([j[0] for j in jobs], train_jobs([j[1:] for j in jobs], st.workers)):
            preds.setdefault(key, []).append(pred)  # seeds stay in order: jobs are listed seed by seed
            cpu[key[0]] = cpu.get(key[0], 0.0) + seconds

        refs = [s.report for s in test]
        for model in self.models:
            if self.downstream[model].kind == "labels":
                for arm in self.model_arms[model]:
                    out[f"{model}.{arm}.prob"] = np.stack(preds[(model, arm)], 1).astype(np.float64)
            else:
                hyps = {arm: preds[(model, arm)] for arm in self.model_arms[model]}
                out.update(score_reports(model, refs, hyps, labeler, meteor))
                self._write_reports(model, test, hyps)
        self._info.update(test_ids=[s.id for s in test], test_patients=[s.patient_id for s in test],
                          label_names=list(label_names), arm_sizes=arm_sizes, labeler=labeler.name,
                          generated=len(self._ids), empty_generated=sum(not r.strip() for r in self._reports),
                          seconds=round(time.perf_counter() - t_start, 1),
                          training_cpu_seconds={m: round(v, 1) for m, v in cpu.items()}, trainings=len(jobs))
        return out

    def _write_reports(self, model: str, test, hyps: dict[str, list[list[str]]]) -> None:
        """The downstream captioner's test reports, per arm and seed, for inspection."""
        if self.ctx.run_dir is None:
            return
        folder = Path(self.ctx.run_dir) / "downstream"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{model}_reports.jsonl", "w", encoding="utf-8") as f:
            for i, s in enumerate(test):
                row = {"id": s.id, "reference": s.report}
                row.update({f"{arm}/seed{seed}": hyps[arm][k][i] for arm in hyps for k, seed in enumerate(self.settings.seeds)})
                f.write(json.dumps(row) + "\n")

    # ------------------------------------------------------------------ pure compute
    def compute(self, stats: dict[str, np.ndarray], seeds: np.ndarray | None = None,
                only: str | None = None) -> dict[str, float]:
        """Seed-averaged value per arm and gain over `real`. ``seeds``: seed columns to use (resampling);
        ``only``: restrict to `real` and this arm (the paired test)."""
        out: dict[str, float] = {}
        for model in self.models:
            per_arm = {}
            arms = [a for a in self.model_arms[model] if only is None or a in (REAL, only)]
            for arm in arms:
                if self.downstream[model].kind == "labels":
                    vals = classifier_values(stats["classifier.target"], stats[f"{model}.{arm}.prob"], seeds)
                else:
                    vals = captioner_values({k.split(".")[-1]: v for k, v in stats.items() if k.startswith(f"{model}.{arm}.")}, seeds)
                per_arm[arm] = vals
            for score in self.scores_of(model):
                base = float(np.mean(per_arm[REAL][score]))
                for arm in arms:
                    value = float(np.mean(per_arm[arm][score]))
                    out[f"{FAMILY}.{model}.{score}.{arm}"] = value
                    if arm != REAL:
                        out[f"{FAMILY}.{model}.{score}.gain.{arm}"] = value - base
        return out

    def per_seed(self, stats: dict[str, np.ndarray]) -> dict[str, list[float]]:
        n_seeds = len(self.settings.seeds)
        rows = [self.compute(stats, np.array([k])) for k in range(n_seeds)]
        return {name: [r[name] for r in rows] for name in rows[0]}

    # ------------------------------------------------------------------ uncertainty
    def row_patients(self) -> list[str]:
        """Patient ids of the stats rows (the real test samples), for resampling."""
        self.stats()
        return list(self._info["test_patients"])

    def confidence_intervals(self, stats: dict[str, np.ndarray], patient_ids: list[str] | None = None, *,
                             n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float | None, float | None]]:
        """Percentile CIs from a two-level bootstrap: test patients and training seeds, both with replacement."""
        groups = patient_groups(self.row_patients())
        rng = np.random.default_rng([seed, 11])
        n_seeds = len(self.settings.seeds)
        draws: dict[str, list[float]] = {}
        for _ in tqdm(range(n_boot), desc="downstream: bootstrap", leave=False):
            rows = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
            cols = rng.integers(0, n_seeds, n_seeds)
            for name, value in self.compute({k: v[rows] for k, v in stats.items()}, cols).items():
                draws.setdefault(name, []).append(value)
        tail = 100 * (1 - level) / 2
        out = {}
        for name, values in draws.items():
            arr = np.asarray(values)
            arr = arr[np.isfinite(arr)]
            out[name] = tuple(float(x) for x in np.percentile(arr, [tail, 100 - tail])) if arr.size else (None, None)
        self._cis = out
        return out

    def paired_tests(self, stats: dict[str, np.ndarray], n_perm: int, seed: int = 0) -> dict[str, dict[str, float]]:
        """Approximate randomisation per arm vs `real`: swap the two arms' rows per test patient (all
        seeds together), p = (#{|perm gain| >= |observed|} + 1) / (n_perm + 1); Holm over arms x scores per model."""
        groups = patient_groups(self.row_patients())
        observed = self.compute(stats)
        rng = np.random.default_rng([seed, 13])
        exceed = {n: 0 for n in observed if ".gain." in n}
        for _ in tqdm(range(n_perm), desc="downstream: paired test", leave=False):
            flip = rng.random(len(groups)) < 0.5
            rows = np.concatenate([groups[g] for g in np.flatnonzero(flip)]) if flip.any() else np.zeros(0, np.int64)
            for arm in self.arms[1:]:
                swapped = dict(stats)
                for model in self.models:
                    for key in [k for k in stats if k.startswith(f"{model}.{arm}.")]:
                        base_key = key.replace(f"{model}.{arm}.", f"{model}.{REAL}.", 1)
                        a, b = stats[base_key].copy(), stats[key].copy()
                        a[rows], b[rows] = stats[key][rows], stats[base_key][rows]
                        swapped[base_key], swapped[key] = a, b
                values = self.compute(swapped, only=arm)
                for n in exceed:
                    if n.endswith(f".gain.{arm}") and n in values and abs(values[n]) >= abs(observed[n]) - 1e-12:
                        exceed[n] += 1
        tests = {n: {"gain": observed[n], "p_value": (c + 1) / (n_perm + 1)} for n, c in exceed.items()}
        for model in self.models:
            names = sorted((n for n in tests if n.startswith(f"{FAMILY}.{model}.")), key=lambda n: tests[n]["p_value"])
            running = 0.0
            for rank, n in enumerate(names):  # Holm step-down
                running = max(running, min(1.0, (len(names) - rank) * tests[n]["p_value"]))
                tests[n]["p_holm"] = running
        return tests

    # ------------------------------------------------------------------ report detail
    def extras(self) -> dict[str, Any]:
        stats = self.stats()
        cis = self._cis if self._cis is not None else self.confidence_intervals(stats, n_boot=self.settings.n_boot, seed=self.ctx.seed)
        values = self.compute(stats)
        curve = {}
        for model in self.models:
            points = sorted((ratio_of(a), a) for a in self.model_arms[model] if ratio_of(a) is not None)
            if len(points) < 2:
                continue
            for score in self.scores_of(model):
                names = [f"{FAMILY}.{model}.{score}.{a}" for _, a in points]
                curve[f"{model}.{score}"] = {"ratio": [r for r, _ in points], "arm": [a for _, a in points],
                                             "value": [values[n] for n in names],
                                             "ci_low": [cis.get(n, (None, None))[0] for n in names],
                                             "ci_high": [cis.get(n, (None, None))[1] for n in names]}
        return {"settings": self.settings.as_dict(), "arms": self.model_arms, **self._info,
                "values": {n: {"value": v, "ci_low": cis.get(n, (None, None))[0], "ci_high": cis.get(n, (None, None))[1]}
                           for n, v in values.items()},
                "per_seed": self.per_seed(stats), "paired": self.paired_tests(stats, self.settings.n_perm, self.ctx.seed),
                "curve": curve, "ci": "two-level percentile bootstrap over test patients and training seeds",
                "row_unit": "real test sample (stats rows are test samples, not the generated pairs)"}
