"""BN-Inception (TSN) and AdaFuse-BNInception: shapes, parameter counts, FLOPs, fusion wiring, port keys."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from adafuse.models import (
    KEEP,
    REUSE,
    SKIP,
    build_model,
    collect_masks,
    fusion_modules,
    inject_policy,
)
from adafuse.models.bninception import INCEPTION_MODULES, BNInception, Conv, InceptionModule
from adafuse.models.fusion import previous_frame

N, T, SIZE = 2, 2, 64


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny CPU models: one intra-op thread avoids oversubscription on shared machines (no effect on values
    beyond float rounding, which the tolerances cover)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
GATES = [(192, 256), (256, 320), (320, 576), (576, 576), (576, 576), (576, 608), (608, 608), (608, 1056),
         (1056, 1024), (1024, 1024)]  # SPEC 1.2: (C_in, C_out) of each inception module


def clip(n: int = N, t: int = T, size: int = SIZE) -> torch.Tensor:
    return torch.randn(n, t, 3, size, size, generator=torch.Generator().manual_seed(0))


def one_hot(action: int, nt: int, channels: int) -> torch.Tensor:
    mask = torch.zeros(nt, channels, 3)
    mask[..., action] = 1.0
    return mask


def random_mask(nt: int, channels: int, seed: int) -> torch.Tensor:
    idx = torch.randint(0, 3, (nt, channels), generator=torch.Generator().manual_seed(seed))
    return nn.functional.one_hot(idx, 3).float()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def dense() -> nn.Module:
    torch.manual_seed(0)
    return build_model("tsn_bninception", num_frames=T).eval()


@pytest.fixture(scope="module")
def adafuse(dense: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    model = build_model("adafuse_tsn_bninception", num_frames=T)
    missing, unexpected = model.load_state_dict(dense.state_dict(), strict=False)
    assert unexpected == []
    assert missing and all(".fusion.policy." in k for k in missing), missing
    return model.eval()


def test_shapes_and_masks(dense: nn.Module, adafuse: nn.Module) -> None:
    x = clip()
    with torch.no_grad():
        assert dense(x).shape == (N, 174)
        assert adafuse.backbone(x.flatten(0, 1)).shape == (N * T, 1024)
        assert adafuse(x).shape == (N, 174)
    masks = collect_masks(adafuse)
    assert [m.shape for m in masks] == [(N * T, c_out, 3) for _, c_out in GATES]
    assert [(f.policy.in_channels, f.channels) for f in fusion_modules(adafuse)] == GATES
    assert all(torch.equal(m.sum(-1), torch.ones(m.shape[:2])) for m in masks)


def test_parameter_counts_match_paper() -> None:
    # SPEC 5: TSN-BNInc 10.449M, AdaFuse-Inc 14.499M at 174 classes (H = 128 unshared: +4.05M).
    dense, ada = build_model("tsn_bninception"), build_model("adafuse_tsn_bninception")
    assert round(n_params(dense) / 1e6, 3) == 10.449
    assert round(n_params(ada) / 1e6, 3) == 14.499
    assert round((n_params(ada) - n_params(dense)) / 1e6, 2) == 4.05
    assert all(f.policy.hidden == 128 for f in fusion_modules(ada))
    assert len({id(f.policy.fc0) for f in fusion_modules(ada)}) == 10  # unshared
    assert {f.policy.hidden for f in fusion_modules(build_model("adafuse_tsn_bninception", policy_hidden=64))} == {64}


def thop_gflops(model: nn.Module, x: torch.Tensor) -> float:
    """Paper convention (SPEC 2): conv MACs (+1 per output if bias), BN 2x elements, Linear 2x MACs,
    average pooling 2x outputs (negligible here)."""
    total = 0.0

    def count(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += out.numel() * (m.in_channels // m.groups * k + (m.bias is not None))
        elif isinstance(m, nn.BatchNorm2d):
            total += 2 * out.numel()
        elif isinstance(m, nn.Linear):
            total += 2 * out.numel() * m.in_features
        elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            total += 2 * out.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total / 1e9


def test_flops_per_video_match_paper(dense: nn.Module) -> None:
    per_frame = thop_gflops(dense.backbone, torch.randn(1, 3, 224, 224)) + 2 * 1024 * 174 / 1e9
    assert round(8 * per_frame, 1) == 16.4  # Table 1: TSN-BNInc 16.4 GFLOPs per 8-frame video


def test_keep_all_policy_gives_dense_logits(dense: nn.Module, adafuse: nn.Module) -> None:
    x = clip()
    inject_policy(adafuse, [one_hot(KEEP, N * T, c) for _, c in GATES])
    try:
        with torch.no_grad():
            torch.testing.assert_close(adafuse(x), dense(x), rtol=1e-5, atol=1e-6)
    finally:
        inject_policy(adafuse, None)


def test_fusion_fuses_the_concatenated_output(adafuse: nn.Module) -> None:
    """Module 4c gets a random mask (others keep): its output is keep*y[t] + reuse*y[t-1], skip -> 0."""
    gated = 5
    masks = [one_hot(KEEP, N * T, c) for _, c in GATES]
    masks[gated] = random_mask(N * T, GATES[gated][1], seed=3)
    seen = {}
    module = adafuse.backbone.inception_4c
    hook = module.fusion.register_forward_hook(lambda m, args, out: seen.update(x=args[0], y=args[1], out=out))
    inject_policy(adafuse, masks)
    try:
        with torch.no_grad():
            adafuse(clip())
    finally:
        hook.remove()
        inject_policy(adafuse, None)
    y, out, mask = seen["y"], seen["out"], masks[gated]
    assert seen["x"].shape[1] == 576 and y.shape[1] == 608
    expected = y * mask[..., KEEP, None, None] + previous_frame(y, T) * mask[..., REUSE, None, None]
    torch.testing.assert_close(out, expected)
    skipped = mask[..., SKIP].bool()
    assert skipped.any() and out[skipped].abs().max() == 0
    # reuse copies the previous frame's pre-fusion output channel; at t = 0 it gives zeros
    first = torch.arange(N * T) % T == 0
    reuse = mask[..., REUSE].bool()
    prev = torch.roll(y, 1, dims=0)
    assert torch.equal(out[reuse & ~first[:, None]], prev[reuse & ~first[:, None]])
    assert out[reuse & first[:, None]].abs().max() == 0


def test_reuse_everything_copies_previous_frame(adafuse: nn.Module) -> None:
    masks = [one_hot(KEEP, N * T, c) for _, c in GATES]
    masks[-1] = one_hot(REUSE, N * T, GATES[-1][1])
    seen = {}
    hook = adafuse.backbone.inception_5b.register_forward_hook(lambda m, args, out: seen.update(out=out))
    pre = adafuse.backbone.inception_5b.fusion.register_forward_hook(lambda m, args, out: seen.update(y=args[1]))
    inject_policy(adafuse, masks)
    try:
        with torch.no_grad():
            adafuse(clip())
    finally:
        hook.remove()
        pre.remove()
        inject_policy(adafuse, None)
    out, y = seen["out"].view(N, T, *seen["out"].shape[1:]), seen["y"].view(N, T, *seen["y"].shape[1:])
    assert torch.equal(out[:, 1:], y[:, :-1])
    assert out[:, 0].abs().max() == 0


def test_gradient_reaches_every_policy_in_train_mode() -> None:
    torch.manual_seed(0)
    model = build_model("adafuse_tsn_bninception", num_classes=5, num_frames=T).train()
    loss = model(clip()).logsumexp(dim=1).sum()
    loss.backward()
    for i, f in enumerate(fusion_modules(model)):
        for layer in (f.policy.fc0, f.policy.fc1):
            assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, f"policy {i}"


def test_fusion_cost_layers() -> None:
    backbone = BNInception()
    modules = list(backbone.inception_modules())
    for i, module in enumerate(modules):
        producers, consumers = module.fusion_cost_layers()
        in_channels, branches = list(INCEPTION_MODULES.values())[i]
        passed_through = module.out_channels - sum(p.out_channels for p in producers)
        assert passed_through == (in_channels if i in (2, 7) else 0)  # 3c, 4e: max-pool branch
        if i + 1 < len(modules):
            assert consumers == modules[i + 1].input_convs()
            assert all(c.in_channels == module.out_channels for c in consumers)
            next_branches = list(INCEPTION_MODULES.values())[i + 1][1]
            assert len(consumers) == sum(any(isinstance(layer, Conv) for layer in b) for b in next_branches)
        else:
            assert consumers == []
    # the consumer references are not registered: every tensor appears once in the state dict
    keys = list(backbone.state_dict())
    assert len(keys) == len(set(keys)) and not any("consumers" in k for k in keys)
    assert len(keys) == len({id(t) for t in backbone.state_dict().values()})
    clone = copy.deepcopy(backbone)
    clone_modules = list(clone.inception_modules())
    assert clone_modules[0].fusion_cost_layers()[1] == clone_modules[1].input_convs()


def test_port_state_dict_file_loads() -> None:
    """A state dict with the pretrainedmodels/TSN port's flat keys and (1, C) BN tensors loads."""
    source = BNInception()
    port = {}
    for key, value in source.state_dict().items():
        head, rest = key.split(".", 1)
        if head.startswith("inception_"):
            key = f"{head}_{rest}"
        if "_bn." in key and value.dim() == 1:
            value = value[None]
        port[key] = value.clone()
    assert "inception_3a_double_3x3_1.weight" in port and "inception_3a_pool_proj_bn.running_var" in port
    assert "conv1_7x7_s2_bn.weight" in port
    port["last_linear.weight"] = torch.zeros(1000, 1024)
    converted = BNInception.convert_pretrained_keys(port)
    assert set(converted) - set(source.state_dict()) == {"last_linear.weight"}
    assert all(converted[k].shape == v.shape for k, v in source.state_dict().items())
    target = BNInception()
    result = target.load_state_dict(port, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == ["last_linear.weight"]
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    # and through the recognizer (prefix "backbone.")
    model = build_model("adafuse_tsn_bninception")
    result = model.load_state_dict({f"backbone.{k}": v for k, v in port.items()}, strict=False)
    assert all(".fusion." in k or k.startswith("head.") for k in result.missing_keys)
    assert torch.equal(model.backbone.inception_4e.double_3x3_2_bn.running_var,
                       source.inception_4e.double_3x3_2_bn.running_var)


def test_model_metadata_rebuilds() -> None:
    model = build_model("adafuse_tsn_bninception", num_classes=27, policy_hidden=32)
    assert model.arch == "adafuse_tsn_bninception"
    spec = model.input_spec
    assert spec.bgr and spec.value_range == 255.0 and spec.mean == (104, 117, 128) and spec.std == (1, 1, 1)
    rebuilt = build_model(model.arch, **model.build_config)
    assert rebuilt.load_state_dict(model.state_dict()) is not None
    assert isinstance(rebuilt.backbone.inception_3a, InceptionModule)


def test_unsupported_input_size_names_the_problem(dense: nn.Module) -> None:
    with pytest.raises(ValueError, match="inception branches"), torch.no_grad():
        dense.backbone(torch.randn(1, 3, 80, 80))
