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
cost can be used in the loss. Note: the authors' released code uses ``k[T-2]`` instead of ``k[T-1]`` for
the producers at the last frame (an off-by-one); we use the definition above, so our numbers can differ
slightly from theirs for the same masks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adafuse.flops.counting import GIGA, StaticCost
from adafuse.models.fusion import KEEP, REUSE, SKIP


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


def block_usage(mask: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
    """Fractions of a block's channels that must be produced and consumed at each frame.

    ``mask``: ``(N*T, C, 3)`` one-hot (skip, reuse, keep). Returns ``(produce, consume)``, each ``(N, T)``:
    ``produce[n, t] = mean_c(k[t] OR r[t+1])`` (``r[T] = 0``), ``consume[n, t] = mean_c(1 - s[t])`` for
    ``t >= 1`` and ``mean_c(k[0])`` at ``t = 0``. Differentiable w.r.t. ``mask``.
    """
    v = mask.float().reshape(-1, num_frames, mask.shape[1], 3)
    s, r, k = v[..., SKIP], v[..., REUSE], v[..., KEEP]
    r_next = torch.cat([r[:, 1:], torch.zeros_like(r[:, :1])], dim=1)
    produce = k + r_next - k * r_next
    consume = torch.cat([k[:, :1], 1.0 - s[:, 1:]], dim=1)
    return produce.mean(dim=-1), consume.mean(dim=-1)


def dynamic_gflops_per_frame(
    cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None
) -> Tensor:
    """GFLOPs of each frame ``(N, T)`` under the policy ``masks`` (one ``(N*T, C, 3)`` per gated block, in
    ``cost.blocks`` order). Differentiable w.r.t. the masks. ``batch_size`` is needed only for models
    without gated blocks (then every frame costs ``cost.total``)."""
    n = _num_videos(cost, masks, num_frames, batch_size)
    if not masks:
        return torch.full((n, num_frames), cost.total / GIGA)
    out = torch.full((n, num_frames), cost.floor / GIGA, device=masks[0].device)
    for b, m in zip(cost.blocks, masks, strict=True):
        produce, consume = block_usage(m, num_frames)
        out = out + (b.f1 / GIGA) * produce + (b.f2 / GIGA) * consume
    return out


def dynamic_gflops(cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None) -> Tensor:
    """GFLOPs per video ``(N,)`` (sum over its ``num_frames`` frames); see :func:`dynamic_gflops_per_frame`."""
    return dynamic_gflops_per_frame(cost, masks, num_frames, batch_size).sum(dim=1)


def loss_gflops(cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None) -> Tensor:
    """The FLOPs term ``G`` of the loss (paper Eq. 6): batch-mean per-frame GFLOPs of the whole network,
    a scalar carrying gradients into the policy (a constant for dense models). The caller multiplies by
    lambda."""
    return dynamic_gflops_per_frame(cost, masks, num_frames, batch_size).mean()


def video_accounting(
    cost: StaticCost, masks: list[Tensor], num_frames: int, batch_size: int | None = None
) -> list[dict[str, Any]]:
    """Per-video cost and policy statistics as plain floats (the fields of ``predictions.jsonl``).

    One dict per video with ``gflops`` (GFLOPs of the video), ``frame_gflops`` (``T`` floats),
    ``block_ratios`` (``[skip, reuse, keep]`` fractions over ``T x C`` per gated block) and
    ``block_constant`` (per gated block, the fraction of channels whose action is the same at all ``T``
    frames). Dense models give empty lists for the last two.
    """
    with torch.no_grad():
        frames = dynamic_gflops_per_frame(cost, [m.detach() for m in masks], num_frames, batch_size).cpu()
        n = frames.shape[0]
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
            "block_ratios": [[float(x) for x in r[i]] for r in ratios],
            "block_constant": [float(c[i]) for c in constant],
        })
    return out
