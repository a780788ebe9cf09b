"""The named FLOPs conventions: ``exact`` (what the sparse executor runs) and the released code's
``released_real`` / ``released_upb``, hand-computed on a one-block toy network."""

from __future__ import annotations

import pytest
import torch

from adafuse.flops import (
    CONVENTIONS,
    BlockCost,
    StaticCost,
    block_usage,
    dynamic_gflops,
    dynamic_gflops_per_frame,
    loss_gflops,
    static_cost,
    video_accounting,
)
from adafuse.models import build_model

S, R, K = 0, 1, 2
G = 1e9


def one_hot(actions: list[list[list[int]]]) -> torch.Tensor:
    """``actions[n][t][c]`` -> mask ``(N*T, C, 3)``."""
    return torch.nn.functional.one_hot(torch.tensor(actions), 3).float().flatten(0, 1)


@pytest.fixture()
def toy() -> StaticCost:
    """One gated block of 2 channels: F1 = 12 G, F2 = 40 G; fixed part 5 G (exact) and 3 G (released: the
    released dense count is 55 G per frame instead of 57 G)."""
    return StaticCost(total=57 * G, blocks=[BlockCost("b", 2, 12 * G, 40 * G)], floor=5 * G, num_frames=3,
                      size=224, params=0, released_total=55 * G)


# Per case: actions[t][c] of one video (T = 3, C = 2) and the frame costs (GFLOPs) under each convention.
# exact:         floor 5 + 12 * mean(k[t] OR r[t+1], r[3] = 0) + 40 * mean(not s[t]; k[0] at t = 0)
# released_real: floor 3 + 12 * mean(k[t] OR r[t+1]; k[1] at t = 2) + 40 * mean(not s[t])
# released_upb:  floor 3 + 12 + 40 * mean(not s[t])
CASES = {
    # c0 reuses at t=0 (reads zeros): exact charges conv2 for c1 only at t0 (.5); released charges both (1)
    "frame0_reuse": ([[R, K], [K, K], [K, K]], {"exact": [5 + 6 + 20, 57, 57],
                                                "released_real": [3 + 6 + 40, 55, 55],
                                                "released_upb": [55, 55, 55]}),
    # the last frame reuses c0 and skips c1: exact computes nothing of conv1 there; released takes k[T-2] = 1
    "last_frame_reuse": ([[K, K], [K, K], [R, S]], {"exact": [57, 57, 5 + 0 + 20],
                                                    "released_real": [55, 55, 3 + 12 + 20],
                                                    "released_upb": [55, 55, 3 + 12 + 20]}),
    # the last frame keeps what frame T-2 skipped: released charges conv1 by k[T-2] = 0
    "last_frame_keep": ([[K, K], [S, S], [K, K]], {"exact": [57, 5, 57],
                                                   "released_real": [55, 3, 3 + 0 + 40],
                                                   "released_upb": [55, 15, 55]}),
    "keep_all": ([[K, K]] * 3, {"exact": [57] * 3, "released_real": [55] * 3, "released_upb": [55] * 3}),
    "all_skip": ([[S, S]] * 3, {"exact": [5] * 3, "released_real": [3] * 3, "released_upb": [15] * 3}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_hand_computed(toy, case, convention):
    actions, expected = CASES[case]
    masks = [one_hot([actions])]
    frames = dynamic_gflops_per_frame(toy, masks, 3, convention=convention)
    assert frames[0].tolist() == pytest.approx(expected[convention])
    assert dynamic_gflops(toy, masks, 3, convention=convention).item() == pytest.approx(sum(expected[convention]))
    assert loss_gflops(toy, masks, 3, convention=convention).item() == pytest.approx(sum(expected[convention]) / 3)


def test_default_is_exact_and_accounting_reports_all(toy):
    actions, expected = CASES["frame0_reuse"]
    masks = [one_hot([actions, CASES["last_frame_keep"][0]])]
    assert torch.equal(dynamic_gflops(toy, masks, 3), dynamic_gflops(toy, masks, 3, convention="exact"))
    rows = video_accounting(toy, masks, 3)
    assert rows[0]["gflops"] == pytest.approx(sum(expected["exact"]))
    assert rows[0]["gflops_released_real"] == pytest.approx(sum(expected["released_real"]))
    assert rows[0]["gflops_released_upb"] == pytest.approx(sum(expected["released_upb"]))
    assert rows[1]["gflops_released_real"] == pytest.approx(55 + 3 + 43)


def test_released_usage_is_differentiable(toy):
    logits = torch.randn(3, 2, 3, requires_grad=True)
    for convention in ("exact", "released_real"):
        produce, consume = block_usage(logits.softmax(-1), 3, convention)
        (produce.sum() + consume.sum()).backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
        logits.grad = None


def test_released_weighs_producer_groups():
    """Released rule for blocks with several producers (BN-Inception branches): each producer's channel mean
    times its own cost. c0 (produced by a 10 G conv) kept, c1 (a 2 G conv) skipped at every frame."""
    cost = StaticCost(total=12 * G, blocks=[BlockCost("m", 2, 12 * G, 0.0, ((1, 10 * G), (1, 2 * G)))], floor=0.0,
                      num_frames=2, size=224, params=0)
    masks = [one_hot([[[K, S], [K, S]]])]
    assert dynamic_gflops_per_frame(cost, masks, 2)[0].tolist() == pytest.approx([6.0, 6.0])  # 12 * mean
    assert dynamic_gflops_per_frame(cost, masks, 2, convention="released_real")[0].tolist() == pytest.approx(
        [10.0, 10.0])
    # a pass-through group of cost 0 (max-pool branch) saves nothing when skipped
    cost.blocks[0] = BlockCost("m", 3, 12 * G, 0.0, ((1, 10 * G), (1, 2 * G), (1, 0.0)))
    masks = [one_hot([[[K, K, S], [K, K, S]]])]
    assert dynamic_gflops(cost, masks, 2, convention="released_real").item() == pytest.approx(24.0)


def test_bad_convention_and_single_frame(toy):
    masks = [one_hot([[[K, K]]])]
    with pytest.raises(ValueError, match="unknown FLOPs convention 'real'"):
        dynamic_gflops(toy, masks, 1, convention="real")
    with pytest.raises(ValueError, match="needs num_frames >= 2"):
        dynamic_gflops(toy, masks, 1, convention="released_real")
    row = video_accounting(toy, masks, 1)[0]
    assert row["gflops"] == pytest.approx(57.0) and row["gflops_released_real"] is None


def test_bninception_producer_groups_and_released_dense_count():
    model = build_model("adafuse_tsn_bninception", num_classes=10, num_frames=2)
    cost = static_cost(model, 64)
    names = [b.name for b in cost.blocks]
    assert names[0] == "inception_3a" and len(names) == 10
    for b in cost.blocks:
        assert sum(w for w, _ in b.groups) == b.channels
        assert sum(f for _, f in b.groups) == pytest.approx(b.f1, rel=1e-12)
    widths = {b.name: [w for w, _ in b.groups] for b in cost.blocks}
    assert widths["inception_3a"] == [64, 64, 96, 32]
    assert widths["inception_3c"] == [160, 96, 320]  # 3x3, double 3x3, max-pool pass-through (free)
    assert cost.blocks[2].groups[-1][1] == 0.0
    # dense released count: every average pool at 1 op per output element instead of window + 1: the 3x3
    # pools (window 9) and the global pool (1024 outputs per frame), everything else the same
    pools3 = [v for k, v in cost.modules.items() if isinstance(model.get_submodule(k), torch.nn.AvgPool2d)]
    assert len(pools3) == 7  # 3a 3b 4a 4b 4c 4d 5a (5b max-pools)
    global_pool = cost.modules["backbone.global_pool"]
    expected = cost.total - sum(v * 9 / 10 for v in pools3) - (global_pool - 1024)
    assert cost.released == pytest.approx(expected, rel=1e-12) and cost.released < cost.total


def released_savings_form(cost: StaticCost, masks: list[torch.Tensor], t: int) -> tuple[float, float]:
    """The released code's (real, upb) written as it states them: the dense per-frame count minus savings,
    each saving a batch mean. Per block: conv1 saved where ``(1 - k[t]) (1 - r[t+1])`` (last frame: ``1 -
    k[T-2]``), averaged per producer branch; conv2 saved where skipped."""
    real = upb = cost.released / G
    for b, m in zip(cost.blocks, masks, strict=True):
        v = m.reshape(-1, t, m.shape[1], 3)
        s, r, k = v[..., S], v[..., R], v[..., K]
        upsave = torch.empty_like(k)
        upsave[:, :-1] = (1 - k[:, :-1]) * (1 - r[:, 1:])
        upsave[:, -1] = 1 - k[:, -2]
        per_channel = upsave.mean(dim=(0, 1))
        start, up = 0, 0.0
        for width, f1 in b.groups:
            up += float(per_channel[start:start + width].mean()) * f1 / G
            start += width
        down = float(s.mean()) * b.f2 / G
        real -= up + down
        upb -= down
    return real, upb


@pytest.mark.parametrize("arch,size", [("adafuse_tsn_r18", 32), ("adafuse_tsn_bninception", 64)])
def test_released_conventions_equal_the_savings_form(arch, size):
    """Two formulations agree on a real network with random masks: our per-frame usage form (what the loss
    differentiates) and the released code's 'dense minus batch-mean savings' form."""
    t, n = 4, 3
    model = build_model(arch, num_classes=5, num_frames=t)
    cost = static_cost(model, size)
    gen = torch.Generator().manual_seed(0)
    masks = [torch.nn.functional.one_hot(torch.randint(0, 3, (n * t, b.channels), generator=gen), 3).float()
             for b in cost.blocks]
    real, upb = released_savings_form(cost, masks, t)
    assert loss_gflops(cost, masks, t, convention="released_real").item() == pytest.approx(real, rel=1e-5)
    assert loss_gflops(cost, masks, t, convention="released_upb").item() == pytest.approx(upb, rel=1e-5)
    assert loss_gflops(cost, masks, t).item() != pytest.approx(real, rel=1e-5)
