"""Baselines of the paper (Tables 1, 3, 6; see docs/paper-and-code.md) on a ResNet body.

- ``lstm_r18``, ``lstm_r50``: per-frame ResNet features -> LSTM -> per-step ``Dropout + Linear`` predictions
  averaged over T (:class:`LSTMHead`). Not in the released code.
- ``random_r18``: adaptive-fusion body whose policy is i.i.d. random per frame and channel with fixed
  probabilities ``(p_skip, p_reuse, p_keep)`` (:class:`RandomPolicy`); pick them for a FLOPs budget with
  :func:`random_policy_ratios_for_budget`.
- ``threshold_r18``: keep the ``keep_ratio`` channels of conv1's output with the largest mean ``|y|`` (per
  frame, per video), skip the rest, never reuse (:class:`ThresholdPolicy`).
- ``cgnet_r18``: CGNet-style dynamic channel pruning (skip/keep only) with a per-channel learned threshold
  on a partial sum of conv1 (:class:`PartialSumGate`).

The fixed-rule policies (random, threshold) follow the contract of :meth:`AdaptiveFusion.decide`: class
attribute ``learned = False`` and ``forward(x, y, num_frames) -> (N*T, C, 3)`` one-hot masks in the order
``(skip, reuse, keep)``.

FLOPs helpers take the static costs of ``adafuse.flops.static_cost(model)`` (a ``StaticCost``: ``.blocks[i].f1``,
``.blocks[i].f2``, ``.floor``, FLOPs per frame) or the same numbers as plain values; ``models`` never imports
``flops`` (data flows one way), so the caller computes the costs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adafuse.models.fusion import ACTIONS, DEFAULT_TAU, KEEP, SKIP, AdaptiveFusion
from adafuse.models.policy import fixed_rule_factory
from adafuse.models.recognizer import VideoRecognizer
from adafuse.models.registry import register_model
from adafuse.models.resnet import resnet_recognizer
from adafuse.models.temporal import init_small_linear

# Policy mix of the learned AdaFuse on Something-V1 (paper Fig. 3), (skip, reuse, keep).
PAPER_STHV1_MIX = (0.370, 0.258, 0.372)

# i.i.d. ratios that put random_r18 at the 10.3 GFLOPs/video of the learned AdaFuse-TSN-R18 on SthV1 (Table 6
# compares Random at 10.4G), keeping the reuse/keep quotient of PAPER_STHV1_MIX; computed with
# random_policy_ratios_for_budget for ResNet-18, 224x224, T = 8 (floor 0.1424 GFLOPs/frame, sum of F1 + F2
# 1.6763 GFLOPs/frame). Drawn i.i.d., the SthV1 mix itself would cost only 8.65 GFLOPs/video on ResNet-18, so
# it does not match the learned model's budget.
RANDOM_R18_RATIOS = (0.219, 0.320, 0.461)

# Keep ratio that puts threshold_r18 at Table 1's 11.3 GFLOPs/video under the FLOPs engine's mask rule
# (threshold_keep_ratio_for_budget; charging the full conv1 for the ranking would give 0.56).
THRESHOLD_KEEP_RATIO = 0.76

# LSTM width. 512 reproduces LSTM-R50's 28.8M parameters (Table 3); for LSTM-R18 it gives 13.4M, not the
# paper's 11.7M (which would need a width of about 192) -- the paper does not state the width.
LSTM_HIDDEN = 512


# --------------------------------------------------------------------------------------------------- LSTM


class LSTMHead(nn.Module):
    """LSTM clip head: ``(N, T, D)`` features -> one-layer LSTM ``(N, T, hidden)`` -> ``Dropout -> Linear``
    per step -> logits averaged over T -> ``(N, K)``."""

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = LSTM_HIDDEN, dropout: float = 0.5) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(feature_dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)
        init_small_linear(self.fc)

    def forward(self, features: Tensor) -> Tensor:
        states, _ = self.lstm(features)
        return self.fc(self.dropout(states)).mean(dim=1)


def lstm_resnet(
    depth: str,
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    lstm_hidden: int = LSTM_HIDDEN,
    width: int = 64,
) -> VideoRecognizer:
    """LSTM baseline: plain ResNet per frame + :class:`LSTMHead`."""

    def head(feature_dim: int) -> LSTMHead:
        return LSTMHead(feature_dim, num_classes, lstm_hidden, dropout)

    return resnet_recognizer(depth, num_classes, num_frames, dropout, width=width, head=head)


# ------------------------------------------------------------------------------------------------- Random


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(p < 0 for p in ratios) or abs(sum(ratios) - 1.0) > 1e-4:
        raise ValueError(f"ratios must be 3 non-negative probabilities (skip, reuse, keep) summing to 1, got {ratios}")
    total = float(sum(ratios))
    return tuple(float(p) / total for p in ratios)  # type: ignore[return-value]


class RandomPolicy(nn.Module):
    """i.i.d. random actions: every (frame, channel) draws skip/reuse/keep with probabilities ``ratios``.

    Fixed rule (``learned = False``): ``forward(x, y, num_frames) -> (N*T, C, 3)`` one-hot, a new draw at
    every forward (training and evaluation). ``seed`` seeds a private CPU generator (``None``: the global
    torch RNG), so a model built with the same seed replays the same masks for the same input shapes.
    """

    learned = False

    def __init__(self, channels: int, ratios: Sequence[float] = RANDOM_R18_RATIOS, seed: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.ratios = _check_ratios(ratios)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def extra_repr(self) -> str:
        return f"channels={self.channels}, ratios(skip,reuse,keep)={self.ratios}, seed={self.seed}"

    def flops(self, inputs: tuple[Tensor, ...], out: Tensor) -> float:
        """Drawing the actions costs no FLOPs (the FLOPs engine's extension point for leaf modules)."""
        return 0.0

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor, y: Tensor, num_frames: int) -> Tensor:
        shape = (y.shape[0], y.shape[1])
        if self.generator is not None:
            u = torch.rand(shape, generator=self.generator).to(y.device)
        else:
            u = torch.rand(shape, device=y.device)
        edges = torch.tensor(self.ratios[:2], device=y.device).cumsum(0)
        action = torch.bucketize(u, edges, right=True)  # u < p_s -> 0, u < p_s + p_r -> 1, else 2
        return F.one_hot(action, 3).to(y.dtype)


def random_resnet(
    depth: str,
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    ratios: Sequence[float] = RANDOM_R18_RATIOS,
    seed: int | None = 0,
    width: int = 64,
) -> VideoRecognizer:
    """Random baseline: AdaFuse-TSN body (fusion in every block) with an i.i.d. :class:`RandomPolicy`.

    Block ``i`` (forward order) uses seed ``seed + i``. No policy parameters.
    """
    ratios = _check_ratios(ratios)
    counter = itertools.count()

    def policy(in_channels: int, channels: int) -> RandomPolicy:
        i = next(counter)
        return RandomPolicy(channels, ratios, None if seed is None else seed + i)

    factory = fixed_rule_factory(policy, ACTIONS, num_frames)
    return resnet_recognizer(depth, num_classes, num_frames, dropout, factory, width=width)


def _cost_numbers(cost: Any) -> tuple[list[tuple[float, float]], float]:
    """``(per-block (F1, F2), floor)`` from a ``StaticCost`` or a ``(block_costs, floor)`` pair."""
    if hasattr(cost, "blocks") and hasattr(cost, "floor"):
        return [(float(b.f1), float(b.f2)) for b in cost.blocks], float(cost.floor)
    if isinstance(cost, tuple | list) and len(cost) == 2:
        blocks, floor = cost
        return [(float(f1), float(f2)) for f1, f2 in blocks], float(floor)
    raise TypeError("cost must be a StaticCost (adafuse.flops.static_cost(model)) or a pair "
                    f"(per-block [(F1, F2), ...], floor) in FLOPs per frame; got {type(cost).__name__}")


def expected_random_policy_gflops(cost: Any, ratios: Sequence[float], num_frames: int = 8) -> float:
    """Expected GFLOPs per video of an i.i.d. random policy under the FLOPs engine's rule (docs/paper-and-code.md).

    Per block and frame t, conv1's channel c is paid iff ``keep[t] or reuse[t+1]`` and conv2's input
    channel c iff it is not zero (kept, or reused at t > 0; a reuse at t = 0 reads zeros)::

        E = T * floor + sum_blocks F1 * ((T-1) * (1 - (1-p_k)(1-p_r)) + p_k)
                                 + F2 * ((T-1) * (p_k + p_r) + p_k)

    ``cost``: ``StaticCost`` or ``(per-block [(F1, F2)], floor)``, FLOPs per frame.
    """
    blocks, floor = _cost_numbers(cost)
    _, pr, pk = _check_ratios(ratios)
    t = num_frames
    conv1 = (t - 1) * (1 - (1 - pk) * (1 - pr)) + pk
    conv2 = (t - 1) * (pk + pr) + pk
    return (t * floor + sum(f1 * conv1 + f2 * conv2 for f1, f2 in blocks)) / 1e9


def random_policy_ratios_for_budget(
    cost: Any,
    target_gflops_per_video: float,
    num_frames: int = 8,
    reuse_keep_quotient: float | None = PAPER_STHV1_MIX[1] / PAPER_STHV1_MIX[2],
    p_reuse: float | None = None,
) -> tuple[float, float, float]:
    """``(p_skip, p_reuse, p_keep)`` whose expected cost (:func:`expected_random_policy_gflops`) is the budget.

    One degree of freedom is fixed and ``p_skip`` is solved for (the cost falls monotonically with it):
    by default the quotient ``p_reuse / p_keep`` (that of the learned SthV1 mix); with ``p_reuse`` given,
    ``p_reuse`` itself. ``cost``: ``adafuse.flops.static_cost(model)`` or ``(per-block [(F1, F2)], floor)``
    in FLOPs per frame. Raises ``ValueError`` when the budget is outside the reachable range.
    """
    if p_reuse is not None:
        if not 0 <= p_reuse <= 1:
            raise ValueError(f"p_reuse must be in [0, 1], got {p_reuse}")

        def ratios_at(ps: float) -> tuple[float, float, float]:
            ps = ps * (1 - p_reuse)
            return ps, p_reuse, max(0.0, 1 - p_reuse - ps)
    else:
        if reuse_keep_quotient is None or reuse_keep_quotient < 0:
            raise ValueError(f"reuse_keep_quotient must be >= 0, got {reuse_keep_quotient}")
        q = reuse_keep_quotient

        def ratios_at(ps: float) -> tuple[float, float, float]:
            pk = (1 - ps) / (1 + q)
            return ps, q * pk, pk

    def gflops(s: float) -> float:
        return expected_random_policy_gflops(cost, ratios_at(s), num_frames)

    high, low = gflops(0.0), gflops(1.0)
    if not low <= target_gflops_per_video <= high:
        raise ValueError(f"budget {target_gflops_per_video:.3f} GFLOPs/video is out of reach: this random policy "
                         f"costs between {low:.3f} and {high:.3f} GFLOPs/video")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if gflops(mid) > target_gflops_per_video:
            lo = mid
        else:
            hi = mid
    return ratios_at((lo + hi) / 2)


# ---------------------------------------------------------------------------------------------- Threshold


class ThresholdPolicy(nn.Module):
    """Keeps the ``round(keep_ratio * C)`` channels of the gated tensor ``y`` with the largest mean ``|y|``
    (per frame of every video) and skips the others; never reuses. Fixed rule (``learned = False``).

    Cost note: ranking needs all of conv1's channels, so the true conv1 cost is the full F1 while the mask
    rule of the FLOPs engine charges F1 only for kept channels (see :func:`threshold_keep_ratio_for_budget`).
    """

    learned = False

    def __init__(self, channels: int, keep_ratio: float = THRESHOLD_KEEP_RATIO) -> None:
        super().__init__()
        if not 0 < keep_ratio <= 1:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        self.channels, self.keep_ratio = channels, keep_ratio
        self.num_keep = max(1, round(keep_ratio * channels))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, keep_ratio={self.keep_ratio} ({self.num_keep} kept)"

    def flops(self, inputs: tuple[Tensor, ...], out: Tensor) -> float:
        """The ranking's ``mean |y|`` is element-wise work, free under the paper's counting convention."""
        return 0.0

    def forward(self, x: Tensor, y: Tensor, num_frames: int) -> Tensor:
        score = y.detach().abs().mean(dim=(2, 3))
        top = score.topk(self.num_keep, dim=1).indices
        keep = torch.zeros_like(score).scatter_(1, top, 1.0)
        mask = torch.zeros(*score.shape, 3, dtype=y.dtype, device=y.device)
        mask[..., KEEP] = keep
        mask[..., SKIP] = 1 - keep
        return mask


def threshold_keep_ratio_for_budget(cost: Any, target_gflops_per_video: float, num_frames: int = 8,
                                    charge_ranking: bool = False) -> float:
    """Keep ratio of :class:`ThresholdPolicy` that costs ``target_gflops_per_video``.

    With the FLOPs engine's mask rule a kept channel costs F1 + F2 (``floor + r * sum(F1 + F2)`` per frame);
    ``charge_ranking=True`` charges the whole conv1 (``floor + sum F1 + r * sum F2``), what the ranking
    really needs. ``cost``: ``StaticCost`` or ``(per-block [(F1, F2)], floor)`` in FLOPs per frame.
    """
    blocks, floor = _cost_numbers(cost)
    per_frame = target_gflops_per_video * 1e9 / num_frames
    f1, f2 = sum(b[0] for b in blocks), sum(b[1] for b in blocks)
    ratio = (per_frame - floor - f1) / f2 if charge_ranking else (per_frame - floor) / (f1 + f2)
    if not 0 < ratio <= 1:
        raise ValueError(f"budget {target_gflops_per_video:.3f} GFLOPs/video needs keep ratio {ratio:.3f}, "
                         "outside (0, 1]")
    return ratio


def threshold_resnet(
    depth: str,
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    keep_ratio: float = THRESHOLD_KEEP_RATIO,
    width: int = 64,
) -> VideoRecognizer:
    """Threshold baseline: AdaFuse-TSN body with a :class:`ThresholdPolicy` in every block."""
    factory = fixed_rule_factory(lambda c_in, c: ThresholdPolicy(c, keep_ratio), ("skip", "keep"), num_frames)
    return resnet_recognizer(depth, num_classes, num_frames, dropout, factory, width=width)


# ------------------------------------------------------------------------------------------------- CGNet


class PartialConv(nn.Module):
    """A block's conv1 restricted to its first ``partial_channels`` input channels: ``(N*T, C_in, H, W)`` ->
    ``(N*T, C, H', W')``. Borrows the weights of the conv given to :meth:`bind` (holds a reference, not a
    submodule, so conv1 stays the block's and no tensor is duplicated in the state dict)."""

    def __init__(self, partial_channels: int) -> None:
        super().__init__()
        self.partial_channels = partial_channels
        self._conv: tuple[nn.Conv2d, ...] = ()

    def extra_repr(self) -> str:
        return f"partial_channels={self.partial_channels}"

    def bind(self, conv: nn.Conv2d) -> None:
        if conv.groups != 1 or conv.in_channels < self.partial_channels:
            raise ValueError(f"cannot take a partial sum over {self.partial_channels} input channels of {conv}")
        self._conv = (conv,)

    def forward(self, x: Tensor) -> Tensor:
        if not self._conv:
            raise RuntimeError("PartialConv is not bound to its block's conv1; call gate.bind(block.conv1)")
        conv, m = self._conv[0], self.partial_channels
        return F.conv2d(x[:, :m], conv.weight[:, :m], None, conv.stride, conv.padding, conv.dilation)

    def flops(self, inputs: tuple[Tensor, ...], out: Tensor) -> float:
        """MACs of the partial convolution (the FLOPs engine's extension point for leaf modules)."""
        kh, kw = self._conv[0].kernel_size if self._conv else (1, 1)
        return float(out.numel() * self.partial_channels * kh * kw)


class PartialSumGate(nn.Module):
    """CGNet-style gate (after Hua et al., 2019, channel gating): skip/keep logits per frame and channel from
    a *partial sum* of the block's own conv1.

    ``p = conv1(x[:, :m])`` with conv1's weights restricted to its first ``m = round(fraction * C_in)`` input
    channels (no weights of its own); ``s = BatchNorm1d(GAP(p))`` (no affine: each channel standardised);
    keep logit ``alpha * (s - threshold_c)`` with a learned per-channel threshold, skip logit 0. Output
    ``(N*T, C, 2)`` logits over ``("skip", "keep")``: hard Gumbel in training, at evaluation (argmax) exactly
    "keep iff s_c > threshold_c" -- CGNet's rule, per channel and frame instead of per output pixel.

    How it differs from ``adaskip_r18`` (AdaFuse with actions (skip, keep), no history): that one learns a
    separate ``Linear(C_in, 512) -> BN -> ReLU -> Linear(512, 2C)`` MLP on ``GAP(x_t)`` (+4.5M parameters); this
    gate reads conv1's own partial response and learns only ``C`` thresholds per block (+1,920 parameters
    on ResNet-18, so the model stays at TSN's 11.2M, as in Table 1). Unlike CGNet, a gated-off channel is
    zeroed (skip) instead of keeping its partial sum.

    Cost: the partial sum (``fraction * F1`` per frame) is counted as a fixed policy cost. In CGNet it is also
    the first part of a kept channel's conv1, so the FLOPs engine (which charges the full F1 per kept
    channel on top) over-counts by at most ``fraction * F1 * keep ratio`` per block and frame.

    Call :meth:`bind` with the block's conv1 before the first forward (the builder does it).
    """

    learned = True

    def __init__(self, in_channels: int, channels: int, fraction: float = 0.25, alpha: float = 2.0,
                 threshold_init: float = -1.0) -> None:
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.in_channels, self.channels, self.fraction, self.alpha = in_channels, channels, fraction, alpha
        self.partial = PartialConv(max(1, round(fraction * in_channels)))
        self.norm = nn.BatchNorm1d(channels, affine=False)
        self.threshold = nn.Parameter(torch.full((channels,), float(threshold_init)))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, channels={self.channels}, alpha={self.alpha}"

    def bind(self, conv: nn.Conv2d) -> None:
        if (conv.in_channels, conv.out_channels) != (self.in_channels, self.channels):
            raise ValueError(f"gate for {self.in_channels}->{self.channels} channels cannot use {conv}")
        self.partial.bind(conv)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """``x``: block input ``(N*T, C_in, H, W)`` -> logits ``(N*T, C, 2)`` over (skip, keep)."""
        s = self.norm(self.partial(x).mean(dim=(2, 3)))
        keep = self.alpha * (s - self.threshold)
        return torch.stack([torch.zeros_like(keep), keep], dim=-1)


def cgnet_resnet(
    depth: str,
    num_classes: int = 174,
    num_frames: int = 8,
    dropout: float = 0.5,
    gate_fraction: float = 0.25,
    gate_alpha: float = 2.0,
    threshold_init: float = -1.0,
    tau: float = DEFAULT_TAU,
    width: int = 64,
) -> VideoRecognizer:
    """CGNet-style baseline: a :class:`PartialSumGate` (skip/keep) in every block (no hidden layer, so no
    ``policy_hidden``)."""

    def gate(in_channels: int, channels: int) -> PartialSumGate:
        return PartialSumGate(in_channels, channels, gate_fraction, gate_alpha, threshold_init)

    factory = fixed_rule_factory(gate, ("skip", "keep"), num_frames, tau)
    model = resnet_recognizer(depth, num_classes, num_frames, dropout, factory, width=width)
    for block in model.backbone.modules():
        fusion = getattr(block, "fusion", None)
        if isinstance(fusion, AdaptiveFusion) and isinstance(fusion.policy, PartialSumGate):
            fusion.policy.bind(block.conv1)
    return model


register_model("lstm_r18", lstm_resnet, depth="resnet18")
register_model("lstm_r50", lstm_resnet, depth="resnet50")
register_model("random_r18", random_resnet, depth="resnet18")
register_model("threshold_r18", threshold_resnet, depth="resnet18")
register_model("cgnet_r18", cgnet_resnet, depth="resnet18")
