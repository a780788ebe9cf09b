"""EfficientNet-b0..b3 (Tan & Le, 2019) and EfficientNet-Lite0 with torchvision's parameter names, plus an
AdaFuse gate per MBConv.

An MBConv block reads top to bottom::

    x -> [expand 1x1 conv -> BN -> swish] -> [fusion(x, .)] -> depthwise kxk conv (stride) -> BN -> swish
      -> squeeze-and-excitation -> project 1x1 conv -> BN (-> stochastic depth + x when shapes allow)

Stages (b0; widths scaled by ``round_filters``, depths by ``round_repeats``)::

    stem 3x3/2 conv 32 | MBConv1 k3 16 x1 | MBConv6 k3 24 x2 /2 | MBConv6 k5 40 x2 /2 | MBConv6 k3 80 x3 /2
    | MBConv6 k5 112 x3 | MBConv6 k5 192 x4 /2 | MBConv6 k3 320 x1 | head 1x1 conv 1280 | global avg pool

Parameter names follow torchvision's ``efficientnet_b0``..``b3`` (``features.0.0.weight`` stem conv,
``features.{stage}.{block}.block.{i}.{0,1}`` conv/BN, ``...block.{i}.fc1/fc2`` squeeze-excitation,
``features.8`` head conv), so a torchvision ImageNet state-dict file loads into the backbone (its
``classifier.*`` keys belong to the ImageNet head and are not part of it). The AdaFuse gate of a block is
``features.{stage}.{block}.fusion``.

EfficientNet-Lite (Google's edge/CPU variant of the family; ``lite0`` here): the same stage table without
squeeze-and-excitation, ReLU6 instead of swish everywhere, and the stem (32) and head (1280) widths, and the depth
of the first and last stage, never scaled by the multipliers (for lite0, width and depth 1.0, native 224 px, this
only changes the SE and the activation). Its ImageNet weights are published in lukemelas' EfficientNet-PyTorch
layout (``_blocks.N._expand_conv`` ...); :func:`convert_lukemelas_keys` maps them to ours. Without SE a block's
``block`` is ``[expand,] depthwise, project``, so its project conv is ``block.2`` (``block.3`` with SE).

BatchNorm: eps 1e-3, momentum 0.01 as in the TensorFlow reference (``bn_eps``/``bn_momentum`` change it;
torchvision trained its b0..b3 weights with PyTorch's defaults eps 1e-5, momentum 0.1, so pass those when
fine-tuning from torchvision weights).

Parameters and FLOPs of the paper's Table 2: its TSN baselines (5.3/7.8/9.2/12.0M, 3.1/5.6/8.0/14.4 GFLOPs per
8-frame video) are the EfficientNet paper's ImageNet figures (1000-class head; 0.39/0.70/1.0/1.8 G
multiply-adds per image at the native resolutions 224/240/260/300) times 8 frames. AdaFuse's totals
(9.3/12.4/13.8/16.6M) are those plus the policy overhead of the quota rule (+3.96/4.62/4.63/4.62M).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from adafuse.models.fusion import ACTIONS, DEFAULT_TAU, AdaptiveFusion, GatedLayers
from adafuse.models.policy import FusionFactory, PolicyFactory
from adafuse.models.recognizer import InputSpec, VideoRecognizer
from adafuse.models.registry import register_model
from adafuse.pixels import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention: 1 - TensorFlow's decay 0.99


@dataclass(frozen=True)
class StageConfig:
    """One stage of b0 before scaling: MBConv``expand_ratio`` kxk, ``repeats`` blocks, first one strided."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


B0_STAGES = (
    StageConfig(1, 3, 1, 32, 16, 1),
    StageConfig(6, 3, 2, 16, 24, 2),
    StageConfig(6, 5, 2, 24, 40, 2),
    StageConfig(6, 3, 2, 40, 80, 3),
    StageConfig(6, 5, 1, 80, 112, 3),
    StageConfig(6, 5, 2, 112, 192, 4),
    StageConfig(6, 3, 1, 192, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
SE_RATIO = 0.25


@dataclass(frozen=True)
class Variant:
    """Compound scaling of one EfficientNet: width and depth multipliers, native input side in pixels,
    and the ImageNet dropout of the reference (our video head uses the recognizer's dropout instead).
    ``lite``: an EfficientNet-Lite (no squeeze-excitation, ReLU6, stem/head and first/last stage unscaled)."""

    width_mult: float
    depth_mult: float
    resolution: int
    imagenet_dropout: float
    lite: bool = False

    @property
    def activation(self) -> type[nn.Module]:
        return nn.ReLU6 if self.lite else nn.SiLU


VARIANTS = {
    "b0": Variant(1.0, 1.0, 224, 0.2),
    "b1": Variant(1.0, 1.1, 240, 0.2),
    "b2": Variant(1.1, 1.2, 260, 0.3),
    "b3": Variant(1.2, 1.4, 300, 0.3),
    "lite0": Variant(1.0, 1.0, 224, 0.2, lite=True),
}


def round_filters(channels: int, width_mult: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width_mult`` and round to a multiple of ``divisor`` (never down by >10%)."""
    scaled = channels * width_mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """Scale a stage's block count by ``depth_mult``, rounding up."""
    return int(math.ceil(depth_mult * repeats))


class ConvBNAct(nn.Sequential):
    """``conv (no bias) -> BN [-> activation]`` as children ``0``, ``1`` [, ``2``] (torchvision's
    ``Conv2dNormActivation``); the activation is swish, or ReLU6 in EfficientNet-Lite, ``None`` for none.
    ``(N, C_in, H, W)`` -> ``(N, C_out, H / stride, W / stride)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = nn.SiLU, bn_eps: float = BN_EPS,
                 bn_momentum: float = BN_MOMENTUM) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """``x * sigmoid(fc2(swish(fc1(GAP(x)))))``; ``fc1``/``fc2`` are 1x1 convs with bias. Shape kept."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class StochasticDepth(nn.Module):
    """Drops the residual branch of a whole sample (frame) with probability ``p`` in training, scaling the
    kept ones by ``1 / (1 - p)``; identity at evaluation."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * noise.bernoulli_(keep).div_(keep)


class MBConv(nn.Module):
    """Inverted residual block with squeeze-and-excitation. ``(N*T, C_in, H, W)`` -> ``(N*T, C_out, H/s, W/s)``.

    ``block`` holds ``[expand,] depthwise, se, project`` (torchvision's layout); with ``expand_ratio`` 6 the
    expanded tensor ``(N*T, C, H, W)``, ``C = 6 * C_in``, is what ``fusion`` gates (policy input: ``x``).
    ``se=False`` (EfficientNet-Lite) drops the squeeze-excitation (``block`` is ``[expand,] depthwise,
    project``); ``activation`` is the class of the expand/depthwise activations.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel: int,
        stride: int,
        drop_path: float = 0.0,
        fusion: AdaptiveFusion | None = None,
        bn_eps: float = BN_EPS,
        bn_momentum: float = BN_MOMENTUM,
        se: bool = True,
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        if fusion is not None and expand_ratio == 1:
            raise ValueError("a fusion module needs an expansion conv to gate (expand_ratio > 1)")
        self.in_channels, self.out_channels, self.expand_ratio = in_channels, out_channels, expand_ratio
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = in_channels * expand_ratio
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, expanded, 1, activation=activation, **bn))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, activation=activation, **bn))
        if se:
            layers.append(SqueezeExcitation(expanded, max(1, int(in_channels * SE_RATIO))))
        layers.append(ConvBNAct(expanded, out_channels, 1, activation=None, **bn))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_path)
        self.fusion = fusion

    @property
    def expand(self) -> ConvBNAct | None:
        return self.block[0] if self.expand_ratio != 1 else None

    @property
    def depthwise(self) -> ConvBNAct:
        return self.block[1 if self.expand_ratio != 1 else 0]

    @property
    def se(self) -> SqueezeExcitation | None:
        return self.block[-2] if isinstance(self.block[-2], SqueezeExcitation) else None

    @property
    def project(self) -> ConvBNAct:
        return self.block[-1]

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expand is not None:
            out = self.expand(x)
            if self.fusion is not None:
                out = self.fusion(x, out)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out

    def fusion_cost_layers(self) -> GatedLayers:
        """Producers and consumers of the gated tensor: the expansion conv and the depthwise conv (which reads
        channel ``c`` only for output ``c``, so a skipped channel saves its share exactly)."""
        if self.expand is None:
            return GatedLayers([], [])
        return GatedLayers([self.expand[0]], [self.depthwise[0]])


class EfficientNet(nn.Module):
    """EfficientNet trunk without classifier: ``(N*T, 3, H, W)`` -> pooled features ``(N*T, feature_dim)``
    (1280 for b0/b1/lite0, 1408 for b2, 1536 for b3).

    ``fusion_factory(C_in, C, stage)`` gives each expand-ratio-6 block its fusion module (or ``None``);
    ``stage`` is 1..7. ``drop_path``: stochastic-depth rate of the last block (linearly increasing from 0,
    as the reference and torchvision do).
    """

    def __init__(
        self,
        variant: str = "b0",
        fusion_factory: FusionFactory | None = None,
        drop_path: float = 0.2,
        bn_eps: float = BN_EPS,
        bn_momentum: float = BN_MOMENTUM,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet variant {variant!r}; choose from {sorted(VARIANTS)}")
        self.variant = variant
        scale = VARIANTS[variant]
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        act = scale.activation
        fixed = (0, len(B0_STAGES) - 1) if scale.lite else ()  # Lite: first/last stage depth not scaled
        stages = [
            StageConfig(s.expand_ratio, s.kernel, s.stride, round_filters(s.in_channels, scale.width_mult),
                        round_filters(s.out_channels, scale.width_mult),
                        s.repeats if i in fixed else round_repeats(s.repeats, scale.depth_mult))
            for i, s in enumerate(B0_STAGES)
        ]
        stem = STEM_CHANNELS if scale.lite else round_filters(STEM_CHANNELS, scale.width_mult)
        stages[0] = dataclasses.replace(stages[0], in_channels=stem)
        total_blocks = sum(s.repeats for s in stages)
        features: list[nn.Module] = [ConvBNAct(3, stem, 3, 2, activation=act, **bn)]
        block_id = 0
        for stage_index, cfg in enumerate(stages, start=1):
            blocks = []
            for i in range(cfg.repeats):
                in_channels = cfg.in_channels if i == 0 else cfg.out_channels
                fusion = None
                if fusion_factory is not None and cfg.expand_ratio != 1:
                    fusion = fusion_factory(in_channels, in_channels * cfg.expand_ratio, stage_index)
                blocks.append(MBConv(in_channels, cfg.out_channels, cfg.expand_ratio, cfg.kernel,
                                     cfg.stride if i == 0 else 1, drop_path * block_id / total_blocks, fusion, **bn,
                                     se=not scale.lite, activation=act))
                block_id += 1
            features.append(nn.Sequential(*blocks))
        self.feature_dim = HEAD_CHANNELS if scale.lite else round_filters(HEAD_CHANNELS, scale.width_mult)
        features.append(ConvBNAct(stages[-1].out_channels, self.feature_dim, 1, activation=act, **bn))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.avgpool(self.features(x)).flatten(1)

    def convert_pretrained_keys(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """A file in lukemelas' EfficientNet-PyTorch layout (``_conv_stem.weight`` present, as in the published
        EfficientNet-Lite0 weights) -> our names (:func:`convert_lukemelas_keys`); other files unchanged."""
        if LUKEMELAS_STEM in state_dict:
            return convert_lukemelas_keys(state_dict, self)
        return state_dict


LUKEMELAS_STEM = "_conv_stem.weight"


def convert_lukemelas_keys(state_dict: dict[str, Tensor], backbone: EfficientNet) -> dict[str, Tensor]:
    """lukemelas' EfficientNet-PyTorch names -> ours, for ``backbone``'s block layout.

    ``_conv_stem``/``_bn0`` -> ``features.0.{0,1}``; ``_blocks.N`` (N counts blocks over all stages) ->
    ``features.{stage}.{block}.block.{i}`` with ``_expand_conv``/``_bn0`` the expansion, ``_depthwise_conv``/
    ``_bn1`` the depthwise conv, ``_se_reduce``/``_se_expand`` the squeeze-excitation ``fc1``/``fc2`` and
    ``_project_conv``/``_bn2`` the projection; ``_conv_head``/``_bn1`` -> the head ``features.{last}.{0,1}``;
    ``_fc`` (the ImageNet classifier) -> ``fc``. Keys that match none of these pass unchanged (and are then
    reported as unexpected by the loader).
    """
    feats = backbone.features
    last = f"features.{len(feats) - 1}"
    outer = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": f"{last}.0", "_bn1": f"{last}.1",
             "_fc": "fc"}
    blocks = [(f"features.{s}.{b}.block", block) for s in range(1, len(feats) - 1) for b, block in enumerate(feats[s])]
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        target = None
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit() and int(parts[1]) < len(blocks):
            prefix, block = blocks[int(parts[1])]
            slot = _lukemelas_block_slots(block).get(parts[2])
            target, rest = (f"{prefix}.{slot}" if slot else None), parts[3:]
        elif parts[0] in outer and len(parts) >= 2:
            target, rest = outer[parts[0]], parts[1:]
        out[".".join([target, *rest]) if target else key] = value
    return out


def _lukemelas_block_slots(block: MBConv) -> dict[str, str]:
    """lukemelas' layer names inside one MBConv -> our child paths under ``block``."""
    layout = list(block.block)
    slots = {}
    if block.expand is not None:
        slots |= {"_expand_conv": "0.0", "_bn0": "0.1"}
    dw = layout.index(block.depthwise)
    slots |= {"_depthwise_conv": f"{dw}.0", "_bn1": f"{dw}.1", "_project_conv": f"{len(layout) - 1}.0",
              "_bn2": f"{len(layout) - 1}.1"}
    if block.se is not None:
        slots |= {"_se_reduce": f"{dw + 1}.fc1", "_se_expand": f"{dw + 1}.fc2"}
    return slots


def efficientnet_recognizer(variant: str, num_classes: int, num_frames: int, dropout: float,
                            fusion_factory: FusionFactory | None, drop_path: float, bn_eps: float,
                            bn_momentum: float, input_size: int | None) -> VideoRecognizer:
    """``input_size`` defaults to the variant's native resolution and only sets ``input_spec.size``; Lite
    variants expect the TensorFlow reference's pixels (``(x - 127) / 128`` on 0-255), the others ImageNet's."""
    backbone = EfficientNet(variant, fusion_factory, drop_path, bn_eps, bn_momentum)
    size = input_size or VARIANTS[variant].resolution
    spec = InputSpec(EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD, value_range=255.0, size=size) \
        if VARIANTS[variant].lite else InputSpec(size=size)
    return VideoRecognizer(backbone, backbone.feature_dim, num_classes, num_frames, dropout, input_spec=spec)


def tsn_efficientnet(
    variant: str,
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    drop_path: float = 0.2,
    bn_eps: float = BN_EPS,
    bn_momentum: float = BN_MOMENTUM,
    input_size: int | None = None,
) -> VideoRecognizer:
    """TSN with EfficientNet-``variant``: per-frame EfficientNet + Dropout + Linear, logits averaged.

    ``input_size`` defaults to the variant's native resolution (224/240/260/300) and only sets
    ``input_spec.size``.
    """
    return efficientnet_recognizer(variant, num_classes, num_frames, dropout, None, drop_path, bn_eps, bn_momentum,
                                   input_size)


def adafuse_efficientnet(
    variant: str,
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    policy_hidden: int | None = None,
    actions: Sequence[str] = ACTIONS,
    use_history: bool = True,
    tau: float = DEFAULT_TAU,
    drop_path: float = 0.2,
    bn_eps: float = BN_EPS,
    bn_momentum: float = BN_MOMENTUM,
    input_size: int | None = None,
) -> VideoRecognizer:
    """AdaFuse-TSN on EfficientNet-``variant``: a policy in every expand-ratio-6 MBConv block, gating the
    expanded tensor before the depthwise conv.

    ``policy_hidden=None`` uses the ResNet-50 quota rule (``H = 196608 // C``, Linear layers shared between
    blocks with the same ``(2*C_in, 3*C)``; docs/paper-and-code.md); an int gives every block its own MLP of
    that width.
    """
    factory = PolicyFactory(policy_hidden, stages=range(1, len(B0_STAGES) + 1), actions=actions,
                            use_history=use_history, num_frames=num_frames, tau=tau)
    return efficientnet_recognizer(variant, num_classes, num_frames, dropout, factory, drop_path, bn_eps,
                                   bn_momentum, input_size)


for _variant in VARIANTS:
    register_model(f"tsn_eff{_variant}", tsn_efficientnet, variant=_variant)
    register_model(f"adafuse_tsn_eff{_variant}", adafuse_efficientnet, variant=_variant)
