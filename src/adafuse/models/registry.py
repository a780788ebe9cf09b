"""Model names -> builders. A plain dict: ``MODELS[name](**kwargs) -> VideoRecognizer``.

Every builder accepts ``num_classes``, ``num_frames``, ``policy_hidden`` (ignored by dense models) and
``dropout``; ``build_model`` adds ``pretrained`` (a backbone state-dict file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from adafuse.models.fusion import ACTIONS, DEFAULT_TAU, AdaptiveFusion, PolicyNet
from adafuse.models.recognizer import InputSpec, VideoRecognizer
from adafuse.models.resnet import ResNet

# SPEC 1.3: with the quota rule, H = floor(POLICY_QUOTA / C) and the Linear layers are shared between
# blocks with the same (2*C_in, 3*C); this reproduces the released R50 parameter counts.
POLICY_QUOTA = 196608


def quota_hidden(channels: int, quota: int = POLICY_QUOTA) -> int:
    """Hidden width of the quota rule for a gate over ``channels`` channels."""
    return quota // channels


class PolicyFactory:
    """Makes the fusion module of each gated block.

    ``hidden=None`` uses the quota rule with Linear layers shared by shape; an int gives every block
    its own MLP of that width. ``stages`` restricts gating to some stages (TSM+Last: ``(4,)``).
    """

    def __init__(
        self,
        hidden: int | None,
        share: bool | None = None,
        stages: Sequence[int] = (1, 2, 3, 4),
        actions: Sequence[str] = ACTIONS,
        use_history: bool = True,
        num_frames: int = 8,
        tau: float = DEFAULT_TAU,
    ) -> None:
        self.hidden, self.stages, self.actions = hidden, tuple(stages), tuple(actions)
        self.share = hidden is None if share is None else share
        self.use_history, self.num_frames, self.tau = use_history, num_frames, tau
        self._shared: dict[tuple[int, int], tuple[nn.Linear, nn.Linear]] = {}

    def __call__(self, in_channels: int, channels: int, stage: int) -> AdaptiveFusion | None:
        if stage not in self.stages:
            return None
        hidden = self.hidden if self.hidden is not None else quota_hidden(channels)
        fc0 = fc1 = None
        if self.share:
            key = (in_channels, channels)
            if key in self._shared:
                fc0, fc1 = self._shared[key]
        policy = PolicyNet(in_channels, channels, hidden, len(self.actions), self.use_history, fc0, fc1)
        if self.share:
            self._shared.setdefault((in_channels, channels), (policy.fc0, policy.fc1))
        return AdaptiveFusion(policy, channels, self.actions, self.num_frames, self.tau)


def _resnet_model(
    arch: str,
    depth: str,
    num_classes: int,
    num_frames: int,
    dropout: float,
    fusion_factory: Callable[[int, int, int], AdaptiveFusion | None] | None = None,
    shift: bool = False,
    shift_shortcut: bool = False,
    build_config: dict[str, Any] | None = None,
    width: int = 64,
) -> VideoRecognizer:
    """``width``: base width of the ResNet (64 = standard; smaller for fast demos/tests). It is recorded in
    ``build_config`` only when not 64, so standard models keep their build_config."""
    if width != 64 and build_config is not None:
        build_config = {**build_config, "width": width}
    backbone = ResNet(depth, fusion_factory, (1, 2, 3, 4) if shift else (), shift_shortcut, num_frames, width)
    return VideoRecognizer(backbone, backbone.feature_dim, num_classes, num_frames, dropout,
                           input_spec=InputSpec(), arch=arch, build_config=build_config)


def tsn_resnet(depth: str, num_classes: int = 174, num_frames: int = 8, dropout: float = 0.5, width: int = 64,
               **unused: Any) -> VideoRecognizer:
    """Plain TSN: ImageNet ResNet per frame + average consensus."""
    cfg = dict(num_classes=num_classes, num_frames=num_frames, dropout=dropout)
    return _resnet_model(f"tsn_{_short(depth)}", depth, num_classes, num_frames, dropout, build_config=cfg,
                         width=width)


def tsm_resnet(depth: str, num_classes: int = 174, num_frames: int = 8, dropout: float = 0.5, width: int = 64,
               **unused: Any) -> VideoRecognizer:
    """TSM baseline: shift 1/8 + 1/8 channels in the residual branch of every block."""
    cfg = dict(num_classes=num_classes, num_frames=num_frames, dropout=dropout)
    return _resnet_model(f"tsm_{_short(depth)}", depth, num_classes, num_frames, dropout, shift=True,
                         build_config=cfg, width=width)


def adafuse_resnet(
    depth: str,
    variant: str = "tsn",
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    policy_hidden: int | None = None,
    actions: Sequence[str] = ACTIONS,
    use_history: bool = True,
    tau: float = DEFAULT_TAU,
    arch: str | None = None,
    width: int = 64,
    **unused: Any,
) -> VideoRecognizer:
    """AdaFuse on ResNet. ``variant``: ``tsn`` (policy in every block), ``tsm`` (shift + policy in every
    block), ``tsm_last`` (shift everywhere, policy in layer4 only).

    Default hidden sizes (SPEC 1.3): ResNet-50/101 ``tsn``/``tsm`` use the quota rule with shared Linear
    layers; ``tsm_last`` uses 1024 unshared; ResNet-18/34 use 512 unshared.
    """
    if variant not in ("tsn", "tsm", "tsm_last"):
        raise ValueError(f"unknown AdaFuse variant {variant!r}; choose tsn, tsm or tsm_last")
    bottleneck = depth in ("resnet50", "resnet101")
    if policy_hidden is None and (variant == "tsm_last" or not bottleneck):
        policy_hidden = 1024 if variant == "tsm_last" else 512
    factory = PolicyFactory(policy_hidden, stages=(4,) if variant == "tsm_last" else (1, 2, 3, 4),
                            actions=actions, use_history=use_history, num_frames=num_frames, tau=tau)
    shift = variant != "tsn"
    name = arch or f"adafuse_{variant}_{_short(depth)}"
    cfg = dict(num_classes=num_classes, num_frames=num_frames, dropout=dropout, policy_hidden=policy_hidden,
               actions=list(actions), use_history=use_history, tau=tau)
    return _resnet_model(name, depth, num_classes, num_frames, dropout, factory, shift=shift,
                         shift_shortcut=shift, build_config=cfg, width=width)


def _short(depth: str) -> str:
    return "r" + depth.removeprefix("resnet")


def _fixed(builder: Callable[..., VideoRecognizer], *args: Any, **fixed: Any) -> Callable[..., VideoRecognizer]:
    def build(**kwargs: Any) -> VideoRecognizer:
        return builder(*args, **{**kwargs, **fixed})

    build.__doc__ = builder.__doc__
    return build


MODELS: dict[str, Callable[..., VideoRecognizer]] = {}
for _depth in ("resnet18", "resnet34", "resnet50", "resnet101"):
    _s = _short(_depth)
    MODELS[f"tsn_{_s}"] = _fixed(tsn_resnet, _depth)
    MODELS[f"tsm_{_s}"] = _fixed(tsm_resnet, _depth)
    for _variant in ("tsn", "tsm", "tsm_last"):
        MODELS[f"adafuse_{_variant}_{_s}"] = _fixed(adafuse_resnet, _depth, _variant)

# Ablations of Table 6 (ResNet-18, AdaFuse-TSN body): two actions.
MODELS["adaskip_r18"] = _fixed(adafuse_resnet, "resnet18", "tsn", actions=("skip", "keep"), use_history=False,
                               arch="adaskip_r18")
MODELS["adareuse_r18"] = _fixed(adafuse_resnet, "resnet18", "tsn", actions=("reuse", "keep"), arch="adareuse_r18")


def _merge_family_registries() -> None:
    """Families defined in their own modules register their builders in a module-level ``MODELS`` dict."""
    from adafuse.models import baselines, bninception, efficientnet

    for family in (baselines, bninception, efficientnet):
        clash = set(family.MODELS) & set(MODELS)
        if clash:
            raise RuntimeError(f"model names defined twice: {sorted(clash)}")
        MODELS.update(family.MODELS)


_merge_family_registries()
