"""Inference-time layer folding: ``conv -> BN [-> act]`` becomes one conv with a bias, the policy MLP's
``Linear -> BatchNorm1d`` becomes ``Linear`` followed by a per-unit affine.

The folded layers know how to run on a *subset* of their channels, which is what the sparse executor
(:mod:`adafuse.inference.sparse`) needs: ``weight.index_select(0, idx)`` for output channels,
``weight.index_select(1, idx)`` for input channels (NCHW, batch 1). Folding is done in float64 and stored
in float32, so a folded layer matches ``act(bn(conv(x)))`` to float32 rounding.

Every conv call is counted on a :class:`~adafuse.inference.accounting.Meter` in the FLOPs engine's
convention (thop 0.0.31): a conv costs ``output elements x (C_in / groups x k x k [+1 if the original conv
had a bias])`` multiply-accumulates, computed from the channels actually used; a BatchNorm folded into it
is still charged ``2 x elements`` of its full output, as the engine charges it (it is a fixed cost there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from adafuse.models.fusion import ACTIONS, PolicyNet

ACTIVATIONS = (None, "relu", "relu6", "silu", "sigmoid")


def activate(y: Tensor, act: str | None) -> Tensor:
    """``act`` (one of :data:`ACTIVATIONS`) applied to ``y`` in place."""
    if act == "relu":
        return y.relu_()
    if act == "relu6":
        return y.clamp_(0.0, 6.0)
    if act == "silu":
        return F.silu(y, inplace=True)
    if act == "sigmoid":
        return y.sigmoid_()
    return y


def _bn_scale_shift(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` in float64 with ``bn(x) = x * scale + shift`` (eval mode). For the policy's
    BatchNorm1d, kept as a separate affine because the quota rule shares ``fc0`` between blocks (convs are
    folded with ``torch.nn.utils.fusion.fuse_conv_bn_weights``)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{type(bn).__name__} without running statistics cannot be folded (track_running_stats)")
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


class FoldedConv:
    """A 2D conv with its following BatchNorm folded in, and an optional activation (``relu``/``relu6``/``silu``/
    ``sigmoid``), runnable on a subset of output and/or input channels. Input/output ``(1, C, H, W)``.

    ``name``: qualified name of the original conv (for reports); ``has_bn``: a BatchNorm was folded in
    (its nominal cost is charged); ``counted_bias``: the *original* conv had a bias (thop's ``+1``).

    An input-channel subset at a small output (at most :attr:`GEMM_MAX_PIXELS` pixels, e.g. the 7x7 stage of
    a ResNet) runs as one GEMM on the unfolded input against a copy of the weight stored input-channel-major
    ``(C_in * k * k, C_out)``, where the subset is a contiguous row gather: a sliced conv call there costs a
    weight gather into the conv's layout plus oneDNN's per-call weight reorder, about as much as the conv.
    """

    GEMM_MAX_PIXELS = 64

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, act: str | None = None,
                 name: str = "") -> None:
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {ACTIVATIONS}")
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"{name or 'layer'}: expected nn.Conv2d, got {type(conv).__name__}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"{name}: only explicit zero padding is supported, got padding={conv.padding!r} "
                             f"padding_mode={conv.padding_mode!r}")
        w = conv.weight.detach().double()
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if bn is not None:  # PyTorch's own folding, on float64 copies
            if bn.running_mean is None or bn.running_var is None:
                raise ValueError(f"{name}: BatchNorm without running statistics cannot be folded")
            gamma = bn.weight.double() if bn.weight is not None else None
            beta = bn.bias.double() if bn.bias is not None else None
            w, b = (t.detach() for t in fuse_conv_bn_weights(
                w, b, bn.running_mean.double(), bn.running_var.double(), bn.eps, gamma, beta))
        dtype = conv.weight.dtype
        self.weight = w.to(dtype).contiguous()
        self.bias = b.to(dtype).contiguous()
        self.stride = tuple(conv.stride)
        self.padding = tuple(conv.padding)
        self.dilation = tuple(conv.dilation)
        self.groups = conv.groups
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel = tuple(conv.kernel_size)
        self.kernel_size = math.prod(conv.kernel_size)
        self.act = act
        self.name = name
        self.has_bn = bn is not None
        self.counted_bias = conv.bias is not None
        self._weight_in_major: Tensor | None = None  # (C_in, k*k, C_out), built on first use by the GEMM path

    @property
    def depthwise(self) -> bool:
        return self.groups == self.in_channels == self.out_channels and self.groups > 1

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """Output spatial size for an ``h x w`` input."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    def macs_per_output(self, in_used: int) -> int:
        """Counted cost of one output element when ``in_used`` input channels are read (per group)."""
        return in_used * self.kernel_size + (1 if self.counted_bias else 0)

    def run(self, x: Tensor, meter, role: tuple[int, str] | None = None, out_idx: Tensor | None = None,
            in_idx: Tensor | None = None, nominal: bool = True) -> Tensor:
        """Apply the folded conv (+ activation) to ``x`` ``(1, C_in', H, W)``.

        ``out_idx``: compute only these output channels (in this order); ``in_idx``: ``x`` holds only these
        input channels (in this order), the others are zero; for a depthwise conv the two are the same
        channel set (give ``out_idx``). ``role``: ``(gate index, "f1" | "f2" | "f1_prev")`` to attribute the
        work to a gated block, None for fixed work. ``nominal``: charge the folded BN's nominal cost
        (once per frame; False for recomputing channels of an earlier frame).
        """
        w, b, groups = self.weight, self.bias, self.groups
        if self.depthwise:
            if out_idx is not None:
                if out_idx.numel() == 0:
                    h, wd = self.out_size(x.shape[2], x.shape[3])
                    self._count(meter, role, 0, 0, h * wd, nominal)
                    return x.new_empty(1, 0, h, wd)
                w, b, groups = w.index_select(0, out_idx), b.index_select(0, out_idx), out_idx.numel()
            y = F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)
            self._count(meter, role, y.numel(), self.macs_per_output(1), y.shape[2] * y.shape[3], nominal)
            return activate(y, self.act)
        if groups != 1 and (out_idx is not None or in_idx is not None):
            raise NotImplementedError(f"{self.name}: channel subsets of a grouped conv (groups={groups})")
        if out_idx is not None:
            if out_idx.numel() == 0:
                h, wd = self.out_size(x.shape[2], x.shape[3])
                self._count(meter, role, 0, 0, h * wd, nominal)
                return x.new_empty(1, 0, h, wd)
            w, b = w.index_select(0, out_idx), b.index_select(0, out_idx)
        in_used = self.in_channels // groups
        if in_idx is not None:
            in_used = in_idx.numel()
            if in_used == 0:  # every input channel is zero: the output is the bias
                h, wd = self.out_size(x.shape[2], x.shape[3])
                y = x.new_empty(1, b.numel(), h, wd).copy_(b.view(1, -1, 1, 1).expand(1, b.numel(), h, wd))
                self._count(meter, role, y.numel(), self.macs_per_output(0), h * wd, nominal)
                return activate(y, self.act)
            if out_idx is None and groups == 1:
                ho, wo = self.out_size(x.shape[2], x.shape[3])
                if ho * wo <= self.GEMM_MAX_PIXELS:
                    y = self._gemm_in_subset(x, in_idx, ho, wo)
                    self._count(meter, role, y.numel(), self.macs_per_output(in_used), ho * wo, nominal)
                    return activate(y, self.act)
            w = w.index_select(1, in_idx)
        y = F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)
        self._count(meter, role, y.numel(), self.macs_per_output(in_used), y.shape[2] * y.shape[3], nominal)
        return activate(y, self.act)

    def run_batch(self, x: Tensor, meters) -> Tensor:
        """Apply the whole folded conv (+ activation) to a batch of frames ``x`` ``(T, C_in, H, W)``; the work
        of frame ``t`` is charged to ``meters[t]`` (fixed work, no gate role). Returns ``(T, C_out, H', W')``."""
        if len(meters) != x.shape[0]:
            raise ValueError(f"{self.name}: {len(meters)} meters for a batch of {x.shape[0]} frames")
        if self.kernel_size == 1 and self.groups == 1 and self.stride == (1, 1) and self.padding == (0, 0):
            # a batched GEMM: the conv's path for a 1x1 conv on a batch is ~25% slower at 56x56 (it fills
            # the output with the bias in a separate pass, then runs one GEMM per frame)
            t, _, h, w = x.shape
            y = torch.matmul(self.weight.view(self.out_channels, self.in_channels), x.reshape(t, self.in_channels, -1))
            y = y.add_(self.bias.view(1, -1, 1)).view(t, self.out_channels, h, w)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        per_frame, spatial = y[0].numel(), y.shape[2] * y.shape[3]
        per_output = self.macs_per_output(self.in_channels // self.groups)
        for m in meters:
            self._count(m, None, per_frame, per_output, spatial, True)
        return activate(y, self.act)

    def _gemm_in_subset(self, x: Tensor, in_idx: Tensor, ho: int, wo: int) -> Tensor:
        """``conv(x)`` for ``x`` ``(1, n, H, W)`` holding input channels ``in_idx``, as ``unfold(x)^T @ W[in_idx]``
        (``(Ho*Wo, n*k*k) @ (n*k*k, C_out)``). Returns ``(1, C_out, Ho, Wo)`` before the activation."""
        if self._weight_in_major is None:
            self._weight_in_major = self.weight.permute(1, 2, 3, 0).reshape(
                self.in_channels, self.kernel_size, self.out_channels).contiguous()
        n = in_idx.numel()
        ws = self._weight_in_major.index_select(0, in_idx).view(n * self.kernel_size, self.out_channels)
        if self.kernel_size == 1 and self.stride == (1, 1) and self.padding == (0, 0):
            cols = x.reshape(n, -1)
        else:
            cols = F.unfold(x, self.kernel, self.dilation, self.padding, self.stride)[0]
        y = torch.addmm(self.bias.view(1, -1), cols.t(), ws)  # (Ho*Wo, C_out)
        return y.t().contiguous().view(1, self.out_channels, ho, wo)

    def charge(self, meter, role: tuple[int, str] | None, out_elems: int, in_used: int, spatial: int,
               nominal: bool = True) -> None:
        """Charge ``meter`` for a call computing ``out_elems`` output elements from ``in_used`` input channels
        (per group) at ``spatial`` output pixels, as :meth:`run` does (for kernels that run the conv elsewhere)."""
        self._count(meter, role, out_elems, self.macs_per_output(in_used), spatial, nominal)

    def _count(self, meter, role, out_elems: int, per_output: int, spatial: int, nominal: bool) -> None:
        extra = 2 * self.out_channels * spatial if (nominal and self.has_bn) else 0
        meter.conv(out_elems * per_output, extra, role, self.name)


class FoldedPolicy:
    """The policy MLP of a gate at inference: ``[v_{t-1}, v_t] -> fc0 -> BN1d (folded to an affine) -> ReLU
    -> fc1 -> argmax`` over the gate's actions, mapped to the ``(skip, reuse, keep)`` indices ``0, 1, 2``.

    ``fc0``/``fc1`` weights are referenced, not copied (the R50 quota rule shares them between blocks).
    """

    def __init__(self, policy: PolicyNet, actions: tuple[str, ...]) -> None:
        scale, shift = _bn_scale_shift(policy.bn)
        b0 = policy.fc0.bias.detach().double() if policy.fc0.bias is not None else 0.0
        dtype = policy.fc0.weight.dtype
        self.w0 = policy.fc0.weight.detach()
        self.scale = scale.to(dtype)
        self.shift = (b0 * scale + shift).to(dtype)
        self.w1 = policy.fc1.weight.detach()
        self.b1 = policy.fc1.bias.detach() if policy.fc1.bias is not None else None
        self.use_history = policy.use_history
        self.channels = policy.channels
        self.num_actions = policy.num_actions
        self.in_channels = policy.in_channels
        self.action_ids = torch.tensor([ACTIONS.index(a) for a in actions], dtype=torch.long)
        # engine convention: Linear = 2 x in x out, BatchNorm1d = 2 x elements
        hidden = self.w0.shape[0]
        self.macs = self.w0.numel() + self.w1.numel()
        self.flops = 2 * self.macs + 2 * hidden

    def __call__(self, v: Tensor, v_prev: Tensor | None, shift: Tensor | None = None) -> Tensor:
        """``v``, ``v_prev``: GAP of the block input at t and t-1, ``(1, C_in)`` (``None`` -> zeros); ``shift``:
        ``(A,)`` subtracted from every channel's logits before the argmax (the compute-budget shift times the
        action costs, :mod:`adafuse.inference.budget`; None = none). Returns the action of every channel,
        ``(C,)`` int64 in ``{SKIP, REUSE, KEEP}``."""
        if self.use_history:
            v = torch.cat([v_prev if v_prev is not None else torch.zeros_like(v), v], dim=1)
        h = F.linear(v, self.w0).mul_(self.scale).add_(self.shift).relu_()
        logits = F.linear(h, self.w1, self.b1).view(self.channels, self.num_actions)
        if shift is not None:
            logits = logits - shift
        return self.action_ids[logits.argmax(dim=1)]

    def batch(self, v: Tensor, v_prev: Tensor | None, shift: Tensor | None = None) -> Tensor:
        """The policy of ``T`` consecutive frames in one pass (each weight matrix is read once, not ``T``
        times). ``v``: GAP of the block input at frames ``0..T-1`` ``(T, C_in)``; ``v_prev``: GAP at the frame
        before the first ``(1, C_in)`` (``None`` -> zeros); ``shift``: as in :meth:`__call__`. Returns the
        actions ``(T, C)`` int64."""
        if self.use_history:
            first = v_prev if v_prev is not None else torch.zeros_like(v[:1])
            v = torch.cat([torch.cat([first, v[:-1]], dim=0), v], dim=1)
        h = F.linear(v, self.w0).mul_(self.scale).add_(self.shift).relu_()
        logits = F.linear(h, self.w1, self.b1).view(v.shape[0], self.channels, self.num_actions)
        if shift is not None:
            logits = logits - shift
        return self.action_ids[logits.argmax(dim=2)]
