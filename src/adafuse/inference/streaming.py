"""Streaming recognition: feed frames one at a time, get running clip logits.

``StreamingRecognizer(model).step(frame) -> (K,)`` returns the *running clip logits*: the mean of the
per-frame logits of the frames seen since the last :meth:`~StreamingRecognizer.reset`. After ``T`` frames this
equals the clip model's output on those ``T`` frames (average consensus; the policy's history starts at
zeros at the first frame, as at the start of a clip).

TSM models cannot be streamed (the shift reads frame ``t+1``): :meth:`~StreamingRecognizer.step` raises
:class:`StreamingNotSupportedError`, while :meth:`~StreamingRecognizer.recognize_clip` and
:meth:`~StreamingRecognizer.step_clip` (from a reset state) run them sparsely on whole clips. Memory is bounded:
per gated block the stream keeps one previous frame (GAP vector, kept conv1 outputs, conv1 input) plus a
running logit sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adafuse.inference.accounting import StepReport
from adafuse.inference.sparse import (
    SparseExecutor,
    StreamingNotSupportedError,
    clip_obstacle,
    streaming_obstacle,
)
from adafuse.models.fusion import policy_state
from adafuse.models.recognizer import unwrap


class StreamingRecognizer:
    """Frame-by-frame recognizer over a trained :class:`~adafuse.models.VideoRecognizer` (put in eval mode).

    ``sparse``: compute only the channels the policy asks for (default) or every channel then mask (the
    dense masked model on the same folded layers). ``by_layer``: record MACs per conv in the reports.

    Attributes after each step: ``last_report`` (:class:`StepReport` of the step), ``frames`` (frames since
    reset), ``total_flops``/``total_macs`` (work since reset; FLOPs in the paper's convention).
    """

    def __init__(self, model: nn.Module, sparse: bool = True, by_layer: bool = False) -> None:
        self.model = unwrap(model).eval()
        self.sparse = sparse
        self.by_layer = by_layer
        self.obstacle = streaming_obstacle(self.model)
        self.executor = SparseExecutor(self.model, sparse, by_layer) if clip_obstacle(self.model) is None else None
        self.num_classes = int(getattr(self.model, "num_classes", 0))
        self.last_clip_dense = False
        self.reset()

    @property
    def streamable(self) -> bool:
        """True when frames can be fed one at a time (:meth:`step`)."""
        return self.executor is not None and self.obstacle is None

    def _require_executor(self, streaming: bool = True) -> SparseExecutor:
        if self.executor is None or (streaming and self.obstacle is not None):
            arch = getattr(self.model, "arch", type(self.model).__name__)
            raise StreamingNotSupportedError(f"{arch} cannot be streamed: {self.obstacle}")
        return self.executor

    def reset(self) -> None:
        """Start a new stream (forget cached frames and the running logits)."""
        if self.executor is not None:
            self.executor.reset()
        self.frames = 0
        self.logit_sum: Tensor | None = None
        self.total_flops = 0.0
        self.total_macs = 0.0
        self.last_report: StepReport | None = None
        self.last_reports: list[StepReport] = []

    def state_tensors(self) -> list[Tensor]:
        """Every tensor carried between steps (executor caches + the running logit sum)."""
        ex = self.executor.state_tensors() if self.executor is not None else []
        return ex + ([self.logit_sum] if self.logit_sum is not None else [])

    def step(self, frame: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """Process one normalised frame ``(3, H, W)`` or ``(1, 3, H, W)``; returns the running clip logits
        ``(K,)`` (mean of the per-frame logits so far). ``masks``: optional injected policy of this frame
        (one ``(C, 3)`` mask per gate)."""
        ex = self._require_executor()
        logits = ex.step(frame, masks)
        self.logit_sum = logits.clone() if self.logit_sum is None else self.logit_sum.add_(logits)
        self.frames += 1
        self.last_report = ex.last_report
        self.last_reports = [self.last_report]
        self.total_flops += self.last_report.flops
        self.total_macs += self.last_report.macs
        return self.logit_sum / self.frames

    def step_clip(self, frames: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """Process ``T`` consecutive frames ``(T, 3, H, W)`` at once in clip mode (layer by layer, policy MLPs
        batched over the frames: :meth:`SparseExecutor.run_clip`); same result and state as ``T`` calls of
        :meth:`step`. ``masks``: optional injected policy, one ``(T, C, 3)`` mask per gate. Returns the running
        clip logits ``(K,)``; ``last_reports`` holds the ``T`` per-frame reports."""
        ex = self._require_executor(streaming=False)
        logits, reports = ex.run_clip(frames, masks)
        for row in logits:
            self.logit_sum = row.clone() if self.logit_sum is None else self.logit_sum.add_(row)
        self.frames += len(reports)
        self.last_reports = reports
        self.last_report = reports[-1]
        for r in reports:
            self.total_flops += r.flops
            self.total_macs += r.macs
        return self.logit_sum / self.frames

    def recognize_clip(self, x: Tensor, masks: Sequence[Tensor] | None = None,
                       reports: list[list[StepReport]] | None = None, layerwise: bool = True) -> Tensor:
        """Clip logits ``(N, K)`` of a batch ``(N, T, 3, H, W)``: each video is streamed from a reset state
        (this resets the stream). ``masks``: optional injected policy, one ``(N*T, C, 3)`` mask per gate
        (the layout of ``adafuse.models.inject_policy``). ``reports``: if a list is given, one list of
        per-frame :class:`StepReport` per video is appended to it. ``layerwise``: run each video in clip mode
        (:meth:`step_clip`, faster: batched policy MLPs and ungated convs) rather than frame by frame
        (:meth:`step`); both give the same logits and reports. TSM models always run in clip mode.

        Models the sparse executor cannot run (a head other than average consensus) run the dense clip model
        instead (``last_clip_dense`` is set, and ``reports`` stays empty).
        """
        if x.dim() != 5:
            raise ValueError(f"expected a clip batch (N, T, 3, H, W), got shape {tuple(x.shape)}")
        n, t = x.shape[:2]
        if self.executor is None:
            return self._dense_clip(x, masks)
        self.last_clip_dense = False
        if masks is not None:
            for i, m in enumerate(masks):
                if m.shape[0] != n * t:
                    raise ValueError(f"mask {i} has {m.shape[0]} rows, expected N*T = {n}*{t}")
        out = torch.empty(n, self.executor.num_classes, dtype=x.dtype)
        total_flops = total_macs = 0.0
        for v in range(n):
            self.reset()
            if layerwise or not self.streamable:
                logits = self.step_clip(x[v], [m[v * t:(v + 1) * t] for m in masks] if masks is not None else None)
                video_reports = list(self.last_reports)
            else:
                video_reports = []
                for f in range(t):
                    frame_masks = [m[v * t + f] for m in masks] if masks is not None else None
                    logits = self.step(x[v, f], frame_masks)
                    video_reports.append(self.last_report)
            out[v] = logits
            total_flops += self.total_flops
            total_macs += self.total_macs
            if reports is not None:
                reports.append(video_reports)
        self.total_flops, self.total_macs = total_flops, total_macs
        return out

    @torch.inference_mode()
    def _dense_clip(self, x: Tensor, masks: Sequence[Tensor] | None) -> Tensor:
        """Dense fallback: the model's own forward (argmax decisions, or the injected masks)."""
        self.last_clip_dense = True
        with policy_state(self.model, decision="argmax", masks=list(masks) if masks is not None else None,
                          num_frames=x.shape[1]):
            return self.model(x)
