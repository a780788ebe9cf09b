"""Baselines: LSTM head, random policy (+ FLOPs budget), threshold policy, CGNet-style gate."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from adafuse.models import KEEP, REUSE, SKIP, build_model, collect_masks, fusion_modules
from adafuse.models.baselines import (
    PAPER_STHV1_MIX,
    RANDOM_R18_RATIOS,
    THRESHOLD_KEEP_RATIO,
    LSTMHead,
    PartialSumGate,
    RandomPolicy,
    ThresholdPolicy,
    expected_random_policy_gflops,
    random_policy_ratios_for_budget,
    threshold_keep_ratio_for_budget,
)

N, T = 2, 4

# ResNet-18 at 224x224, FLOPs per frame (MACs convention): conv1/conv2 of each block and the fixed rest.
_FULL, _HALF = 115_605_504.0, 57_802_752.0
R18_BLOCKS = [(_FULL, _FULL), (_FULL, _FULL), (_HALF, _FULL), (_FULL, _FULL), (_HALF, _FULL), (_FULL, _FULL),
              (_HALF, _FULL), (_FULL, _FULL)]
R18_TOTAL = 1.8187e9  # TSN-R18 per frame (SPEC 2), 174 classes
R18_COST = (R18_BLOCKS, R18_TOTAL - sum(a + b for a, b in R18_BLOCKS))


@pytest.fixture(scope="module")
def clip():
    return torch.randn(N, T, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_lstm_head_averages_per_step_predictions():
    torch.manual_seed(0)
    head = LSTMHead(feature_dim=16, num_classes=5, hidden=8, dropout=0.5).eval()
    features = torch.randn(3, T, 16)
    states, _ = head.lstm(features)
    expected = head.fc(states).mean(dim=1)
    torch.testing.assert_close(head(features), expected)
    # causal: the prediction at step t ignores later frames, so changing the last frame changes only step T-1
    changed = features.clone()
    changed[:, -1] += 1
    states2, _ = head.lstm(changed)
    torch.testing.assert_close(states2[:, :-1], states[:, :-1])
    assert head.fc.weight.std() < 0.01 and torch.equal(head.fc.bias, torch.zeros(5))


def test_lstm_models_size():
    model = build_model("lstm_r18", num_classes=5, num_frames=T, lstm_hidden=64)
    assert isinstance(model.head, LSTMHead) and model.head.hidden == 64
    assert model.build_config["lstm_hidden"] == 64
    lstm = sum(p.numel() for p in model.head.lstm.parameters())
    assert lstm == 4 * (512 * 64 + 64 * 64 + 2 * 64)
    assert fusion_modules(model) == []


def test_random_policy_draws_the_ratios_and_replays_per_seed():
    ratios = (0.2, 0.3, 0.5)
    policy = RandomPolicy(64, ratios, seed=7)
    y = torch.zeros(400, 64, 1, 1)
    mask = policy(None, y, 8)
    assert mask.shape == (400, 64, 3) and torch.equal(mask.sum(-1), torch.ones(400, 64))
    freq = mask.mean(dim=(0, 1))
    torch.testing.assert_close(freq, torch.tensor(ratios), atol=0.01, rtol=0)
    assert not torch.equal(policy(None, y, 8), mask)  # a new draw every forward
    assert torch.equal(RandomPolicy(64, ratios, seed=7)(None, y, 8), mask)
    with pytest.raises(ValueError, match="summing to 1"):
        RandomPolicy(4, (0.5, 0.5, 0.5))


def test_random_model_masks_and_seeds(clip):
    a = build_model("random_r18", num_classes=5, num_frames=T, seed=1).eval()
    b = build_model("random_r18", num_classes=5, num_frames=T, seed=1).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert torch.equal(a(clip), b(clip))
    assert a.build_config["ratios"] == pytest.approx(list(RANDOM_R18_RATIOS))
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in build_model("tsn_r18", num_classes=5,
                                                                                          num_frames=T).parameters())
    masks = collect_masks(a)
    assert len(masks) == 8 and len({m.shape[1] for m in masks}) == 4


def _simulated_gflops(blocks, floor, ratios, num_frames, videos=4000):
    """Monte Carlo of the FLOPs engine's rule with i.i.d. masks (one channel per draw, many videos)."""
    g = torch.Generator().manual_seed(0)
    total = num_frames * floor
    for f1, f2 in blocks:
        actions = torch.multinomial(torch.tensor(ratios), videos * num_frames, replacement=True, generator=g)
        m = F.one_hot(actions, 3).float().view(videos, num_frames, 3)
        keep, reuse = m[..., KEEP], m[..., REUSE]
        reuse_next = torch.cat([reuse[:, 1:], torch.zeros(videos, 1)], dim=1)
        conv1 = ((keep + reuse_next) > 0).float()
        conv2 = keep + torch.cat([torch.zeros(videos, 1), reuse[:, 1:]], dim=1)  # reuse at t=0 reads zeros
        total += (f1 * conv1.sum(1) + f2 * conv2.sum(1)).mean().item()
    return total / 1e9


def test_expected_random_cost_matches_the_engine_rule():
    ratios = (0.3, 0.3, 0.4)
    expected = expected_random_policy_gflops(R18_COST, ratios, 8)
    assert expected == pytest.approx(_simulated_gflops(*R18_COST, ratios, 8), rel=0.01)
    assert expected_random_policy_gflops(R18_COST, (0, 0, 1), 8) == pytest.approx(8 * R18_TOTAL / 1e9)
    assert expected_random_policy_gflops(R18_COST, (1, 0, 0), 8) == pytest.approx(8 * R18_COST[1] / 1e9)


def test_ratios_for_budget():
    ps, pr, pk = random_policy_ratios_for_budget(R18_COST, 10.3)
    assert ps + pr + pk == pytest.approx(1)
    assert pr / pk == pytest.approx(PAPER_STHV1_MIX[1] / PAPER_STHV1_MIX[2])
    assert expected_random_policy_gflops(R18_COST, (ps, pr, pk)) == pytest.approx(10.3, abs=1e-6)
    assert (ps, pr, pk) == pytest.approx(RANDOM_R18_RATIOS, abs=2e-3)  # the documented default
    assert expected_random_policy_gflops(R18_COST, RANDOM_R18_RATIOS) == pytest.approx(10.3, abs=0.02)
    ps, pr, pk = random_policy_ratios_for_budget(R18_COST, 9.0, p_reuse=0.2)
    assert pr == 0.2 and expected_random_policy_gflops(R18_COST, (ps, pr, pk)) == pytest.approx(9.0, abs=1e-6)
    with pytest.raises(ValueError, match="out of reach"):
        random_policy_ratios_for_budget(R18_COST, 20.0)

    class Block:  # a StaticCost-like object works too
        def __init__(self, f1, f2):
            self.f1, self.f2 = f1, f2

    class Cost:
        blocks = [Block(*b) for b in R18_BLOCKS]
        floor = R18_COST[1]

    assert random_policy_ratios_for_budget(Cost(), 10.3) == pytest.approx(random_policy_ratios_for_budget(R18_COST,
                                                                                                          10.3))


def test_threshold_policy_keeps_the_strongest_channels():
    policy = ThresholdPolicy(8, keep_ratio=0.25)
    y = torch.rand(6, 8, 3, 3)
    y[:, 5] += 10  # channel 5 always strongest
    mask = policy(None, y, 3)
    assert torch.equal(mask[..., KEEP].sum(1), torch.full((6,), 2.0))
    assert torch.equal(mask[..., REUSE], torch.zeros(6, 8))
    assert torch.equal(mask[..., SKIP] + mask[..., KEEP], torch.ones(6, 8))
    score = y.abs().mean(dim=(2, 3))
    for i in range(6):
        kept = set(mask[i, :, KEEP].nonzero().flatten().tolist())
        assert kept == set(score[i].topk(2).indices.tolist()) and 5 in kept
    with pytest.raises(ValueError, match="keep_ratio"):
        ThresholdPolicy(8, 0.0)


def test_threshold_model_and_budget(clip):
    model = build_model("threshold_r18", num_classes=5, num_frames=T).eval()
    with torch.no_grad():
        model(clip)
    for f, mask in zip(fusion_modules(model), collect_masks(model), strict=True):
        assert mask[..., KEEP].sum(1).unique().tolist() == [round(THRESHOLD_KEEP_RATIO * f.channels)]
    assert threshold_keep_ratio_for_budget(R18_COST, 11.3) == pytest.approx(THRESHOLD_KEEP_RATIO, abs=0.01)
    assert threshold_keep_ratio_for_budget(R18_COST, 11.3, charge_ranking=True) < THRESHOLD_KEEP_RATIO


def test_cgnet_gate_is_a_learned_threshold_on_conv1_partial_sums(clip):
    torch.manual_seed(0)
    model = build_model("cgnet_r18", num_classes=5, num_frames=T)
    adaskip = build_model("adaskip_r18", num_classes=5, num_frames=T)
    tsn = build_model("tsn_r18", num_classes=5, num_frames=T)
    n = {name: sum(p.numel() for p in m.parameters()) for name, m in (("cg", model), ("skip", adaskip), ("tsn", tsn))}
    assert n["cg"] - n["tsn"] == 2 * (64 + 128 + 256 + 512)  # one threshold per gated channel
    assert n["skip"] - n["cg"] > 2_000_000
    assert set(model.state_dict()) - set(tsn.state_dict()) == {
        k for k in model.state_dict() if ".fusion.policy." in k}  # no duplicated conv1 tensors

    block = model.backbone.layer2[0]
    gate = block.fusion.policy
    assert isinstance(gate, PartialSumGate) and block.fusion.actions == ("skip", "keep")
    x = torch.randn(N * T, 64, 16, 16)
    gate.eval()
    logits = gate(x, T)
    assert logits.shape == (N * T, 128, 2) and torch.equal(logits[..., 0], torch.zeros(N * T, 128))
    m = gate.partial.partial_channels
    assert m == 16
    partial = F.conv2d(x[:, :m], block.conv1.weight[:, :m], None, 2, 1)
    s = F.batch_norm(partial.mean(dim=(2, 3)), gate.norm.running_mean, gate.norm.running_var, training=False)
    torch.testing.assert_close(logits[..., 1], gate.alpha * (s - gate.threshold))

    clone = copy.deepcopy(model)  # the borrowed conv1 follows the copy
    assert clone.backbone.layer2[0].fusion.policy.partial._conv[0] is clone.backbone.layer2[0].conv1

    model.train()
    model(clip).sum().backward()
    assert gate.threshold.grad is not None and gate.threshold.grad.abs().sum() > 0
    assert block.conv1.weight.grad is not None
    with pytest.raises(RuntimeError, match="bind"):
        PartialSumGate(4, 4)(torch.randn(2, 4, 3, 3), 2)
