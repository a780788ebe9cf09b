"""EfficientNet stages: producer the expansion conv, consumer the depthwise conv of every MBConv."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from adafuse.inference.folding import FoldedConv
from adafuse.inference.stages.common import (
    ConvStage,
    Feature,
    Gate,
    GateFactory,
    Stage,
    StepContext,
    densify,
    register_stages,
)
from adafuse.models.efficientnet import EfficientNet


def _conv_bn_act(seq: nn.Sequential, name: str) -> FoldedConv:
    """Fold an EfficientNet ``ConvBNAct`` (children conv, BN[, SiLU])."""
    if len(seq) == 3 and not isinstance(seq[2], nn.SiLU):
        raise NotImplementedError(f"{name}: activation {type(seq[2]).__name__} is not supported (SiLU only)")
    return FoldedConv(seq[0], seq[1], "silu" if len(seq) == 3 else None, f"{name}.0")


class MBConvStage(Stage):
    """EfficientNet MBConv: ``[expand] -> [gate] -> depthwise -> SE -> project [+ x]``. Producer the expansion
    conv, consumer the depthwise conv; a skipped channel's depthwise output is the constant ``silu(bias)``
    (conv of zeros), so it is filled in without being computed. SE and project run on all channels."""

    def __init__(self, block: nn.Module, name: str, gate: Gate | None) -> None:
        self.expand = _conv_bn_act(block.expand, f"{name}.block.0") if block.expand is not None else None
        nb = len(block.block)
        self.depthwise = _conv_bn_act(block.depthwise, f"{name}.block.{nb - 3}")
        se = block.se
        if not isinstance(se.activation, nn.SiLU) or not isinstance(se.scale_activation, nn.Sigmoid):
            raise NotImplementedError(f"{name}: squeeze-excitation activations must be SiLU and Sigmoid")
        self.se_fc1 = FoldedConv(se.fc1, None, "silu", f"{name}.block.{nb - 2}.fc1")
        self.se_fc2 = FoldedConv(se.fc2, None, "sigmoid", f"{name}.block.{nb - 2}.fc2")
        self.project = _conv_bn_act(block.project, f"{name}.block.{nb - 1}")
        self.residual = bool(block.use_res_connect)
        self.gate = gate
        self.gates = (gate,) if gate is not None else ()
        self.dw_const = F.silu(self.depthwise.bias).view(1, -1, 1, 1)

    def _produce(self, x: Tensor, idx: Tensor | None, lazy: bool, ctx: StepContext) -> Tensor:
        role = (self.gate.index, "f1_prev" if lazy else "f1")
        return self.expand.run(x, ctx.meter, role, out_idx=idx, nominal=not lazy)

    def step(self, x: Feature, ctx: StepContext) -> Tensor:
        x = densify(x)
        meter = ctx.meter
        if self.gate is None:
            h = self.expand.run(x, meter) if self.expand is not None else x
            d = self.depthwise.run(h, meter)
        else:
            actions = self.gate.decide(lambda: x.mean(dim=(2, 3)), ctx)
            u, order = self.gate.fuse(actions, self._produce, x, ctx)
            if order is None:
                d = self.depthwise.run(u, meter, (self.gate.index, "f2"))
            else:
                part = self.depthwise.run(u, meter, (self.gate.index, "f2"), out_idx=order)
                d = part.new_empty(1, self.depthwise.out_channels, part.shape[2], part.shape[3])
                d.copy_(self.dw_const.expand_as(d)).index_copy_(1, order, part)  # a fresh tensor: mul_ below
        s = d.mean(dim=(2, 3), keepdim=True)
        meter.fixed((d.shape[2] * d.shape[3] + 1) * d.shape[1])  # the SE's adaptive average pool
        s = self.se_fc2.run(self.se_fc1.run(s, meter), meter)
        out = self.project.run(d.mul_(s), meter)
        return out.add_(x) if self.residual else out


@register_stages(EfficientNet)
def efficientnet_stages(backbone: EfficientNet, gate: GateFactory) -> list[Stage]:
    """Stem, one :class:`MBConvStage` per MBConv block, head conv."""
    feats = backbone.features
    stages: list[Stage] = [ConvStage([_conv_bn_act(feats[0], "backbone.features.0")])]
    for s in range(1, len(feats) - 1):
        for i, block in enumerate(feats[s]):
            name = f"backbone.features.{s}.{i}"
            stages.append(MBConvStage(block, name, gate(block.fusion, name)))
    stages.append(ConvStage([_conv_bn_act(feats[-1], f"backbone.features.{len(feats) - 1}")]))
    return stages
