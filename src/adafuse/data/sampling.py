"""Which frames of an ``n``-frame video make a clip of ``T`` frames. All indices are 0-based.

- TSN segments (the paper's sampling): the video is cut into ``T`` equal segments.
  Train: one random frame per segment, ``idx_i = i*avg + randint(avg)`` with ``avg = n // T``.
  Eval: segment centres ``floor(n/T/2 + i*n/T)`` (computed in exact integer arithmetic);
  ``num_clips`` > 1 shifts the point inside each segment: clip ``k`` takes ``floor(n/T * (i + (k+.5)/C))``.
- Dense: ``T`` frames ``stride`` apart from a random start (train) or ``num_clips`` evenly spaced
  starts (eval; one clip = the centred window).
- A video shorter than the clip (``n < T`` for TSN, ``n < (T-1)*stride+1`` for dense) gives
  ``0..n-1`` padded with its last frame (**Decision**: the same rule in train and eval, so a short
  video shows its motion at the same clip positions in both; the authors' code would repeat frame 0 in eval).

Every function returns indices in temporal order (non-decreasing), so clips keep the direction of time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


def _check(n: int, num_frames: int) -> None:
    if n < 1:
        raise ValueError(f"cannot sample from a video with {n} frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")


def padded_indices(n: int, num_frames: int) -> np.ndarray:
    """``0..n-1`` followed by ``n-1`` repeated up to ``num_frames`` entries, shape ``(T,)`` int64
    (truncated to the first ``T`` frames if ``n > T``)."""
    _check(n, num_frames)
    return np.minimum(np.arange(num_frames, dtype=np.int64), n - 1)


def tsn_train_indices(n: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """TSN training sample: one random frame in each of ``T`` segments of length ``n // T``.

    Returns ``(T,)`` int64. For ``n < T`` returns :func:`padded_indices`.
    """
    _check(n, num_frames)
    avg = n // num_frames
    if avg == 0:
        return padded_indices(n, num_frames)
    return np.arange(num_frames, dtype=np.int64) * avg + rng.integers(0, avg, size=num_frames)


def tsn_eval_indices(n: int, num_frames: int, num_clips: int = 1) -> np.ndarray:
    """TSN evaluation: segment centres, ``(num_clips, T)`` int64 (clip ``k`` at ``(k+0.5)/C`` of each
    segment, so one clip = the centres ``floor(n/T/2 + i*n/T)``). For ``n < T`` every clip is
    :func:`padded_indices`."""
    _check(n, num_frames)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if n < num_frames:
        return np.tile(padded_indices(n, num_frames), (num_clips, 1))
    i = np.arange(num_frames, dtype=np.int64)[None, :]
    k = np.arange(num_clips, dtype=np.int64)[:, None]
    return (n * (2 * num_clips * i + 2 * k + 1)) // (2 * num_frames * num_clips)


def dense_train_indices(n: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """Dense training sample: ``T`` frames ``stride`` apart from a random start, ``(T,)`` int64
    (indices past the end are clamped to the last frame)."""
    _check(n, num_frames)
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, max(0, n - span) + 1))
    return np.minimum(start + stride * np.arange(num_frames, dtype=np.int64), n - 1)


def dense_eval_indices(n: int, num_frames: int, stride: int, num_clips: int = 1) -> np.ndarray:
    """Dense evaluation: ``num_clips`` windows with evenly spaced starts (one clip: centred),
    ``(num_clips, T)`` int64."""
    _check(n, num_frames)
    span = (num_frames - 1) * stride + 1
    free = max(0, n - span)
    if num_clips == 1:
        starts = np.array([free // 2], dtype=np.int64)
    else:
        starts = np.round(np.linspace(0, free, num_clips)).astype(np.int64)
    clips = starts[:, None] + stride * np.arange(num_frames, dtype=np.int64)[None, :]
    return np.minimum(clips, n - 1)


@dataclass(frozen=True)
class FrameSampler:
    """Frame sampling of a dataset: ``sampler(n, rng) -> (num_clips, T)`` int64 indices (0-based).

    ``mode``: ``"tsn"`` (segments, the paper) or ``"dense"`` (``stride`` apart). ``train`` picks the
    random variant (then ``num_clips`` must be 1).
    """

    num_frames: int = 8
    mode: Literal["tsn", "dense"] = "tsn"
    train: bool = True
    num_clips: int = 1
    stride: int = 8

    def __post_init__(self) -> None:
        if self.mode not in ("tsn", "dense"):
            raise ValueError(f"sampling mode must be 'tsn' or 'dense', got {self.mode!r}")
        if self.train and self.num_clips != 1:
            raise ValueError("multi-clip sampling (num_clips > 1) is for evaluation only")
        if self.num_frames < 1 or self.num_clips < 1 or self.stride < 1:
            raise ValueError(f"bad sampler {self}")

    def __call__(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        if self.train:
            if rng is None:
                raise ValueError("training sampling needs a random generator")
            if self.mode == "tsn":
                return tsn_train_indices(n, self.num_frames, rng)[None]
            return dense_train_indices(n, self.num_frames, self.stride, rng)[None]
        if self.mode == "tsn":
            return tsn_eval_indices(n, self.num_frames, self.num_clips)
        return dense_eval_indices(n, self.num_frames, self.stride, self.num_clips)
