"""BN-Inception stages: producers the last conv of each branch (a pool-only branch passes channels through),
consumers the first convs of the *next* module, so a gated module hands a :class:`Compact` tensor (only its
non-skipped channels) to the next stage."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adafuse.inference.folding import FoldedConv
from adafuse.inference.stages.common import (
    Compact,
    ConvStage,
    Feature,
    Gate,
    GateFactory,
    Stage,
    StepContext,
    densify,
    gap,
    max_pool,
    register_stages,
    run_pool,
)
from adafuse.models.bninception import BNInception


class InceptionStage(Stage):
    """BN-Inception module: parallel branches concatenated on channels, optionally gated.

    Reads a :class:`Compact` input (the previous module's non-skipped channels) directly: the first conv of a
    branch uses only those input channels, a pooling works channel by channel on them. With a gate, each
    branch's last conv computes only the channels the gate asks for, and the module hands a :class:`Compact`
    to the next stage. (A conv that is both the first and the last of its branch -- ``1x1``, ``pool_proj`` --
    is sliced on both sides; its work is attributed to this module's ``f1``.)
    """

    def __init__(self, module: nn.Module, name: str, gate: Gate | None) -> None:
        self.gate = gate
        self.gates = (gate,) if gate is not None else ()
        self.in_channels = module.in_channels
        self.out_channels = module.out_channels
        self.branches: list[list[FoldedConv | nn.Module]] = []
        ranges, start = [], 0
        for names in module.branches:
            ops: list[FoldedConv | nn.Module] = []
            width = self.in_channels
            for n in names:
                layer = module._modules[n]
                if isinstance(layer, nn.Conv2d):
                    ops.append(FoldedConv(layer, module._modules[f"{n}_bn"], "relu", f"{name}.{n}"))
                    width = layer.out_channels
                else:
                    ops.append(layer)
            self.branches.append(ops)
            ranges.append((start, start + width))
            start += width
        if start != self.out_channels:
            raise ValueError(f"{name}: branch widths sum to {start}, module says {self.out_channels}")
        self.ranges = ranges
        self.bounds = torch.tensor([lo for lo, _ in ranges[1:]], dtype=torch.long)

    def _run_layer(self, op: FoldedConv | nn.Module, h: Tensor, h_order: Tensor | None, in_gate: int | None,
                   ctx: StepContext) -> tuple[Tensor, Tensor | None]:
        """One non-final layer of a branch on a possibly compact input; returns the output and its order."""
        if isinstance(op, FoldedConv):
            role = (in_gate, "f2") if h_order is not None else None
            return op.run(h, ctx.meter, role, in_idx=h_order), None
        return run_pool(op, h, ctx.meter, self.in_channels if h_order is not None else None), h_order

    def _last(self, b: int, src: tuple[Tensor, Tensor | None], local: Tensor | None, lazy: bool,
              ctx: StepContext) -> Tensor:
        """Channels ``local`` (branch-local ids, None = all) of branch ``b``'s output from its last layer's
        input ``src = (h, order)``."""
        op = self.branches[b][-1]
        h, h_order = src
        if isinstance(op, FoldedConv):
            role = (self.gate.index, "f1_prev" if lazy else "f1") if self.gate is not None else None
            return op.run(h, ctx.meter, role, out_idx=local, in_idx=h_order, nominal=not lazy)
        # pass-through branch: channels = the input's; recomputing them for the previous frame charges nothing
        if not lazy:
            pooled = run_pool(op, h, ctx.meter)
        else:
            pooled = max_pool(op, h) if isinstance(op, nn.MaxPool2d) else op(h)
        if h_order is not None:
            pooled = densify(Compact(pooled, h_order, self.in_channels, -1))
        return pooled if local is None else pooled.index_select(1, local)

    def _produce(self, srcs: list[tuple[Tensor, Tensor | None]], idx: Tensor | None, lazy: bool,
                 ctx: StepContext) -> Tensor:
        if idx is None:
            return torch.cat([self._last(b, s, None, lazy, ctx) for b, s in enumerate(srcs)], dim=1)
        cuts = [0, *torch.searchsorted(idx, self.bounds).tolist(), idx.numel()]
        pieces = []
        for b, src in enumerate(srcs):
            lo, hi = cuts[b], cuts[b + 1]
            if hi > lo:
                pieces.append(self._last(b, src, idx[lo:hi] - self.ranges[b][0], lazy, ctx))
            elif not lazy and isinstance(self.branches[b][-1], FoldedConv):
                self._last(b, src, idx[:0], lazy, ctx)  # charges the folded BN's nominal cost
        if not pieces:
            h = srcs[0][0]
            return h.new_empty(1, 0, *self._out_hw(srcs))
        return torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]

    def _out_hw(self, srcs: list[tuple[Tensor, Tensor | None]]) -> tuple[int, int]:
        op, (h, _) = self.branches[0][-1], srcs[0]
        if isinstance(op, FoldedConv):
            return op.out_size(h.shape[2], h.shape[3])
        y = op(h[:, :1])
        return y.shape[2], y.shape[3]

    def step(self, x: Feature, ctx: StepContext) -> Feature:
        if isinstance(x, Compact):
            h0, order0, in_gate = x.u, x.order, x.gate
        else:
            h0, order0, in_gate = x, None, None
        srcs: list[tuple[Tensor, Tensor | None]] = []
        for ops in self.branches:
            h, h_order = h0, order0
            for op in ops[:-1]:
                h, h_order = self._run_layer(op, h, h_order, in_gate, ctx)
            srcs.append((h, h_order))
        if self.gate is None:
            return self._produce(srcs, None, False, ctx)
        actions = self.gate.decide(lambda: gap(x), ctx)
        u, order = self.gate.fuse(actions, self._produce, srcs, ctx)
        if order is None:
            return u
        return Compact(u, order, self.out_channels, self.gate.index)


@register_stages(BNInception)
def bninception_stages(backbone: BNInception, gate: GateFactory) -> list[Stage]:
    """Stem convs and pools, then one :class:`InceptionStage` per module."""
    b = backbone
    stages: list[Stage] = [ConvStage([
        FoldedConv(b.conv1_7x7_s2, b.conv1_7x7_s2_bn, "relu", "backbone.conv1_7x7_s2"), b.pool1_3x3_s2,
        FoldedConv(b.conv2_3x3_reduce, b.conv2_3x3_reduce_bn, "relu", "backbone.conv2_3x3_reduce"),
        FoldedConv(b.conv2_3x3, b.conv2_3x3_bn, "relu", "backbone.conv2_3x3"), b.pool2_3x3_s2,
    ])]
    for name in b.module_names:
        module = b._modules[name]
        stages.append(InceptionStage(module, f"backbone.{name}", gate(module.fusion, f"backbone.{name}")))
    return stages
