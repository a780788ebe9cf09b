"""Predict the action class of videos with a trained checkpoint: the library side of ``adafuse predict``.

A source is a video file (mp4, webm, ...) or a frame folder (``{:05d}.jpg``, 1-based). The clip mode samples
the model's ``T`` segment-centre frames (TSN evaluation sampling), preprocesses them as the checkpoint says
(short side ``size * 256/224``, centre crop, normalisation of ``input_spec``) and runs them sparsely
(:class:`~adafuse.inference.streaming.StreamingRecognizer`) or densely (the PyTorch model itself). The
stream mode feeds frames one at a time and reports running predictions; by default the same ``T`` frames,
with ``every=k`` every ``k``-th frame of the whole video (decoded lazily, so long videos are fine).
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

from adafuse.inference.accounting import StepReport
from adafuse.inference.streaming import StreamingRecognizer
from adafuse.models.recognizer import VideoRecognizer


@dataclass
class Prediction:
    """Result for one source.

    ``top``: ``(class index, class name, softmax probability)`` best first; ``gflops``: GFLOPs spent on this
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
            "top": [{"class": c, "name": n, "prob": p} for c, n, p in self.top],
            "gflops": self.gflops, "gflops_dense": self.gflops_dense,
            "seconds": self.seconds, "total_seconds": self.total_seconds,
        }


def _is_frame_folder(path: str) -> bool:
    return os.path.isdir(path)


def source_num_frames(path: str, template: str = "{:05d}.jpg") -> int:
    """Frame count of a video file or frame folder (raises ``VideoReadError`` naming the file)."""
    from adafuse.data.decode import count_folder_frames, probe_video

    if _is_frame_folder(path):
        n = count_folder_frames(path, template)
    else:
        n = probe_video(path).num_frames
    if n < 1:
        from adafuse.data.errors import VideoReadError

        raise VideoReadError(path, "no frames found")
    return n


def read_frames(path: str, indices: np.ndarray, template: str = "{:05d}.jpg") -> np.ndarray:
    """Frames ``indices`` (0-based) of a video file or frame folder -> uint8 ``(T, H, W, 3)`` RGB."""
    from adafuse.data.decode import read_frame_folder, read_video_frames

    if _is_frame_folder(path):
        return read_frame_folder(path, indices, template)
    return read_video_frames(path, indices)


def iter_frames(path: str, every: int = 1, template: str = "{:05d}.jpg") -> Iterator[tuple[int, np.ndarray]]:
    """``(index, uint8 (H, W, 3) RGB)`` for every ``every``-th frame, decoded one at a time (constant memory)."""
    if _is_frame_folder(path):
        n = source_num_frames(path, template)
        for i in range(0, n, every):
            yield i, read_frames(path, np.array([i]), template)[0]
        return
    import av

    from adafuse.data.errors import VideoReadError

    try:
        container = av.open(path)
    except Exception as e:
        raise VideoReadError(path, f"cannot open video: {e}") from e
    try:
        if not container.streams.video:
            raise VideoReadError(path, "no video stream")
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                yield i, frame.to_ndarray(format="rgb24")
    finally:
        container.close()


def class_name(names: list[str] | None, index: int) -> str:
    return names[index] if names and 0 <= index < len(names) else f"class {index}"


class Predictor:
    """Checkpoint -> predictions. ``sparse``: run the sparse executor (default) or the dense model.

    ``num_frames``: frames per clip (default: the checkpoint's); ``size``: crop side in pixels (default: the
    checkpoint's ``input_spec.size``); ``topk``: classes reported.
    """

    def __init__(self, model: VideoRecognizer, class_names: list[str] | None = None, sparse: bool = True,
                 num_frames: int | None = None, size: int | None = None, topk: int = 5,
                 template: str = "{:05d}.jpg") -> None:
        from adafuse.data.transforms import eval_transform

        self.model = model.eval()
        self.class_names = class_names
        self.sparse = sparse
        self.num_frames = int(num_frames or model.num_frames)
        self.size = int(size or model.input_spec.size)
        self.topk = topk
        self.template = template
        self.transform = eval_transform(self.size, normalize=model.input_spec)
        self.recognizer = StreamingRecognizer(model, sparse=sparse)
        self._dense_gflops_frame: float | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> Predictor:
        from adafuse.models.serialization import model_from_checkpoint

        model, payload = model_from_checkpoint(path)
        return cls(model, payload.get("class_names"), **kwargs)

    @property
    def dense_gflops_per_frame(self) -> float:
        """GFLOPs per frame of the dense model at this crop size (the FLOPs engine's static count)."""
        if self._dense_gflops_frame is None:
            from adafuse.flops import static_cost

            self._dense_gflops_frame = static_cost(self.model, self.size).total / 1e9
        return self._dense_gflops_frame

    def _preprocess(self, frames: np.ndarray) -> Tensor:
        return self.transform(frames)  # (T, 3, S, S) float32

    def _top(self, logits: Tensor) -> list[tuple[int, str, float]]:
        probs = logits.float().softmax(dim=-1)
        k = min(self.topk, probs.numel())
        p, idx = probs.topk(k)
        return [(int(i), class_name(self.class_names, int(i)), float(q)) for i, q in zip(idx, p, strict=True)]

    def predict(self, source: str | Path, reports: list[StepReport] | None = None) -> Prediction:
        """Clip mode: ``T`` segment-centre frames, one clip. ``reports``: if a list is given (sparse mode),
        the per-frame :class:`StepReport` of the run are appended to it."""
        from adafuse.data.sampling import tsn_eval_indices

        start = time.perf_counter()
        source = os.fspath(source)
        n = source_num_frames(source, self.template)
        indices = tsn_eval_indices(n, self.num_frames)[0]
        clip = self._preprocess(read_frames(source, indices, self.template)).unsqueeze(0)
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
        from adafuse.data.sampling import tsn_eval_indices

        start = time.perf_counter()
        source = os.fspath(source)
        rec = self.recognizer
        rec._require_executor()  # raises StreamingNotSupportedError (with the reason) for TSM models
        if every is None:
            n = source_num_frames(source, self.template)
            indices = tsn_eval_indices(n, self.num_frames)[0]
            frames: Iterator[tuple[int, np.ndarray]] = zip(
                (int(i) for i in indices), read_frames(source, indices, self.template), strict=True)
        else:
            frames = iter_frames(source, every, self.template)
        rec.reset()
        seconds = 0.0
        used: list[int] = []
        running: list[tuple[int, str, float]] = []
        logits = torch.zeros(rec.num_classes)
        for step, (index, frame) in enumerate(frames):
            x = self._preprocess(frame[None])[0]
            t0 = time.perf_counter()
            logits = rec.step(x)
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
