"""Mask-driven cost: the keep-or-reused-next rule, the first/last frame rules, gradients into the policy,
and the per-video accounting written to predictions.jsonl."""

from __future__ import annotations

import pytest
import torch

from adafuse.flops import (
    BlockCost,
    StaticCost,
    dynamic_gflops,
    dynamic_gflops_per_frame,
    loss_gflops,
    static_cost,
    video_accounting,
)
from adafuse.models import build_model, collect_masks, fusion_modules, inject_policy

S, R, K = 0, 1, 2
G = 1e9


def one_hot(actions: list[list[list[int]]]) -> torch.Tensor:
    """``actions[n][t][c]`` -> mask ``(N*T, C, 3)``."""
    a = torch.tensor(actions)
    return torch.nn.functional.one_hot(a, 3).float().flatten(0, 1)


@pytest.fixture()
def toy_cost() -> StaticCost:
    """One gated block of 2 channels, F1 = 12 G, F2 = 40 G, floor 5 G per frame."""
    return StaticCost(total=57 * G, blocks=[BlockCost("b", 2, 12 * G, 40 * G)], floor=5 * G, num_frames=3,
                      size=224, params=0)


# video 0, frames t=0..2, channels (c0, c1)
VIDEO0 = [[R, K], [R, S], [K, R]]
VIDEO1 = [[K, S], [K, S], [K, K]]


def test_hand_computed_small_case(toy_cost):
    """Video 0:
    produce (k[t] OR r[t+1]): t0 (1, 1) -> 1; t1 (0, 1) -> .5; t2 (1, 0) -> .5 (nothing reuses the last frame;
    the released code's k[T-2] would give 0 here)
    consume (not skipped; a reuse at t=0 reads zeros, like a skip): t0 (0, 1) -> .5; t1 (1, 0) -> .5; t2 -> 1
    frames: 5 + 12 + 20 = 37, 5 + 6 + 20 = 31, 5 + 6 + 40 = 51.
    Video 1: produce .5, .5, 1; consume .5, .5, 1 -> 31, 31, 57."""
    masks = [one_hot([VIDEO0, VIDEO1])]
    frames = dynamic_gflops_per_frame(toy_cost, masks, 3)
    assert frames.shape == (2, 3)
    assert torch.allclose(frames, torch.tensor([[37.0, 31.0, 51.0], [31.0, 31.0, 57.0]]))
    assert torch.allclose(dynamic_gflops(toy_cost, masks, 3), torch.tensor([119.0, 119.0]))
    assert loss_gflops(toy_cost, masks, 3).item() == pytest.approx(238 / 6)


def test_accounting_hand_computed(toy_cost):
    rows = video_accounting(toy_cost, [one_hot([VIDEO0, VIDEO1])], 3)
    assert len(rows) == 2
    assert rows[0]["gflops"] == pytest.approx(119.0)
    assert rows[0]["frame_gflops"] == pytest.approx([37.0, 31.0, 51.0])
    assert rows[0]["block_ratios"] == [pytest.approx([1 / 6, 3 / 6, 2 / 6])]
    assert rows[0]["block_constant"] == [0.0]
    assert rows[1]["frame_gflops"] == pytest.approx([31.0, 31.0, 57.0])
    assert rows[1]["block_ratios"] == [pytest.approx([2 / 6, 0.0, 4 / 6])]
    assert rows[1]["block_constant"] == [0.5]  # c0 kept at every frame, c1 changes
    for row in rows:
        assert all(type(v) is float for v in row["frame_gflops"] + row["block_constant"] + [row["gflops"]])


def test_single_frame_clip(toy_cost):
    """T = 1: a reuse reads zeros and nothing is reused later, so only keeps cost."""
    masks = [one_hot([[[R, K]]])]
    assert dynamic_gflops(toy_cost, masks, 1).item() == pytest.approx(5 + 12 * 0.5 + 40 * 0.5)
    assert video_accounting(toy_cost, masks, 1)[0]["block_constant"] == [1.0]


@pytest.fixture(scope="module")
def r18():
    model = build_model("adafuse_tsn_r18", num_frames=3)
    return model, static_cost(model, 32)


def _constant_masks(model, n: int, t: int, action: int) -> list[torch.Tensor]:
    out = []
    for f in fusion_modules(model):
        m = torch.zeros(n * t, f.channels, 3)
        m[..., action] = 1.0
        out.append(m)
    return out


def test_all_keep_costs_static_and_all_skip_costs_floor(r18):
    model, cost = r18
    keep = _constant_masks(model, 2, 3, K)
    assert torch.allclose(dynamic_gflops(cost, keep, 3), torch.full((2,), 3 * cost.total / G))
    skip = _constant_masks(model, 2, 3, S)
    assert torch.allclose(dynamic_gflops(cost, skip, 3), torch.full((2,), 3 * cost.floor / G))
    # all reuse: conv1 needed at t < T-1 (reused next), conv2 input needed at t >= 1
    reuse = _constant_masks(model, 1, 3, R)
    f1 = sum(b.f1 for b in cost.blocks)
    f2 = sum(b.f2 for b in cost.blocks)
    expected = (3 * cost.floor + 2 * f1 + 2 * f2) / G
    assert dynamic_gflops(cost, reuse, 3).item() == pytest.approx(expected, rel=1e-6)


def test_injected_policy_masks_round_trip(r18):
    """Masks collected from a forward with an injected policy give the same cost as the injected masks."""
    model, cost = r18
    gen = torch.Generator().manual_seed(0)
    masks = []
    for f in fusion_modules(model):
        a = torch.randint(0, 3, (2 * 3, f.channels), generator=gen)
        masks.append(torch.nn.functional.one_hot(a, 3).float())
    inject_policy(model, masks)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.randn(2, 3, 3, 32, 32))
        collected = collect_masks(model)
    finally:
        inject_policy(model, None)
    assert torch.equal(dynamic_gflops(cost, collected, 3), dynamic_gflops(cost, masks, 3))
    assert all(cost.floor / G * 3 < g < cost.total / G * 3 for g in dynamic_gflops(cost, masks, 3))


def test_gradient_reaches_policy_and_lowers_cost():
    """The FLOPs term alone, minimised through the straight-through masks, drives the policy to cheaper
    actions: the policy layers get non-zero gradients and the argmax policy's cost drops."""
    torch.manual_seed(0)
    model = build_model("adafuse_tsn_r18", num_frames=3)
    cost = static_cost(model, 32)
    x = torch.randn(2, 3, 3, 32, 32)

    def eval_cost() -> float:
        model.eval()
        with torch.no_grad():
            model(x)
        return dynamic_gflops(cost, collect_masks(model), 3).mean().item()

    before = eval_cost()
    policy_params = [p for f in fusion_modules(model) for p in f.policy.parameters()]
    opt = torch.optim.SGD(policy_params, lr=5.0)
    for step in range(5):
        model.train()
        model.zero_grad()
        model(x)
        loss = loss_gflops(cost, collect_masks(model), 3)
        loss.backward()
        if step == 0:
            for f in fusion_modules(model):
                assert f.policy.fc1.weight.grad is not None and f.policy.fc1.weight.grad.abs().sum() > 0
                assert f.policy.fc0.weight.grad.abs().sum() > 0
        opt.step()
    after = eval_cost()
    assert after < before - 0.5 * (before - 3 * cost.floor / G)  # seed 0: 0.092 -> 0.051, floor 0.036


def test_dense_model_needs_batch_size():
    cost = StaticCost(total=2 * G, blocks=[], floor=2 * G, num_frames=4, size=224, params=0)
    with pytest.raises(ValueError, match="batch_size"):
        dynamic_gflops(cost, [], 4)
    assert torch.allclose(dynamic_gflops(cost, [], 4, batch_size=3), torch.full((3,), 8.0))
    rows = video_accounting(cost, [], 4, batch_size=2)
    assert rows == [{"gflops": 8.0, "frame_gflops": [2.0] * 4, "gflops_released_real": 8.0,
                     "gflops_released_upb": 8.0, "block_ratios": [], "block_constant": []}] * 2


def test_bad_masks_are_named(toy_cost):
    with pytest.raises(ValueError, match="1 gated blocks"):
        dynamic_gflops(toy_cost, [], 3)
    with pytest.raises(ValueError, match=r"block 'b'.*\(6, 4, 3\).*\(N\*T, 2, 3\)"):
        dynamic_gflops(toy_cost, [torch.zeros(6, 4, 3)], 3)
    with pytest.raises(ValueError, match="block 'b' has 5 rows"):
        dynamic_gflops(toy_cost, [torch.zeros(5, 2, 3)], 3)
