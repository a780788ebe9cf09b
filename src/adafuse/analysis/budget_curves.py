"""Accuracy-vs-compute curves of one checkpoint at several budgets (``eval/budget_curve.json`` written by
``adafuse eval --budgets``), drawn next to runs trained at fixed FLOPs weights (paper Fig. 2 style).

:func:`load_budget_curve` reads and checks the file (errors name the file and the key);
:func:`plot_budget_curves` draws GFLOPs per video (x) vs top-1 (y): one line per checkpoint through its
operating points (labelled with the budget), and one marker per other run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

from adafuse.analysis import plots
from adafuse.analysis.runs import RunFormatError

CURVE_FILE = Path("eval") / "budget_curve.json"
POINT_KEYS = ("budget", "gflops_per_video", "top1")
LINE_COLORS = ("#5b4a9e", "#2e7d32", "#c06a00", "#1d5ca3", "#b3261e", "#6b6b6b")


def load_budget_curve(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``run_dir/eval/budget_curve.json`` as a dict (points sorted by GFLOPs), or None when absent."""
    path = Path(run_dir) / CURVE_FILE
    if not path.is_file():
        return None
    try:
        curve = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(curve, dict) or not isinstance(curve.get("points"), list) or not curve["points"]:
        raise RunFormatError(f"{path}: expected an object with a non-empty list 'points'")
    for i, p in enumerate(curve["points"]):
        for key in POINT_KEYS:
            value = p.get(key) if isinstance(p, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise RunFormatError(f"{path}: points[{i}].{key} must be a finite number, got {value!r}")
    curve["points"] = sorted(curve["points"], key=lambda p: p["gflops_per_video"])
    return curve


def plot_budget_curves(curves: Mapping[str, Mapping[str, Any]], others: Sequence[Mapping[str, Any]],
                       path: str | os.PathLike) -> Path:
    """GFLOPs per video vs top-1: ``curves`` (run name -> budget curve) as lines (a star at the checkpoint's own
    policy when the curve has ``own_policy``), ``others`` (points of
    :func:`adafuse.analysis.stats.comparison_points`: ``run, gflops, top1, adaptive``) as square markers."""
    with matplotlib.rc_context(plots.STYLE):
        fig = plots._figure(9.0, 4.8)
        ax = fig.subplots()
        families = [plots.method_family(str(c.get("arch", "")), adaptive=True) for c in curves.values()]
        for i, (name, curve) in enumerate(curves.items()):
            # the method's colour (as in every figure) unless two curves share it
            color = (plots.METHOD_COLORS[families[i]] if families.count(families[i]) == 1
                     else LINE_COLORS[i % len(LINE_COLORS)])
            xs = [p["gflops_per_video"] for p in curve["points"]]
            ys = [p["top1"] for p in curve["points"]]
            ax.plot(xs, ys, "-o", color=color, markersize=5, linewidth=1.6, label=f"{name} (one checkpoint)",
                    zorder=3)
            own = curve.get("own_policy")
            if isinstance(own, dict) and {"gflops_per_video", "top1"} <= set(own):
                ax.scatter(own["gflops_per_video"], own["top1"], s=90, marker="*", color=color, zorder=5)
            for p in curve["points"]:
                ax.annotate(f"{p['budget']:.2g}", (p["gflops_per_video"], p["top1"]), textcoords="offset points",
                            xytext=(4, 5), fontsize=7.5, color=color)
        for p in others:
            color = plots.method_color(str(p.get("arch", "")), bool(p.get("adaptive")))
            ax.scatter(p["gflops"], p["top1"], s=46, marker="s", color=color, alpha=0.75, zorder=4)
            ax.annotate(plots._short(str(p["run"]), 24), (p["gflops"], p["top1"]), textcoords="offset points",
                        xytext=(5, -10), fontsize=7.5)
        if others:
            ax.scatter([], [], s=46, marker="s", color="#555555", alpha=0.75, label="separate runs (method colours)")
        ax.grid(True)
        ax.set_axisbelow(True)
        ax.set_xlabel("GFLOPs per video (mean over evaluated videos)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title("Accuracy vs computation at compute budgets (labels: budget)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the data
    return plots._save(fig, path)
