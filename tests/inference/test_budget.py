"""Inference-time compute budget: the shift leaves the model untouched at 0, moves the cost monotonically in both
directions, is calibrated to a GFLOPs fraction by bisection, rejects unreachable budgets, and the sparse executor
applies the same shift as the dense model."""

from __future__ import annotations

import pytest
import torch
from inference_helpers import decisive_policies, randomize_bn

from adafuse.flops import dynamic_gflops, static_cost
from adafuse.inference import StreamingRecognizer, frame_flops
from adafuse.inference.budget import (
    BudgetError,
    action_costs,
    budget_shift,
    calibrate,
    clip_cost,
    find_stored,
    set_budget_shift,
    with_calibrations,
)
from adafuse.models import build_model, collect_masks, fusion_modules

T, SIZE = 4, 48


def small_model(seed: int = 0, arch: str = "adafuse_tsn_r18") -> torch.nn.Module:
    """Width-8 ResNet-18 with randomized BN and policies whose decisions vary with the input (scale 1)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=5, num_frames=T, width=8).eval()
    randomize_bn(model, gen)
    decisive_policies(model, gen, scale=1.0)
    return model


def clips(n: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def forward(model, x):
    with torch.no_grad():
        logits = model(x)
    return logits, [m.clone() for m in collect_masks(model)]


def test_zero_shift_gives_exactly_the_models_own_logits_and_masks():
    x = clips(4)
    untouched = small_model()
    ref_logits, ref_masks = forward(untouched, x)
    model = small_model()
    set_budget_shift(model, 2.5)
    shifted_logits, shifted_masks = forward(model, x)
    assert any(not torch.equal(a, b) for a, b in zip(shifted_masks, ref_masks, strict=True))  # the shift acts
    set_budget_shift(model, 0.0)
    logits, masks = forward(model, x)
    assert torch.equal(logits, ref_logits)
    for a, b in zip(masks, ref_masks, strict=True):
        assert torch.equal(a, b)
    with budget_shift(model, -3.0):
        assert all(f.budget_shift == -3.0 for f in fusion_modules(model))
    assert all(f.budget_shift == 0.0 for f in fusion_modules(model))
    # the sparse executor, too: same logits as a recognizer over the untouched model
    sparse_ref = StreamingRecognizer(untouched).recognize_clip(x[:2])
    assert torch.equal(StreamingRecognizer(model).recognize_clip(x[:2]), sparse_ref)


def test_cost_is_monotone_in_the_shift_in_both_directions():
    model = small_model()
    x = clips()
    shifts = [-32.0, -8.0, -4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 32.0]
    costs = [clip_cost(model, x, s) for s in shifts]
    fractions = [c.fraction for c in costs]
    assert all(a >= b for a, b in zip(fractions, fractions[1:], strict=False)), fractions
    natural = fractions[shifts.index(0.0)]
    assert fractions[0] > natural > fractions[-1]
    keep = [c.policy_ratios[2] for c in costs]
    skip = [c.policy_ratios[0] for c in costs]
    assert keep[0] > keep[shifts.index(0.0)] > keep[-1] and skip[0] < skip[-1]
    # the ends are the extremes: everything kept (fraction 1) and everything skipped (the floor)
    cost = static_cost(model, SIZE)
    assert fractions[0] == pytest.approx(1.0, abs=0.01)
    assert fractions[-1] == pytest.approx(cost.floor / cost.total, abs=0.01)


@pytest.mark.parametrize("budget", [1.0, 0.9, 0.75, 0.65, 0.6])
def test_calibration_reaches_the_budget_within_2_percent(budget):
    model = small_model()
    x = clips()
    cost = static_cost(model, SIZE)
    assert budget >= cost.floor / cost.total  # the floor of this model is ~0.56
    cal = calibrate(model, x, budget)
    assert abs(cal.achieved - budget) <= 0.02 * budget
    # independently: the engine's dynamic cost of the masks at that shift
    with budget_shift(model, cal.shift), torch.no_grad():
        model(x)
        gflops = float(dynamic_gflops(cost, collect_masks(model), T).mean())
    assert abs(gflops / (cost.total * T / 1e9) - budget) <= 0.02 * budget
    # above the natural spend the shift moves towards keeping, below it towards cheaper actions
    natural = clip_cost(model, x, 0.0).fraction
    if budget > natural * 1.02:
        assert cal.shift < 0
    elif budget < natural * 0.98:
        assert cal.shift > 0


def test_unreachable_budgets_are_errors():
    model = small_model()
    x = clips(4)
    cost = static_cost(model, SIZE)
    floor = cost.floor / cost.total
    with pytest.raises(BudgetError, match="above 1"):
        calibrate(model, x, 1.2)
    with pytest.raises(BudgetError, match="below the model's floor"):
        calibrate(model, x, floor - 0.05)
    # a reuse/keep model cannot skip: budgets near the floor are beyond what its shift reaches
    reuse_only = small_model(arch="adareuse_r18")
    with pytest.raises(BudgetError, match="beyond what the shift reaches"):
        calibrate(reuse_only, x, floor + 0.01, max_evaluations=20)


def test_action_costs_follow_the_flops_engine():
    model = small_model()
    cost = static_cost(model, SIZE)
    costs = action_costs(model, cost)
    channels = sum(b.channels for b in cost.blocks)
    mean_keep = sum(b.f1 + b.f2 for b in cost.blocks) / channels
    for c, b in zip(costs, cost.blocks, strict=True):
        assert c[0] == 0.0
        assert float(c[1]) == pytest.approx(b.f2 / b.channels / mean_keep, rel=1e-6)
        assert float(c[2]) == pytest.approx((b.f1 + b.f2) / b.channels / mean_keep, rel=1e-6)
    weights = torch.tensor([b.channels for b in cost.blocks], dtype=torch.float64)
    keep = torch.tensor([float(c[2]) for c in costs], dtype=torch.float64)
    assert float((weights * keep).sum() / weights.sum()) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("shift", [-2.0, 1.5, 4.0])
def test_sparse_executor_applies_the_same_shift(shift):
    model = small_model()
    x = clips(3, seed=5)
    cost = static_cost(model, SIZE)
    with budget_shift(model, shift):
        logits, masks = forward(model, x)
        engine = dynamic_gflops(cost, masks, T).double() * 1e9
        for layerwise in (True, False):
            reports: list = []
            out = StreamingRecognizer(model).recognize_clip(x, reports=reports, layerwise=layerwise)
            assert float((out - logits).norm() / logits.norm()) <= 1e-5
            for v in range(x.shape[0]):
                assert sum(frame_flops(reports[v])) == pytest.approx(float(engine[v]), rel=1e-6)
                last = reports[v][-1]
                for gate, m in zip(last.gates, masks, strict=True):
                    counts = m[v * T + T - 1].sum(dim=0).round().int().tolist()
                    assert [gate.skip, gate.reuse, gate.keep] == counts


def test_calibrations_are_stored_and_found():
    model = small_model()
    x = clips(4)
    cals = [calibrate(model, x, b) for b in (0.9, 0.7)]
    payload = with_calibrations({"model": {}}, cals, SIZE)
    assert find_stored(payload, 0.7, SIZE)["shift"] == cals[1].shift
    assert find_stored(payload, 0.8, SIZE) is None
    again = with_calibrations(payload, [calibrate(model, x, 0.7, tolerance=0.02)], SIZE)
    assert [e["budget"] for e in again["budget_calibration"]] == [0.9, 0.7]
