"""Rate control for streams: hold the mean GFLOPs per frame of a live stream at a target, like a video encoder's
rate control holds a bit rate, by adjusting the compute-budget shift (:mod:`adafuse.inference.budget`) frame
by frame.

The controller wraps a :class:`~adafuse.inference.streaming.StreamingRecognizer` and uses

* a **model** of the cost: the expected GFLOPs per frame ``c(b)`` at shift ``b`` (non-increasing), measured once
  on calibration clips by :func:`rate_curve` and interpolated linearly between the measured shifts;
* **feedback** over a sliding window of ``window`` frames: with ``excess`` the GFLOPs the last ``window - 1``
  frames spent above the target, it asks the next frame to cost ``need = target - excess / horizon`` (with
  ``horizon = 1`` exactly what brings the window's mean back to the target; a larger horizon spreads the
  correction over several frames, so the shift swings less), clipped to what the model can spend, and picks the
  shift ``c^-1(need - offset)``, where ``offset`` is a running mean of the cost model's error on this stream
  (content harder or easier than the calibration clips).

The achieved rate is the executor's counted work (paper convention, :class:`StepReport.flops`), so it is what
the stream really spent. With ``tolerance`` the controller states the promise checked by :meth:`stats`: every
full window's mean cost is at most ``target * (1 + tolerance)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from adafuse.inference.budget import BudgetError, clip_cost, set_budget_shift
from adafuse.inference.streaming import StreamingRecognizer

DEFAULT_SHIFTS = tuple(sorted({0.0, *(s * 2.0 ** k for s in (-1.0, 1.0) for k in range(-3, 7)), -1024.0, 1024.0}))


def rate_curve(model: nn.Module, clips: Tensor, shifts: Sequence[float] = DEFAULT_SHIFTS) -> list[tuple[float, float]]:
    """``[(shift, mean GFLOPs per frame)]`` of ``model`` on ``clips`` ``(N, T, 3, H, W)`` at each shift (the FLOPs
    engine's dynamic cost of the argmax masks), sorted by shift; the cost is made non-increasing."""
    t = clips.shape[1]
    points = sorted((float(s), clip_cost(model, clips, s).gflops_per_video / t) for s in shifts)
    out, low = [], float("inf")
    for s, c in points:
        low = min(low, c)
        out.append((s, low))
    return out


@dataclass
class RateStats:
    """Achieved rate of a controlled stream: ``frames``; ``mean``/``std`` GFLOPs per frame; ``window_mean_max``
    and ``window_mean_min`` over every full window; ``target``; ``tolerance``; ``within`` (every full window's mean
    is at most ``target * (1 + tolerance)``); ``shift_min``/``shift_max`` used."""

    frames: int
    mean: float
    std: float
    window_mean_max: float
    window_mean_min: float
    target: float
    tolerance: float
    within: bool
    shift_min: float
    shift_max: float


class RateController:
    """Streams frames through ``recognizer`` while holding its mean GFLOPs per frame at ``target_gflops``.

    ``curve``: the cost model ``[(shift, GFLOPs per frame)]`` (:func:`rate_curve`); ``window``: frames of the
    sliding window; ``tolerance``: the stated bound on every full window's mean (relative); ``adapt``: weight of
    the newest frame in the running model-error estimate; ``horizon``: frames over which a deviation is
    corrected. Raises :class:`BudgetError` if the target is outside
    what the curve can spend. The controller's state survives :meth:`new_video` (a stream of many videos).
    """

    def __init__(self, recognizer: StreamingRecognizer, target_gflops: float, curve: Sequence[tuple[float, float]],
                 window: int = 32, tolerance: float = 0.05, adapt: float = 0.1, horizon: int = 4) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2 frames, got {window}")
        if len(curve) < 2:
            raise ValueError("the cost curve needs at least two (shift, GFLOPs) points")
        self.recognizer = recognizer
        self.model = recognizer.model
        pts = sorted(curve)
        self.shifts = np.array([s for s, _ in pts], dtype=np.float64)
        self.costs = np.minimum.accumulate(np.array([c for _, c in pts], dtype=np.float64))
        self.low, self.high = float(self.costs[-1]), float(self.costs[0])
        if not self.low <= target_gflops <= self.high:
            raise BudgetError(f"target {target_gflops:.6g} GFLOPs per frame is outside what the model can spend "
                              f"[{self.low:.6g}, {self.high:.6g}]")
        self.target = float(target_gflops)
        self.window = window
        self.tolerance = tolerance
        self.adapt = adapt
        if not 1 <= horizon < window:
            raise ValueError(f"horizon must be in [1, window), got {horizon}")
        self.horizon = horizon
        self.offset = 0.0
        self.history: deque[float] = deque(maxlen=window - 1)
        self.frame_costs: list[float] = []
        self.frame_shifts: list[float] = []
        self.shift = self.shift_for(self.target)

    def predicted(self, shift: float) -> float:
        """The cost model's GFLOPs per frame at ``shift``."""
        return float(np.interp(shift, self.shifts, self.costs))

    def shift_for(self, gflops: float) -> float:
        """The shift the cost model expects to spend ``gflops`` per frame (clipped to the curve's range)."""
        c = float(np.clip(gflops, self.low, self.high))
        # costs are non-increasing in the shift: interpolate on the reversed (ascending) arrays
        return float(np.interp(c, self.costs[::-1], self.shifts[::-1]))

    def new_video(self) -> None:
        """Start a new video in the stream (running logits and frame caches reset; the rate state is kept)."""
        self.recognizer.reset()

    def step(self, frame: Tensor) -> Tensor:
        """Process one frame ``(3, H, W)`` at the current shift, then choose the next frame's shift. Returns the
        running clip logits ``(K,)`` of the current video."""
        set_budget_shift(self.model, self.shift)
        with torch.inference_mode():
            logits = self.recognizer.step(frame)
        cost = self.recognizer.last_report.flops / 1e9
        self.frame_costs.append(cost)
        self.frame_shifts.append(self.shift)
        self.offset += self.adapt * ((cost - self.predicted(self.shift)) - self.offset)
        self.history.append(cost)
        excess = sum(self.history) - len(self.history) * self.target  # GFLOPs above target in the window so far
        need = self.target - excess / self.horizon
        self.shift = self.shift_for(need - self.offset)
        return logits

    def stats(self) -> RateStats:
        """The achieved rate so far (window means over every full window of ``window`` frames)."""
        c = np.array(self.frame_costs, dtype=np.float64)
        if c.size == 0:
            raise ValueError("no frame has been processed")
        w = self.window
        means = np.convolve(c, np.ones(w) / w, mode="valid") if c.size >= w else np.array([c.mean()])
        bound = self.target * (1 + self.tolerance)
        return RateStats(int(c.size), float(c.mean()), float(c.std()), float(means.max()), float(means.min()),
                         self.target, self.tolerance, bool(means.max() <= bound), float(min(self.frame_shifts)),
                         float(max(self.frame_shifts)))
