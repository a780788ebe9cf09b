"""Budget-conditioned policies: zero-initialised (the plain model until trained), the target changes the decisions,
checkpoints round-trip, and the sparse executor applies the target offset like the dense model."""

from __future__ import annotations

import torch

from adafuse.inference import StreamingRecognizer
from adafuse.models import build_model, collect_masks, fusion_modules
from adafuse.models.budget_conditioning import (
    BudgetPolicyNet,
    budget_target,
    enable_budget_conditioning,
    is_budget_conditioned,
    set_budget_target,
)
from adafuse.models.serialization import model_from_checkpoint, model_payload

T = 4


def small_model():
    torch.manual_seed(0)
    model = build_model("adafuse_tsn_r18", num_classes=5, num_frames=T, width=8).eval()
    gen = torch.Generator().manual_seed(0)
    for f in fusion_modules(model):
        p = f.policy
        p.fc0.weight.data.copy_(torch.randn(p.fc0.weight.shape, generator=gen) / p.fc0.weight.shape[1] ** 0.5)
        p.fc1.weight.data.copy_(torch.randn(p.fc1.weight.shape, generator=gen) * 2.0 / p.hidden ** 0.5)
        p.fc1.bias.data.copy_(torch.randn(p.fc1.bias.shape, generator=gen))
    return model


def run(model, x):
    with torch.no_grad():
        out = model(x)
    return out, [m.clone() for m in collect_masks(model)]


def train_embeds(model):
    """Stand-in for training: the smaller the target, the more the keep logit drops."""
    for f in fusion_modules(model):
        e = f.policy.target_embed
        w = torch.zeros_like(e.weight).view(f.policy.channels, 3)
        w[:, 2] = 6.0  # keep logit += 6 * F - 6
        e.weight.data.copy_(w.view(-1, 1))
        b = torch.zeros_like(e.bias).view(f.policy.channels, 3)
        b[:, 2] = -6.0
        e.bias.data.copy_(b.view(-1))


def test_enabling_changes_nothing_until_trained():
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = small_model()
    ref_logits, ref_masks = run(model, x)
    enable_budget_conditioning(model)
    assert is_budget_conditioned(model) and all(isinstance(f.policy, BudgetPolicyNet) for f in fusion_modules(model))
    set_budget_target(model, 0.3)
    logits, masks = run(model, x)
    assert torch.equal(logits, ref_logits)
    assert all(torch.equal(a, b) for a, b in zip(masks, ref_masks, strict=True))


def test_the_target_moves_the_decisions_and_survives_a_checkpoint():
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model = enable_budget_conditioning(small_model())
    train_embeds(model)
    keep = {}
    for target in (1.0, 0.5):
        with budget_target(model, target):
            _, masks = run(model, x)
        keep[target] = float(sum(m[..., 2].sum() for m in masks))
    assert keep[0.5] < keep[1.0]
    loaded, _ = model_from_checkpoint(model_payload(model))
    assert is_budget_conditioned(loaded)
    for target in (1.0, 0.5):
        set_budget_target(model, target)
        set_budget_target(loaded, target)
        assert torch.equal(run(loaded, x)[0], run(model, x)[0])


def test_sparse_executor_applies_the_target():
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    model = enable_budget_conditioning(small_model())
    train_embeds(model)
    set_budget_target(model, 0.6)
    logits, masks = run(model, x)
    reports: list = []
    out = StreamingRecognizer(model).recognize_clip(x, reports=reports)
    assert float((out - logits).norm() / logits.norm()) <= 1e-5
    for v in range(2):
        for gate, m in zip(reports[v][-1].gates, masks, strict=True):
            assert [gate.skip, gate.reuse, gate.keep] == m[v * T + T - 1].sum(dim=0).round().int().tolist()
