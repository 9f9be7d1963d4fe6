"""`pair:T2I+I2T`: a two-stage joint-pair baseline — the prompt is drawn by the first model, and that
image is reported by the second.

    medbench run --task joint_pairs --model pair:diffusers:/models/roentgen+transformers:/models/llava-rad \\
        --model-opt t2i.steps=50 --model-opt i2t.max_new_tokens=128
    medbench run --task joint_pairs --model pair:oracle+retrieval

Each half is any registered model spelled as for ``--model`` (``name`` or ``name:ARG``); the first must
answer report->image requests, the second image->report. Options go to a half by prefix: ``t2i.KEY=V``
to the first, ``i2t.KEY=V`` to the second, checked against that model's declared options;
``t2i.model_path=DIR`` / ``i2t.model_path=DIR`` stand in for ``--model-path``. The first half gets the
request's seed, the second a seed derived from it, so a pair is reproducible whatever the batch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from medbench.errors import UserError
from medbench.models.base import ModelContext
from medbench.options import Option, OptionError, resolve
from medbench.records import Output, Request

ROLES = {"t2i": "report->image", "i2t": "image->report"}


def split_pair(arg: str | None, known: set[str]) -> tuple[str, str]:
    """'A[:X]+B[:Y]' -> ('A[:X]', 'B[:Y]'), splitting at the one '+' with a registered model on each side."""
    example = "e.g. --model pair:diffusers:/models/sd+transformers:/models/vlm or --model pair:oracle+retrieval"
    if not arg:
        raise UserError(f"--model pair: needs two models joined by '+', {example}")
    cuts = [i for i, c in enumerate(arg) if c == "+"
            and arg[:i].partition(":")[0] in known and arg[i + 1:].partition(":")[0] in known]
    if len(cuts) != 1:
        why = "no '+' with a registered model on both sides" if not cuts else "several ways to split it at '+'"
        raise UserError(f"--model pair:{arg}: {why}; give two registered models ({', '.join(sorted(known))}) "
                        f"joined by '+', {example}")
    return arg[:cuts[0]], arg[cuts[0] + 1:]


def split_options(given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{'t2i.steps': 4, 'i2t.max_new_tokens': 8} -> {'t2i': {'steps': 4}, 'i2t': {'max_new_tokens': 8}}."""
    out: dict[str, dict[str, Any]] = {role: {} for role in ROLES}
    for key, value in given.items():
        if value is None:  # not set: the half's default applies
            continue
        role, dot, rest = key.partition(".")
        if not dot or role not in ROLES or not rest:
            raise OptionError(f"--model-opt {key}: options of a pair go to one half by prefix: t2i.KEY=V for the "
                              f"first model, i2t.KEY=V for the second")
        out[role][rest] = value
    return out


def prefixed(role: str, model: str, declared: tuple[Option, ...]) -> tuple[Option, ...]:
    """A half's declared options under its prefix, plus ROLE.model_path."""
    return (Option(f"{role}.model_path", Path, None, f"{role} half: its --model-path"),
            *(dataclasses.replace(o, name=f"{role}.{o.name}", help=f"{role} half ({model}): {o.help}") for o in declared))


def listed_options() -> tuple[Option, ...]:
    """For `medbench list --options pair`: the prefixed options of the diffusers (t2i.) and transformers (i2t.)
    adapters. What a given pair accepts is `pair_options(arg)` (the harness checks that one)."""
    from medbench.models import diffusers_model, transformers_model

    return prefixed("t2i", "diffusers", diffusers_model.OPTIONS) + prefixed("i2t", "transformers", transformers_model.OPTIONS)


def pair_options(arg: str | None) -> tuple[Option, ...]:
    """The prefixed options both halves of `pair:ARG` declare (what `--model-opt` accepts for it)."""
    from medbench.registry import registry

    reg = registry()
    halves = split_pair(arg, set(reg.names("models")) - {"pair"})
    out: tuple[Option, ...] = ()
    for role, text in zip(ROLES, halves):
        name = text.partition(":")[0]
        out += prefixed(role, name, reg.get("models", name).options)
    return out


def _half_seed(seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:i2t".encode()).digest()[:4], "little")


class PairModel:
    """prompt -> image (first model) -> report (second model)."""

    def __init__(self, ctx: ModelContext):
        from medbench.registry import registry

        if ctx.model_path is not None:
            raise UserError("--model-path is ambiguous for a pair: give each half its folder with "
                            "--model-opt t2i.model_path=DIR or --model-opt i2t.model_path=DIR")
        reg = registry()
        halves = split_pair(ctx.arg, set(reg.names("models")) - {"pair"})
        options = split_options(ctx.options)
        self.specs = dict(zip(ROLES, halves))
        self.halves = {role: self._build(reg, role, text, ctx, options[role]) for role, text in self.specs.items()}
        self.name = f"pair:{self.halves['t2i'].name}+{self.halves['i2t'].name}"

    @staticmethod
    def _build(reg, role: str, text: str, ctx: ModelContext, given: dict[str, Any]):
        name, _, arg = text.partition(":")
        spec = reg.get("models", name)
        kind = ROLES[role]
        if kind not in spec.kinds:
            raise UserError(f"--model pair:{ctx.arg}: the {role} half {name!r} does not answer {kind} requests "
                            f"(it answers {', '.join(spec.kinds)})")
        given = dict(given)
        model_path = given.pop("model_path", None)
        if spec.options:  # typed and checked here; the half's factory gets only what was set
            typed = resolve(spec.options, given, owner=f"model {name!r} (the {role} half of the pair)",
                            flag=f"--model-opt {role}.")
            given = {k: typed[k] for k in given}
        half = dataclasses.replace(ctx, arg=arg or None, options=given,
                                   model_path=Path(model_path).expanduser() if model_path else None)
        return spec.factory(half)

    @property
    def weights_sha256(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for model in self.halves.values():
            out.update(getattr(model, "weights_sha256", {}) or {})
        return out

    def identity(self, requests: list[Request]) -> dict[str, Any] | None:
        """The halves' content digests (models read from folders), so the run id follows the files."""
        parts = {role: m.identity(requests) for role, m in self.halves.items() if hasattr(m, "identity")}
        if not parts:
            return None
        digest = hashlib.sha256(json.dumps({r: p.get("sha256") for r, p in sorted(parts.items())}).encode()).hexdigest()
        return {"kind": "pair", "sha256": digest, "halves": parts}

    @property
    def settings(self) -> dict[str, Any]:
        return {"adapter": "pair", **{role: {"model": self.specs[role], "settings": getattr(m, "settings", None)}
                                      for role, m in self.halves.items()},
                "seeding": "t2i: the request's seed; i2t: sha256('<seed>:i2t')[:4] of it"}

    def generate(self, requests: list[Request]) -> list[Output]:
        from medbench.outputs import check_output

        bad = sorted({r.kind for r in requests} - {"prompt->pair"})
        if bad:
            raise ValueError(f"{self.name} answers prompt->pair requests only, not {bad}")
        draw = [Request("report->image", r.sample_id, r.seed, r.domain, report=r.prompt) for r in requests]
        images = [check_output(o, q).image for o, q in zip(self._answer("t2i", draw), draw)]
        read = [Request("image->report", r.sample_id, _half_seed(r.seed), r.domain, image=im)
                for r, im in zip(requests, images)]
        reports = [check_output(o, q).report for o, q in zip(self._answer("i2t", read), read)]
        return [Output(r.sample_id, image=im, report=text) for r, im, text in zip(requests, images, reports)]

    def _answer(self, role: str, requests: list[Request]) -> list[Output]:
        model = self.halves[role]
        if hasattr(model, "check"):
            model.check(requests)
        outs = model.generate(requests)
        if len(outs) != len(requests):
            raise ValueError(f"the {role} half {model.name!r} returned {len(outs)} outputs for {len(requests)} requests")
        return outs


def factory(ctx: ModelContext) -> PairModel:
    return PairModel(ctx)
