"""The side-by-side HTML page of ``medbench compare``: the paired table, the gate's verdicts, and shared
samples with the baseline's and the candidate's outputs next to the reference.

    medbench compare BASELINE CANDIDATE [--html PATH]
    # default: <candidate run folder>/compare-vs-<baseline run id>.html

Same rules as the run report: everything from the two run folders (samples.jsonl, or references.jsonl +
outputs/ for older ones), autoescaped, a CSP without scripts, images as data URIs. The samples shown
are those both runs scored, ordered by the largest per-sample difference in the score column closest
to the primary metric (medbench.report_samples), else by id.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

SHOWN = 8


def _entries(side) -> dict[str, dict[str, Any]]:
    from medbench.report import read_extras
    from medbench.report_samples import sample_entries

    if side.run_dir is None:
        return {}
    return {str(e.get("id")): e for e in sample_entries(side.run_dir, read_extras(side.run_dir, []), [])}


def shared_samples(a, b, limit: int = SHOWN) -> dict[str, Any]:
    """Cards for up to ``limit`` shared samples: (reference, baseline output, candidate output)."""
    from medbench.report import image_uri, request_kind
    from medbench.report_samples import number, card, default_worst_key, score_columns

    ea, eb = _entries(a), _entries(b)
    ids = [i for i in ea if i in eb]
    key = default_worst_key(b.record, [c for c in score_columns(list(eb.values())) if c in score_columns(list(ea.values()))])

    def delta(sid: str) -> float:
        va, vb = (number((e[sid].get("scores") or {}).get(key)) for e in (ea, eb))
        return -abs(vb - va) if va is not None and vb is not None else 0.0

    if key:
        ids.sort(key=delta)
    kind = request_kind(b.run_dir, b.record) if b.run_dir is not None else b.record.get("request")
    rows = []
    for sid in ids[:limit]:
        ca, cb = card(a.run_dir, ea[sid], kind, image_uri), card(b.run_dir, eb[sid], kind, image_uri)
        score = lambda e: number((e.get("scores") or {}).get(key)) if key else None  # noqa: E731
        rows.append({"id": sid, "baseline": ca, "candidate": cb, "a": score(ea[sid]), "b": score(eb[sid])})
    return {"rows": rows, "key": key, "shared": len(ids), "kind": kind}


def default_path(a, b) -> Path | None:
    if b.run_dir is None:
        return None
    return b.run_dir / f"compare-vs-{a.record.get('run_id', 'baseline')}.html"


def write_page(a, b, rows, gate, path: Path, alpha: float = 0.05) -> Path:
    """Render the page to ``path`` (parents created) and return it."""
    from medbench.compare import format_p
    from medbench.report import environment

    marks = {}
    for r in rows:
        if r.p_value is not None and r.p_value < alpha and r.diff not in (None, 0) and r.higher_is_better is not None:
            marks[r.name] = "better" if (r.diff > 0) == r.higher_is_better else "worse"
    html = environment().get_template("compare.html.j2").render(
        a=a, b=b, rows=rows, gate={g.metric: g for g in gate or []}, gate_list=gate, marks=marks, alpha=alpha,
        samples=shared_samples(a, b), format_p=format_p)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
