"""Adaptive fusion: frame history, keep/reuse/skip, hard Gumbel, decision modes, policy injection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adafuse.models import (
    KEEP,
    REUSE,
    SKIP,
    AdaptiveFusion,
    PolicyNet,
    build_model,
    collect_masks,
    fusion_modules,
    inject_policy,
    policy_state,
    set_decision,
    set_num_frames,
)
from adafuse.models.fusion import fuse, hard_gumbel_softmax, previous_frame

N, T, C, HW = 2, 4, 6, 5


def one_hot_mask(actions: torch.Tensor) -> torch.Tensor:
    return F.one_hot(actions, 3).float()


def test_previous_frame_shifts_within_each_clip_with_zeros_at_t0():
    x = torch.arange(N * T, dtype=torch.float32).view(N * T, 1).expand(N * T, 3)
    h = previous_frame(x, T).view(N, T, 3)
    assert torch.equal(h[:, 0], torch.zeros(N, 3))
    for n in range(N):
        for t in range(1, T):
            assert torch.equal(h[n, t], x[n * T + t - 1])
    with pytest.raises(ValueError, match="num_frames=3"):
        previous_frame(torch.zeros(8, 2), 3)


def test_fuse_keep_reuse_skip_per_channel():
    y = torch.randn(N * T, C, HW, HW)
    actions = torch.randint(0, 3, (N * T, C), generator=torch.Generator().manual_seed(0))
    out = fuse(y, one_hot_mask(actions), T)
    for i in range(N * T):
        t = i % T
        for c in range(C):
            a = actions[i, c].item()
            if a == KEEP:
                expected = y[i, c]
            elif a == REUSE:  # channel c of the previous frame of the same video, zeros at t = 0
                expected = y[i - 1, c] if t > 0 else torch.zeros(HW, HW)
            else:
                assert a == SKIP
                expected = torch.zeros(HW, HW)
            assert torch.equal(out[i, c], expected), (i, c, a)


def test_hard_gumbel_is_one_hot_with_straight_through_gradients():
    logits = torch.randn(7, C, 3, requires_grad=True)
    weights = torch.randn(7, C, 3)
    hard = hard_gumbel_softmax(logits, 0.67, generator=torch.Generator().manual_seed(5))
    assert torch.equal(hard.detach().sum(-1), torch.ones(7, C))
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    (hard * weights).sum().backward()
    grad_hard = logits.grad.clone()

    # The gradient is that of the relaxed sample softmax((log_softmax(logits) + g) / tau) with the same noise.
    logits.grad = None
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(5))
    g = -torch.log((-torch.log(u.clamp_min(1e-10))).clamp_min(1e-10))
    soft = F.softmax((F.log_softmax(logits, -1) + g) / 0.67, dim=-1)
    assert torch.equal(soft.argmax(-1), hard.argmax(-1))
    (soft * weights).sum().backward()
    torch.testing.assert_close(grad_hard, logits.grad)
    assert grad_hard.abs().sum() > 0


def test_policy_net_starts_near_uniform_and_uses_history():
    policy = PolicyNet(in_channels=8, channels=C, hidden=16)
    assert policy.fc0.in_features == 16 and policy.fc1.out_features == 3 * C
    assert policy.fc0.weight.std() < 0.01 and torch.equal(policy.fc1.bias, torch.zeros(3 * C))
    x = torch.randn(N * T, 8, HW, HW)
    logits = policy.eval()(x, T)
    assert logits.shape == (N * T, C, 3)
    assert logits.abs().max() < 1e-3
    assert PolicyNet(8, C, 16, num_actions=2, use_history=False).fc0.in_features == 8


def _fusion(actions=("skip", "reuse", "keep")) -> AdaptiveFusion:
    torch.manual_seed(0)
    policy = PolicyNet(8, C, 16, num_actions=len(actions))
    for p in policy.parameters():  # make decisions depend clearly on the input
        torch.nn.init.normal_(p, 0, 1.0)
    return AdaptiveFusion(policy, C, actions, num_frames=T)


def test_training_masks_are_one_hot_and_eval_argmax_is_deterministic():
    f = _fusion()
    x, y = torch.randn(N * T, 8, HW, HW), torch.randn(N * T, C, HW, HW)
    f.train()
    f(x, y)
    assert f.last_mask.shape == (N * T, C, 3)
    assert torch.equal(f.last_mask.detach().sum(-1), torch.ones(N * T, C))
    f.eval()
    first = f(x, y)
    mask = f.last_mask.clone()
    assert torch.equal(f(x, y), first) and torch.equal(f.last_mask, mask)
    logits = f.policy(x, T)
    assert torch.equal(mask.argmax(-1), logits.argmax(-1))


def test_two_action_modules_fill_the_unused_column_with_zeros():
    f = _fusion(("skip", "keep")).eval()
    x, y = torch.randn(N * T, 8, HW, HW), torch.randn(N * T, C, HW, HW)
    f(x, y)
    assert torch.equal(f.last_mask[..., REUSE], torch.zeros(N * T, C))
    assert torch.equal(f.last_mask.sum(-1), torch.ones(N * T, C))
    with pytest.raises(ValueError, match="keep"):
        AdaptiveFusion(PolicyNet(8, C, 16, 2), C, ("skip", "reuse"))


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    model = build_model("adafuse_tsn_r18", num_classes=5, num_frames=T)
    for f in fusion_modules(model):  # decisive policies: uniform-ish logits would make every test trivially tied
        torch.nn.init.normal_(f.policy.fc1.weight, 0, 0.05)
    return model


@pytest.fixture(scope="module")
def clip():
    return torch.randn(N, T, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_gradients_reach_the_policy_in_train_mode(r18, clip):
    r18.train()
    r18.zero_grad()
    logits = r18(clip)
    masks = collect_masks(r18)
    assert len(masks) == 8 and all(m.requires_grad for m in masks)
    loss = F.cross_entropy(logits, torch.tensor([0, 1])) + sum(m[..., KEEP].mean() for m in masks)
    loss.backward()
    for i, f in enumerate(fusion_modules(r18)):
        assert f.policy.fc0.weight.grad is not None and f.policy.fc0.weight.grad.abs().sum() > 0, i
        assert f.policy.fc1.weight.grad.abs().sum() > 0, i
    r18.zero_grad()
    r18.eval()


def test_sample_mode_is_reproducible_per_seed(r18, clip):
    r18.eval()
    with torch.no_grad():
        set_decision(r18, "argmax")
        a1, a2 = r18(clip), r18(clip)
        assert torch.equal(a1, a2)
        set_decision(r18, "sample", seed=3)
        s1, m1 = r18(clip), [m.clone() for m in collect_masks(r18)]
        set_decision(r18, "sample", seed=3)
        s2, m2 = r18(clip), collect_masks(r18)
        assert torch.equal(s1, s2) and all(torch.equal(a, b) for a, b in zip(m1, m2, strict=True))
        set_decision(r18, "sample", seed=4)
        r18(clip)
        assert any(not torch.equal(a, b) for a, b in zip(m1, collect_masks(r18), strict=True))
        set_decision(r18, "argmax")
        assert torch.equal(r18(clip), a1)
    with pytest.raises(ValueError, match="decision"):
        set_decision(r18, "random")


def test_injected_policy_overrides_and_is_validated(r18, clip):
    r18.eval()
    channels = [f.channels for f in fusion_modules(r18)]
    skip_all = [one_hot_mask(torch.full((N * T, c), SKIP)) for c in channels]
    with torch.no_grad():
        inject_policy(r18, skip_all)
        r18(clip)
        assert all(torch.equal(m, s) for m, s in zip(collect_masks(r18), skip_all, strict=True))
        inject_policy(r18, None)
        r18(clip)
        assert not torch.equal(collect_masks(r18)[0], skip_all[0])
    with pytest.raises(ValueError, match="7 masks for 8"):
        inject_policy(r18, skip_all[:7])
    with pytest.raises(ValueError, match="does not fit"):
        inject_policy(r18, [torch.zeros(N * T, 3, 3)] * 8)
    inject_policy(r18, [one_hot_mask(torch.full((N * T + 1, c), KEEP)) for c in channels])
    with pytest.raises(ValueError, match="injected policy has shape"):
        r18(clip)
    inject_policy(r18, None)


def test_set_num_frames_reaches_every_temporal_module():
    model = build_model("adafuse_tsm_r18", num_classes=3, num_frames=8)
    set_num_frames(model, 2)
    temporal = [m for m in model.modules() if hasattr(m, "num_frames")]
    assert len(temporal) > 16 and all(m.num_frames == 2 for m in temporal)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 2, 3, 32, 32)).shape == (1, 3)


def test_model_deepcopies_after_a_training_forward():
    """The last mask of a training step carries autograd history; copies (EMA, best model) must still work."""
    import copy

    from adafuse.models import build_model

    model = build_model("adafuse_tsn_r18", num_classes=3, num_frames=2).train()
    model(torch.randn(1, 2, 3, 32, 32))
    clone = copy.deepcopy(model)
    assert all(f.last_mask is None for f in fusion_modules(clone))
    assert all(f.last_mask is not None for f in fusion_modules(model))


def test_policy_state_sets_and_restores_decision_masks_and_num_frames(r18, clip):
    r18.eval()
    channels = [f.channels for f in fusion_modules(r18)]
    keep_all = [one_hot_mask(torch.full((N * 2, c), KEEP)) for c in channels]
    with torch.no_grad():
        r18(clip)
        before = [(f.decision, f.generator, f.injected, f.last_mask) for f in fusion_modules(r18)]
        with policy_state(r18, decision="sample", seed=1, masks=keep_all, num_frames=2) as modules:
            assert all(f.decision == "sample" and f.generator is not None for f in modules)
            assert all(m.num_frames == 2 for m in r18.modules() if hasattr(m, "num_frames"))
            r18(clip[:, :2])
            assert all(torch.equal(m, k) for m, k in zip(collect_masks(r18), keep_all, strict=True))
        after = [(f.decision, f.generator, f.injected, f.last_mask) for f in fusion_modules(r18)]
        assert all(a[:3] == b[:3] and a[3] is b[3] for a, b in zip(before, after, strict=True))
        assert all(m.num_frames == T for m in r18.modules() if hasattr(m, "num_frames"))
        with pytest.raises(RuntimeError, match="boom"), policy_state(r18, decision="sample", num_frames=2):
            raise RuntimeError("boom")
        assert {f.decision for f in fusion_modules(r18)} == {"argmax"} and r18.num_frames == T
