"""ResNet stages: producer ``conv1``, consumer ``conv2`` of every BasicBlock/Bottleneck.

With the compiled kernels (:mod:`adafuse.inference.kernels`) a block runs on NHWC frames: the producer
computes only the channels a frame keeps (and those the next frame will reuse) with a packed copy of the
weight's columns, the consumer reads only the present channels through a row lookup in the input-major weight,
conv3 adds the shortcut and the ReLU in its epilogue, and the frames of a clip (or the pixel rows of a single
frame) are spread over the threads. Without them the same blocks run on PyTorch ops (``(1, C, H, W)`` frames).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from adafuse.inference import kernels
from adafuse.inference.folding import FoldedConv
from adafuse.inference.stages.common import (
    Clip,
    ConvStage,
    Feature,
    FramePlan,
    Gate,
    GateFactory,
    Stage,
    StepContext,
    as_batch,
    check_gated_layers,
    densify,
    register_stages,
)
from adafuse.models.resnet import ResNet
from adafuse.models.temporal import temporal_shift


class ResidualStage(Stage):
    """ResNet BasicBlock/Bottleneck: ``conv1 (+bn1, relu) -> [gate] -> conv2 (+bn2[, relu]) [-> conv3 (+bn3)]
    -> + shortcut -> relu``. Producer ``conv1``, consumer ``conv2``; conv3 and the shortcut are fixed."""

    def __init__(self, block: nn.Module, name: str, gate: Gate | None) -> None:
        self.name = name
        self.shift = getattr(block, "shift", None)  # TSM: only whole clips (the shift reads frame t+1)
        self.shift_shortcut = bool(getattr(block, "shift_shortcut", False))
        bottleneck = hasattr(block, "conv3")
        check_gated_layers(block, name, [block.conv1], [block.conv2])
        self.conv1 = FoldedConv(block.conv1, block.bn1, "relu", f"{name}.conv1")
        self.conv2 = FoldedConv(block.conv2, block.bn2, "relu" if bottleneck else None, f"{name}.conv2")
        self.conv3 = FoldedConv(block.conv3, block.bn3, None, f"{name}.conv3") if bottleneck else None
        ds = block.downsample
        self.downsample = FoldedConv(ds[0], ds[1], None, f"{name}.downsample.0") if ds is not None else None
        self.gate = gate
        self.gates = (gate,) if gate is not None else ()
        self.bottleneck = bottleneck
        self.packed: dict[str, Tensor] = {}
        # the compiled path computes only the needed channels: a dense-mode gate (every channel, then masked)
        # keeps the PyTorch path, which is its reference
        self.use_kernels = kernels.available() and (gate is None or gate.sparse)
        if self.use_kernels:  # the kernels read only the input-major copies: drop the folded (C_out, C_in, k, k) ones
            for key, conv in (("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3),
                              ("ds", self.downsample)):
                if conv is not None:
                    self.packed[key] = kernels.input_major(conv.weight)
                    conv.weight = None

    def _produce(self, x: Tensor, idx: Tensor | None, lazy: bool, ctx: StepContext) -> Tensor:
        role = (self.gate.index, "f1_prev" if lazy else "f1")
        return self.conv1.run(x, ctx.meter, role, out_idx=idx, nominal=not lazy)

    def _shifted(self, x: Tensor) -> Tensor:
        """The TSM shift over the ``T`` frames of a whole clip ``(T, C, H, W)`` (``x`` itself without one)."""
        if self.shift is None:
            return x
        return temporal_shift(x, x.shape[0], self.shift.fold_div)

    def step(self, x: Feature, ctx: StepContext) -> Tensor:
        if self.shift is not None:
            raise ValueError(f"{self.name}: a TSM block cannot be streamed (its shift reads frame t+1)")
        if self.use_kernels:
            return self._run_kernels(densify(x), [ctx])
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
        if self.use_kernels:
            return self._run_kernels(as_batch(xs), ctxs)
        plain, meters = as_batch(xs), [c.meter for c in ctxs]
        x = self._shifted(plain)
        shortcut = x if self.shift_shortcut else plain
        identity = self.downsample.run_batch(shortcut, meters) if self.downsample is not None else plain
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


    # ------------------------------------------------------------------------------------ compiled path

    def _weight(self, key: str, conv: FoldedConv) -> Tensor:
        """``conv``'s weight in the kernels' input-major layout ``(taps * C_in, C_out)`` (packed at build)."""
        return self.packed[key]

    def _run_kernels(self, x: Tensor, ctxs: Sequence[StepContext]) -> Tensor:
        with kernels.torch_single_threaded() as threads:
            return self._run_kernels_on(x, ctxs, threads)

    def _run_kernels_on(self, x: Tensor, ctxs: Sequence[StepContext], threads: int) -> Tensor:
        """The block on ``T`` frames ``x`` ``(T, C_in, H, W)`` with the compiled kernels; returns
        ``(T, C_out, H', W')`` in channels_last memory format. Work is charged exactly as the PyTorch path does."""
        plain = x.contiguous(memory_format=torch.channels_last)
        x = self._shifted(plain).contiguous(memory_format=torch.channels_last)
        t, c_in, h, w = x.shape
        frames = x.permute(0, 2, 3, 1).reshape(t, h * w, c_in)  # NHWC rows, a view
        plain_frames = plain.permute(0, 2, 3, 1).reshape(t, h * w, c_in) if x is not plain else frames
        shortcut = frames if self.shift_shortcut else plain_frames
        meters = [c.meter for c in ctxs]
        c1, c2, c3, ds = self.conv1, self.conv2, self.conv3, self.downsample
        h1, w1 = c1.out_size(h, w)
        h2, w2 = c2.out_size(h1, w1)
        c_out = c3.out_channels if c3 is not None else c2.out_channels
        out = x.new_empty(t, h2 * w2, c_out)
        mid = x.new_empty(t, h2 * w2, c2.out_channels) if c3 is not None else None
        identity = x.new_empty(t, h2 * w2, c_out) if ds is not None else plain_frames
        gate = self.gate

        # producer input of every frame, padded for conv1's window (a view when conv1 has no padding)
        src = [_padded(frames[i], (h, w), c1.padding) for i in range(t)]
        if gate is None:
            plans = None
            ys = [x.new_empty(h1 * w1, c1.out_channels) for _ in range(t)]
            ids = [None] * t
            lazy = None
        else:
            actions = gate.decide_clip(x.mean(dim=(2, 3)), ctxs)
            prev_y, prev_src = gate.prev_y, gate.prev_src
            plans: list[FramePlan] = []
            for i, ctx in enumerate(ctxs):
                ahead, ahead_ctx = (actions[i + 1], ctxs[i + 1]) if i + 1 < t else (None, None)
                plans.append(gate.plan(actions[i], ctx, ahead, ahead_ctx))
            ys = [x.new_empty(h1 * w1, p.produce.size) for p in plans]
            ids = [torch.from_numpy(p.produce) for p in plans]
            lazy = x.new_empty(h1 * w1, plans[0].lazy.size) if plans[0].lazy.size else None

        # work accounting (serial, before the parallel part): as FoldedConv.run / run_batch charge it
        spatial1, spatial2 = h1 * w1, h2 * w2
        for i, ctx in enumerate(ctxs):
            if ds is not None:
                ds.charge(meters[i], None, c_out * spatial2, ds.in_channels, spatial2, True)
            if gate is None:
                c1.charge(meters[i], None, c1.out_channels * spatial1, c1.in_channels, spatial1, True)
                c2.charge(meters[i], None, c2.out_channels * spatial2, c2.in_channels, spatial2, True)
            else:
                plan, role = plans[i], gate.index
                ahead_ctx = ctxs[i + 1] if i + 1 < t else None
                c1.charge(gate.split_meter(plan, ctx, ahead_ctx).meter, (role, "f1"), plan.produce.size * spatial1,
                          c1.in_channels, spatial1, True)
                if plan.lazy.size:
                    c1.charge(meters[i], (role, "f1_prev"), plan.lazy.size * spatial1, c1.in_channels, spatial1, False)
                n_in = plan.n_keep + plan.cached.size + plan.lazy.size
                c2.charge(meters[i], (role, "f2"), c2.out_channels * spatial2, n_in, spatial2, True)
            if c3 is not None:
                c3.charge(meters[i], None, c3.out_channels * spatial2, c3.in_channels, spatial2, True)

        w1p, w2p = self._weight("conv1", c1), self._weight("conv2", c2)
        chunks = _row_chunks(t, spatial2, threads)

        def producer(i: int, rows: tuple[int, int] | None) -> Callable[[], None]:
            def run() -> None:
                if ds is not None:
                    kernels.conv_subset(shortcut[i], (h, w), _iota(c_in), self._weight("ds", ds), c_in, ds.kernel,
                                        ds.stride, ds.padding, identity[i], ds.bias, rows=rows)
            return run

        def produce1(i: int, rows1: tuple[int, int] | None) -> Callable[[], None]:
            def run() -> None:
                if gate is None:
                    kernels.conv_subset(src[i], (h, w), _iota(c_in), w1p, c_in, c1.kernel, c1.stride, c1.padding,
                                        ys[i], c1.bias, relu=True, rows=rows1)
                elif ids[i].numel():
                    kernels.conv_subset(src[i], (h, w), _iota(c_in), _columns(w1p, ids[i]), c_in, c1.kernel,
                                        c1.stride, c1.padding, ys[i], c1.bias[ids[i]], relu=True,
                                        rows=rows1)
            return run

        tasks = [producer(i, r) for i, r in chunks if ds is not None]
        tasks += [produce1(i, r) for i, r in _row_chunks(t, spatial1, threads)]
        if lazy is not None:  # frame 0 reuses channels the previous call's last frame did not compute
            lz = torch.from_numpy(plans[0].lazy)
            tasks.append(lambda: kernels.conv_subset(prev_src, (h, w), _iota(c_in), _columns(w1p, lz), c_in,
                                                     c1.kernel, c1.stride, c1.padding, lazy,
                                                     c1.bias.index_select(0, lz), relu=True))
        kernels.pool().run(tasks, threads)

        # consumer input of a frame: the present channels, zero-padded for conv2's window
        def consumer_input(i: int) -> tuple[Tensor, Tensor]:
            if gate is None:
                return _padded(ys[i], (h1, w1), c2.padding), _iota(c2.in_channels)
            plan = plans[i]
            u = _assemble(plan, ys[i], ys[i - 1] if i else prev_y, lazy, (h1, w1), c2.padding)
            return u, torch.from_numpy(plan.order.astype(np.int32))

        # whole frames per task: each assembles its own input; split frames: assembled once, before the split
        inputs = [consumer_input(i) for i in range(t)] if chunks[0][1] is not None else None

        def consumer(i: int, rows: tuple[int, int] | None) -> Callable[[], None]:
            def run() -> None:
                u, order = inputs[i] if inputs is not None else consumer_input(i)
                res = identity[i]
                if c3 is None:
                    kernels.conv_subset(u, (h1, w1), order, w2p, c2.in_channels, c2.kernel, c2.stride,
                                        c2.padding, out[i], c2.bias, relu=True, residual=res, rows=rows)
                    return
                kernels.conv_subset(u, (h1, w1), order, w2p, c2.in_channels, c2.kernel, c2.stride,
                                    c2.padding, mid[i], c2.bias, relu=True, rows=rows)
                kernels.conv_subset(mid[i], (h2, w2), _iota(c3.in_channels), self._weight("conv3", c3),
                                    c3.in_channels, c3.kernel, c3.stride, c3.padding, out[i], c3.bias, relu=True,
                                    residual=res, rows=rows)
            return run

        kernels.pool().run([consumer(i, r) for i, r in chunks], threads)
        if gate is not None:
            gate.prev_y = ys[-1]
            gate.prev_src = src[-1].clone() if src[-1].data_ptr() == frames[-1].data_ptr() else src[-1]
        return out.view(t, h2, w2, c_out).permute(0, 3, 1, 2)


_IOTA: dict[int, Tensor] = {}


def _iota(n: int) -> Tensor:
    """``0 .. n-1`` as int32 (weight rows of a dense input), cached."""
    r = _IOTA.get(n)
    if r is None:
        r = _IOTA[n] = torch.arange(n, dtype=torch.int32)
    return r


def _columns(weight: Tensor, ids: Tensor) -> Tensor:
    """Columns ``ids`` (output channels) of an input-major weight, packed contiguously (in C: this runs on the
    kernel threads, where a PyTorch op would start an OpenMP team of its own)."""
    return kernels.pack_columns(weight, ids)


def _padded(frame: Tensor, hw: tuple[int, int], padding: tuple[int, int]) -> Tensor:
    """An NHWC frame ``(H*W, C)`` zero-padded by ``padding`` (the frame itself when there is none)."""
    if padding == (0, 0):
        return frame
    (h, w), (ph, pw) = hw, padding
    dst = frame.new_empty((h + 2 * ph) * (w + 2 * pw), frame.shape[1])
    kernels.gather_padded(dst, 0, frame, None, frame.shape[1], hw, padding)
    return dst


def _assemble(plan: FramePlan, y: Tensor, prev_y: Tensor | None, lazy: Tensor | None, hw: tuple[int, int],
              padding: tuple[int, int]) -> Tensor:
    """The consumer input of one frame: its kept channels (the first ``n_keep`` of ``y``), the cached reused
    ones (from ``prev_y``) and the recomputed ones (``lazy``), side by side and zero-padded."""
    (h, w), (ph, pw) = hw, padding
    n = plan.n_keep + plan.cached.size + plan.lazy.size
    dst = y.new_empty((h + 2 * ph) * (w + 2 * pw), n)
    kernels.gather_padded(dst, 0, y, None, plan.n_keep, hw, padding)
    if plan.cached.size:
        pos = torch.from_numpy(plan.cached_pos.astype(np.int32))
        kernels.gather_padded(dst, plan.n_keep, prev_y, pos, pos.numel(), hw, padding)
    if plan.lazy.size:
        kernels.gather_padded(dst, plan.n_keep + plan.cached.size, lazy, None, plan.lazy.size, hw, padding)
    return dst


def _row_chunks(frames: int, rows: int, threads: int) -> list[tuple[int, tuple[int, int] | None]]:
    """Work items ``(frame, pixel rows)``: whole frames when there are at least as many frames as threads,
    otherwise each frame split into one row range per thread."""
    if frames >= threads or threads <= 1:
        return [(i, None) for i in range(frames)]
    step = -(-rows // threads)
    step = -(-step // 6) * 6  # whole register tiles
    return [(i, (b, min(b + step, rows))) for i in range(frames) for b in range(0, rows, step)]


@register_stages(ResNet)
def resnet_stages(backbone: ResNet, gate: GateFactory) -> list[Stage]:
    """Stem, then one :class:`ResidualStage` per block of ``layer1..layer4``."""
    stem = ConvStage([FoldedConv(backbone.conv1, backbone.bn1, "relu", "backbone.conv1"), backbone.maxpool],
                     channels_last=kernels.available())  # the compiled blocks read NHWC frames
    stages: list[Stage] = [stem]
    for s in range(1, 5):
        for i, block in enumerate(getattr(backbone, f"layer{s}")):
            name = f"backbone.layer{s}.{i}"
            stages.append(ResidualStage(block, name, gate(block.fusion, name)))
    return stages
