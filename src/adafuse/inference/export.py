"""ONNX export of the dense clip model, checked with onnxruntime.

The exported graph is the model's own eval forward: input ``clip`` ``(N, T, 3, H, W)`` float32 (normalised
as the checkpoint's ``input_spec`` says), output ``logits`` ``(N, K)``. For AdaFuse models the argmax policy
is inside the graph (GAP -> MLP -> ArgMax -> one-hot -> fuse with the previous frame), so the ONNX model
makes the same per-frame, per-channel decisions; it computes every channel and masks (ONNX has no sparse
path), i.e. it saves no time. ``N`` is a dynamic axis; ``T`` and the crop size are fixed at export.

The file carries what a user needs to run it on a video without this package, as ``metadata_props`` (JSON
strings): ``preprocessing`` (:class:`~adafuse.data.preprocessing.Preprocessing`: frames, resize, crop,
normalisation), ``class_names`` (list) and ``arch``; :func:`read_metadata` reads them back, and
``examples/onnx_predict.py`` runs the model on a video with onnxruntime, NumPy and PyAV only.

Needs the optional extra ``onnx`` (``pip install adafuse[onnx]``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adafuse.data.preprocessing import Preprocessing
from adafuse.models.fusion import policy_state


@dataclass
class ExportCheck:
    """onnxruntime vs PyTorch on a random clip: ``max_abs_diff`` and ``rel_diff`` (``||a - b|| / ||b||``) of
    the logits, over ``batch`` clips; ``ok``: ``rel_diff <= tolerance``."""

    max_abs_diff: float
    rel_diff: float
    batch: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.rel_diff <= self.tolerance


def _require_onnx() -> None:
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install 'adafuse[onnx]'")


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote: ``path`` and the ``exporter`` that succeeded (``torchscript`` or
    ``dynamo``)."""

    path: Path
    exporter: str


def export_onnx(
    model: nn.Module,
    path: str | Path,
    num_frames: int | None = None,
    size: int | None = None,
    opset: int = 18,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
) -> OnnxExport:
    """Export ``model`` (a ``VideoRecognizer``, put in eval mode with the argmax decision, no injected
    policy) to ``path``. ``num_frames``/``size`` default to the preprocessing's (``preprocessing``, default
    :meth:`Preprocessing.for_model`), which is stored in the file's metadata with ``class_names``
    (see :func:`read_metadata`).

    Tries the TorchScript-based exporter first (fast), then the ``torch.export``-based one (needed for
    models whose forward compares traced shapes, e.g. BN-Inception's branch-size check)."""
    _require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pre = (preprocessing or Preprocessing.for_model(model)).with_frames(num_frames).with_crop(size)
    t, s = pre.num_frames, pre.crop_size
    exporter = _export(model, path, t, s, opset)
    write_metadata(path, pre, class_names, getattr(model, "arch", type(model).__name__))
    return OnnxExport(path, exporter)


def write_metadata(path: str | Path, preprocessing: Preprocessing, class_names: Sequence[str] | None,
                   arch: str) -> None:
    """Store ``preprocessing`` (JSON), ``class_names`` (JSON list, when known) and ``arch`` in the ONNX file's
    ``metadata_props`` (rewrites the file)."""
    import onnx

    proto = onnx.load(str(path))
    props = {"preprocessing": preprocessing.to_json(), "arch": arch}
    if class_names is not None:
        props["class_names"] = json.dumps(list(class_names))
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata :func:`export_onnx` stored: ``{"preprocessing": Preprocessing, "class_names": list | None,
    "arch": str | None}`` (read with onnxruntime, as a deployment would)."""
    import onnxruntime as ort

    props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    if "preprocessing" not in props:
        raise ValueError(f"{path}: no 'preprocessing' in the ONNX metadata (exported by an older adafuse?)")
    names = json.loads(props["class_names"]) if "class_names" in props else None
    return {"preprocessing": Preprocessing.from_json(props["preprocessing"]), "class_names": names,
            "arch": props.get("arch")}


def _export(model: nn.Module, path: Path, t: int, s: int, opset: int) -> str:
    """Write the ONNX graph; returns the exporter that succeeded."""
    model = model.eval()
    example = torch.zeros(1, t, 3, s, s)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    with warnings.catch_warnings(), torch.no_grad(), policy_state(model, decision="argmax", masks=None, num_frames=t):
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes (T is fixed)
        try:
            torch.onnx.export(model, (example,), str(path), input_names=["clip"], output_names=["logits"],
                              dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                              dynamo=False)
            return "torchscript"
        except Exception as first:  # noqa: BLE001 -- fall back to the torch.export-based exporter
            quiet.setLevel(logging.ERROR)
            try:
                torch.onnx.export(model, (example,), str(path), input_names=["clip"], output_names=["logits"],
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, opset_version=opset,
                                  dynamo=True, verbose=False)
            except Exception as second:
                raise RuntimeError(f"ONNX export of {getattr(model, 'arch', type(model).__name__)} failed with both "
                                   f"exporters: TorchScript: {first}; torch.export: {second}") from second
            finally:
                quiet.setLevel(level)
    return "dynamo"


def check_onnx(model: nn.Module, path: str | Path, batch: int = 2, tolerance: float = 1e-4,
               seed: int = 0) -> ExportCheck:
    """Run the ONNX file with onnxruntime and the PyTorch model on the same random clips ``(batch, T, 3, S,
    S)`` (shape read from the model); compare the logits.

    A trained policy can sit near a tie between two actions for some channel; then float rounding may flip
    that decision in one runtime and the logits differ more than rounding would explain.
    """
    _require_onnx()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    t, s = int(inp.shape[1]), int(inp.shape[3])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, t, 3, s, s, generator=gen)
    model = model.eval()
    with torch.no_grad(), policy_state(model, decision="argmax", masks=None, num_frames=t):
        ref = model(x)
    out = torch.from_numpy(session.run(None, {inp.name: x.numpy()})[0])
    diff = (out - ref).abs()
    rel = float((out - ref).norm() / ref.norm().clamp_min(1e-30))
    return ExportCheck(float(diff.max()), rel, batch, tolerance)
