"""Sparse execution of a trained AdaFuse model: compute only the channels the policy asks for.

:class:`SparseExecutor` compiles a :class:`~adafuse.models.VideoRecognizer` (ResNet, BN-Inception or
EfficientNet backbone, average-consensus head) into streaming stages (:mod:`adafuse.inference.stages`) with
every BatchNorm folded into its conv, then runs one frame at a time (batch 1, NCHW, float32):

* the policy of each gate runs on the GAP of the block input (argmax decision, BN1d folded);
* the producer convs compute only the channels kept now; a channel reused by this frame comes from the
  cached previous frame, computed lazily from the cached producer input if the previous frame did not keep
  it; skipped channels are never computed nor read by the consumers;
* every conv and Linear call is counted as it runs (:mod:`adafuse.inference.accounting`): per step the
  executed MACs and FLOPs in the paper's convention, per gate the producer/consumer MACs.

The output equals the dense masked model (``model.eval()``, argmax policy or the same injected masks) to
float32 rounding; the work equals the FLOPs engine's Eq. 5 count for the same masks. TSM models (the shift
reads frame ``t+1``) run sparsely on whole clips (:meth:`SparseExecutor.run_clip` from a reset state) but
cannot be streamed frame by frame; heads other than average consensus are not supported:
:class:`StreamingNotSupportedError` says which part is the obstacle.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adafuse.inference.accounting import Meter, StepReport
from adafuse.inference.stages import Clip, Gate, Stage, StepContext, as_batch, densify, stage_builder
from adafuse.models.fusion import AdaptiveFusion, fusion_modules
from adafuse.models.recognizer import unwrap
from adafuse.models.temporal import AverageConsensusHead, TemporalShift


class StreamingNotSupportedError(ValueError):
    """The model cannot run frame by frame (e.g. a TSM shift needs frame t+1, or the head is not an average
    of per-frame logits)."""


def clip_obstacle(model: nn.Module) -> str | None:
    """Why the sparse executor cannot run ``model`` even on whole clips, or None if it can."""
    model = unwrap(model)
    head = getattr(model, "head", None)
    if not isinstance(head, AverageConsensusHead):
        return (f"the head is {type(head).__name__}; the sparse executor needs the average-consensus head "
                "(clip logits = mean of per-frame logits)")
    return None


def streaming_obstacle(model: nn.Module) -> str | None:
    """Why ``model`` cannot be streamed frame by frame, or None if it can."""
    model = unwrap(model)
    for name, m in model.named_modules():
        if isinstance(m, TemporalShift):
            return (f"{name} is a TSM shift: it mixes in features of frame t+1, which a stream does not have yet "
                    "(streaming supports AdaFuse-TSN models; recognize_clip / step_clip on whole clips run TSM "
                    "models sparsely)")
    return clip_obstacle(model)


def _short(name: str) -> str:
    return name.removeprefix("backbone.")


def _release_freed_memory() -> None:
    """Hand the float64 folding temporaries back to the OS (glibc keeps freed heap pages otherwise: about
    +90 MB of resident memory for R50). No-op where glibc's ``malloc_trim`` is not available."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class SparseExecutor:
    """Frame-by-frame executor of a video recognizer with BN folded and gated channels computed sparsely.

    ``sparse=False`` runs the same folded layers densely (every gated channel computed, then masked): the
    dense masked model on the same code path, for timing comparisons. ``by_layer=True`` also records MACs
    per conv (``report.layers``, keyed by the conv's qualified module name).

    The executor references the model's policy Linear weights and holds folded copies of the conv weights;
    it does not modify the model. Call :meth:`reset` between videos.
    """

    def __init__(self, model: nn.Module, sparse: bool = True, by_layer: bool = False) -> None:
        model = unwrap(model)
        reason = clip_obstacle(model)
        if reason is not None:
            raise StreamingNotSupportedError(f"{getattr(model, 'arch', type(model).__name__)}: {reason}")
        self.arch = getattr(model, "arch", type(model).__name__)
        self.stream_obstacle = streaming_obstacle(model)  # None: frame by frame works; else whole clips only
        self.sparse = sparse
        self.fusions = fusion_modules(model)
        self._fusion_index = {id(f): i for i, f in enumerate(self.fusions)}
        self.gates: list[Gate | None] = [None] * len(self.fusions)
        backbone = model.backbone
        self.stages = self._compile(backbone)
        missing = [i for i, g in enumerate(self.gates) if g is None]
        if missing:
            raise ValueError(f"fusion modules {missing} of {type(backbone).__name__} are not reached by the sparse "
                             "executor's compiler (not held as a block's .fusion?)")
        head = model.head
        self.fc_weight = head.fc.weight.detach()
        self.fc_bias = head.fc.bias.detach() if head.fc.bias is not None else None
        self.num_classes = self.fc_weight.shape[0]
        self.meter = Meter([g.name for g in self.gates], by_layer=by_layer)
        self.frame = 0
        _release_freed_memory()
        self.last_report = StepReport(frame=0)

    # ----------------------------------------------------------------------------------------- compile

    def _gate(self, fusion: AdaptiveFusion | None, owner_name: str) -> Gate | None:
        if fusion is None:
            return None
        i = self._fusion_index[id(fusion)]
        gate = Gate(i, _short(owner_name), fusion, self.sparse)
        self.gates[i] = gate
        return gate

    def _compile(self, backbone: nn.Module) -> list[Stage]:
        """The backbone's stages, from the builder its family registered (:mod:`adafuse.inference.stages`)."""
        builder = stage_builder(backbone)
        if builder is None:
            from adafuse.inference.stages import STAGE_BUILDERS

            known = ", ".join(sorted(t.__name__ for t in STAGE_BUILDERS))
            raise StreamingNotSupportedError(f"backbone {type(backbone).__name__} is not supported by the sparse "
                                             f"executor (supported: {known}; see adafuse.inference.stages)")
        return builder(backbone, self._gate)

    # -------------------------------------------------------------------------------------------- run

    def reset(self) -> None:
        """Forget the previous frames (start of a new video)."""
        self.frame = 0
        for g in self.gates:
            g.reset()

    def state_tensors(self) -> list[Tensor]:
        """Every tensor the executor carries from one frame to the next (for memory checks)."""
        return [t for s in self.stages for t in s.state_tensors()]

    @torch.inference_mode()
    def step(self, frame: Tensor, masks: Sequence[Tensor | None] | None = None) -> Tensor:
        """Run one frame ``(3, H, W)`` or ``(1, 3, H, W)`` (float32, already normalised). Returns this frame's
        logits ``(K,)``; :attr:`last_report` holds the work of the step.

        ``masks``: optional injected policy for this frame, one ``(C, 3)`` (or ``(1, C, 3)``) one-hot mask per
        gate in ``fusion_modules(model)`` order (None entries keep the model's own policy).
        """
        if self.stream_obstacle is not None:
            raise StreamingNotSupportedError(f"{self.arch} cannot be streamed: {self.stream_obstacle}")
        if frame.dim() == 3:
            frame = frame.unsqueeze(0)
        if frame.dim() != 4 or frame.shape[0] != 1 or frame.shape[1] != 3:
            raise ValueError(f"expected one frame (3, H, W) or (1, 3, H, W), got shape {tuple(frame.shape)}")
        if masks is not None and len(masks) != len(self.gates):
            raise ValueError(f"got {len(masks)} masks for {len(self.gates)} gates")
        self.meter.start(self.frame)
        ctx = StepContext(self.meter, masks)
        x = frame.contiguous()
        for stage in self.stages:
            x = stage.step(x, ctx)
        x = densify(x)
        spatial = x.shape[2] * x.shape[3]
        self.meter.fixed((spatial + 1) * x.shape[1])  # global average pool, engine convention
        features = x.mean(dim=(2, 3))
        logits = F.linear(features, self.fc_weight, self.fc_bias)
        self.meter.linear(self.fc_weight.numel(), 2 * self.fc_weight.numel())
        self.frame += 1
        self.last_report = self.meter.report
        return logits.view(-1)

    @torch.inference_mode()
    def run_clip(self, frames: Tensor, masks: Sequence[Tensor | None] | None = None) -> tuple[Tensor, list[StepReport]]:
        """Run ``T`` consecutive frames ``(T, 3, H, W)`` layer by layer (clip mode): each stage processes every
        frame before the next stage starts, so the policy MLPs and the ungated convs run once on the batch of
        ``T`` frames; the gated convs still run frame by frame on each frame's channels. The outputs and the
        work counted per frame equal ``T`` calls of :meth:`step` (which continue after it, and vice versa).

        ``masks``: optional injected policy, one ``(T, C, 3)`` mask per gate (None entries keep the model's
        policy). Returns the per-frame logits ``(T, K)`` and the ``T`` per-frame :class:`StepReport`.
        """
        if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
            raise ValueError(f"expected frames (T, 3, H, W) with T >= 1, got shape {tuple(frames.shape)}")
        if self.stream_obstacle is not None and self.frame != 0:
            raise StreamingNotSupportedError(f"{self.arch} runs whole clips only (call reset() first): "
                                             f"{self.stream_obstacle}")
        t = frames.shape[0]
        if masks is not None:
            if len(masks) != len(self.gates):
                raise ValueError(f"got {len(masks)} masks for {len(self.gates)} gates")
            for i, m in enumerate(masks):
                if m is not None and m.shape[0] != t:
                    raise ValueError(f"mask {i} has {m.shape[0]} rows, expected T = {t}")
        meters = [Meter(self.meter.gate_names, by_layer=self.meter.by_layer) for _ in range(t)]
        ctxs = []
        for i, meter in enumerate(meters):
            meter.start(self.frame + i)
            ctxs.append(StepContext(meter, [m[i] if m is not None else None for m in masks]
                                    if masks is not None else None))
        x: Clip = frames.contiguous()
        for stage in self.stages:
            x = stage.step_clip(x, ctxs)
        x = as_batch(x)
        spatial = x.shape[2] * x.shape[3]
        logits = F.linear(x.mean(dim=(2, 3)), self.fc_weight, self.fc_bias)
        for meter in meters:
            meter.fixed((spatial + 1) * x.shape[1])  # global average pool, engine convention
            meter.linear(self.fc_weight.numel(), 2 * self.fc_weight.numel())
        self.frame += t
        reports = [m.report for m in meters]
        self.last_report = reports[-1]
        return logits, reports
