"""The training set of every arm, per seed, as row indices into a real pool and the synthetic pairs.

Arms (each with the same optimiser steps and batch size, so only the data differ):

    real         R real pairs drawn (per seed) from the train split      (the baseline)
    real+synth   the same R real pairs + all K generated pairs            (augmentation)
    synth_only   all K generated pairs                                    (train-synthetic-test-real)
    mix25 ...    R pairs in all, a share rho of them generated: the first (1-rho)R of the seed's
                 real pairs + rho*R generated pairs drawn per seed        (the utility curve)

Everything is a pure function of (pool sizes, R, arms, ratios, seed)::

    plan = plan_arms(n_real_pool=4000, n_synth=500, real_train=300, arms=ARMS, ratios=(0.5,), seed=0)
    plan["real+synth"]  # (real row indices, synthetic row indices)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from PIL import Image

REAL, AUGMENTED, SYNTH_ONLY = "real", "real+synth", "synth_only"
ARMS = (REAL, AUGMENTED, SYNTH_ONLY)


def mix_name(ratio: float) -> str:
    """'mix25' for a synthetic share of 0.25."""
    return f"mix{round(100 * ratio)}"


def arm_names(arms: tuple[str, ...] | list[str], ratios: tuple[float, ...] | list[float]) -> list[str]:
    """All arms in a fixed order, the `real` baseline first; unknown arm names are an error."""
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown downstream arm(s) {unknown}; known: {list(ARMS)} (plus a ratio sweep via `ratios`)")
    bad = [r for r in ratios if not 0 < float(r) < 1]
    if bad:
        raise ValueError(f"mixing ratios must lie strictly between 0 and 1 (0 is `real`, 1 is `synth_only`), got {bad}")
    return [REAL] + [a for a in ARMS[1:] if a in arms] + [mix_name(float(r)) for r in ratios]


def ratio_of(arm: str) -> float | None:
    """The synthetic share of an arm at fixed total size (None for real+synth and synth_only)."""
    if arm == REAL:
        return 0.0
    return int(arm[3:]) / 100 if arm.startswith("mix") else None


def plan_arms(n_real_pool: int, n_synth: int, real_train: int, arms, ratios, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{arm: (real indices into the real pool, synthetic indices)} for one seed."""
    if real_train > n_real_pool:
        raise ValueError(f"downstream: real_train={real_train} but the train split has only {n_real_pool} complete pairs")
    rng = np.random.default_rng([seed, 7])
    real = np.sort(rng.choice(n_real_pool, size=real_train, replace=False))
    real = real[rng.permutation(real_train)]  # the mix arms keep a prefix: a random subset of the same R
    none, every = np.zeros(0, np.int64), np.arange(n_synth)
    plan = {}
    for arm in arm_names(arms, ratios):
        if arm == REAL:
            plan[arm] = (real, none)
        elif arm == AUGMENTED:
            plan[arm] = (real, every)
        elif arm == SYNTH_ONLY:
            plan[arm] = (none, every)
        else:
            n_s = round(ratio_of(arm) * real_train)
            if n_s > n_synth:
                raise ValueError(f"downstream arm {arm} needs {n_s} generated pairs but only {n_synth} were generated: "
                                 f"raise the task's n or lower real_train")
            plan[arm] = (real[:real_train - n_s], np.sort(rng.choice(n_synth, size=n_s, replace=False)))
    if n_synth == 0 and any(len(s) for _, s in plan.values()):
        raise ValueError("downstream: no generated pairs to train on")
    return plan


def image_tensor(images: list[Image.Image], size: int, mode: str) -> torch.Tensor:
    """PIL images -> uint8 (n, C, size, size) in the real data's mode ('L' or 'RGB'), bilinear resize."""
    arrays = []
    for im in images:
        im = im.convert(mode)
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    channels = 1 if mode == "L" else 3
    return torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, channels, size, size, dtype=torch.uint8)


# ----------------------------------------------------------------------------- the experiment's settings

@dataclass(frozen=True)
class Settings:
    """The downstream experiment, from the task's ``options.downstream`` (and ``options.quick.downstream``
    under --quick). Every arm trains each model for ``steps[model]`` optimiser steps of ``batch_size``."""

    real_train: int = 300  # R: real pairs per arm (drawn per seed from the train split)
    test_n: int = 300  # real test pairs scored (fixed hash order, the same for every model and run)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # training seeds per arm (paired across arms)
    arms: tuple[str, ...] = (AUGMENTED, SYNTH_ONLY)  # besides `real`, always trained
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75)  # synthetic shares of the fixed-size mix arms
    models: tuple[str, ...] = ("classifier", "captioner")  # registered downstream models
    sweep_models: tuple[str, ...] = ("classifier",)  # models that also train the mix arms (the utility curve)
    steps: dict = field(default_factory=lambda: {"classifier": 300, "captioner": 400})
    batch_size: int = 32
    image_size: int = 32  # images are resized to this for every downstream model
    meteor: bool = True  # METEOR 1.5 (Java) for the captioner; off saves the ~20 s JVM start
    min_support: int = 5  # classifier labels need this many test positives and negatives
    n_boot: int = 1000  # two-level bootstrap resamples (used when the runner does not pass its own)
    n_perm: int = 1000  # permutations of the paired test per arm
    workers: int = 2  # trainings run in this many single-threaded processes (1: in-process)
    model_options: dict = field(default_factory=dict)  # {model name: options for its factory}

    @classmethod
    def from_options(cls, task_options: dict | None, quick: bool = False, source: str = "task") -> "Settings":
        task_options = task_options or {}
        merged = dict(task_options.get("downstream") or {})
        if quick:
            merged.update((task_options.get("quick") or {}).get("downstream") or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"{source}: unknown options.downstream key(s) {unknown}; known: {sorted(known)}")
        for key in ("seeds", "arms", "ratios", "models", "sweep_models"):
            if key in merged:
                merged[key] = tuple(merged[key])
        settings = cls(**merged)
        arm_names(settings.arms, settings.ratios)  # validates arms and ratios
        missing = [m for m in settings.models if m not in settings.steps]
        if missing or not settings.seeds:
            raise ValueError(f"{source}: options.downstream needs steps for every model (missing: {missing}) and ≥1 seed")
        return settings

    def budget(self, model: str) -> dict[str, int]:
        return {"steps": int(self.steps[model]), "batch_size": int(self.batch_size)}

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"R={self.real_train} real train pairs per seed, test n={self.test_n}, seeds={list(self.seeds)}, "
                f"arms={[REAL, *self.arms]}, mix ratios={list(self.ratios)} at fixed size R ({', '.join(self.sweep_models)}), image {self.image_size}px, "
                f"budget {', '.join(f'{m}: {self.steps[m]} steps' for m in self.models)} x batch {self.batch_size}; "
                "text: pycocoevalcap BLEU (PTB tokens)" + (" + METEOR 1.5" if self.meteor else "") +
                "; CE-F1 micro (pos); classifier labels report-derived (uncertain=positive)")
