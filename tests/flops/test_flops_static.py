"""Static counting: the paper-convention numbers, the per-block (F1, F2) split, and agreement with torch's
own FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from adafuse.flops import count_flops, count_params, static_cost
from adafuse.models import (
    MODEL_NAMES,
    AdaptiveFusion,
    PolicyNet,
    VideoRecognizer,
    build_model,
    fusion_modules,
    inject_policy,
    set_decision,
)


@pytest.fixture(scope="module")
def r18_224():
    return static_cost(build_model("tsn_r18"))  # default size: the model's crop size, 224


@pytest.fixture(scope="module")
def r50_224():
    return static_cost(build_model("tsn_r50"), 224)


def test_tsn_r18_matches_paper(r18_224):
    assert r18_224.size == 224 and r18_224.num_frames == 8
    assert round(r18_224.total / 1e9, 4) == 1.8187
    assert round(r18_224.gflops_per_video, 2) == 14.55
    assert r18_224.blocks == [] and r18_224.floor == r18_224.total


def test_tsn_r50_matches_paper(r50_224):
    assert round(r50_224.total / 1e9, 4) == 4.1102
    assert round(r50_224.gflops_per_video, 1) == 32.9


def test_convention_breakdown_r18(r18_224):
    """thop 0.0.31 rules, term by term, for ResNet-18 at 224: conv MACs, BN 2 x elements, Linear 2 x MACs,
    global average pool (49 adds + 1 divide per output), ReLU/max-pool free."""
    by_type = r18_224.by_type
    assert by_type["Conv2d"] == 1_813_561_344
    bn_elements = 64 * 112 * 112 + 4 * 64 * 56 * 56 + 5 * 128 * 28 * 28 + 5 * 256 * 14 * 14 + 5 * 512 * 7 * 7
    assert by_type["BatchNorm2d"] == 2 * bn_elements
    assert by_type["Linear"] == 2 * 512 * 174
    assert by_type["AdaptiveAvgPool2d"] == (49 + 1) * 512
    assert set(by_type) == {"Conv2d", "BatchNorm2d", "Linear", "AdaptiveAvgPool2d"}
    assert r18_224.total == sum(by_type.values())


def test_policy_cost_of_r50_quota_nets():
    """The policy MLPs are a fixed cost of ~0.062 GFLOPs/frame for the R50 quota rule (SPEC 2); it does not
    depend on the frame size (GAP first), so count at 64 px. Shared Linear layers count at every call."""
    dense = static_cost(build_model("tsn_r50"), 64)
    model = build_model("adafuse_tsn_r50")
    policy = static_cost(model, 64).total - dense.total
    assert round(policy / 1e9, 3) == 0.062
    expected = 0.0
    for f in fusion_modules(model):
        p = f.policy
        expected += 2 * (p.fc0.in_features * p.hidden + p.hidden * p.fc1.out_features) + 2 * p.hidden
    assert policy == expected


def test_blocks_r18_hand_computed():
    """F1 = conv1 and F2 = conv2 of each BasicBlock, by the formula; floor = total - sum(F1 + F2)."""
    size = 64
    cost = static_cost(build_model("adafuse_tsn_r18"), size)
    assert [b.name for b in cost.blocks] == [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    side = size // 4
    c_in = 64
    for stage in range(4):
        c = 64 * 2**stage
        if stage:
            side //= 2
        for i in range(2):
            b = cost.blocks[2 * stage + i]
            assert b.channels == c
            assert b.f1 == side * side * c * (c_in if i == 0 else c) * 9
            assert b.f2 == side * side * c * c * 9
        c_in = c
    assert cost.floor == pytest.approx(cost.total - sum(b.f1 + b.f2 for b in cost.blocks), rel=1e-12)
    dense = static_cost(build_model("tsn_r18"), size)
    policy = cost.total - dense.total
    assert cost.floor == pytest.approx(dense.total - sum(b.f1 + b.f2 for b in cost.blocks) + policy, rel=1e-12)


def test_matches_torch_flop_counter():
    """torch's FlopCounterMode reports 2 x MACs for convolutions and matmuls (bias not counted); our conv
    count is MACs (ResNet convs have no bias) and our Linear count is already 2 x MACs."""
    model = build_model("adafuse_tsn_r18", num_frames=2).eval()
    cost = static_cost(model, 64)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(torch.randn(1, 2, 3, 64, 64))
    ops = counter.get_flop_counts()["Global"]
    aten = torch.ops.aten
    assert ops[aten.convolution] == 2 * cost.by_type["Conv2d"] * 2
    matmul = sum(ops.get(op, 0) for op in (aten.addmm, aten.mm, aten.bmm))
    # The counter also sees the fusion's one-hot action selection (mask @ select, 3x3 per frame and
    # channel), which is a free relabelling in the paper's convention.
    selection = sum(2 * 3 * 3 * f.channels * 2 for f in fusion_modules(model))
    assert matmul == cost.by_type["Linear"] * 2 + selection


def test_params_dedup_shared_linears():
    model = build_model("adafuse_tsn_r50")
    assert count_params(model) == 37_686_638
    policies = [f.policy for f in fusion_modules(model)]
    assert len(policies) == 16 and len({id(p.fc0) for p in policies}) == 8  # quota rule: shared Linears
    unshared = sum(p.numel() for pol in policies for p in pol.parameters())
    shared = sum(p.numel() for p in nn.ModuleList(policies).parameters())
    assert shared == 13_822_080 and unshared > shared


def test_static_cost_leaves_no_trace():
    """Counting restores train mode, injected masks, last masks, decision rule and RNG state."""
    model = build_model("adafuse_tsn_r18", num_frames=2).train()
    masks = [torch.zeros(2 * 2, f.channels, 3) for f in fusion_modules(model)]
    for m in masks:
        m[..., 0] = 1.0
    inject_policy(model, masks)
    set_decision(model, "sample", seed=3)
    state = torch.random.get_rng_state()
    static_cost(model, 32)
    assert model.training
    assert torch.equal(torch.random.get_rng_state(), state)
    for f, m in zip(fusion_modules(model), masks, strict=True):
        assert f.injected is m and f.last_mask is None and f.decision == "sample"


class _NoCostLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.fusion = AdaptiveFusion(PolicyNet(3, 4, 8), 4, num_frames=2)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.conv2(self.fusion(x, self.conv1(x)))).flatten(1)


def test_block_without_fusion_cost_layers_is_named():
    model = VideoRecognizer(_NoCostLayers(), 4, 5, num_frames=2)
    with pytest.raises(ValueError, match=r"'backbone'.*fusion_cost_layers"):
        static_cost(model, 8)


class _WithCostLayers(_NoCostLayers):
    def fusion_cost_layers(self):
        return [self.conv1], [self.conv2]


class _Custom(nn.Module):
    def forward(self, x):
        return x

    def flops(self, inputs, output):
        return 7 * output.shape[0]


class _Unknown(nn.Module):
    def forward(self, x):
        return x


def test_toy_block_custom_rule_and_uncounted():
    backbone = _WithCostLayers()
    model = VideoRecognizer(nn.Sequential(_Custom(), _Unknown(), backbone), 4, 5, num_frames=2)
    cost = static_cost(model, 8)
    conv1 = 8 * 8 * 4 * (3 * 9 + 1)
    conv2 = 8 * 8 * 4 * (4 * 9 + 1)
    policy = 2 * (6 * 8 + 8 * 12) + 2 * 8
    pool = (64 + 1) * 4
    head = 2 * 4 * 5
    assert cost.blocks[0].f1 == conv1 and cost.blocks[0].f2 == conv2 and cost.blocks[0].channels == 4
    assert cost.total == 7 + conv1 + conv2 + policy + pool + head
    assert cost.floor == 7 + policy + pool + head
    assert cost.uncounted == ("_Unknown",)


def test_rules_pool_and_rnn():
    pool = nn.AvgPool2d(3, stride=2, padding=1)
    assert count_flops(pool, torch.zeros(1, 4, 8, 8)) == (9 + 1) * 4 * 4 * 4
    lstm = nn.LSTM(16, 8, batch_first=True)
    assert count_flops(lstm, torch.zeros(2, 5, 16)) == 2 * 4 * (16 + 8) * 8 * 10
    free = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.5), nn.Identity())
    assert count_flops(free, torch.zeros(1, 2, 4, 4)) == 0
    linear = nn.Linear(6, 3)
    assert count_flops(linear, torch.zeros(4, 6)) == 2 * 6 * 3 * 4
    bn = nn.BatchNorm1d(6).eval()
    assert count_flops(bn, torch.zeros(4, 6)) == 2 * 24
    grouped = nn.Conv2d(4, 8, 3, groups=2, bias=False)
    assert count_flops(grouped, torch.zeros(1, 4, 5, 5)) == 8 * 3 * 3 * (2 * 9)


@pytest.mark.parametrize("name", ["adafuse_tsm_r18", "lstm_r18"])
def test_per_frame_cost_does_not_depend_on_clip_length(name):
    if name not in MODEL_NAMES:
        pytest.skip(f"model {name!r} is not registered")
    one = static_cost(build_model(name, num_frames=1), 32)
    three = static_cost(build_model(name, num_frames=3), 32)
    assert three.total == pytest.approx(one.total, rel=1e-12)
    assert three.blocks == one.blocks
    assert three.gflops_per_video == pytest.approx(3 * one.gflops_per_video, rel=1e-12)
