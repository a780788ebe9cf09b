"""EfficientNet-b0..b3 and -Lite0 (TSN) and AdaFuse-EfficientNet: shapes, parameter counts, fusion wiring, key
names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from adafuse.models import KEEP, REUSE, SKIP, build_model, collect_masks, fusion_modules, inject_policy
from adafuse.models.efficientnet import (
    VARIANTS,
    EfficientNet,
    MBConv,
    Variant,
    convert_lukemelas_keys,
    round_filters,
    round_repeats,
)
from adafuse.models.fusion import previous_frame
from adafuse.models.recognizer import IMAGENET_MEAN
from adafuse.pixels import EFFICIENTNET_LITE_MEAN

N, T, SIZE = 2, 2, 32


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny CPU models: one intra-op thread avoids oversubscription on shared machines (no effect on values
    beyond float rounding, which the tolerances cover)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clip(size: int = SIZE) -> torch.Tensor:
    return torch.randn(N, T, 3, size, size, generator=torch.Generator().manual_seed(0))


def one_hot(action: int, nt: int, channels: int) -> torch.Tensor:
    mask = torch.zeros(nt, channels, 3)
    mask[..., action] = 1.0
    return mask


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gated_blocks(model: nn.Module) -> list[MBConv]:
    return [m for m in model.modules() if isinstance(m, MBConv) and m.fusion is not None]


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    dense = build_model("tsn_effb0", num_frames=T).eval()
    ada = build_model("adafuse_tsn_effb0", num_frames=T)
    missing, unexpected = ada.load_state_dict(dense.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(".fusion.policy." in k for k in missing), missing
    return dense, ada.eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_shapes(variant: str) -> None:
    torch.manual_seed(0)
    feature_dim = {"b0": 1280, "b1": 1280, "b2": 1408, "b3": 1536, "lite0": 1280}[variant]
    mean = EFFICIENTNET_LITE_MEAN if VARIANTS[variant].lite else IMAGENET_MEAN
    for name in (f"tsn_eff{variant}", f"adafuse_tsn_eff{variant}"):
        model = build_model(name, num_classes=7, num_frames=T).eval()
        assert model.arch == name and model.feature_dim == feature_dim
        assert model.input_spec.size == VARIANTS[variant].resolution and model.input_spec.mean == mean
        with torch.no_grad():
            assert model(clip()).shape == (N, 7)
        for f in fusion_modules(model):
            assert f.last_mask is not None and f.last_mask.shape == (N * T, f.channels, 3)


def test_scaling_rules() -> None:
    widths = {v: [round_filters(c, s.width_mult) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)]
              for v, s in VARIANTS.items()}
    assert widths["b0"] == widths["b1"] == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert widths["b2"] == [32, 16, 24, 48, 88, 120, 208, 352, 1408]
    assert widths["b3"] == [40, 24, 32, 48, 96, 136, 232, 384, 1536]
    depths = {v: [round_repeats(r, s.depth_mult) for r in (1, 2, 2, 3, 3, 4, 1)] for v, s in VARIANTS.items()}
    assert depths == {"b0": [1, 2, 2, 3, 3, 4, 1], "b1": [2, 3, 3, 4, 4, 5, 2], "b2": [2, 3, 3, 4, 4, 5, 2],
                      "b3": [2, 3, 3, 5, 5, 6, 2], "lite0": [1, 2, 2, 3, 3, 4, 1]}


def test_parameter_counts() -> None:
    """ImageNet-head (1000 classes) backbones: 5.29/7.79/9.11/12.23M (paper Table 2 prints the EfficientNet
    paper's rounded 5.3/7.8/9.2/12.0M). Policy overhead of the quota rule: +3.96/4.62/4.63/4.62M (SPEC 1.3),
    which added to those printed baselines gives the paper's 9.3/12.4/13.8/16.6M."""
    dense_1000 = {"b0": 5.29, "b1": 7.79, "b2": 9.11, "b3": 12.23}
    overhead = {"b0": 3.96, "b1": 4.62, "b2": 4.63, "b3": 4.62}
    paper_baseline = {"b0": 5.3, "b1": 7.8, "b2": 9.2, "b3": 12.0}
    paper_adafuse = {"b0": 9.3, "b1": 12.4, "b2": 13.8, "b3": 16.6}
    for v in dense_1000:
        dense = n_params(build_model(f"tsn_eff{v}", num_classes=1000))
        ada = build_model(f"adafuse_tsn_eff{v}", num_classes=1000)
        extra = n_params(ada) - dense
        assert round(dense / 1e6, 2) == dense_1000[v]
        assert round(extra / 1e6, 2) == overhead[v]
        assert round(paper_baseline[v] + extra / 1e6, 1) == paper_adafuse[v]
        assert n_params(build_model(f"adafuse_tsn_eff{v}", num_classes=174)) - n_params(
            build_model(f"tsn_eff{v}", num_classes=174)) == extra


def test_policy_placement_and_quota_rule() -> None:
    model = build_model("adafuse_tsn_effb0")
    blocks = [m for m in model.modules() if isinstance(m, MBConv)]
    assert len(blocks) == 16 and [b.fusion is not None for b in blocks] == [b.expand_ratio == 6 for b in blocks]
    fusions = fusion_modules(model)
    assert len(fusions) == 15
    assert [f.policy.hidden for f in fusions] == [196608 // f.channels for f in fusions]
    shapes = {(f.policy.in_channels, f.channels) for f in fusions}
    assert len({id(f.policy.fc0) for f in fusions}) == len(shapes) == 6  # fc0/fc1 shared by (2*C_in, 3*C)
    assert len({id(f.policy.bn) for f in fusions}) == 15
    hidden = build_model("adafuse_tsn_effb0", policy_hidden=16)
    assert {f.policy.hidden for f in fusion_modules(hidden)} == {16}
    assert len({id(f.policy.fc0) for f in fusion_modules(hidden)}) == 15


def test_macs_at_native_resolution_match_the_paper() -> None:
    """Paper Table 2 (3.1/5.6/8.0/14.4 G per 8-frame video) is 8x the EfficientNet paper's per-image
    multiply-adds at 224/240/260/300 px; ours (conv + Linear MACs, 1000 classes) are within 2.5%."""
    paper = {"b0": 3.1, "b1": 5.6, "b2": 8.0, "b3": 14.4}
    for v in paper:
        backbone = EfficientNet(v).eval()
        per_video = 8 * (sum(conv_macs(backbone, VARIANTS[v].resolution).values()) + backbone.feature_dim * 1000) / 1e9
        assert abs(per_video / paper[v] - 1) < 0.025, (v, per_video)


def conv_macs(backbone: nn.Module, size: int) -> dict[str, int]:
    """Multiply-adds of every conv of ``backbone`` (by module name) on one ``size`` x ``size`` image."""
    names = {m: n for n, m in backbone.named_modules()}
    macs: dict[str, int] = {}

    def count(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        macs[names[m]] = out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        backbone(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    return macs


def test_lite0_is_b0_without_squeeze_excitation_with_relu6() -> None:
    """Lite0: b0's convs minus the SE convs (same names, shapes and MACs), ReLU6 wherever b0 has swish, no SE;
    4.65M parameters with a 1000-class head (EfficientNet-Lite0 is published as 4.7M)."""
    lite, b0 = EfficientNet("lite0").eval(), EfficientNet("b0").eval()
    lite_types = [type(m) for m in lite.modules()]
    assert nn.SiLU not in lite_types and nn.Sigmoid not in lite_types
    assert lite_types.count(nn.ReLU6) == [type(m) for m in b0.modules()].count(nn.SiLU) - 16  # b0: 1 swish per SE
    assert all(b.se is None and b.project is b.block[-1] for b in lite.modules() if isinstance(b, MBConv))
    b0_macs = conv_macs(b0, 224)
    b0_macs = {k.replace(".block.3.", ".block.2."): v for k, v in b0_macs.items() if ".fc" not in k}
    b0_macs = {(k.replace(".block.2.", ".block.1.") if k.startswith("features.1.") else k): v
               for k, v in b0_macs.items()}
    assert conv_macs(lite, 224) == b0_macs
    assert round(n_params(build_model("tsn_efflite0", num_classes=1000)) / 1e6, 2) == 4.65


def test_lite_keeps_stem_head_and_outer_stages_unscaled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wider, deeper Lite (lite4's multipliers): stem 32 and head 1280 stay, so do the first and last stage's
    depths; the other stages scale as in b0..b3."""
    monkeypatch.setitem(VARIANTS, "lite_wide", Variant(1.4, 1.8, 300, 0.3, lite=True))
    net = EfficientNet("lite_wide")
    assert net.features[0][0].out_channels == 32 and net.feature_dim == net.features[-1][0].out_channels == 1280
    assert [len(net.features[s]) for s in range(1, 8)] == [1, 4, 4, 6, 6, 8, 1]
    assert net.features[2][0].out_channels == round_filters(24, 1.4)


def test_lukemelas_key_names() -> None:
    """lukemelas' EfficientNet-PyTorch names (the published Lite0 file's layout) map to ours, with and without SE."""
    lite, b0 = EfficientNet("lite0"), EfficientNet("b0")
    names = ["_conv_stem.weight", "_bn0.running_var", "_blocks.0._depthwise_conv.weight", "_blocks.0._bn1.bias",
             "_blocks.0._project_conv.weight", "_blocks.1._expand_conv.weight", "_blocks.1._bn0.weight",
             "_blocks.1._bn2.running_mean", "_blocks.15._project_conv.weight", "_conv_head.weight", "_bn1.weight",
             "_fc.bias", "_blocks.16._bn0.weight", "something.else"]
    mapped = list(convert_lukemelas_keys(dict.fromkeys(names, torch.zeros(1)), lite))
    assert mapped == ["features.0.0.weight", "features.0.1.running_var", "features.1.0.block.0.0.weight",
                      "features.1.0.block.0.1.bias", "features.1.0.block.1.0.weight", "features.2.0.block.0.0.weight",
                      "features.2.0.block.0.1.weight", "features.2.0.block.2.1.running_mean",
                      "features.7.0.block.2.0.weight", "features.8.0.weight", "features.8.1.weight", "fc.bias",
                      "_blocks.16._bn0.weight", "something.else"]  # no 17th block, unknown: unchanged
    se = ["_blocks.0._se_reduce.weight", "_blocks.2._se_expand.bias", "_blocks.2._project_conv.weight"]
    assert list(convert_lukemelas_keys(dict.fromkeys(se, torch.zeros(1)), b0)) == [
        "features.1.0.block.1.fc1.weight", "features.2.1.block.2.fc2.bias", "features.2.1.block.3.0.weight"]
    assert set(mapped[:11]) <= set(lite.state_dict())


def test_keep_all_policy_gives_dense_logits(pair: tuple[nn.Module, nn.Module]) -> None:
    dense, ada = pair
    x = clip()
    inject_policy(ada, [one_hot(KEEP, N * T, f.channels) for f in fusion_modules(ada)])
    try:
        with torch.no_grad():
            torch.testing.assert_close(ada(x), dense(x), rtol=1e-5, atol=1e-6)
    finally:
        inject_policy(ada, None)


def test_gated_tensor_feeds_the_depthwise_conv(pair: tuple[nn.Module, nn.Module]) -> None:
    """A random mask in one block: the depthwise conv reads keep*y[t] + reuse*y[t-1] of the expansion
    output y (skip -> 0); a reuse copies the previous frame's channel, zeros at t = 0."""
    _, ada = pair
    block = gated_blocks(ada)[4]
    masks = [one_hot(KEEP, N * T, f.channels) for f in fusion_modules(ada)]
    index = fusion_modules(ada).index(block.fusion)
    idx = torch.randint(0, 3, (N * T, block.fusion.channels), generator=torch.Generator().manual_seed(1))
    masks[index] = mask = nn.functional.one_hot(idx, 3).float()
    seen = {}
    hooks = [block.expand.register_forward_hook(lambda m, args, out: seen.update(y=out.clone())),
             block.depthwise[0].register_forward_pre_hook(lambda m, args: seen.update(z=args[0].clone()))]
    inject_policy(ada, masks)
    try:
        with torch.no_grad():
            ada(clip())
    finally:
        for h in hooks:
            h.remove()
        inject_policy(ada, None)
    y, z = seen["y"], seen["z"]
    torch.testing.assert_close(z, y * mask[..., KEEP, None, None] + previous_frame(y, T) * mask[..., REUSE, None, None])
    assert z[mask[..., SKIP].bool()].abs().max() == 0
    reuse = mask[..., REUSE].bool()
    later = (torch.arange(N * T) % T != 0)[:, None]
    assert torch.equal(z[reuse & later], torch.roll(y, 1, dims=0)[reuse & later])
    assert z[reuse & ~later].abs().max() == 0


def test_gradient_reaches_every_policy_in_train_mode() -> None:
    torch.manual_seed(0)
    model = build_model("adafuse_tsn_effb0", num_classes=5, num_frames=T).train()
    model(clip()).logsumexp(dim=1).sum().backward()
    assert len(collect_masks(model)) == 15
    for i, f in enumerate(fusion_modules(model)):
        assert f.policy.bn.weight.grad is not None and f.policy.bn.weight.grad.abs().sum() > 0, f"policy {i}"
        assert f.policy.fc0.weight.grad.abs().sum() > 0 and f.policy.fc1.weight.grad.abs().sum() > 0


def test_fusion_cost_layers() -> None:
    model = build_model("adafuse_tsn_effb1")
    for block in gated_blocks(model):
        (producer,), (consumer,) = block.fusion_cost_layers()
        channels = block.fusion.channels
        assert producer.out_channels == channels == block.in_channels * 6 and producer.in_channels == block.in_channels
        assert consumer.in_channels == consumer.groups == channels  # depthwise: channel c reads only channel c
        assert producer is block.block[0][0] and consumer is block.block[1][0]


def test_torchvision_key_names() -> None:
    keys = set(EfficientNet("b0").state_dict())
    expected = {
        "features.0.0.weight", "features.0.1.running_var",  # stem conv, BN
        "features.1.0.block.0.0.weight", "features.1.0.block.1.fc1.weight", "features.1.0.block.2.1.bias",
        "features.2.0.block.0.0.weight", "features.2.0.block.1.0.weight", "features.2.0.block.2.fc2.bias",
        "features.2.0.block.3.1.num_batches_tracked", "features.7.0.block.3.0.weight", "features.8.0.weight",
        "features.8.1.weight",
    }
    assert expected <= keys
    assert not any(k.startswith(("classifier", "avgpool")) for k in keys)
    # 81 convs (2 SE convs with bias per block) + 49 BatchNorms x 5 tensors: 81 + 32 + 245
    assert len(keys) == 358
    model = build_model("adafuse_tsn_effb0")
    assert all(k.startswith("features.") for k in
               (k.removeprefix("backbone.") for k in model.state_dict() if k.startswith("backbone.")))
    assert "backbone.features.2.0.fusion.policy.fc0.weight" in model.state_dict()


def test_batchnorm_settings_and_rebuild() -> None:
    model = build_model("adafuse_tsn_effb2", num_classes=3, policy_hidden=8)
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in bns} == {(1e-3, 0.01)}
    rebuilt = build_model(model.arch, **model.build_config)
    rebuilt.load_state_dict(model.state_dict())
    tv = build_model("tsn_effb0", bn_eps=1e-5, bn_momentum=0.1, input_size=224)
    assert {(m.eps, m.momentum) for m in tv.modules() if isinstance(m, nn.BatchNorm2d)} == {(1e-5, 0.1)}
