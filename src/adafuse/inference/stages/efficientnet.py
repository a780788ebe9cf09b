"""EfficientNet stages: producer the expansion conv, consumer the depthwise conv of every MBConv (b0..b3 with
squeeze-excitation and swish, Lite without squeeze-excitation and with ReLU6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adafuse.inference.folding import FoldedConv, activate
from adafuse.inference.stages.common import (
    Clip,
    ConvStage,
    Feature,
    Gate,
    GateFactory,
    Stage,
    StepContext,
    as_batch,
    check_gated_layers,
    densify,
    register_stages,
)
from adafuse.models.efficientnet import EfficientNet

ACTIVATION_NAMES = {nn.SiLU: "silu", nn.ReLU6: "relu6"}


def _conv_bn_act(seq: nn.Sequential, name: str) -> FoldedConv:
    """Fold an EfficientNet ``ConvBNAct`` (children conv, BN[, SiLU or ReLU6])."""
    act = None
    if len(seq) == 3:
        act = ACTIVATION_NAMES.get(type(seq[2]))
        if act is None:
            raise NotImplementedError(f"{name}: activation {type(seq[2]).__name__} is not supported (SiLU, ReLU6)")
    return FoldedConv(seq[0], seq[1], act, f"{name}.0")


class MBConvStage(Stage):
    """EfficientNet MBConv: ``[expand] -> [gate] -> depthwise -> [SE] -> project [+ x]``. Producer the expansion
    conv, consumer the depthwise conv; a skipped channel's depthwise output is the constant ``act(bias)``
    (conv of zeros), so it is filled in without being computed. SE (absent in Lite) and project run on all
    channels."""

    def __init__(self, block: nn.Module, name: str, gate: Gate | None) -> None:
        if block.fusion is not None:
            check_gated_layers(block, name, [block.expand[0]], [block.depthwise[0]])
        self.expand = _conv_bn_act(block.expand, f"{name}.block.0") if block.expand is not None else None
        layout = list(block.block)
        self.depthwise = _conv_bn_act(block.depthwise, f"{name}.block.{layout.index(block.depthwise)}")
        se = block.se
        self.se_fc1 = self.se_fc2 = None
        if se is not None:
            if not isinstance(se.activation, nn.SiLU) or not isinstance(se.scale_activation, nn.Sigmoid):
                raise NotImplementedError(f"{name}: squeeze-excitation activations must be SiLU and Sigmoid")
            i = layout.index(se)
            self.se_fc1 = FoldedConv(se.fc1, None, "silu", f"{name}.block.{i}.fc1")
            self.se_fc2 = FoldedConv(se.fc2, None, "sigmoid", f"{name}.block.{i}.fc2")
        self.project = _conv_bn_act(block.project, f"{name}.block.{len(layout) - 1}")
        self.residual = bool(block.use_res_connect)
        self.gate = gate
        self.gates = (gate,) if gate is not None else ()
        self.dw_const = activate(self.depthwise.bias.clone(), self.depthwise.act).view(1, -1, 1, 1)

    def _produce(self, x: Tensor, idx: Tensor | None, lazy: bool, ctx: StepContext) -> Tensor:
        role = (self.gate.index, "f1_prev" if lazy else "f1")
        return self.expand.run(x, ctx.meter, role, out_idx=idx, nominal=not lazy)

    def _depthwise(self, u: Tensor, order: Tensor | None, ctx: StepContext) -> Tensor:
        """The consumer on one frame's fused input ``u`` (its channels ``order``; None = all): ``(1, C, H, W)``,
        a fresh tensor, with the constant output of the channels that were not read."""
        if order is None:
            return self.depthwise.run(u, ctx.meter, (self.gate.index, "f2"))
        part = self.depthwise.run(u, ctx.meter, (self.gate.index, "f2"), out_idx=order)
        d = part.new_empty(1, self.depthwise.out_channels, part.shape[2], part.shape[3])
        return d.copy_(self.dw_const.expand_as(d)).index_copy_(1, order, part)

    def step(self, x: Feature, ctx: StepContext) -> Tensor:
        x = densify(x)
        meter = ctx.meter
        if self.gate is None:
            h = self.expand.run(x, meter) if self.expand is not None else x
            d = self.depthwise.run(h, meter)
        else:
            actions = self.gate.decide(lambda: x.mean(dim=(2, 3)), ctx)
            d = self._depthwise(*self.gate.fuse(actions, self._produce, x, ctx), ctx)
        if self.se_fc1 is not None:
            s = d.mean(dim=(2, 3), keepdim=True)
            meter.fixed((d.shape[2] * d.shape[3] + 1) * d.shape[1])  # the SE's adaptive average pool
            d = d.mul_(self.se_fc2.run(self.se_fc1.run(s, meter), meter))
        out = self.project.run(d, meter)
        return out.add_(x) if self.residual else out

    def step_clip(self, xs: Clip, ctxs: Sequence[StepContext]) -> Tensor:
        """All frames at once: the policy MLP, the squeeze-excitation and the projection batched over the ``T``
        frames (and the whole block when ungated); the gated expansion/depthwise frame by frame, in order."""
        x, meters = as_batch(xs), [c.meter for c in ctxs]
        if self.gate is None:
            h = self.expand.run_batch(x, meters) if self.expand is not None else x
            d = self.depthwise.run_batch(h, meters)
        else:
            actions = self.gate.decide_clip(x.mean(dim=(2, 3)), ctxs)
            frames, last = [], len(ctxs) - 1
            for t, ctx in enumerate(ctxs):
                ahead, ahead_ctx = (actions[t + 1], ctxs[t + 1]) if t < last else (None, None)
                fused = self.gate.fuse(actions[t], self._produce, x[t:t + 1], ctx, ahead, ahead_ctx)
                frames.append(self._depthwise(*fused, ctx))
            d = torch.cat(frames, dim=0)
            if self.gate.prev_src is not None:  # own copy: a view would keep the whole batch alive
                self.gate.prev_src = self.gate.prev_src.clone()
        if self.se_fc1 is not None:
            s = d.mean(dim=(2, 3), keepdim=True)
            for m in meters:
                m.fixed((d.shape[2] * d.shape[3] + 1) * d.shape[1])  # the SE's adaptive average pool
            d = d.mul_(self.se_fc2.run_batch(self.se_fc1.run_batch(s, meters), meters))
        out = self.project.run_batch(d, meters)
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
