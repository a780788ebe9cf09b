"""Streaming stages of the sparse executor: one frame ``(1, C, H, W)`` at a time, BN folded.

A :class:`Gate` holds the keep/reuse/skip bookkeeping of one gated tensor (one ``AdaptiveFusion``) across
frames; the stages below run the layers around it:

* :class:`ResidualStage` -- ResNet ``BasicBlock``/``Bottleneck``: producer ``conv1``, consumer ``conv2``;
* :class:`MBConvStage` -- EfficientNet MBConv: producer the expansion conv, consumer the depthwise conv;
* :class:`InceptionStage` -- BN-Inception module: producers the last conv of each branch (a pool-only
  branch passes channels through), consumers the first convs of the *next* module, so a gated module hands
  a :class:`Compact` tensor (only its non-skipped channels) to the next stage.

At frame ``t`` a gate computes only the kept channels (``keep[t]``), takes reused channels from the cached
output of ``t-1`` when ``t-1`` kept them, and otherwise computes them now from the cached producer input of
``t-1`` (so every channel of every frame is computed at most once: the work of paper Eq. 5). Skipped
channels (and reuses at the first frame, which read zeros) never reach the consumers. The state of a gate
is one frame deep: the previous GAP vector, the previous frame's kept outputs and producer inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adafuse.inference.accounting import Meter
from adafuse.inference.folding import FoldedConv, FoldedPolicy
from adafuse.models.fusion import KEEP, REUSE, AdaptiveFusion, PolicyNet


class Compact(NamedTuple):
    """A gated tensor of ``channels`` channels of which only ``order`` are non-zero: ``u`` ``(1, n, H, W)``
    holds channel ``order[i]`` at position ``i``. ``gate``: index of the gate that produced it."""

    u: Tensor
    order: Tensor
    channels: int
    gate: int


Feature = Tensor | Compact
# A clip of T frames between stages in layer-by-layer (clip) mode: one batch (T, C, H, W), or one Feature per frame
Clip = Tensor | list[Feature]


def densify(x: Feature) -> Tensor:
    """``(1, C, H, W)`` with the missing channels of a :class:`Compact` filled with zeros."""
    if not isinstance(x, Compact):
        return x
    out = x.u.new_zeros(1, x.channels, x.u.shape[2], x.u.shape[3])
    return out.index_copy_(1, x.order, x.u)


def gap(x: Feature) -> Tensor:
    """Global average pool ``(1, C)`` (zeros for the missing channels of a :class:`Compact`)."""
    if not isinstance(x, Compact):
        return x.mean(dim=(2, 3))
    v = x.u.new_zeros(1, x.channels)
    return v.index_copy_(1, x.order, x.u.mean(dim=(2, 3)))


def as_batch(xs: Clip) -> Tensor:
    """The frames of a clip as one dense batch ``(T, C, H, W)`` (no copy if it already is one)."""
    if isinstance(xs, Tensor):
        return xs
    return torch.cat([densify(x) for x in xs], dim=0)


def as_frames(xs: Clip) -> list[Feature]:
    """The frames of a clip as a list of ``(1, C, H, W)`` features (views of a batch)."""
    return list(xs.split(1)) if isinstance(xs, Tensor) else xs


class StepContext:
    """What a stage needs besides its input: the work meter and, optionally, injected per-gate masks
    (``masks[i]``: ``(C, 3)`` one-hot (skip, reuse, keep) for gate ``i`` at this frame, or None)."""

    def __init__(self, meter: Meter, masks: Sequence[Tensor | None] | None = None) -> None:
        self.meter = meter
        self.masks = masks


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, np.ndarray):
        return [torch.from_numpy(obj)]
    if isinstance(obj, Compact):
        return [obj.u, obj.order]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return []


# Producer callback of a gate: (producer input, channel ids or None for all, lazy?, ctx) -> (1, n, H, W).
Produce = Callable[[Any, Tensor | None, bool, StepContext], Tensor]


class Gate:
    """Keep/reuse/skip bookkeeping of one gated tensor of ``channels`` channels across the frames of a stream.

    ``sparse=False`` computes every channel and applies the mask (the dense masked model, with folded BN),
    for comparisons on the same executor.
    """

    def __init__(self, index: int, name: str, fusion: AdaptiveFusion, sparse: bool = True) -> None:
        self.index = index
        self.name = name
        self.channels = int(fusion.channels)
        self.sparse = sparse
        policy = fusion.policy
        self.policy = FoldedPolicy(policy, fusion.actions) if isinstance(policy, PolicyNet) else None
        self.policy_kind = type(policy).__name__
        self.fusion = fusion  # read at every decision: its budget shift may change between frames
        self.reset()

    def _shift(self) -> Tensor | None:
        """The fusion module's compute-budget shift as a logit offset ``(A,)`` (None when it is 0)."""
        b = self.fusion.budget_shift
        return b * self.fusion.budget_cost if b else None

    def reset(self) -> None:
        self.frame = 0
        self.prev_v: Tensor | None = None
        self.prev_keep: np.ndarray | None = None  # (C,) bool: channels of t-1 held in prev_y
        self.prev_rank: np.ndarray | None = None  # (C,) int64 position of a kept channel in prev_y
        self.prev_y: Tensor | None = None  # (1, n_keep, H, W) (dense mode: all C channels)
        self.prev_src: Any = None  # producer input(s) of t-1

    def state_tensors(self) -> list[Tensor]:
        return _tensors([self.prev_v, self.prev_keep, self.prev_rank, self.prev_y, self.prev_src])

    def decide(self, policy_input: Callable[[], Tensor], ctx: StepContext) -> Tensor:
        """Actions ``(C,)`` int64 in ``{SKIP, REUSE, KEEP}`` at this frame: the argmax policy, or the injected
        mask. The policy MLP runs whenever the gate has one (its cost is part of the model's work)."""
        actions = None
        if self.policy is not None:
            v = policy_input()
            actions = self.policy(v, self.prev_v, self._shift())
            ctx.meter.linear(self.policy.macs, self.policy.flops)
            self.prev_v = v
        return self._choose(actions, ctx)

    def decide_clip(self, v: Tensor, ctxs: Sequence[StepContext]) -> list[Tensor]:
        """Actions of ``T`` consecutive frames (list of ``(C,)`` int64), as :meth:`decide` frame by frame, but
        with the policy MLP run once on the block input GAPs ``v`` ``(T, C_in)`` of all frames."""
        batch = None
        if self.policy is not None:
            batch = self.policy.batch(v, self.prev_v, self._shift())
            for ctx in ctxs:
                ctx.meter.linear(self.policy.macs, self.policy.flops)
            self.prev_v = v[-1:]
        return [self._choose(batch[i] if batch is not None else None, ctx) for i, ctx in enumerate(ctxs)]

    def _choose(self, actions: Tensor | None, ctx: StepContext) -> Tensor:
        """The injected mask of this frame if there is one, else the policy's ``actions``."""
        mask = ctx.masks[self.index] if ctx.masks is not None else None
        if mask is not None:
            if mask.numel() != self.channels * 3:
                raise ValueError(f"injected mask for gate {self.index} ({self.name}) has shape {tuple(mask.shape)}, "
                                 f"expected ({self.channels}, 3)")
            return mask.reshape(self.channels, 3).argmax(dim=1)
        if actions is None:
            raise ValueError(f"gate {self.index} ({self.name}) has a {self.policy_kind} policy, which the sparse "
                             "executor cannot run (it supports the learned PolicyNet); inject masks instead")
        return actions

    def fuse(self, actions: Tensor, produce: Produce, src: Any, ctx: StepContext, ahead: Tensor | None = None,
             ahead_ctx: StepContext | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the producers for this frame and assemble the consumers' input.

        Returns ``(u, order)``: ``u`` ``(1, n, H, W)`` holds gated channel ``order[i]`` at position ``i`` (kept
        channels of this frame, then reused ones of the previous frame); skipped channels are absent. Dense
        mode returns the full fused tensor and ``order=None``.

        ``ahead``: the actions of the next frame when already known (clip mode; ``ahead_ctx`` its context).
        The channels it will reuse but this frame does not keep are then produced now, in the same producer
        call as the kept ones (Eq. 5's ``keep[t] OR reuse[t+1]``), instead of lazily at the next frame; their
        work is still charged to the next frame's report as ``f1_prev``, as the lazy call would be.
        """
        first = self.frame == 0
        # index bookkeeping on (C,) arrays in numpy: a few microseconds instead of a torch op each
        a = actions.numpy()
        counts = np.bincount(a, minlength=3)
        g = ctx.meter.report.gates[self.index]
        g.skip, g.reuse, g.keep = int(counts[0]), int(counts[1]), int(counts[2])
        self.frame += 1
        if not self.sparse:
            y = produce(src, None, False, ctx)
            c = self.channels
            u = y * (actions == KEEP).to(y.dtype).view(1, c, 1, 1)
            if not first:
                u.addcmul_(self.prev_y, (actions == REUSE).to(y.dtype).view(1, c, 1, 1))
            self.prev_y = y
            g.produced, g.consumed = c, c
            return u, None
        keep = a == KEEP
        keep_np = np.flatnonzero(keep)
        keep_idx = torch.from_numpy(keep_np)
        extra = np.flatnonzero((ahead.numpy() == REUSE) & ~keep) if ahead is not None else keep_np[:0]
        if extra.size:  # one producer call for this frame's kept channels and the next frame's lazy ones
            ids = np.concatenate([keep_np, extra])
            split = StepContext(_SplitMeter(ctx.meter, ahead_ctx.meter, extra.size, ids.size), ctx.masks)
            y_all = produce(src, torch.from_numpy(ids), False, split)
            y_keep = y_all[:, :keep_np.size]
            ahead_ctx.meter.report.gates[self.index].produced_prev = extra.size
            avail = keep.copy()
            avail[extra] = True
            rank = np.zeros(self.channels, dtype=np.int64)
            rank[ids] = np.arange(ids.size)
        else:
            y_all = y_keep = produce(src, keep_idx, False, ctx)
            avail, rank = keep, np.cumsum(keep) - 1
        u, order = y_keep, keep_idx
        g.produced = keep_np.size
        if not first and counts[1]:
            reuse = a == REUSE
            pieces, orders = [y_keep], [keep_np]
            cached = np.flatnonzero(reuse & self.prev_keep)
            if cached.size:
                pieces.append(self.prev_y.index_select(1, torch.from_numpy(self.prev_rank[cached])))
                orders.append(cached)
            lazy = np.flatnonzero(reuse & ~self.prev_keep)
            if lazy.size:
                pieces.append(produce(self.prev_src, torch.from_numpy(lazy), True, ctx))
                orders.append(lazy)
                g.produced_prev = lazy.size
            u, order = torch.cat(pieces, dim=1), torch.from_numpy(np.concatenate(orders))
        g.consumed = order.numel()
        self.prev_keep = avail  # channels of this frame held in prev_y (kept, and produced ahead for t+1)
        self.prev_rank = rank
        self.prev_y = y_all
        self.prev_src = src
        return u, order


class _SplitMeter:
    """Meter of a producer call that also computes ``later`` of its ``total`` output channels for the next
    frame: that share of the executed MACs goes to the next frame's meter as lazy work (``f1_prev``, no
    nominal cost), the rest and the nominal cost to this frame's."""

    def __init__(self, now: Meter, ahead: Meter, later: int, total: int) -> None:
        self.now, self.ahead, self.later, self.total = now, ahead, later, total

    def conv(self, macs: int, extra: int, role: tuple[int, str] | None, name: str = "") -> None:
        later = macs * self.later // self.total  # exact: macs is a multiple of total
        self.now.conv(macs - later, extra, role, name)
        self.ahead.conv(later, 0, (role[0], "f1_prev") if role is not None else None, name)


class Stage:
    """One step of the backbone on one frame. ``gates``: the gates this stage drives."""

    gates: tuple[Gate, ...] = ()

    def step(self, x: Feature, ctx: StepContext) -> Feature:
        raise NotImplementedError

    def step_clip(self, xs: Clip, ctxs: Sequence[StepContext]) -> Clip:
        """This stage on all ``T`` frames of a clip, in frame order (``ctxs[t]``: frame ``t``'s context). The
        default steps frame by frame; stages override it to batch the work that does not depend on the
        frame's channel subsets."""
        return [self.step(x, ctx) for x, ctx in zip(as_frames(xs), ctxs, strict=True)]

    def state_tensors(self) -> list[Tensor]:
        return [t for g in self.gates for t in g.state_tensors()]


class ConvStage(Stage):
    """A fixed sequence of folded convs and pools (stems, heads): ``ops`` are FoldedConv or pooling modules."""

    def __init__(self, ops: Sequence[FoldedConv | nn.Module]) -> None:
        self.ops = list(ops)

    def step(self, x: Feature, ctx: StepContext) -> Tensor:
        x = densify(x)
        for op in self.ops:
            x = op.run(x, ctx.meter) if isinstance(op, FoldedConv) else run_pool(op, x, ctx.meter)
        return x

    def step_clip(self, xs: Clip, ctxs: Sequence[StepContext]) -> Clip:
        if not all(isinstance(op, (FoldedConv, nn.MaxPool2d)) for op in self.ops):
            return super().step_clip(xs, ctxs)  # average pools charge per frame
        x, meters = as_batch(xs), [c.meter for c in ctxs]
        for op in self.ops:
            x = op.run_batch(x, meters) if isinstance(op, FoldedConv) else max_pool(op, x)
        return x


def max_pool(pool: nn.MaxPool2d, x: Tensor) -> Tensor:
    """``pool(x)`` through oneDNN when available: on a batch-1 NCHW float tensor it is several times faster
    than the eager kernel (which also computes indices), with identical results."""
    if x.dtype == torch.float32 and x.device.type == "cpu" and torch.backends.mkldnn.is_available():
        return F.max_pool2d(x.to_mkldnn(), pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                            pool.ceil_mode).to_dense()
    return pool(x)


def run_pool(pool: nn.Module, x: Tensor, meter: Meter, full_channels: int | None = None) -> Tensor:
    """Apply a pooling module, charging the engine's nominal cost of an average pool over ``full_channels``
    channels (default: those of ``x``); max pools are free."""
    if isinstance(pool, nn.MaxPool2d):
        return max_pool(pool, x)
    y = pool(x)
    if isinstance(pool, nn.AvgPool2d):
        k = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * 2
        channels = y.shape[1] if full_channels is None else full_channels
        meter.fixed((k[0] * k[1] + 1) * channels * y.shape[2] * y.shape[3])
    elif not isinstance(pool, nn.MaxPool2d):
        raise NotImplementedError(f"pooling layer {type(pool).__name__} is not supported by the sparse executor")
    return y


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
