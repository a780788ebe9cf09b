"""ResNet backbones: torchvision names and sizes, TSM shift, shortcut shift, keep-all equivalence, sharing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adafuse.models import KEEP, build_model, fusion_modules, inject_policy
from adafuse.models.resnet import Bottleneck, ResNet
from adafuse.models.temporal import TemporalShift, temporal_shift

N, T = 2, 4


@pytest.fixture(scope="module")
def clip():
    return torch.randn(N, T, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def keep_all(model) -> list[torch.Tensor]:
    return [F.one_hot(torch.full((N * T, f.channels), KEEP), 3).float() for f in fusion_modules(model)]


def randomize_bn(model) -> None:
    """Non-trivial BN statistics so that every layer matters for the comparison."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)


def test_temporal_shift_semantics():
    c = 16
    x = torch.randn(N * T, c, 2, 2)
    out = temporal_shift(x, T).view(N, T, c, 2, 2)
    v = x.view(N, T, c, 2, 2)
    fold = c // 8
    for t in range(T):
        nxt = v[:, t + 1, :fold] if t < T - 1 else torch.zeros_like(v[:, 0, :fold])
        prev = v[:, t - 1, fold:2 * fold] if t > 0 else torch.zeros_like(v[:, 0, :fold])
        assert torch.equal(out[:, t, :fold], nxt)
        assert torch.equal(out[:, t, fold:2 * fold], prev)
        assert torch.equal(out[:, t, 2 * fold:], v[:, t, 2 * fold:])
    assert torch.equal(TemporalShift(T)(x), out.view_as(x))


def test_torchvision_names_and_sizes():
    r18, r50 = ResNet("resnet18"), ResNet("resnet50")
    # torchvision resnet18/50 have 11,689,512 / 25,557,032 parameters, of which fc holds 513,000 / 2,049,000
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512 - 513_000
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032 - 2_049_000
    keys = set(r50.state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv3.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.num_batches_tracked", "layer4.2.bn3.bias"):
        assert key in keys
    assert r18.feature_dim == 512 and r50.feature_dim == 2048
    with torch.no_grad():
        assert r18(torch.randn(3, 3, 32, 32)).shape == (3, 512)
    with pytest.raises(ValueError, match="resnet18"):
        ResNet("resnet19")


def test_blocks_name_their_gated_layers(r50_pair):
    block = r50_pair[1].backbone.layer1[0]
    producers, consumers = block.fusion_cost_layers()
    assert producers == [block.conv1] and consumers == [block.conv2]


@pytest.fixture(scope="module")
def r50_pair():
    """TSN-R50 and AdaFuse-TSN-R50 at the paper's 174 classes, built once for this file."""
    torch.manual_seed(0)
    return build_model("tsn_r50", num_frames=T), build_model("adafuse_tsn_r50", num_frames=T)


@pytest.mark.parametrize("plain,ada", [("tsn_r18", "adafuse_tsn_r18"), ("tsn_r50", "adafuse_tsn_r50"),
                                       ("tsm_r18", "adafuse_tsm_r18")])
def test_keep_all_policy_gives_the_plain_backbone(plain, ada, clip, r50_pair):
    torch.manual_seed(0)
    if plain == "tsn_r50":
        dense, gated = r50_pair
    else:
        dense, gated = build_model(plain, num_classes=5, num_frames=T), build_model(ada, num_classes=5, num_frames=T)
    randomize_bn(dense)
    result = gated.load_state_dict(dense.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".fusion.policy." in k for k in result.missing_keys)
    if plain.startswith("tsm"):  # AdaFuse-TSM shifts the downsample input too; standard TSM does not
        for m in gated.modules():
            if hasattr(m, "shift_shortcut"):
                m.shift_shortcut = False
    inject_policy(gated, keep_all(gated))
    dense.eval(), gated.eval()
    with torch.no_grad():
        expected, got = dense(clip), gated(clip)
    inject_policy(gated, None)
    assert torch.equal(expected, got)


def test_adafuse_tsm_downsample_sees_the_shifted_input(clip):
    torch.manual_seed(0)
    tsm, ada = build_model("tsm_r50", num_classes=5, num_frames=T), build_model("adafuse_tsm_r50", num_frames=T,
                                                                               num_classes=5)
    ada.load_state_dict(tsm.state_dict(), strict=False)
    inject_policy(ada, keep_all(ada))
    seen = {}

    def record(name):
        def hook(module, args):
            seen[name] = args[0]
        return hook

    for name, model in (("tsm", tsm), ("ada", ada)):
        block = model.backbone.layer2[0]
        assert block.downsample is not None
        block.downsample.register_forward_pre_hook(record(name + "_down"))
        block.register_forward_pre_hook(record(name + "_in"))
        with torch.no_grad():
            model.eval()(clip)
    assert torch.equal(seen["tsm_down"], seen["tsm_in"])
    assert torch.equal(seen["ada_down"], temporal_shift(seen["ada_in"], T))
    assert not torch.equal(seen["ada_down"], seen["ada_in"])
    # blocks without downsample add the unshifted identity in both
    x = torch.randn(N * T, 256, 4, 4)
    block = ada.backbone.layer1[1]
    assert isinstance(block, Bottleneck) and block.downsample is None
    inner, identity = block._enter(x)
    assert torch.equal(identity, x) and torch.equal(inner, temporal_shift(x, T))


def test_r50_quota_policy_sharing_and_parameter_counts(r50_pair):
    tsn, ada = r50_pair
    fusions = fusion_modules(ada)
    assert len(fusions) == 16
    fc0s = {id(f.policy.fc0) for f in fusions}
    fc1s = {id(f.policy.fc1) for f in fusions}
    bns = {id(f.policy.bn) for f in fusions}
    assert len(fc0s) == 8 and len(fc1s) == 8 and len(bns) == 16
    by_shape = {}
    for f in fusions:
        key = (f.policy.in_channels, f.channels)
        by_shape.setdefault(key, f.policy)
        assert f.policy.fc0 is by_shape[key].fc0 and f.policy.fc1 is by_shape[key].fc1
        assert f.policy.hidden == 196608 // f.channels
    n_tsn = sum(p.numel() for p in tsn.parameters())
    n_ada = sum(p.numel() for p in ada.parameters())
    assert n_ada - n_tsn == 13_822_080  # SPEC 1.3
    assert n_ada == 37_686_638  # released code: 37.687M at 174 classes
    last = build_model("adafuse_tsm_last_r50")
    assert len(fusion_modules(last)) == 3
    assert sum(p.numel() for p in last.parameters()) - n_tsn == 15_218_176
    r18 = sum(p.numel() for p in build_model("adafuse_tsn_r18").parameters())
    assert r18 - sum(p.numel() for p in build_model("tsn_r18").parameters()) == 4_474_496
