"""Predict the action class of videos with a trained checkpoint: the library side of ``adafuse predict``.

A source is a video file (mp4, webm, ...) or a frame folder, opened with :func:`adafuse.data.media.open_source`
(frame files ``template.format(i + start_index)``; by default the checkpoint's ``data.frame_template`` and
``data.frame_start``), so a truncated video or a folder with a gap is an error, as in training. The clip mode takes
the frames and builds the clip exactly as ``adafuse eval`` does, with the checkpoint's
:class:`~adafuse.data.preprocessing.Preprocessing` (its evaluation frame sampling, short side
``data.scale_size``, centre crop ``data.input_size``, the model's normalisation), and runs it sparsely
(:class:`~adafuse.inference.streaming.StreamingRecognizer`) or densely (the PyTorch model itself). The
stream mode feeds frames one at a time and reports running predictions; by default the same ``T`` frames,
with ``every=k`` every ``k``-th frame of the whole video (decoded lazily, so long videos are fine), each
preprocessed by the same function.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from adafuse.data.decode import DEFAULT_TEMPLATE
from adafuse.data.media import MediaSource, open_source
from adafuse.data.preprocessing import Preprocessing
from adafuse.inference.accounting import StepReport
from adafuse.inference.streaming import StreamingRecognizer
from adafuse.models.recognizer import VideoRecognizer


class NonFiniteLogitsError(ValueError):
    """The model's output (or, from a checkpoint, its weights or normalisation statistics) is NaN/inf."""


@dataclass
class Prediction:
    """Result for one source.

    ``top``: ``(class index, class name, softmax probability)`` best first; ``logits``: the clip logits
    (stream mode: the running logits after the last frame); ``gflops``: GFLOPs spent on this
    video (paper convention, counted by the executor in sparse mode); ``gflops_dense``: what the dense model
    spends on the same frames; ``seconds``: model time (decoding excluded); ``total_seconds``: including
    decoding and preprocessing; ``frame_indices``: 0-based source frames used; ``mode``: ``sparse``,
    ``dense`` (executor, all channels), ``torch`` (the PyTorch model) or ``torch-fallback`` (a model the
    executor cannot stream, e.g. TSM); ``running``: in stream mode, the running top class after each frame.
    """

    source: str
    top: list[tuple[int, str, float]]
    logits: list[float]
    gflops: float
    gflops_dense: float
    seconds: float
    total_seconds: float
    frame_indices: list[int]
    mode: str
    running: list[tuple[int, str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "mode": self.mode, "frames": len(self.frame_indices),
            "frame_indices": self.frame_indices,
            "top": [{"class": c, "name": n, "prob": p} for c, n, p in self.top], "logits": self.logits,
            "gflops": self.gflops, "gflops_dense": self.gflops_dense,
            "seconds": self.seconds, "total_seconds": self.total_seconds,
        }


def class_name(names: list[str] | None, index: int) -> str:
    return names[index] if names and 0 <= index < len(names) else f"class {index}"


class Predictor:
    """Checkpoint -> predictions. ``sparse``: run the sparse executor (default) or the dense model.

    ``preprocessing``: frames and clip of a video (:meth:`from_checkpoint`: the checkpoint's; default for a
    bare model: :meth:`Preprocessing.for_model`); ``num_frames``/``size``: override its frame count / crop
    side (the short side scales with the crop); ``topk``: classes reported; ``template``/``start_index``:
    frame file names in frame folders (:meth:`from_checkpoint` defaults them to the checkpoint's data config).
    """

    def __init__(self, model: VideoRecognizer, class_names: list[str] | None = None, sparse: bool = True,
                 num_frames: int | None = None, size: int | None = None, topk: int = 5,
                 template: str = DEFAULT_TEMPLATE, start_index: int = 1,
                 preprocessing: Preprocessing | None = None) -> None:
        self.model = model.eval()
        self.class_names = class_names
        self.sparse = sparse
        pre = preprocessing or Preprocessing.for_model(model)
        self.preprocessing = pre.with_frames(num_frames).with_crop(size)
        self.num_frames = self.preprocessing.num_frames
        self.size = self.preprocessing.crop_size
        self.topk = topk
        self.template = template
        self.start_index = start_index
        self.recognizer = StreamingRecognizer(model, sparse=sparse)
        self._dense_gflops_frame: float | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, template: str | None = None, start_index: int | None = None,
                        **kwargs: Any) -> Predictor:
        """``template``/``start_index`` default to the checkpoint's ``data.frame_template``/``data.frame_start``."""
        from adafuse.models.serialization import model_from_checkpoint

        model, payload = model_from_checkpoint(path)
        bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteLogitsError(f"{path}: {len(bad)} weight/statistics tensors are not finite "
                                       f"(first: {bad[0]}); "
                                       "the checkpoint cannot give meaningful predictions (a diverged training?)")
        data = (payload.get("config") or {}).get("data") or {}
        template = template or data.get("frame_template") or DEFAULT_TEMPLATE
        start_index = start_index if start_index is not None else int(data.get("frame_start", 1))
        return cls(model, payload.get("class_names"), template=template, start_index=start_index,
                   preprocessing=Preprocessing.of_checkpoint(payload), **kwargs)

    def source(self, path: str | Path) -> MediaSource:
        """The :class:`~adafuse.data.media.MediaSource` of ``path`` with this predictor's frame names."""
        return open_source(path, self.template, self.start_index)

    @property
    def dense_gflops_per_frame(self) -> float:
        """GFLOPs per frame of the dense model at this crop size (the FLOPs engine's static count)."""
        if self._dense_gflops_frame is None:
            from adafuse.flops import static_cost

            self._dense_gflops_frame = static_cost(self.model, self.size).total / 1e9
        return self._dense_gflops_frame

    def _preprocess(self, frames: np.ndarray) -> Tensor:
        return self.preprocessing(frames)  # (T, H, W, 3) uint8 -> (T, 3, S, S) float32

    @staticmethod
    def _check_finite(logits: Tensor, source: str) -> Tensor:
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteLogitsError(f"{source}: the model produced non-finite logits (NaN/inf); the checkpoint's "
                                       "weights or BatchNorm statistics are not finite (a diverged training?)")
        return logits

    def _top(self, logits: Tensor) -> list[tuple[int, str, float]]:
        probs = logits.float().softmax(dim=-1)
        k = min(self.topk, probs.numel())
        p, idx = probs.topk(k)
        return [(int(i), class_name(self.class_names, int(i)), float(q)) for i, q in zip(idx, p, strict=True)]

    def predict(self, source: str | Path, reports: list[StepReport] | None = None) -> Prediction:
        """Clip mode: the preprocessing's ``T`` frames (as ``adafuse eval`` picks them), one clip. ``reports``: if
        a list is given (sparse mode), the per-frame :class:`StepReport` of the run are appended to it."""
        start = time.perf_counter()
        source = os.fspath(source)
        src = self.source(source)
        indices = self.preprocessing.indices(src.num_frames)
        clip = self._preprocess(src.read(indices)).unsqueeze(0)
        t0 = time.perf_counter()
        if self.sparse and self.recognizer.executor is not None:  # TSM too: clip mode runs it sparsely
            per_video: list[list[StepReport]] = []
            logits = self.recognizer.recognize_clip(clip, reports=per_video)[0]
            if reports is not None:
                reports.extend(per_video[0])
            gflops, mode = self.recognizer.total_flops / 1e9, "sparse"
        else:
            logits = self._torch_clip(clip)[0]
            gflops = self.dense_gflops_per_frame * clip.shape[1]
            mode = "torch" if not self.sparse else "torch-fallback"
        seconds = time.perf_counter() - t0
        self._check_finite(logits, source)
        return Prediction(source, self._top(logits), logits.tolist(), gflops,
                          self.dense_gflops_per_frame * clip.shape[1], seconds, time.perf_counter() - start,
                          [int(i) for i in indices], mode)

    @torch.inference_mode()
    def _torch_clip(self, clip: Tensor) -> Tensor:
        from adafuse.models.fusion import policy_state

        with policy_state(self.model, decision="argmax", num_frames=clip.shape[1]):
            return self.model(clip)

    def stream(self, source: str | Path, every: int | None = None,
               on_step: Callable[[int, int, Tensor, StepReport], None] | None = None) -> Prediction:
        """Stream mode: feed frames one by one (the ``T`` clip frames, or every ``every``-th frame of the video).
        ``on_step(step, frame_index, running_logits, report)`` is called after each frame."""
        start = time.perf_counter()
        source = os.fspath(source)
        rec = self.recognizer
        rec._require_executor()  # raises StreamingNotSupportedError (with the reason) for TSM models
        src = self.source(source)
        if every is None:
            indices = self.preprocessing.indices(src.num_frames)
            frames: Iterator[tuple[int, np.ndarray]] = zip(
                (int(i) for i in indices), src.read(indices), strict=True)
        else:
            frames = src.iter_frames(every)
        rec.reset()
        seconds = 0.0
        used: list[int] = []
        running: list[tuple[int, str, float]] = []
        logits = torch.zeros(rec.num_classes)
        for step, (index, frame) in enumerate(frames):
            x = self._preprocess(frame[None])[0]
            t0 = time.perf_counter()
            logits = self._check_finite(rec.step(x), source)
            seconds += time.perf_counter() - t0
            used.append(index)
            running.append(self._top(logits)[0])
            if on_step is not None:
                on_step(step, index, logits, rec.last_report)
        if not used:
            raise ValueError(f"{source}: no frames to stream")
        return Prediction(source, self._top(logits), logits.tolist(), rec.total_flops / 1e9,
                          self.dense_gflops_per_frame * len(used), seconds, time.perf_counter() - start, used,
                          "sparse" if self.sparse else "dense", running)
