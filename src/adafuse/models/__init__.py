"""Models of the paper: backbones, the adaptive fusion block, baselines and the name registry.

Importing this package imports every backbone family module, which registers its models in
:data:`MODELS` (see :mod:`adafuse.models.registry`). A new family is one module plus one line below.
"""

from __future__ import annotations

from adafuse.models import baselines, bninception, efficientnet, resnet  # noqa: F401 -- register the families
from adafuse.models.fusion import (
    ACTIONS,
    KEEP,
    REUSE,
    SKIP,
    AdaptiveFusion,
    GatedLayers,
    PolicyNet,
    collect_masks,
    fusion_modules,
    inject_policy,
    policy_state,
    set_decision,
    set_num_frames,
)
from adafuse.models.recognizer import InputSpec, VideoRecognizer, unwrap
from adafuse.models.registry import MODELS, build_model, builder_arguments, model_names, register_model

MODEL_NAMES = model_names()

__all__ = [
    "ACTIONS", "KEEP", "REUSE", "SKIP", "AdaptiveFusion", "GatedLayers", "InputSpec", "MODELS", "MODEL_NAMES",
    "PolicyNet", "VideoRecognizer", "build_model", "builder_arguments", "collect_masks", "fusion_modules",
    "inject_policy", "model_names", "policy_state", "register_model", "set_decision", "set_num_frames", "unwrap",
]
