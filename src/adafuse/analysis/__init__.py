"""Analysis of evaluated runs: policy/accuracy/compute statistics (numbers) and the report (figures + HTML).

* :mod:`adafuse.analysis.runs` loads run directories (``eval/predictions.jsonl``, ``eval/metrics.json``).
* :mod:`adafuse.analysis.stats` computes every number (plain dicts, JSON-ready).
* :mod:`adafuse.analysis.plots` draws them (matplotlib, Agg) - drawing only.
* :mod:`adafuse.analysis.report` assembles PNGs, ``report.json`` and one self-contained HTML page.
"""

from __future__ import annotations

from typing import Any

from adafuse.analysis.runs import RunData, RunFormatError, load_run, read_metrics, read_predictions
from adafuse.analysis.stats import (
    accuracy_stats,
    block_stats,
    budget_extremes,
    comparison_points,
    compute_stats,
    mix_from_ratios,
    policy_from_predictions,
    policy_mix,
    policy_stats_from_masks,
    run_stats,
    run_summary,
)


def __getattr__(name: str) -> Any:  # the report pulls in matplotlib: import it only when asked for
    if name in ("build_report", "ReportFiles"):
        from adafuse.analysis import report

        return getattr(report, name)
    raise AttributeError(f"module 'adafuse.analysis' has no attribute {name!r}")


__all__ = [
    "ReportFiles", "RunData", "RunFormatError", "accuracy_stats", "block_stats", "budget_extremes", "build_report",
    "comparison_points", "compute_stats", "load_run", "mix_from_ratios", "policy_from_predictions", "policy_mix",
    "policy_stats_from_masks", "read_metrics", "read_predictions", "run_stats", "run_summary",
]
