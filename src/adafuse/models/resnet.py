"""ResNet-18/34/50/101 with torchvision's parameter names, plus the AdaFuse/TSM hooks in every block.

A block reads top to bottom like the paper's figure::

    x -> [shift] -> conv1 -> bn1 -> relu -> [fusion(x, .)] -> conv2 -> bn2 (-> relu -> conv3 -> bn3)
      -> + shortcut -> relu

``fusion`` gates conv1's output (``C`` = conv1 width); conv3 of a Bottleneck is never gated.

Registered models (``{depth}`` = r18, r34, r50, r101): ``tsn_{depth}``, ``tsm_{depth}``,
``adafuse_{tsn,tsm,tsm_last}_{depth}``, and the two-action ablations ``adaskip_r18``, ``adareuse_r18``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from adafuse.models.fusion import ACTIONS, DEFAULT_TAU, AdaptiveFusion, GatedLayers
from adafuse.models.policy import FusionFactory, PolicyFactory
from adafuse.models.recognizer import InputSpec, VideoRecognizer
from adafuse.models.registry import register_model
from adafuse.models.temporal import TemporalShift


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class _FusionBlock(nn.Module):
    """Shared shortcut/shift/fusion plumbing of :class:`BasicBlock` and :class:`Bottleneck`."""

    expansion = 1
    shift: TemporalShift | None
    fusion: AdaptiveFusion | None
    downsample: nn.Module | None

    def _enter(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(residual-branch input, shortcut output)``."""
        identity = x
        if self.shift is not None:
            x = self.shift(x)
            if self.shift_shortcut and self.downsample is not None:
                identity = x  # released AdaFuse-TSM: the downsample shortcut sees the shifted input
        if self.downsample is not None:
            identity = self.downsample(identity)
        return x, identity

    def fusion_cost_layers(self) -> GatedLayers:
        """conv1 produces the gated tensor, conv2 reads it."""
        return GatedLayers([self.conv1], [self.conv2])


class BasicBlock(_FusionBlock):
    """ResNet-18/34 block. Input/output ``(N*T, C, H, W)``."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        fusion: AdaptiveFusion | None = None,
        shift: TemporalShift | None = None,
        shift_shortcut: bool = False,
    ) -> None:
        super().__init__()
        self.shift = shift
        self.shift_shortcut = shift_shortcut
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.fusion = fusion
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x, identity = self._enter(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.fusion is not None:
            out = self.fusion(x, out)
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(_FusionBlock):
    """ResNet-50/101 block (stride on the 3x3 conv, as torchvision). Input/output ``(N*T, C, H, W)``."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        fusion: AdaptiveFusion | None = None,
        shift: TemporalShift | None = None,
        shift_shortcut: bool = False,
    ) -> None:
        super().__init__()
        self.shift = shift
        self.shift_shortcut = shift_shortcut
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.fusion = fusion
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x, identity = self._enter(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.fusion is not None:
            out = self.fusion(x, out)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


STAGES = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk (torchvision names ``conv1 bn1 layer1..layer4``; no ``fc``: heads live in the recognizer).

    ``(N*T, 3, H, W)`` -> pooled features ``(N*T, 512 * expansion)``.

    ``fusion_factory(C_in, C, stage)`` gives each block its fusion module (or ``None``);
    ``shift_stages`` lists the stages (1..4) whose blocks shift; ``shift_shortcut`` lets the downsample
    shortcut see the shifted input (released AdaFuse-TSM behaviour).
    """

    def __init__(
        self,
        depth: str = "resnet50",
        fusion_factory: FusionFactory | None = None,
        shift_stages: tuple[int, ...] = (),
        shift_shortcut: bool = False,
        num_frames: int = 8,
        width: int = 64,
    ) -> None:
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"unknown ResNet depth {depth!r}; choose from {sorted(STAGES)}")
        block, layers = STAGES[depth]
        self.depth = depth
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for stage, blocks in enumerate(layers, start=1):
            planes = width * 2 ** (stage - 1)
            stride = 1 if stage == 1 else 2
            layer = self._make_layer(block, planes, blocks, stride, stage, fusion_factory,
                                     stage in shift_stages, shift_shortcut, num_frames)
            self.add_module(f"layer{stage}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = width * 8 * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
        stage: int,
        fusion_factory: FusionFactory | None,
        shift: bool,
        shift_shortcut: bool,
        num_frames: int,
    ) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            downsample = None
            s = stride if i == 0 else 1
            if i == 0 and (s != 1 or self.inplanes != planes * block.expansion):
                downsample = nn.Sequential(
                    conv1x1(self.inplanes, planes * block.expansion, s), nn.BatchNorm2d(planes * block.expansion)
                )
            fusion = fusion_factory(self.inplanes, planes, stage) if fusion_factory else None
            layers.append(block(self.inplanes, planes, s, downsample, fusion,
                                TemporalShift(num_frames) if shift else None, shift_shortcut))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


# ------------------------------------------------------------------------------------------------ builders


def short_name(depth: str) -> str:
    """``resnet18`` -> ``r18`` (the suffix of the registered names)."""
    return "r" + depth.removeprefix("resnet")


def resnet_recognizer(
    depth: str,
    num_classes: int,
    num_frames: int,
    dropout: float,
    fusion_factory: FusionFactory | None = None,
    shift: bool = False,
    shift_shortcut: bool = False,
    width: int = 64,
    head: Callable[[int], nn.Module] | None = None,
) -> VideoRecognizer:
    """A ResNet trunk (``width``: base width, 64 = standard) in a :class:`VideoRecognizer`. ``shift``: TSM
    shift in every block; ``shift_shortcut``: the downsample shortcut sees the shifted input (released
    AdaFuse-TSM; plain TSM does not). ``head(feature_dim)`` makes a clip head other than average consensus."""
    backbone = ResNet(depth, fusion_factory, (1, 2, 3, 4) if shift else (), shift_shortcut, num_frames, width)
    return VideoRecognizer(backbone, backbone.feature_dim, num_classes, num_frames, dropout,
                           head=head(backbone.feature_dim) if head is not None else None, input_spec=InputSpec())


def tsn_resnet(depth: str, num_classes: int = 174, num_frames: int = 8, dropout: float = 0.5,
               width: int = 64) -> VideoRecognizer:
    """Plain TSN: ImageNet ResNet per frame + average consensus."""
    return resnet_recognizer(depth, num_classes, num_frames, dropout, width=width)


def tsm_resnet(depth: str, num_classes: int = 174, num_frames: int = 8, dropout: float = 0.5,
               width: int = 64) -> VideoRecognizer:
    """TSM baseline: shift 1/8 + 1/8 channels in the residual branch of every block."""
    return resnet_recognizer(depth, num_classes, num_frames, dropout, shift=True, width=width)


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
    width: int = 64,
) -> VideoRecognizer:
    """AdaFuse on ResNet. ``variant``: ``tsn`` (policy in every block), ``tsm`` (shift + policy in every
    block), ``tsm_last`` (shift everywhere, policy in layer4 only).

    Default hidden sizes (docs/paper-and-code.md): ResNet-50/101 ``tsn``/``tsm`` use the quota rule with
    shared Linear layers; ``tsm_last`` uses 1024 unshared; ResNet-18/34 use 512 unshared.
    """
    if variant not in ("tsn", "tsm", "tsm_last"):
        raise ValueError(f"unknown AdaFuse variant {variant!r}; choose tsn, tsm or tsm_last")
    bottleneck = depth in ("resnet50", "resnet101")
    if policy_hidden is None and (variant == "tsm_last" or not bottleneck):
        policy_hidden = 1024 if variant == "tsm_last" else 512
    factory = PolicyFactory(policy_hidden, stages=(4,) if variant == "tsm_last" else (1, 2, 3, 4),
                            actions=actions, use_history=use_history, num_frames=num_frames, tau=tau)
    shift = variant != "tsn"
    return resnet_recognizer(depth, num_classes, num_frames, dropout, factory, shift, shift_shortcut=shift,
                             width=width)


for _depth in STAGES:
    register_model(f"tsn_{short_name(_depth)}", tsn_resnet, depth=_depth)
    register_model(f"tsm_{short_name(_depth)}", tsm_resnet, depth=_depth)
    for _variant in ("tsn", "tsm", "tsm_last"):
        register_model(f"adafuse_{_variant}_{short_name(_depth)}", adafuse_resnet, depth=_depth, variant=_variant)

# Ablations of Table 6 (ResNet-18, AdaFuse-TSN body): two actions.
register_model("adaskip_r18", adafuse_resnet, depth="resnet18", variant="tsn", actions=("skip", "keep"),
               use_history=False)
register_model("adareuse_r18", adafuse_resnet, depth="resnet18", variant="tsn", actions=("reuse", "keep"))
