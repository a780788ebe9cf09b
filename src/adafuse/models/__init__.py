"""Models of the paper: backbones, the adaptive fusion block, baselines and the name registry."""

from __future__ import annotations

from typing import Any

from adafuse.models.fusion import (
    ACTIONS,
    KEEP,
    REUSE,
    SKIP,
    AdaptiveFusion,
    PolicyNet,
    collect_masks,
    fusion_modules,
    inject_policy,
    set_decision,
    set_num_frames,
)
from adafuse.models.recognizer import InputSpec, VideoRecognizer
from adafuse.models.registry import MODELS


def build_model(
    name: str,
    num_classes: int = 174,
    num_frames: int = 8,
    policy_hidden: int | None = None,
    pretrained: str | None = None,
    **kwargs: Any,
) -> VideoRecognizer:
    """Build a registered model by name (see ``MODEL_NAMES``).

    ``pretrained``: path of an ImageNet state-dict file for the backbone (torchvision key names for
    ResNet); the classifier and policy layers always start from scratch.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    if policy_hidden is not None:
        kwargs["policy_hidden"] = policy_hidden
    model = MODELS[name](num_classes=num_classes, num_frames=num_frames, **kwargs)
    model.arch = name
    if pretrained:
        from adafuse.models.pretrained import load_backbone_weights

        load_backbone_weights(model, pretrained)
    return model


def model_names() -> list[str]:
    return sorted(MODELS)


MODEL_NAMES = model_names()

__all__ = [
    "ACTIONS", "KEEP", "REUSE", "SKIP", "AdaptiveFusion", "InputSpec", "MODELS", "MODEL_NAMES", "PolicyNet",
    "VideoRecognizer", "build_model", "collect_masks", "fusion_modules", "inject_policy", "model_names",
    "set_decision", "set_num_frames",
]
