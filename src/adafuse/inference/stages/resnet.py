"""ResNet stages: producer ``conv1``, consumer ``conv2`` of every BasicBlock/Bottleneck."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adafuse.inference.folding import FoldedConv
from adafuse.inference.stages.common import (
    Clip,
    ConvStage,
    Feature,
    Gate,
    GateFactory,
    Stage,
    StepContext,
    as_batch,
    densify,
    register_stages,
)
from adafuse.models.resnet import ResNet


class ResidualStage(Stage):
    """ResNet BasicBlock/Bottleneck: ``conv1 (+bn1, relu) -> [gate] -> conv2 (+bn2[, relu]) [-> conv3 (+bn3)]
    -> + shortcut -> relu``. Producer ``conv1``, consumer ``conv2``; conv3 and the shortcut are fixed."""

    def __init__(self, block: nn.Module, name: str, gate: Gate | None) -> None:
        if getattr(block, "shift", None) is not None:
            raise ValueError(f"{name}: a TSM block cannot be streamed (its shift reads frame t+1)")
        bottleneck = hasattr(block, "conv3")
        self.conv1 = FoldedConv(block.conv1, block.bn1, "relu", f"{name}.conv1")
        self.conv2 = FoldedConv(block.conv2, block.bn2, "relu" if bottleneck else None, f"{name}.conv2")
        self.conv3 = FoldedConv(block.conv3, block.bn3, None, f"{name}.conv3") if bottleneck else None
        ds = block.downsample
        self.downsample = FoldedConv(ds[0], ds[1], None, f"{name}.downsample.0") if ds is not None else None
        self.gate = gate
        self.gates = (gate,) if gate is not None else ()

    def _produce(self, x: Tensor, idx: Tensor | None, lazy: bool, ctx: StepContext) -> Tensor:
        role = (self.gate.index, "f1_prev" if lazy else "f1")
        return self.conv1.run(x, ctx.meter, role, out_idx=idx, nominal=not lazy)

    def step(self, x: Feature, ctx: StepContext) -> Tensor:
        x = densify(x)
        identity = self.downsample.run(x, ctx.meter) if self.downsample is not None else x
        if self.gate is None:
            out = self.conv2.run(self.conv1.run(x, ctx.meter), ctx.meter)
        else:
            actions = self.gate.decide(lambda: x.mean(dim=(2, 3)), ctx)
            u, order = self.gate.fuse(actions, self._produce, x, ctx)
            out = self.conv2.run(u, ctx.meter, (self.gate.index, "f2"), in_idx=order)
        if self.conv3 is not None:
            out = self.conv3.run(out, ctx.meter)
        return out.add_(identity).relu_()

    def step_clip(self, xs: Clip, ctxs: Sequence[StepContext]) -> Tensor:
        """All frames at once: shortcut, conv3 and the policy MLP batched over the ``T`` frames; the gated
        conv1/conv2 (a different channel subset per frame) frame by frame, in order."""
        x, meters = as_batch(xs), [c.meter for c in ctxs]
        identity = self.downsample.run_batch(x, meters) if self.downsample is not None else x
        if self.gate is None:
            out = self.conv2.run_batch(self.conv1.run_batch(x, meters), meters)
        else:
            actions = self.gate.decide_clip(x.mean(dim=(2, 3)), ctxs)
            outs = []
            last = len(ctxs) - 1
            for t, ctx in enumerate(ctxs):
                ahead, ahead_ctx = (actions[t + 1], ctxs[t + 1]) if t < last else (None, None)
                u, order = self.gate.fuse(actions[t], self._produce, x[t:t + 1], ctx, ahead, ahead_ctx)
                outs.append(self.conv2.run(u, ctx.meter, (self.gate.index, "f2"), in_idx=order))
            out = torch.cat(outs, dim=0)
            if self.gate.prev_src is not None:  # own copy: a view would keep the whole batch alive
                self.gate.prev_src = self.gate.prev_src.clone()
        if self.conv3 is not None:
            out = self.conv3.run_batch(out, meters)
        return out.add_(identity).relu_()


@register_stages(ResNet)
def resnet_stages(backbone: ResNet, gate: GateFactory) -> list[Stage]:
    """Stem, then one :class:`ResidualStage` per block of ``layer1..layer4``."""
    stages: list[Stage] = [ConvStage([FoldedConv(backbone.conv1, backbone.bn1, "relu", "backbone.conv1"),
                                      backbone.maxpool])]
    for s in range(1, 5):
        for i, block in enumerate(getattr(backbone, f"layer{s}")):
            name = f"backbone.layer{s}.{i}"
            stages.append(ResidualStage(block, name, gate(block.fusion, name)))
    return stages
