"""One checkpoint, any compute budget: a scalar shift of the policy and its calibration to a GFLOPs target.

**The knob.** Every learned :class:`~adafuse.models.fusion.AdaptiveFusion` decides per frame and channel
``argmax_a logit[a]`` over its actions. With a budget shift ``b`` it decides
``argmax_a (logit[a] - b * cost[a])`` instead, where ``cost[a]`` is the FLOPs engine's per-channel cost of
action ``a`` in that block, relative to the network's mean keep cost (:func:`action_costs`):
``skip`` 0, ``reuse`` ``F2 / C`` (the consumer still reads the channel), ``keep`` ``(F1 + F2) / C``.

Why this mapping. Spending at most ``B`` GFLOPs while keeping the decisions the policy prefers is, per
decision, the Lagrangian relaxation ``max_a logit[a] - b * cost[a]`` of that constraint, ``b >= 0`` being the
multiplier; it is also the form the training loss ``CE + lambda * G`` gives the policy (the FLOPs term is linear
in the masks with these per-action costs), so a shift acts like a change of the training lambda at test time.
Two consequences: for ``b1 < b2`` the chosen action's cost can only go down (add the two optimality
inequalities: ``(b2 - b1)(cost[a1] - cost[a2]) >= 0``), so every decision is monotone in ``b``, in both
directions; a negative ``b`` (a budget above the model's natural spend) moves decisions towards keep. And the
ends are the extremes: ``b -> +inf`` skips every gated channel (the model's *floor*), ``b -> -inf`` keeps every
channel (fraction 1). Decisions of later blocks also see the changed inputs of earlier ones, so the network's
cost is monotone in ``b`` in practice rather than by construction (checked by the tests on clips).
``b = 0`` leaves the logits untouched: the model's own policy, bit for bit.

**The calibration.** :func:`calibrate` finds by bisection the shift whose mean GFLOPs per video on given clips
is a fraction ``budget`` of the same model with every channel kept (``static_cost.total * T``), using the FLOPs
engine's dynamic cost of the argmax masks. A budget above 1 or below the floor (every gated channel skipped)
is an error. Calibrations can be stored in a checkpoint (``payload["budget_calibration"]``) and looked up.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from adafuse.flops import GIGA, StaticCost, dynamic_gflops, policy_ratios, static_cost
from adafuse.models.budget_conditioning import set_budget_target
from adafuse.models.fusion import ACTIONS, collect_masks, fusion_modules, policy_state
from adafuse.models.recognizer import unwrap

CALIBRATION_KEY = "budget_calibration"
DEFAULT_TOLERANCE = 0.005  # relative error on the GFLOPs at which the bisection stops
MAX_DOUBLINGS = 48


class BudgetError(ValueError):
    """A budget the model cannot reach (above 1, below its floor, or beyond what the shift reaches)."""


def action_costs(model: nn.Module, cost: StaticCost | None = None) -> list[Tensor]:
    """Per fusion module, the cost ``(A,)`` of each of its actions (in its ``actions`` order) for the shift.

    ``skip`` 0, ``reuse`` ``F2 / C``, ``keep`` ``(F1 + F2) / C`` of the block, divided by the network's
    channel-weighted mean keep cost ``sum(F1 + F2) / sum(C)`` (so ``b`` is in logit units per average
    channel). ``cost``: the model's static cost (default: counted at the model's crop size; the ratios do
    not depend on the size for the supported backbones)."""
    core = unwrap(model)
    cost = cost if cost is not None else static_cost(core)
    modules = fusion_modules(core)
    if len(modules) != len(cost.blocks):
        raise ValueError(f"static cost has {len(cost.blocks)} gated blocks, the model {len(modules)}")
    channels = sum(b.channels for b in cost.blocks)
    mean_keep = sum(b.f1 + b.f2 for b in cost.blocks) / channels if channels else 1.0
    mean_keep = mean_keep or 1.0
    out = []
    for f, b in zip(modules, cost.blocks, strict=True):
        per_action = [0.0, b.f2 / b.channels / mean_keep, (b.f1 + b.f2) / b.channels / mean_keep]
        out.append(torch.tensor([per_action[ACTIONS.index(a)] for a in f.actions], dtype=torch.float32))
    return out


def install_action_costs(model: nn.Module, cost: StaticCost | None = None) -> None:
    """Set every fusion module's ``budget_cost`` to :func:`action_costs` (idempotent)."""
    for f, c in zip(fusion_modules(unwrap(model)), action_costs(model, cost), strict=True):
        f.budget_cost = c.to(f.select.device)


def set_budget_shift(model: nn.Module, shift: float) -> None:
    """Apply the budget shift ``shift`` to every fusion module of ``model`` (0 = the model's own policy).

    The action costs are installed first (:func:`install_action_costs`), so the dense model, the sparse
    executor (it reads the fusion modules at every decision) and the ONNX export all use the same mapping."""
    if not math.isfinite(shift):
        raise BudgetError(f"budget shift must be finite, got {shift}")
    modules = fusion_modules(unwrap(model))
    if shift and not getattr(unwrap(model), "_budget_costs_installed", False):
        install_action_costs(model)  # always at the model's own crop size: one mapping per checkpoint
        unwrap(model)._budget_costs_installed = True
    for f in modules:
        f.budget_shift = float(shift)


def get_budget_shift(model: nn.Module) -> float:
    """The shift of the model's first fusion module (0.0 for a model without one)."""
    modules = fusion_modules(unwrap(model))
    return float(modules[0].budget_shift) if modules else 0.0


@contextlib.contextmanager
def budget_shift(model: nn.Module, shift: float) -> Iterator[None]:
    """``with budget_shift(model, b):`` applies ``b`` and restores the previous shifts on exit."""
    with policy_state(unwrap(model)):
        set_budget_shift(model, shift)
        yield


@dataclass
class ClipCost:
    """Cost of a model on clips at one shift: ``gflops_per_video`` (mean), ``fraction`` of the all-keep model,
    ``policy_ratios`` ``[skip, reuse, keep]``: :func:`adafuse.flops.policy_ratios` (share of all channel decisions)."""

    shift: float
    gflops_per_video: float
    fraction: float
    policy_ratios: list[float]


@torch.inference_mode()
def clip_cost(model: nn.Module, clips: Tensor, shift: float, cost: StaticCost | None = None,
              batch_size: int = 16) -> ClipCost:
    """Mean GFLOPs per video of ``model`` (argmax policy, dense forward) on ``clips`` ``(N, T, 3, H, W)`` at
    budget shift ``shift``, by the FLOPs engine's dynamic cost of its masks."""
    core = unwrap(model)
    if clips.dim() != 5 or clips.shape[0] == 0:
        raise ValueError(f"expected clips (N, T, 3, H, W) with N >= 1, got shape {tuple(clips.shape)}")
    cost = cost if cost is not None else static_cost(core, int(clips.shape[-1]))
    modules = fusion_modules(core)
    if not modules:
        raise BudgetError("the model has no adaptive fusion: its cost does not depend on a budget")
    n, t = clips.shape[:2]
    was_training = core.training
    device = modules[0].select.device
    core.eval()
    total, counts = 0.0, torch.zeros(len(modules), 3, dtype=torch.float64)  # per block: decisions per action
    try:
        with policy_state(core, decision="argmax"):
            set_budget_shift(core, shift)
            for i in range(0, n, batch_size):
                x = clips[i:i + batch_size].to(device)
                core(x)
                masks = collect_masks(core)
                total += float(dynamic_gflops(cost, masks, t).sum())
                for b, m in enumerate(masks):
                    counts[b] += m.double().sum(dim=(0, 1)).cpu()
    finally:
        core.train(was_training)
    per_video = total / n
    all_keep = cost.total * t / GIGA
    block_ratios = (counts / counts.sum(dim=1, keepdim=True)).tolist()
    return ClipCost(float(shift), per_video, per_video / all_keep,
                    policy_ratios(block_ratios, [b.channels for b in cost.blocks]))


@dataclass
class Calibration:
    """Result of :func:`calibrate`. ``budget``: requested fraction; ``shift``: the shift found; ``achieved``:
    the fraction it gives on the calibration clips; ``gflops_per_video``/``gflops_all_keep``: per video on
    those clips; ``floor``: the fraction with every gated channel skipped; ``natural``: the fraction at shift 0;
    ``num_clips``; ``evaluations``: forward passes over the clips; ``source``: where the clips came from."""

    budget: float
    shift: float
    achieved: float
    gflops_per_video: float
    gflops_all_keep: float
    floor: float
    natural: float
    num_clips: int
    evaluations: int
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def budget_range(model: nn.Module, cost: StaticCost) -> tuple[float, float]:
    """``(floor, 1.0)``: the fractions of the all-keep cost with every gated channel skipped and kept."""
    del model
    return cost.floor / cost.total, 1.0


def check_budget(budget: float, floor: float, where: str = "budget") -> None:
    """Raise :class:`BudgetError` for a budget outside ``[floor, 1]`` (a small rounding slack is allowed)."""
    if not math.isfinite(budget) or budget > 1.0 + 1e-9:
        raise BudgetError(f"{where} {budget:g} is above 1 (1 = every channel kept, the most the model can spend)")
    if budget < floor - 1e-9:
        raise BudgetError(f"{where} {budget:g} is below the model's floor {floor:.4f} (every gated channel skipped: "
                          "the ungated layers and policy networks alone cost that much)")


def calibrate(model: nn.Module, clips: Tensor, budget: float, cost: StaticCost | None = None,
              tolerance: float = DEFAULT_TOLERANCE, max_evaluations: int = 60, batch_size: int = 16,
              source: str = "") -> Calibration:
    """The shift at which ``model`` spends ``budget`` x the all-keep GFLOPs per video on ``clips``
    ``(N, T, 3, H, W)``, by bisection on the shift.

    The search brackets the target by doubling the shift away from 0 (positive if the model's own spend is
    above the budget, negative if below), then bisects until the relative GFLOPs error is at most
    ``tolerance`` or ``max_evaluations`` forward passes were spent; it returns the closest point seen.
    Raises :class:`BudgetError` for a budget above 1, below the floor, or beyond what the shift reaches
    (e.g. a reuse/keep model cannot skip). A budget-conditioned model (:mod:`adafuse.models.budget_conditioning`)
    is first given ``budget`` as its target (and keeps it): the shift then corrects what the conditioning misses."""
    core = unwrap(model)
    cost = cost if cost is not None else static_cost(core, int(clips.shape[-1]))
    floor, _ = budget_range(core, cost)
    check_budget(budget, floor)
    set_budget_target(core, budget)
    evaluations = 0
    seen: list[ClipCost] = []

    def measure(s: float) -> ClipCost:
        nonlocal evaluations
        evaluations += 1
        c = clip_cost(core, clips, s, cost, batch_size)
        seen.append(c)
        return c

    def close(c: ClipCost) -> bool:
        return abs(c.fraction - budget) <= tolerance * budget

    natural = measure(0.0)
    if not close(natural):
        sign = 1.0 if natural.fraction > budget else -1.0
        inner, outer = 0.0, sign
        c = measure(outer)
        doublings = 0
        while (c.fraction - budget) * sign > 0 and not close(c):
            if doublings >= MAX_DOUBLINGS or evaluations >= max_evaluations:
                reached = min(seen, key=lambda p: p.fraction) if sign > 0 else max(seen, key=lambda p: p.fraction)
                raise BudgetError(f"budget {budget:g} is beyond what the shift reaches on these clips "
                                  f"({reached.fraction:.4f} at shift {reached.shift:g}; floor {floor:.4f})")
            inner, outer = outer, outer * 2.0
            c = measure(outer)
            doublings += 1
        lo, hi = (inner, outer) if sign > 0 else (outer, inner)  # cost(lo) >= target >= cost(hi)
        while not close(seen[-1]) and evaluations < max_evaluations and hi - lo > 1e-12 * max(1.0, abs(lo)):
            mid = 0.5 * (lo + hi)
            c = measure(mid)
            if c.fraction > budget:
                lo = mid
            else:
                hi = mid
    best = min(seen, key=lambda p: (abs(p.fraction - budget), abs(p.shift)))
    all_keep = cost.total * clips.shape[1] / GIGA
    return Calibration(float(budget), best.shift, best.fraction, best.gflops_per_video, all_keep, floor,
                       natural.fraction, int(clips.shape[0]), evaluations, source)


def stored_calibrations(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The calibrations stored in a checkpoint payload (``[]`` if none)."""
    entries = payload.get(CALIBRATION_KEY) or []
    return [dict(e) for e in entries if isinstance(e, dict) and "budget" in e and "shift" in e]


def find_stored(payload: dict[str, Any], budget: float, size: int | None = None) -> dict[str, Any] | None:
    """The stored calibration for ``budget`` (and crop ``size`` if given), or None."""
    for e in stored_calibrations(payload):
        if abs(float(e["budget"]) - budget) <= 1e-9 and (size is None or e.get("size") in (None, size)):
            return e
    return None


def with_calibrations(payload: dict[str, Any], calibrations: Sequence[Calibration], size: int) -> dict[str, Any]:
    """A copy of ``payload`` whose stored calibrations include ``calibrations`` (replacing the same budget and
    size)."""
    new = [{**c.to_dict(), "size": int(size)} for c in calibrations]
    keep = [e for e in stored_calibrations(payload)
            if not any(abs(float(e["budget"]) - n["budget"]) <= 1e-9 and e.get("size") == size for n in new)]
    entries = sorted(keep + new, key=lambda e: -float(e["budget"]))
    return {**payload, CALIBRATION_KEY: entries}


__all__ = [
    "CALIBRATION_KEY", "BudgetError", "Calibration", "ClipCost", "action_costs", "budget_range",
    "budget_shift", "calibrate", "check_budget", "clip_cost", "find_stored", "get_budget_shift",
    "install_action_costs", "set_budget_shift", "stored_calibrations", "with_calibrations",
]
