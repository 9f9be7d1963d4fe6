"""Plots for reports and leaderboards: matplotlib figures returned as PNG data URIs.

Every function takes plain numbers and returns ``"data:image/png;base64,..."`` (or None when there
is nothing to plot), so the HTML stays one self-contained file.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Sequence

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110})
    return plt


def to_data_uri(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _err(values: Sequence[float], lows: Sequence[float | None], highs: Sequence[float | None]):
    """Asymmetric error bars; zero where a CI is missing."""
    below = [v - lo if _finite(lo) else 0.0 for v, lo in zip(values, lows)]
    above = [hi - v if _finite(hi) else 0.0 for v, hi in zip(values, highs)]
    return [[max(b, 0.0) for b in below], [max(a, 0.0) for a in above]]


def per_label_bars(labels: list[str], values: list[float], lows: list[float | None], highs: list[float | None],
                   *, title: str, xlabel: str = "F1") -> str | None:
    """Horizontal bars per label with 95 % CIs (e.g. per-label clinical F1)."""
    keep = [i for i, v in enumerate(values) if _finite(v)]
    if not keep:
        return None
    labels = [labels[i] for i in keep]
    values = [values[i] for i in keep]
    lows, highs = [lows[i] for i in keep], [highs[i] for i in keep]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.28 * len(labels) + 0.9))
    y = list(range(len(labels)))[::-1]
    ax.barh(y, values, color=PALETTE[0], alpha=0.8, height=0.6)
    ax.errorbar(values, y, xerr=_err(values, lows, highs), fmt="none", ecolor="#111827", capsize=2.5, lw=1)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, max(1.0, max(h for h in highs + values if _finite(h))))
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left", fontsize=10)
    ax.grid(axis="y", visible=False)
    return to_data_uri(fig)


def fid_with_floor(rows: list[dict]) -> str | None:
    """FID per extractor beside its real-vs-real floor. rows: {extractor, fid, fid_ci, floor, floor_ci}."""
    rows = [r for r in rows if _finite(r.get("fid"))]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(rows) + 1.1))
    y = list(range(len(rows)))[::-1]
    fid = [r["fid"] for r in rows]
    ax.barh([v + 0.18 for v in y], fid, height=0.34, color=PALETTE[1], alpha=0.85, label="FID (generated vs real)")
    ax.errorbar(fid, [v + 0.18 for v in y], xerr=_err(fid, [r["fid_ci"][0] for r in rows], [r["fid_ci"][1] for r in rows]),
                fmt="none", ecolor="#111827", capsize=2.5, lw=1)
    floors = [r["floor"] if _finite(r.get("floor")) else 0.0 for r in rows]
    if any(_finite(r.get("floor")) for r in rows):
        ax.barh([v - 0.18 for v in y], floors, height=0.34, color=PALETTE[6], alpha=0.6, label="floor (real vs real)")
        ax.errorbar(floors, [v - 0.18 for v in y], xerr=_err(floors, [r["floor_ci"][0] for r in rows], [r["floor_ci"][1] for r in rows]),
                    fmt="none", ecolor="#111827", capsize=2.5, lw=1)
    ax.set_yticks(y, [r["extractor"] for r in rows])
    ax.set_xlabel("FID (lower is better)")
    ax.set_title("Image fidelity and its real-vs-real floor", loc="left", fontsize=10)
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    ax.grid(axis="y", visible=False)
    return to_data_uri(fig)


def _label(text: str, width: int = 32) -> str:
    """A legend label: control characters as spaces, cut to ``width``."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= width else text[:width - 1] + "…"


def history(series: dict[str, list[tuple[str, float, float | None, float | None, str]]], *, metric: str,
            higher_is_better: bool | None) -> str | None:
    """One line per model: (x label, value, ci_low, ci_high, when) points in time order."""
    series = {k: [p for p in v if _finite(p[1])] for k, v in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    order: list[str] = []  # x positions: every (when, label) in time order across models
    for points in series.values():
        for p in points:
            if (p[4], p[0]) not in order:
                order.append((p[4], p[0]))
    order.sort()
    pos = {key: i for i, key in enumerate(order)}
    for color, (model, points) in zip(PALETTE * 4, sorted(series.items())):
        xs = [pos[(p[4], p[0])] for p in points]
        vals = [p[1] for p in points]
        ax.errorbar(xs, vals, yerr=_err(vals, [p[2] for p in points], [p[3] for p in points]), marker="o", ms=4,
                    lw=1.5, capsize=2.5, color=color, label=_label(model))
    ax.set_xticks(range(len(order)), [label for _, label in order], rotation=30, ha="right", fontsize=7)
    arrow = "" if higher_is_better is None else (" ↑" if higher_is_better else " ↓")
    ax.set_ylabel(metric + arrow)
    ax.set_title(f"History of {metric} per model", loc="left", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_data_uri(fig)
