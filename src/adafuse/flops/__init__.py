"""The one cost model of the project (docs/paper-and-code.md#flops), used by the loss, evaluation, reports
and benchmarks.

* :func:`static_cost` counts a model's per-frame FLOPs (thop 0.0.31 convention: conv = MACs, Linear =
  2 x MACs, BN = 2 x elements) and the full cost ``(F1, F2)`` of every gated block's producers/consumers.
* :func:`dynamic_gflops` turns policy masks ``(N*T, C, 3)`` into GFLOPs per video, differentiably, under a
  named convention (:data:`CONVENTIONS`): ``exact`` (default, what the sparse executor runs) or the released
  code's ``released_real`` / ``released_upb``.
* :func:`video_accounting` gives the per-video numbers written to ``predictions.jsonl``; :func:`policy_ratios` the
  one definition of a model's skip/reuse/keep mix (channel-weighted).
"""

from adafuse.flops.counting import (
    GIGA,
    RULES,
    ZERO_COST,
    BlockCost,
    StaticCost,
    cost_summary,
    count_flops,
    count_params,
    static_cost,
)
from adafuse.flops.dynamic import (
    CONVENTIONS,
    POLICY_RATIO_DEFINITION,
    block_usage,
    channel_usage,
    check_convention,
    dynamic_gflops,
    dynamic_gflops_per_frame,
    loss_gflops,
    policy_ratios,
    video_accounting,
)

__all__ = [
    "CONVENTIONS", "GIGA", "POLICY_RATIO_DEFINITION", "RULES", "ZERO_COST", "BlockCost", "StaticCost", "block_usage",
    "channel_usage", "check_convention", "cost_summary", "count_flops", "count_params", "dynamic_gflops",
    "dynamic_gflops_per_frame", "loss_gflops", "policy_ratios", "static_cost", "video_accounting",
]
