"""Mask-driven cost (paper Eq. 4-5): what a network with a given keep/reuse/skip policy really computes.

For a gated block with producer cost ``F1`` and consumer cost ``F2`` (per frame, all ``C`` channels) and
one-hot masks ``(s, r, k)`` per frame ``t`` and channel ``c``:

* a producer output channel must be computed iff it is kept now or reused by the next frame:
  ``k[t, c] OR r[t+1, c]``, with ``r[T] := 0`` (nothing reuses the last frame of a clip);
* a consumer input channel costs iff it is not skipped: ``1 - s[t, c]``; a reuse at ``t = 0`` reads zeros,
  so it costs like a skip there (``k[0, c]``).

``cost[t] = floor + sum_blocks F1 * mean_c(k[t] OR r[t+1]) + F2 * mean_c(not s[t])`` FLOPs, where
``floor`` holds everything never gated (stem, conv3, downsample, BN, policy MLPs, classifier).

The OR is ``a + b - a*b``, exact on 0/1 values and differentiable through straight-through masks, so the
cost can be used in the loss.

Conventions (:data:`CONVENTIONS`). The rule above is ``exact``: what the sparse executor really runs. The
authors' released code computes two other values from the same masks, reproduced bit for bit in formula:

* ``released_real``: producers as above for ``t < T-1`` but at the last frame ``k[T-2]`` instead of
  ``k[T-1]`` (an off-by-one); consumers ``1 - s[t]`` at every frame, so a reuse at ``t = 0`` (which reads
  zeros) is charged as a full conv2 input; the fixed part is the released dense count
  (:attr:`StaticCost.released_floor`); blocks with several producers (BN-Inception branches) weigh each
  producer's channel mean by its own cost, ``sum_g F1_g * mean_{c in g}(...)``;
* ``released_upb`` ("upper bound"): only skipped consumer inputs are credited, ``F1`` is always paid:
  ``cost[t] = released floor + sum_blocks F1 + F2 * mean_c(1 - s[t])``.

The released scripts train SthV1 with ``released_upb`` and SthV2 with ``released_real``. The released
conventions need ``T >= 2`` (their last-frame rule reads frame ``T-2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from adafuse.flops.counting import GIGA, StaticCost
from adafuse.models.fusion import KEEP, REUSE, SKIP

CONVENTIONS = ("exact", "released_real", "released_upb")


def check_convention(convention: str, num_frames: int | None = None) -> None:
    """Raises ``ValueError`` for an unknown convention, or a released one with fewer than 2 frames."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOPs convention {convention!r}; use one of {', '.join(CONVENTIONS)}")
    if convention != "exact" and num_frames is not None and num_frames < 2:
        raise ValueError(f"the {convention} convention needs num_frames >= 2 (its last frame reads the keep mask "
                         f"of frame T-2), got {num_frames}")


def _num_videos(cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None) -> int:
    """Validates mask shapes against ``cost.blocks``; returns the number of videos N."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(masks) != len(cost.blocks):
        raise ValueError(f"got {len(masks)} masks for {len(cost.blocks)} gated blocks")
    if not masks:
        if batch_size is None:
            raise ValueError("a model without gated blocks has no masks: pass batch_size")
        return batch_size
    n = masks[0].shape[0] // num_frames
    for b, m in zip(cost.blocks, masks, strict=True):
        if m.dim() != 3 or m.shape[1] != b.channels or m.shape[2] != 3:
            raise ValueError(f"mask of block {b.name!r} has shape {tuple(m.shape)}, expected (N*T, {b.channels}, 3)")
        if m.shape[0] != n * num_frames:
            raise ValueError(f"mask of block {b.name!r} has {m.shape[0]} rows, expected N*T = {n}*{num_frames} "
                             f"(num_frames={num_frames}, N from the first mask)")
    if batch_size is not None and batch_size != n:
        raise ValueError(f"batch_size={batch_size} but the masks cover {n} videos")
    return n


def channel_usage(mask: Tensor, num_frames: int, convention: str = "exact") -> tuple[Tensor, Tensor]:
    """Per channel: must it be produced / consumed at each frame. ``mask``: ``(N*T, C, 3)`` one-hot (skip,
    reuse, keep). Returns ``(produce, consume)``, each ``(N, T, C)`` (0/1 on one-hot masks):

    * ``exact``: ``produce = k[t] OR r[t+1]`` (``r[T] = 0``); ``consume = 1 - s[t]`` for ``t >= 1``, ``k[0]``
      at ``t = 0``;
    * ``released_real``: ``produce = k[t] OR r[t+1]`` for ``t < T-1``, ``k[T-2]`` at ``t = T-1``;
      ``consume = 1 - s[t]``;
    * ``released_upb``: ``produce = 1``; ``consume = 1 - s[t]``.

    Differentiable w.r.t. ``mask``.
    """
    check_convention(convention, num_frames)
    v = mask.float().reshape(-1, num_frames, mask.shape[1], 3)
    s, r, k = v[..., SKIP], v[..., REUSE], v[..., KEEP]
    if convention == "released_upb":
        return torch.ones_like(k), 1.0 - s
    r_next = torch.cat([r[:, 1:], torch.zeros_like(r[:, :1])], dim=1)
    produce = k + r_next - k * r_next
    if convention == "exact":
        return produce, torch.cat([k[:, :1], 1.0 - s[:, 1:]], dim=1)
    return torch.cat([produce[:, :-1], k[:, -2:-1]], dim=1), 1.0 - s


def block_usage(mask: Tensor, num_frames: int, convention: str = "exact") -> tuple[Tensor, Tensor]:
    """Fractions of a block's channels that must be produced and consumed at each frame.

    ``mask``: ``(N*T, C, 3)`` one-hot (skip, reuse, keep). Returns ``(produce, consume)``, each ``(N, T)``,
    the channel means of :func:`channel_usage`; for ``exact``: ``produce[n, t] = mean_c(k[t] OR r[t+1])``
    (``r[T] = 0``), ``consume[n, t] = mean_c(1 - s[t])`` for ``t >= 1`` and ``mean_c(k[0])`` at ``t = 0``.
    Differentiable w.r.t. ``mask``.
    """
    produce, consume = channel_usage(mask, num_frames, convention)
    return produce.mean(dim=-1), consume.mean(dim=-1)


def _producer_cost(block: Any, produce: Tensor) -> Tensor:
    """Released rule: ``sum_g F1_g * mean_{c in g} produce`` over the block's producer groups, in GFLOPs."""
    out = torch.zeros(produce.shape[:2], device=produce.device)
    start = 0
    for width, f1 in block.groups:
        if f1:
            out = out + (f1 / GIGA) * produce[..., start:start + width].mean(dim=-1)
        start += width
    return out


def dynamic_gflops_per_frame(
    cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None,
    convention: str = "exact",
) -> Tensor:
    """GFLOPs of each frame ``(N, T)`` under the policy ``masks`` (one ``(N*T, C, 3)`` per gated block, in
    ``cost.blocks`` order), counted under ``convention`` (see the module docstring). Differentiable w.r.t.
    the masks. ``batch_size`` is needed only for models without gated blocks (then every frame costs
    ``cost.total``, or ``cost.released`` under a released convention)."""
    check_convention(convention, num_frames if masks else None)
    n = _num_videos(cost, masks, num_frames, batch_size)
    exact = convention == "exact"
    if not masks:
        return torch.full((n, num_frames), (cost.total if exact else cost.released) / GIGA)
    out = torch.full((n, num_frames), (cost.floor if exact else cost.released_floor) / GIGA, device=masks[0].device)
    for b, m in zip(cost.blocks, masks, strict=True):
        if exact:
            produce, consume = block_usage(m, num_frames)
            out = out + (b.f1 / GIGA) * produce + (b.f2 / GIGA) * consume
        else:
            produce_c, consume_c = channel_usage(m, num_frames, convention)
            out = out + _producer_cost(b, produce_c) + (b.f2 / GIGA) * consume_c.mean(dim=-1)
    return out


def dynamic_gflops(
    cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None, convention: str = "exact"
) -> Tensor:
    """GFLOPs per video ``(N,)`` (sum over its ``num_frames`` frames); see :func:`dynamic_gflops_per_frame`."""
    return dynamic_gflops_per_frame(cost, masks, num_frames, batch_size, convention).sum(dim=1)


def loss_gflops(
    cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None, convention: str = "exact"
) -> Tensor:
    """The FLOPs term ``G`` of the loss (paper Eq. 6): batch-mean per-frame GFLOPs of the whole network under
    ``convention``, a scalar carrying gradients into the policy (a constant for dense models). The caller
    multiplies by lambda. (The released code's ``real``/``upb`` values are this mean, ``released_real`` /
    ``released_upb``.)"""
    return dynamic_gflops_per_frame(cost, masks, num_frames, batch_size, convention).mean()


POLICY_RATIO_DEFINITION = ("share of all channel decisions (one per video, frame, gated block and channel): "
                           "blocks weighted by their channel count")


def policy_ratios(block_ratios: Any, channels: Sequence[int] | None) -> list[float]:
    """The policy mix ``[skip, reuse, keep]`` of a model: the share of *all* its channel decisions (one per video,
    frame, gated block and channel), i.e. the per-block ratios averaged with the blocks' channel counts as weights
    (:data:`POLICY_RATIO_DEFINITION`). The one definition of the project: training logs, ``metrics.json``, the
    demo table, the budget curve and the report all use this function.

    ``block_ratios``: ``(..., B, 3)`` per-block fractions (e.g. ``(V, B, 3)`` per video; leading dimensions are
    averaged, every video has the same T frames so this is the mean over frames too). ``channels``: ``B`` channel
    counts (:attr:`BlockCost.channels`); ``None`` weights the blocks equally (for files that lack the counts).
    """
    ratios = np.asarray(block_ratios, dtype=np.float64)
    if ratios.ndim < 2 or ratios.shape[-1] != 3 or ratios.shape[-2] == 0:
        raise ValueError(f"block_ratios must have shape (..., B, 3) with B >= 1, got {ratios.shape}")
    per_block = ratios.reshape(-1, ratios.shape[-2], 3).mean(axis=0)  # (B, 3)
    if channels is None:
        weights = np.ones(per_block.shape[0])
    else:
        weights = np.asarray(channels, dtype=np.float64)
        if weights.shape != (per_block.shape[0],) or (weights <= 0).any():
            raise ValueError(f"need {per_block.shape[0]} positive channel counts, got {list(channels)}")
    return [float(v) for v in weights @ per_block / weights.sum()]


def video_accounting(
    cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None
) -> list[dict[str, Any]]:
    """Per-video cost and policy statistics as plain floats (the fields of ``predictions.jsonl``).

    One dict per video with ``gflops`` (GFLOPs of the video, exact convention), ``frame_gflops`` (``T``
    floats), ``gflops_released_real`` / ``gflops_released_upb`` (the video under the released conventions;
    ``None`` for ``T = 1``), ``block_ratios`` (``[skip, reuse, keep]`` fractions over ``T x C`` per gated
    block) and ``block_constant`` (per gated block, the fraction of channels whose action is the same at all
    ``T`` frames). Dense models give empty lists for the last two.
    """
    with torch.no_grad():
        detached = [m.detach() for m in masks]
        frames = dynamic_gflops_per_frame(cost, detached, num_frames, batch_size).cpu()
        n = frames.shape[0]
        released = {}
        for conv in CONVENTIONS[1:]:
            released[conv] = (dynamic_gflops(cost, detached, num_frames, batch_size, conv).cpu()
                              if num_frames >= 2 or not masks else None)
        ratios, constant = [], []
        for m in masks:
            v = m.detach().float().cpu().reshape(n, num_frames, m.shape[1], 3)
            ratios.append(v.mean(dim=(1, 2)))  # (N, 3)
            actions = v.argmax(dim=-1)  # (N, T, C)
            constant.append((actions == actions[:, :1]).all(dim=1).float().mean(dim=1))  # (N,)
    out = []
    for i in range(n):
        out.append({
            "gflops": float(frames[i].sum()),
            "frame_gflops": [float(x) for x in frames[i]],
            **{f"gflops_{conv}": None if g is None else float(g[i]) for conv, g in released.items()},
            "block_ratios": [[float(x) for x in r[i]] for r in ratios],
            "block_constant": [float(c[i]) for c in constant],
        })
    return out
