"""Released-checkpoint converter: an inverse mapping produces released-style state dicts from our models;
converting them back must give identical tensors and identical logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adafuse.cli import main as cli_main
from adafuse.models import AdaptiveFusion, build_model, fusion_modules, inject_policy
from adafuse.models.convert import (
    convert_released_checkpoint,
    convert_state_dict,
    inspect_released,
    ours_gate_rows_to_released,
    released_gate_rows_to_ours,
)
from adafuse.models.serialization import model_from_checkpoint

N, T = 1, 4


def to_released(model) -> dict[str, torch.Tensor]:
    """Our state dict -> the released DataParallel layout (the inverse of the converter)."""
    policies = {name: m.policy for name, m in model.named_modules() if isinstance(m, AdaptiveFusion)}
    shared = len({id(p.fc0) for p in policies.values()}) < len(policies)
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("head.fc."):
            out["module.new_fc." + key.removeprefix("head.fc.")] = value
            continue
        rest = key.removeprefix("backbone.").replace(".downsample.0.", ".downsample0.")
        rest = rest.replace(".downsample.1.", ".downsample1.")
        if ".fusion.policy." not in rest:
            out["module.base_model." + rest] = value
            continue
        block, tail = rest.split(".fusion.policy.")
        layer, param = tail.split(".")
        policy = policies[f"backbone.{block}.fusion"]
        if layer == "fc1":
            value = ours_gate_rows_to_released(value, policy.channels)
        out[f"module.base_model.{block}.policy_net.gate_{layer}.{param}"] = value
        if shared and layer in ("fc0", "fc1"):
            gate_key = f"{2 * policy.in_channels}_{3 * policy.channels}"
            out[f"module.base_model.gate_{layer}s.{gate_key}.{param}"] = value
    return out


def randomize(model, seed=0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".fusion.policy." in name or name.startswith("head."):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def random_masks(model, seed=1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [F.one_hot(torch.randint(0, 3, (N * T, f.channels), generator=g), 3).float() for f in fusion_modules(model)]


def assert_same_model(ours, converted, clip):
    a, b = ours.state_dict(), converted.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ours.eval(), converted.eval()
    with torch.no_grad():
        assert torch.equal(ours(clip), converted(clip))  # the model's own (argmax) policy
        masks = random_masks(ours)
        inject_policy(ours, masks), inject_policy(converted, masks)
        assert torch.equal(ours(clip), converted(clip))
        inject_policy(ours, None), inject_policy(converted, None)


@pytest.fixture(scope="module")
def clip():
    return torch.randn(N, T, 3, 64, 64, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("layout", ["channel_major", "action_major"])
def test_gate_row_layout_roundtrip(layout):
    c, h = 5, 7
    ours = torch.randn(3 * c, h)
    for actions in (("skip", "reuse", "keep"), ("keep", "skip", "reuse")):
        released = ours_gate_rows_to_released(ours, c, layout, actions)
        assert torch.equal(released_gate_rows_to_ours(released, c, layout, actions), ours)
        bias = torch.arange(3 * c).float()
        back = released_gate_rows_to_ours(ours_gate_rows_to_released(bias, c, layout, actions), c, layout, actions)
        assert torch.equal(back, bias)
    # the released layout is ours: view(N*T, C, 3) with (skip, reuse, keep)
    assert torch.equal(released_gate_rows_to_ours(ours, c), ours)
    grid = released_gate_rows_to_ours(torch.arange(3 * c).float(), c, "action_major").view(c, 3)
    assert grid[1].tolist() == [1.0, 1.0 + c, 1.0 + 2 * c]


def test_r50_quota_shared_layout(clip):
    torch.manual_seed(0)
    ours = build_model("adafuse_tsn_r50", num_classes=11, num_frames=T)
    randomize(ours)
    released = to_released(ours)
    assert "module.base_model.gate_fc0s.128_192.weight" in released  # layer1.0: 2*64 -> 3*64
    assert "module.base_model.gate_fc1s.2048_1536.bias" in released  # layer4.0: 2*1024 -> 3*512
    assert "module.base_model.layer2.0.downsample0.weight" in released
    layout = inspect_released(released)
    assert layout.depth == "r50" and layout.num_classes == 11 and layout.shared
    assert layout.hidden["layer1.0"] == 3072 and layout.hidden["layer4.2"] == 384

    with pytest.raises(ValueError, match="pass arch='adafuse_tsn_r50'"):
        convert_released_checkpoint(released)
    converted, report = convert_released_checkpoint(released, arch="adafuse_tsn_r50", num_frames=T)
    assert report.arch == converted.arch == "adafuse_tsn_r50" and report.shared_policy
    assert converted.build_config["policy_hidden"] is None
    assert_same_model(ours, converted, clip)
    shared = {id(f.policy.fc0) for f in fusion_modules(converted)}
    assert len(shared) == 8

    # a shared copy that disagrees with a block's copy is an error
    broken = dict(released)
    key = "module.base_model.gate_fc0s.512_384.bias"  # layer2.0: 2*256 -> 3*128
    broken[key] = torch.ones_like(broken[key])
    with pytest.raises(ValueError, match="differs from the shared"):
        convert_state_dict(broken, converted)


def test_tsm_last_is_inferred_and_cli_writes_our_checkpoint(tmp_path, clip):
    torch.manual_seed(0)
    ours = build_model("adafuse_tsm_last_r18", num_classes=6, num_frames=T)
    randomize(ours, seed=3)
    src = tmp_path / "sthv1_adatsm18last.pth.tar"
    torch.save({"state_dict": to_released(ours)}, src)
    converted, report = convert_released_checkpoint(src, num_frames=T)
    assert report.arch == "adafuse_tsm_last_r18" and report.gated_blocks == ["layer4.0", "layer4.1"]
    assert converted.build_config["policy_hidden"] == 1024 and not report.shared_policy
    assert_same_model(ours, converted, clip)

    dst = tmp_path / "out" / "converted.pt"
    assert cli_main(["convert", str(src), "--out", str(dst), "--num-frames", str(T)]) == 0
    loaded, payload = model_from_checkpoint(dst)
    assert payload["arch"] == "adafuse_tsm_last_r18" and "converted_from" in payload
    assert_same_model(ours, loaded, clip)


def test_tsn_tsm_from_file_name_and_errors(tmp_path, clip):
    torch.manual_seed(0)
    ours = build_model("adafuse_tsm_r18", num_classes=4, num_frames=T)
    randomize(ours, seed=5)
    released = to_released(ours)
    src = tmp_path / "sthv1_adatsm18.pth.tar"
    torch.save({"state_dict": released}, src)
    converted, report = convert_released_checkpoint(src, num_frames=T)
    assert report.arch == "adafuse_tsm_r18"
    assert_same_model(ours, converted, clip)
    converted, _ = convert_released_checkpoint(released, num_frames=T, name_hint="adatsn18")
    assert converted.arch == "adafuse_tsn_r18"

    with pytest.raises(ValueError, match="does not match the checkpoint"):
        convert_released_checkpoint(released, arch="adafuse_tsm_last_r18")
    with pytest.raises(ValueError, match="ResNet-50 but the checkpoint is a ResNet-18"):
        convert_released_checkpoint(released, arch="adafuse_tsn_r50")
    with pytest.raises(KeyError, match="known models"):
        convert_released_checkpoint(released, arch="adafuse_tsn_r19")
    extra = dict(released, **{"module.base_model.fc.weight": torch.zeros(3, 512)})
    with pytest.raises(ValueError, match="no place.*base_model.fc.weight"):
        convert_state_dict(extra, converted)
    lacking = {k: v for k, v in released.items() if ".layer3.1.bn1." not in k}
    with pytest.raises(ValueError, match="lacks 4 tensors.*backbone.layer3.1.bn1.weight"):
        convert_state_dict(lacking, converted)
    wrong = dict(released, **{"module.new_fc.weight": torch.zeros(9, 512)})
    with pytest.raises(ValueError, match=r"new_fc.weight has \(9, 512\), our head.fc.weight expects \(4, 512\)"):
        convert_state_dict(wrong, converted)
    with pytest.raises(ValueError, match="no policy_net"):
        inspect_released({k: v for k, v in released.items() if "policy_net" not in k})


# ------------------------------------------------------------------------------------------- BN-Inception


def to_released_bninception(model) -> dict[str, torch.Tensor]:
    """Our BN-Inception state dict -> the released layout: the port's names under ``module.base_model.``
    (``inception_3a_1x1``), gates ``policy_net_3a.gate_*``, classifier ``new_fc`` (the inverse mapping)."""
    policies = {name: m.policy for name, m in model.named_modules() if isinstance(m, AdaptiveFusion)}
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("head.fc."):
            out["module.new_fc." + key.removeprefix("head.fc.")] = value
            continue
        rest = key.removeprefix("backbone.")
        if ".fusion.policy." in rest:
            module, tail = rest.split(".fusion.policy.")
            layer, param = tail.split(".")
            if layer == "fc1":
                value = ours_gate_rows_to_released(value, policies[f"backbone.{module}.fusion"].channels)
            out[f"module.base_model.policy_net_{module.removeprefix('inception_')}.gate_{layer}.{param}"] = value
            continue
        if rest.startswith("inception_"):
            head, tail = rest.split(".", 1)
            rest = f"{head}_{tail}"
        out["module.base_model." + rest] = value
    return out


@pytest.mark.parametrize("arch", ["adafuse_tsn_bninception", "tsn_bninception"])
def test_bninception_round_trip(arch, tmp_path, clip):
    torch.manual_seed(0)
    ours = build_model(arch, num_classes=7, num_frames=T)
    randomize(ours, seed=7)
    released = to_released_bninception(ours)
    assert "module.base_model.inception_3a_1x1.weight" in released and "module.new_fc.bias" in released
    gated = arch.startswith("adafuse")
    assert ("module.base_model.policy_net_5b.gate_fc1.weight" in released) == gated
    # some copies of the port store BatchNorm tensors as (1, C)
    key = "module.base_model.inception_4a_pool_proj_bn.running_var"
    released[key] = released[key].unsqueeze(0)
    src = tmp_path / "sthv1_bninc.pth.tar"
    torch.save({"state_dict": released}, src)
    converted, report = convert_released_checkpoint(src, num_frames=T)
    assert report.arch == converted.arch == arch and report.num_classes == 7
    assert len(report.gated_blocks) == (10 if gated else 0)
    if gated:
        assert set(report.policy_hidden.values()) == {128} and converted.build_config["policy_hidden"] is None
    if gated:
        assert_same_model(ours, converted, clip)
    else:
        a, b = ours.state_dict(), converted.state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
        ours.eval()
        with torch.no_grad():
            assert torch.equal(ours(clip), converted(clip))
    dst = tmp_path / "converted.pt"
    assert cli_main(["convert", str(src), "--out", str(dst), "--num-frames", str(T)]) == 0
    loaded, payload = model_from_checkpoint(dst)
    assert payload["arch"] == arch and payload["input_spec"]["bgr"]
    assert all(torch.equal(v, converted.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_bninception_errors():
    torch.manual_seed(0)
    ours = build_model("adafuse_tsn_bninception", num_classes=3, num_frames=T, policy_hidden=16)
    released = to_released_bninception(ours)
    converted, report = convert_released_checkpoint(released, num_frames=T)
    assert converted.build_config["policy_hidden"] == 16 and report.policy_hidden["inception_4e"] == 16
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        convert_released_checkpoint(released, arch="tsn_bninception")
    with pytest.raises(ValueError, match="gates inception modules"):
        convert_released_checkpoint({k: v for k, v in released.items() if "policy_net_3c." not in k})
    lacking = {k: v for k, v in released.items() if "inception_5a_3x3_bn." not in k}
    with pytest.raises(ValueError, match="lacks 4 tensors.*backbone.inception_5a.3x3_bn.weight"):
        convert_released_checkpoint(lacking)
    extra = dict(released, **{"module.base_model.fc.weight": torch.zeros(3, 1024)})
    with pytest.raises(ValueError, match="no place.*base_model.fc.weight"):
        convert_released_checkpoint(extra)
