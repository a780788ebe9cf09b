"""Temporal pieces around a 2D backbone: the TSM shift and the clip heads (consensus)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def temporal_shift(x: Tensor, num_frames: int, fold_div: int = 8) -> Tensor:
    """TSM shift of ``x`` ``(N*T, C, H, W)``: channels ``[0, C/8)`` take frame t+1, ``[C/8, 2C/8)`` take
    frame t-1, the rest stay; zeros enter at the clip ends."""
    nt, c = x.shape[:2]
    v = x.reshape(nt // num_frames, num_frames, *x.shape[1:])
    fold = c // fold_div
    zeros = torch.zeros_like(v[:, :1, :fold])
    from_next = torch.cat([v[:, 1:, :fold], zeros], dim=1)
    from_prev = torch.cat([zeros, v[:, :-1, fold : 2 * fold]], dim=1)
    return torch.cat([from_next, from_prev, v[:, :, 2 * fold :]], dim=2).reshape(x.shape)


class TemporalShift(nn.Module):
    """Module form of :func:`temporal_shift` (no parameters)."""

    def __init__(self, num_frames: int = 8, fold_div: int = 8) -> None:
        super().__init__()
        self.num_frames, self.fold_div = num_frames, fold_div

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}, fold_div={self.fold_div}"

    def forward(self, x: Tensor) -> Tensor:
        return temporal_shift(x, self.num_frames, self.fold_div)


def init_small_linear(layer: nn.Linear) -> None:
    """Init of every new Linear layer (classifiers, policy MLPs): weights N(0, 0.001), bias 0, so the
    logits start near zero and the policy near uniform."""
    nn.init.normal_(layer.weight, 0.0, 0.001)
    nn.init.zeros_(layer.bias)


class AverageConsensusHead(nn.Module):
    """TSN head: ``Dropout -> Linear`` per frame, logits averaged over T (no softmax).

    ``(N, T, D)`` features -> ``(N, K)`` clip logits.
    """

    def __init__(self, feature_dim: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        init_small_linear(self.fc)

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features)).mean(dim=1)
