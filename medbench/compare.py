"""Compare two runs metric by metric, and gate CI on significant regressions.

    medbench compare BASELINE CANDIDATE [--gate gate.yaml] [--junit FILE] [--store S]

Each side is a run folder (or its run.json) or a store query, the newest matching run:
``store:model=oracle,task=joint_pairs`` / ``store:model=X,task=T,commit=REF`` (keys: model, task,
dataset, seed, commit — a hash prefix or a git ref resolved with ``git rev-parse`` — and run_id).

Differences are paired: each family's stored per-sample statistics are aligned by sample id over
the ids both runs scored, and `medbench.stats.paired.paired_compare` gives Δ = candidate − baseline,
its patient-bootstrap CI and a paired permutation p-value. A family without shared statistics falls
back to an unpaired normal approximation from the two runs' CIs (marked "unpaired").

The gate (YAML, a list of ``{metric, direction, tolerance, alpha, optional}``; ``metric`` may be a glob)
fails a metric only when it got worse by more than ``tolerance`` AND significantly: p < alpha and
the CI of the difference lies entirely beyond −tolerance. A gated metric that the candidate lacks,
that is NaN, or that got worse beyond tolerance with nothing to test it on, also fails: a gate never
passes what it cannot check. Exit status 1 when any gated metric fails, else 0.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from medbench.runrecord import load_record
from medbench.store import DEFAULT_STORE, Store

QUERY_KEYS = ("model", "task", "dataset", "seed", "commit", "run_id")


# -- the two sides -----------------------------------------------------------------------------

@dataclass
class Side:
    label: str  # how the side is named in tables
    record: dict[str, Any]
    run_dir: Path | None  # None when only the stored record is at hand (no stats: unpaired)


def parse_query(text: str) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in QUERY_KEYS:
            raise ValueError(f"store query {text!r}: {part!r} is not KEY=VALUE with KEY one of {', '.join(QUERY_KEYS)}")
        query[key.strip()] = int(value) if key.strip() == "seed" else value.strip()
    if not query:
        raise ValueError(f"store query {text!r} is empty (e.g. store:model=oracle,task=joint_pairs)")
    return query


def _git_rev(ref: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def resolve_side(spec: str, store_path: str | Path = DEFAULT_STORE) -> Side:
    if not spec.startswith("store:"):
        path = Path(spec)
        record = load_record(path)
        return Side(f"{record['model']} ({record['run_id']})", record, path if path.is_dir() else path.parent)
    if not Path(store_path).exists():
        raise FileNotFoundError(f"{spec}: the store {store_path} does not exist (pass --store PATH)")
    query = parse_query(spec[len("store:"):])
    store = Store(store_path, readonly=True)
    if "run_id" in query:
        row = store.get(query.pop("run_id"))
        row = row if row and all(row.get(k) == v for k, v in query.items() if k != "commit") else None
    else:
        row = store.latest(**query)
        if row is None and "commit" in query and (full := _git_rev(query["commit"])):
            row = store.latest(**dict(query, commit=full))
    if row is None:
        raise LookupError(f"{spec}: no run in {store_path} matches")
    run_dir = Path(row["run_dir"]) if row.get("run_dir") else None
    if run_dir is not None and not (run_dir / "run.json").exists():
        run_dir = None
    return Side(f"{row['model']} ({row['run_id']})", row["record"], run_dir)


# -- differences -------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    family: str
    higher_is_better: bool | None
    a: float | None
    b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int | None  # samples paired (or the smaller n when unpaired)
    method: str  # "paired" | "unpaired" | "missing"
    note: str = ""


def _family(name: str, *metrics: dict[str, Any]) -> str:
    for m in metrics:
        if m and m.get("family"):
            return m["family"]
    return ".".join(name.split("@")[0].split(".")[:2])


def paired_family(a_dir: Path, b_dir: Path, family: str, loader: Callable, *, n_perm: int, n_boot: int,
                  seed: int) -> tuple[dict[str, Any], int]:
    """Paired results of one family over the sample ids both runs scored (rows aligned by id)."""
    from medbench.stats.paired import paired_compare

    ma, sa, ids_a, patients_a = loader(a_dir, family)
    mb, sb, ids_b, _ = loader(b_dir, family)
    try:
        for stats, ids, where in ((sa, ids_a, a_dir), (sb, ids_b, b_dir)):
            for key, value in stats.items():
                if len(value) != len(ids):
                    raise ValueError(f"{where}/stats/{family}.safetensors: {key!r} has {len(value)} rows for {len(ids)} samples")
        where_b = {sid: k for k, sid in enumerate(ids_b)}
        rows_a = [k for k, sid in enumerate(ids_a) if sid in where_b]
        if not rows_a:
            raise ValueError("the runs share no sample ids")
        rows_b = [where_b[ids_a[k]] for k in rows_a]
        a = {k: v[rows_a] for k, v in sa.items()}
        b = {k: v[rows_b] for k, v in sb.items()}
        cap = getattr(ma, "max_bootstrap", None)  # costly families (image.fidelity) cap resamples as in scoring
        n_perm, n_boot = (min(n_perm, cap), min(n_boot, cap)) if cap else (n_perm, n_boot)
        results = paired_compare(ma.compute, a, b, [patients_a[k] for k in rows_a], n_perm=n_perm, n_boot=n_boot, seed=seed,
                                 weighted_compute=getattr(ma, "weighted_compute", None))
    finally:
        ma.close()
        mb.close()
    return results, len(rows_a)


def _unpaired(ma: dict[str, Any], mb: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """CI and p of b − a from the two runs' own CIs (normal approximation, independent samples)."""
    diff = mb["value"] - ma["value"]
    if None in (ma.get("ci_low"), ma.get("ci_high"), mb.get("ci_low"), mb.get("ci_high")):
        return None, None, None
    se = math.hypot((ma["ci_high"] - ma["ci_low"]) / 3.92, (mb["ci_high"] - mb["ci_low"]) / 3.92)
    if not math.isfinite(se) or not math.isfinite(diff):
        return None, None, None
    if se == 0:
        return diff, diff, (1.0 if diff == 0 else 0.0)
    return diff - 1.96 * se, diff + 1.96 * se, math.erfc(abs(diff) / se / math.sqrt(2))


def compare_runs(a: Side, b: Side, *, n_perm: int = 1000, n_boot: int = 1000, seed: int = 0,
                 loader: Callable | None = None) -> list[Row]:
    """One Row per metric in either run. ``loader`` defaults to `medbench.scoring.load_family`."""
    if loader is None:
        from medbench.scoring import load_family as loader
    ma_all, mb_all = a.record.get("metrics", {}), b.record.get("metrics", {})
    names = sorted(set(ma_all) | set(mb_all))
    by_family: dict[str, list[str]] = {}
    for name in names:
        by_family.setdefault(_family(name, ma_all.get(name), mb_all.get(name)), []).append(name)
    rows = []
    for family, members in by_family.items():
        paired, n_pairs, note = {}, 0, ""
        if a.run_dir is not None and b.run_dir is not None and any(n in ma_all and n in mb_all for n in members):
            try:
                paired, n_pairs = paired_family(a.run_dir, b.run_dir, family, loader, n_perm=n_perm, n_boot=n_boot, seed=seed)
            except Exception as e:  # no stats, another family version, no shared samples: fall back, say why
                note = f"unpaired: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        elif a.run_dir is None or b.run_dir is None:
            note = "unpaired: a run folder is not at hand (only its stored record)"
        for name in members:
            ma, mb = ma_all.get(name), mb_all.get(name)
            hib = (mb or ma or {}).get("higher_is_better")
            if ma is None or mb is None:
                rows.append(Row(name, family, hib, ma and ma["value"], mb and mb["value"], None, None, None, None, None,
                                "missing", "only in the candidate" if ma is None else "missing in the candidate"))
            elif name in paired:
                r = paired[name]
                rows.append(Row(name, family, hib, ma["value"], mb["value"], r.diff, r.ci_low, r.ci_high, r.p_value, n_pairs, "paired"))
            else:
                lo, hi, p = _unpaired(ma, mb)
                diff = None if ma["value"] is None or mb["value"] is None else mb["value"] - ma["value"]
                rows.append(Row(name, family, hib, ma["value"], mb["value"], diff, lo, hi, p, min(ma.get("n") or 0, mb.get("n") or 0),
                                "unpaired", note or f"unpaired: family {family!r} has no paired statistic {name!r}"))
    return rows


# -- the gate ----------------------------------------------------------------------------------

@dataclass
class GateRule:
    metric: str  # a name or a glob
    direction: str | None  # "higher" | "lower" | None (from the record)
    tolerance: float = 0.0
    alpha: float = 0.05
    optional: bool = False  # True: a metric in neither run is skipped instead of failing (typo guard off)


@dataclass
class GateResult:
    metric: str
    status: str  # "pass" | "fail" | "skipped"
    message: str


def load_gate(path: str | Path) -> list[GateRule]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the gate file ({e})") from e
    if isinstance(data, dict) and "gate" in data:
        data = data["gate"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: a gate file is a non-empty list of {{metric, direction, tolerance, alpha}}")
    rules, problems = [], []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
            problems.append(f"entry {i}: needs a 'metric' name")
            continue
        unknown = set(item) - {"metric", "direction", "tolerance", "alpha", "optional"}
        direction, tol, alpha = item.get("direction"), item.get("tolerance", 0), item.get("alpha", 0.05)
        if unknown:
            problems.append(f"entry {i} ({item['metric']}): unknown key(s) {', '.join(sorted(unknown))}")
        if direction not in (None, "higher", "lower"):
            problems.append(f"entry {i} ({item['metric']}): direction must be 'higher' or 'lower', got {direction!r}")
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol < 0:
            problems.append(f"entry {i} ({item['metric']}): tolerance must be a number ≥ 0, got {tol!r}")
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 1:
            problems.append(f"entry {i} ({item['metric']}): alpha must be in (0, 1), got {alpha!r}")
        if not isinstance(item.get("optional", False), bool):
            problems.append(f"entry {i} ({item['metric']}): optional must be true or false")
        if not problems:
            rules.append(GateRule(item["metric"], direction, float(tol), float(alpha), item.get("optional", False)))
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return rules


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def judge(row: Row, rule: GateRule) -> GateResult:
    if row.method == "missing":
        if row.b is None:
            return GateResult(row.name, "fail", f"{row.name}: gated metric is missing in the candidate")
        return GateResult(row.name, "skipped", f"{row.name}: not in the baseline (new metric); nothing to compare")
    higher = {"higher": True, "lower": False}.get(rule.direction or "", row.higher_is_better)
    if higher is None:
        return GateResult(row.name, "fail", f"{row.name}: no direction in the gate or the record")
    if not _finite(row.b):
        return GateResult(row.name, "fail", f"{row.name}: candidate value is {row.b} (not a finite number)")
    if not _finite(row.a) or not _finite(row.diff):
        return GateResult(row.name, "skipped", f"{row.name}: baseline value is {row.a}; nothing to compare")
    gain = row.diff if higher else -row.diff  # > 0: better
    gain_hi = (row.ci_high if higher else (None if row.ci_low is None else -row.ci_low))
    word = "higher" if higher else "lower"
    stats = f"Δ {row.diff:+.4g} [{_sg(row.ci_low)}, {_sg(row.ci_high)}], p = {_p(row.p_value)} ({row.method}, {word} is better)"
    if gain >= -rule.tolerance:
        return GateResult(row.name, "pass", f"{row.name}: not worse beyond tolerance {rule.tolerance:g}: {stats}")
    if row.p_value is None or gain_hi is None:
        return GateResult(row.name, "fail", f"{row.name}: worse beyond tolerance {rule.tolerance:g} and untestable "
                          f"(no per-sample statistics or CIs): {stats}")
    if row.p_value < rule.alpha and gain_hi < -rule.tolerance:
        return GateResult(row.name, "fail", f"{row.name}: significantly worse beyond tolerance {rule.tolerance:g} "
                          f"(p < {rule.alpha:g}, CI excludes the tolerance): {stats}")
    return GateResult(row.name, "pass", f"{row.name}: worse, but not significantly beyond tolerance "
                      f"{rule.tolerance:g} at alpha {rule.alpha:g}: {stats}")


def evaluate_gate(rows: list[Row], rules: list[GateRule]) -> list[GateResult]:
    """One result per (rule, matching metric); a rule that matches nothing fails."""
    results: dict[str, GateResult] = {}
    for rule in rules:
        matched = [r for r in rows if fnmatch.fnmatchcase(r.name, rule.metric)]
        if not matched:
            status = "skipped" if rule.optional else "fail"
            results[rule.metric] = GateResult(rule.metric, status, f"{rule.metric}: gated metric is in neither run"
                                              + (" (optional)" if rule.optional else " (a typo? mark it optional: true if expected)"))
        for row in matched:
            results[row.name] = judge(row, rule)  # a later, more specific rule overrides a glob
    return list(results.values())


def junit_xml(results: list[GateResult], suite: str = "medbench.gate") -> str:
    fails = sum(r.status == "fail" for r in results)
    skips = sum(r.status == "skipped" for r in results)
    root = ET.Element("testsuites", name="medbench", tests=str(len(results)), failures=str(fails))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(fails), errors="0", skipped=str(skips))
    for r in results:
        case = ET.SubElement(ts, "testcase", classname=suite, name=r.metric, time="0")
        if r.status == "fail":
            ET.SubElement(case, "failure", message=r.message, type="regression").text = r.message
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.message)
        else:
            ET.SubElement(case, "system-out").text = r.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- output ------------------------------------------------------------------------------------

def _sg(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:+.4g}"


def _v(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def format_p(p: float | None) -> str:
    """A p-value as compare and the leaderboard print it: 3 significant digits, '<0.001' below."""
    return "–" if p is None or not math.isfinite(p) else f"{p:.3g}" if p >= 0.001 else "<0.001"


_p = format_p


def markdown(a: Side, b: Side, rows: list[Row], gate: list[GateResult] | None = None, alpha: float = 0.05) -> str:
    from medbench.exports import md_cell

    verdicts = {g.metric: g.status for g in gate or []}
    lines = [f"**Baseline:** {md_cell(a.label)} · **Candidate:** {md_cell(b.label)}", "",
             "Δ = candidate − baseline with its 95 % paired bootstrap CI and a paired permutation p-value "
             f"(▲ better / ▼ worse at p < {alpha:g}).", "",
             "| metric | dir | baseline | candidate | Δ [95 % CI] | p | n | test | gate |",
             "|---|:-:|--:|--:|--:|--:|--:|---|---|"]
    for r in rows:
        arrow = "↑" if r.higher_is_better else "↓" if r.higher_is_better is not None else ""
        mark = ""
        if r.p_value is not None and r.p_value < alpha and _finite(r.diff) and r.diff != 0 and r.higher_is_better is not None:
            mark = " ▲" if (r.diff > 0) == r.higher_is_better else " ▼"
        delta = "–" if r.diff is None else f"{_sg(r.diff)} [{_sg(r.ci_low)}, {_sg(r.ci_high)}]{mark}"
        verdict = {"fail": "**FAIL**", "pass": "pass", "skipped": "skipped"}.get(verdicts.get(r.name, ""), "")
        lines.append(f"| `{r.name}` | {arrow} | {_v(r.a)} | {_v(r.b)} | {delta} | {_p(r.p_value)} | {r.n or '–'} | "
                     f"{r.method} | {verdict} |")
    notes = sorted({md_cell(f"{r.family}: {r.note}") for r in rows if r.note})
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def add_compare_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", help="run folder, run.json, or store:KEY=VALUE,... (latest match)")
    parser.add_argument("candidate", help="run folder, run.json, or store:KEY=VALUE,... (latest match)")
    parser.add_argument("--gate", type=Path, help="gate YAML: list of {metric, direction, tolerance, alpha}")
    parser.add_argument("--junit", type=Path, help="write the gate's verdicts as JUnit XML here")
    parser.add_argument("--markdown", type=Path, help="also write the Markdown table here (e.g. a PR comment)")
    parser.add_argument("--html", type=Path, help="write the side-by-side HTML page here (default: "
                        "<candidate run folder>/compare-vs-<baseline run id>.html when the candidate is a run folder)")
    parser.add_argument("--no-html", action="store_true", help="do not write the HTML page")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"store for store: queries (default {DEFAULT_STORE})")
    parser.add_argument("--n-perm", type=int, default=1000, help="permutations for p-values (default 1000)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of permutations and resamples")


def main_compare(args: argparse.Namespace, loader: Callable | None = None) -> int:
    """Print the table; with --gate return 1 when a gated metric regressed significantly, else 0."""
    try:
        a, b = resolve_side(args.baseline, args.store), resolve_side(args.candidate, args.store)
        rules = load_gate(args.gate) if args.gate else None
    except (OSError, LookupError, ValueError) as e:
        print(f"medbench compare: {e}", file=sys.stderr)
        return 2
    rows = compare_runs(a, b, n_perm=args.n_perm, n_boot=args.n_boot, seed=args.seed, loader=loader)
    results = evaluate_gate(rows, rules) if rules else None
    text = markdown(a, b, rows, results)
    if results is not None:
        failed = [r for r in results if r.status == "fail"]
        text += "\n" + (f"**Gate FAILED** ({len(failed)} of {len(results)} gated metrics):\n\n" + "\n".join(f"- {r.message}" for r in failed)
                        if failed else f"**Gate passed** ({len(results)} gated metrics).") + "\n"
        if args.junit:
            args.junit.parent.mkdir(parents=True, exist_ok=True)
            args.junit.write_text(junit_xml(results), encoding="utf-8")
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    if not getattr(args, "no_html", False):
        from medbench.compare_page import default_path, write_page

        page = getattr(args, "html", None) or default_path(a, b)
        if page is not None:
            print(f"html: {write_page(a, b, rows, results, page)}")
    return 1 if results and any(r.status == "fail" for r in results) else 0


class _CallableModule(type(sys)):
    """``medbench.compare(run_a, run_b)`` is the API call (medbench.api.compare) although
    ``medbench.compare`` is also this module: importing a submodule sets the package attribute of its
    name, so the module itself answers the call."""

    def __call__(self, run_a, run_b, **kwargs):
        from medbench.api import compare

        return compare(run_a, run_b, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
