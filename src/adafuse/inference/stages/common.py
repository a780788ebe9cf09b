"""What every backbone family's stages share: the gate bookkeeping, the stage interface, the registry.

A :class:`Gate` holds the keep/reuse/skip bookkeeping of one gated tensor (one ``AdaptiveFusion``) across
frames; a :class:`Stage` runs the layers of one block around its gate, on one frame ``(1, C, H, W)``
(:meth:`Stage.step`) or on the ``T`` frames of a clip layer by layer (:meth:`Stage.step_clip`). Each backbone
family has its own module in this package with a stage builder registered for its backbone class by
:func:`register_stages`.

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
        """What to subtract from the policy's logits: the compute-budget shift ``(A,)`` (None when it is 0) and
        a budget-conditioned policy's target offset ``(C, A)``."""
        b = self.fusion.budget_shift
        shift = b * self.fusion.budget_cost if b else None
        offset = getattr(self.fusion.policy, "target_offset", None)
        if offset is not None:
            o = offset().detach()
            shift = -o if shift is None else shift - o
        return shift

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

    def plan(self, actions: Tensor, ctx: StepContext, ahead: Tensor | None = None,
             ahead_ctx: StepContext | None = None) -> FramePlan:
        """The channel bookkeeping of one sparse frame (no tensor work): which channels to produce now, which
        to take from the previous frame's output, which to recompute from its producer input. Records the
        counts in ``ctx``'s report and advances the gate's channel state; the caller runs the producers and
        then sets :attr:`prev_y` and :attr:`prev_src`.

        ``ahead``: the actions of the next frame when already known (clip mode; ``ahead_ctx`` its context).
        The channels it will reuse but this frame does not keep are then produced now, with the kept ones
        (Eq. 5's ``keep[t] OR reuse[t+1]``), instead of lazily at the next frame; their work is still charged
        to the next frame's report as ``f1_prev``, as the lazy call would be.
        """
        first = self.frame == 0
        # index bookkeeping on (C,) arrays in numpy: a few microseconds instead of a torch op each
        a = actions.numpy()
        counts = np.bincount(a, minlength=3)
        g = ctx.meter.report.gates[self.index]
        g.skip, g.reuse, g.keep = int(counts[0]), int(counts[1]), int(counts[2])
        self.frame += 1
        keep = a == KEEP
        keep_np = np.flatnonzero(keep)
        extra = np.flatnonzero((ahead.numpy() == REUSE) & ~keep) if ahead is not None else keep_np[:0]
        if extra.size:
            ahead_ctx.meter.report.gates[self.index].produced_prev = extra.size
            produce = np.concatenate([keep_np, extra])
            avail = keep.copy()
            avail[extra] = True
            rank = np.zeros(self.channels, dtype=np.int64)
            rank[produce] = np.arange(produce.size)
        else:
            produce, avail, rank = keep_np, keep, np.cumsum(keep) - 1
        cached = lazy = keep_np[:0]
        cached_pos = cached
        if not first and counts[1]:
            reuse = a == REUSE
            cached = np.flatnonzero(reuse & self.prev_keep)
            cached_pos = self.prev_rank[cached]
            lazy = np.flatnonzero(reuse & ~self.prev_keep)
        g.produced = keep_np.size
        g.produced_prev = g.produced_prev if not lazy.size else lazy.size
        g.consumed = keep_np.size + cached.size + lazy.size
        self.prev_keep = avail  # channels of this frame held in prev_y (kept, and produced ahead for t+1)
        self.prev_rank = rank
        return FramePlan(produce, keep_np.size, cached, cached_pos, lazy)

    def split_meter(self, plan: FramePlan, ctx: StepContext, ahead_ctx: StepContext | None) -> StepContext:
        """The context to charge this frame's producer call with: the share of the channels produced ahead
        for the next frame goes to ``ahead_ctx`` as ``f1_prev``."""
        n_extra = plan.produce.size - plan.n_keep
        if not n_extra:
            return ctx
        return StepContext(_SplitMeter(ctx.meter, ahead_ctx.meter, n_extra, plan.produce.size), ctx.masks)

    def fuse(self, actions: Tensor, produce: Produce, src: Any, ctx: StepContext, ahead: Tensor | None = None,
             ahead_ctx: StepContext | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the producers for this frame and assemble the consumers' input (PyTorch path, ``(1, C, H, W)``).

        Returns ``(u, order)``: ``u`` ``(1, n, H, W)`` holds gated channel ``order[i]`` at position ``i`` (kept
        channels of this frame, then reused ones of the previous frame); skipped channels are absent. Dense
        mode returns the full fused tensor and ``order=None``. ``ahead``, ``ahead_ctx``: see :meth:`plan`.
        """
        if not self.sparse:
            first = self.frame == 0
            a = actions.numpy()
            counts = np.bincount(a, minlength=3)
            g = ctx.meter.report.gates[self.index]
            g.skip, g.reuse, g.keep = int(counts[0]), int(counts[1]), int(counts[2])
            self.frame += 1
            y = produce(src, None, False, ctx)
            c = self.channels
            u = y * (actions == KEEP).to(y.dtype).view(1, c, 1, 1)
            if not first:
                u.addcmul_(self.prev_y, (actions == REUSE).to(y.dtype).view(1, c, 1, 1))
            self.prev_y = y
            g.produced, g.consumed = c, c
            return u, None
        prev_y, prev_src = self.prev_y, self.prev_src
        plan = self.plan(actions, ctx, ahead, ahead_ctx)
        y_all = produce(src, torch.from_numpy(plan.produce), False, self.split_meter(plan, ctx, ahead_ctx))
        pieces, orders = [y_all[:, :plan.n_keep]], [plan.produce[:plan.n_keep]]
        if plan.cached.size:
            pieces.append(prev_y.index_select(1, torch.from_numpy(plan.cached_pos)))
            orders.append(plan.cached)
        if plan.lazy.size:
            pieces.append(produce(prev_src, torch.from_numpy(plan.lazy), True, ctx))
            orders.append(plan.lazy)
        u = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]
        self.prev_y = y_all
        self.prev_src = src
        return u, torch.from_numpy(np.concatenate(orders)) if len(orders) > 1 else torch.from_numpy(orders[0])


class FramePlan(NamedTuple):
    """Channels of one gated frame (int64 ids of the gated tensor): ``produce`` -- computed from this frame's
    producer input, the ``n_keep`` kept ones first, then those the next frame will reuse; ``cached`` -- reused
    channels taken from the previous frame's output, at positions ``cached_pos`` of it; ``lazy`` -- reused
    channels the previous frame did not compute, recomputed from its producer input. The consumers read
    ``produce[:n_keep]``, ``cached``, ``lazy`` in this order."""

    produce: np.ndarray
    n_keep: int
    cached: np.ndarray
    cached_pos: np.ndarray
    lazy: np.ndarray

    @property
    def order(self) -> np.ndarray:
        return np.concatenate([self.produce[:self.n_keep], self.cached, self.lazy])


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
    """A fixed sequence of folded convs and pools (stems, heads): ``ops`` are FoldedConv or pooling modules.
    ``channels_last``: run (and return) the clip in channels_last memory format, NHWC for the next stage (for
    the stem's 3-channel input that is also the faster layout of oneDNN's conv and of max pooling)."""

    def __init__(self, ops: Sequence[FoldedConv | nn.Module], channels_last: bool = False) -> None:
        self.ops = list(ops)
        self.channels_last = channels_last

    def step(self, x: Feature, ctx: StepContext) -> Tensor:
        if self.channels_last:
            return self.step_clip(densify(x), [ctx])
        x = densify(x)
        for op in self.ops:
            x = op.run(x, ctx.meter) if isinstance(op, FoldedConv) else run_pool(op, x, ctx.meter)
        return x

    def step_clip(self, xs: Clip, ctxs: Sequence[StepContext]) -> Clip:
        if not all(isinstance(op, (FoldedConv, nn.MaxPool2d)) for op in self.ops):
            return super().step_clip(xs, ctxs)  # average pools charge per frame
        x, meters = as_batch(xs), [c.meter for c in ctxs]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for op in self.ops:
            x = op.run_batch(x, meters) if isinstance(op, FoldedConv) else max_pool(op, x)
        return x


def max_pool(pool: nn.MaxPool2d, x: Tensor) -> Tensor:
    """``pool(x)``; a batch-1 NCHW float tensor goes through oneDNN when available (several times faster than
    the eager kernel, which also computes indices; identical results), a channels_last one stays NHWC."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
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


# Builds the stages of a backbone. ``gate(fusion, name)`` makes the Gate of a block's fusion module (None for
# an ungated block); the builder calls it once per fusion module, in the model's module order.
GateFactory = Callable[[AdaptiveFusion | None, str], "Gate | None"]
StageBuilder = Callable[[nn.Module, GateFactory], list[Stage]]
STAGE_BUILDERS: dict[type, StageBuilder] = {}


def register_stages(backbone_type: type) -> Callable[[StageBuilder], StageBuilder]:
    """Decorator: ``builder(backbone, gate) -> stages`` compiles backbones of ``backbone_type`` (and its
    subclasses) for the sparse executor."""

    def deco(builder: StageBuilder) -> StageBuilder:
        STAGE_BUILDERS[backbone_type] = builder
        return builder

    return deco


def stage_builder(backbone: nn.Module) -> StageBuilder | None:
    """The registered builder for ``backbone``'s class (or its nearest registered base class)."""
    for cls in type(backbone).__mro__:
        if cls in STAGE_BUILDERS:
            return STAGE_BUILDERS[cls]
    return None


def check_gated_layers(block: nn.Module, name: str, producers: list[nn.Module], consumers: list[nn.Module]) -> None:
    """The stage slices the producers and consumers the block declares (``fusion_cost_layers()``, the
    description the FLOPs engine reads too): refuse a block whose description says otherwise."""
    declared = block.fusion_cost_layers()
    if block.fusion is not None and (list(declared.producers) != producers or list(declared.consumers) != consumers):
        raise NotImplementedError(f"{name}: the block declares other gated layers than its executor stage slices "
                                  "(update the stage in adafuse.inference.stages with the block)")
