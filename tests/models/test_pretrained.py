"""Loading ImageNet backbone weights from a state-dict file (torchvision names)."""

from __future__ import annotations

import logging

import pytest
import torch

from adafuse.models import build_model, fusion_modules
from adafuse.models.pretrained import MAX_LISTED, load_backbone_weights
from adafuse.models.resnet import ResNet


@pytest.fixture(scope="module")
def imagenet_r18() -> dict[str, torch.Tensor]:
    """A torchvision-style resnet18 state dict (with the ImageNet fc) with random values."""
    torch.manual_seed(1)
    sd = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
          for k, v in ResNet("resnet18").state_dict().items()}
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    return sd


def assert_backbone_equals(model, sd):
    own = model.backbone.state_dict()
    for key, value in sd.items():
        if not key.startswith("fc."):
            assert torch.equal(own[key], value), key


def test_loads_torchvision_names_and_keeps_the_policy(tmp_path, imagenet_r18):
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(imagenet_r18, path)
    model = build_model("adafuse_tsn_r18", num_classes=7)
    policy_before = {k: v.clone() for k, v in model.state_dict().items() if ".fusion." in k}
    head_before = model.head.fc.weight.clone()
    report = load_backbone_weights(model, path)
    assert_backbone_equals(model, imagenet_r18)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in policy_before.items())
    assert torch.equal(model.head.fc.weight, head_before)
    assert report.ignored == ["fc.bias", "fc.weight"]
    assert len(report.loaded) == len(imagenet_r18) - 2
    assert report.policy_from_scratch and all(".fusion.policy." in k for k in report.policy_from_scratch)
    assert not report.missing and not report.unexpected
    assert report.total == len(model.backbone.state_dict())


@pytest.fixture
def adafuse_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """Records of the ``adafuse`` logger (which stops propagating once a training set up its handlers)."""
    monkeypatch.setattr(logging.getLogger("adafuse"), "propagate", True)
    caplog.set_level(logging.INFO, logger="adafuse")
    return caplog


def test_loading_logs_counts_and_names(tmp_path, imagenet_r18, adafuse_log):
    """One INFO line ``loaded N of M backbone tensors from FILE``; missing and unexpected keys named in a WARNING,
    capped at MAX_LISTED names each."""
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(imagenet_r18, path)
    model = build_model("adafuse_tsn_r18", num_classes=7)
    load_backbone_weights(model, path)
    (record,) = adafuse_log.records
    total = len(model.backbone.state_dict())
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(f"loaded {len(imagenet_r18) - 2} of {total} backbone tensors from {path}")
    assert f"{total - len(imagenet_r18) + 2} policy tensors start from scratch" in record.getMessage()
    assert "fc.bias, fc.weight" in record.getMessage()

    adafuse_log.clear()
    partial = {k: v for k, v in imagenet_r18.items() if not k.startswith("layer4.")}
    short = len(imagenet_r18) - len(partial)
    partial |= {f"extra.{i}.weight": torch.zeros(1) for i in range(3)}
    torch.save(partial, path)
    report = load_backbone_weights(build_model("tsn_r18", num_classes=7), path, strict=False)
    info, warning = adafuse_log.records
    assert info.getMessage().startswith(f"loaded {len(report.loaded)} of {len(report.loaded) + short} backbone tensors")
    assert warning.levelno == logging.WARNING
    text = warning.getMessage()
    assert f"{len(report.missing)} backbone tensors missing" in text and "layer4.0.conv1.weight" in text
    assert f"({len(report.missing) - MAX_LISTED} more)" in text and text.count("layer4.") == MAX_LISTED
    assert "3 keys of the file do not exist" in text and all(f"extra.{i}.weight" in text for i in range(3))


def test_wrapped_prefixed_and_old_files(tmp_path, imagenet_r18):
    old = {f"module.{k}": v for k, v in imagenet_r18.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "wrapped.pth.tar"
    torch.save({"epoch": 3, "state_dict": old}, path)
    model = build_model("tsm_r18", num_classes=4)
    report = load_backbone_weights(model, path)
    assert_backbone_equals(model, {k: v for k, v in imagenet_r18.items() if not k.endswith("num_batches_tracked")})
    assert report.buffers_from_scratch and all(k.endswith("num_batches_tracked") for k in report.buffers_from_scratch)


def test_build_model_pretrained_argument(tmp_path, imagenet_r18):
    path = tmp_path / "r18.pth"
    torch.save({"model": imagenet_r18}, path)
    model = build_model("adafuse_tsm_last_r18", num_classes=3, pretrained=str(path))
    assert_backbone_equals(model, imagenet_r18)
    assert len(fusion_modules(model)) == 2


def test_errors_name_the_problem(tmp_path, imagenet_r18):
    model = build_model("tsn_r18", num_classes=3)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_backbone_weights(model, tmp_path / "nowhere.pth")

    path = tmp_path / "not_a_state_dict.pth"
    torch.save({"weights": [1, 2, 3], "epoch": 1}, path)
    with pytest.raises(ValueError, match="'weights' holds a list"):
        load_backbone_weights(model, path)
    path.write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match="cannot read"):
        load_backbone_weights(model, path)

    bad = dict(imagenet_r18)
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"'layer1.0.conv1.weight'.*\(64, 64, 3, 3\).*\(64, 64, 1, 1\)"):
        load_backbone_weights(model, path)

    missing = {k: v for k, v in imagenet_r18.items() if not k.startswith("layer4.1.bn2")}
    torch.save(missing, path)
    with pytest.raises(ValueError, match="missing from the file: layer4.1.bn2.weight"):
        load_backbone_weights(model, path)
    report = load_backbone_weights(model, path, strict=False)
    assert "layer4.1.bn2.running_var" in report.missing

    r50 = {k: v for k, v in ResNet("resnet50").state_dict().items()}
    torch.save(r50, path)
    with pytest.raises(ValueError, match="do not exist in the backbone.*layer1.0.bn3.bias"):
        load_backbone_weights(model, path)


def test_loads_the_bninception_port_file_layout(tmp_path):
    """The TSN/pretrainedmodels BN-Inception file uses ``inception_3a_1x1.weight`` names and ``last_linear``."""
    dense = build_model("tsn_bninception", num_classes=5, num_frames=2)
    torch.manual_seed(0)
    ours = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in dense.backbone.state_dict().items()}
    port = {}
    for key, value in ours.items():
        head, rest = key.split(".", 1)
        if head.startswith("inception_") and "." in rest:
            sub, tail = rest.split(".", 1)
            key = f"{head}_{sub}.{tail}"
        port[key] = value
    port["last_linear.weight"], port["last_linear.bias"] = torch.randn(1000, 1024), torch.randn(1000)
    path = tmp_path / "bn_inception.pth"
    torch.save(port, path)
    model = build_model("adafuse_tsn_bninception", num_classes=5, num_frames=2)
    report = load_backbone_weights(model, path)
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in ours.items())
    assert report.ignored == ["last_linear.bias", "last_linear.weight"]
    assert report.policy_from_scratch
