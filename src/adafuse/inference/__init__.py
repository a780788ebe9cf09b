"""Inference: sparse execution of AdaFuse models, streaming recognition, prediction and ONNX export.

* :class:`SparseExecutor` -- one frame at a time with BN folded, computing only the channels the policy
  keeps (or reuses) and counting the work it executes;
* :class:`StreamingRecognizer` -- ``step(frame) -> running clip logits``, ``step_clip(frames)`` (clip mode:
  layer by layer, batched policy), ``recognize_clip(x) -> logits``;
* :class:`Predictor` -- checkpoint + video/frame folder -> top-k classes, GFLOPs, time (``adafuse predict``);
* :func:`export_onnx` / :func:`check_onnx` -- dense clip model to ONNX, checked with onnxruntime.

See ``docs/inference.md``.
"""

from adafuse.inference.accounting import GateStep, Meter, StepReport, frame_flops
from adafuse.inference.export import ExportCheck, OnnxExport, check_onnx, export_onnx
from adafuse.inference.predictor import Prediction, Predictor
from adafuse.inference.sparse import SparseExecutor, StreamingNotSupportedError, clip_obstacle, streaming_obstacle
from adafuse.inference.streaming import StreamingRecognizer

__all__ = [
    "ExportCheck", "GateStep", "OnnxExport", "Meter", "Prediction", "Predictor", "SparseExecutor", "StepReport",
    "StreamingNotSupportedError", "StreamingRecognizer", "check_onnx", "export_onnx", "frame_flops",
    "clip_obstacle", "streaming_obstacle",
]
