"""Work accounting of the sparse executor: what each step really computed.

The executor counts as it runs (never from the masks): every conv call adds the multiply-accumulates of the
channels it was given, every policy MLP its Linear layers. Two totals per step:

* ``macs``: conv + Linear multiply-accumulates executed (conv in the thop convention, i.e. ``+1`` per output
  element when the original conv has a bias);
* ``flops``: the paper's convention (what :mod:`adafuse.flops` counts): executed conv MACs, ``2 x MACs`` for
  Linear layers, plus the nominal cost of the layers the executor folded away or that the engine counts at
  full size (BatchNorm ``2 x elements``, average pools ``(window + 1) x outputs``).

In streaming, a channel of frame ``t-1`` that frame ``t`` reuses but that ``t-1`` did not keep is computed
lazily during step ``t`` (``f1_prev``); :func:`frame_flops` moves that work back to frame ``t-1``, which is how
the FLOPs engine attributes it (Eq. 5: frame ``t`` computes ``keep[t] OR reuse[t+1]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class GateStep:
    """One gated block at one step. Channel counts are numbers of channels of the gated tensor.

    ``skip``/``reuse``/``keep``: actions at this frame (a reuse at the first frame reads zeros and costs
    like a skip); ``produced``: channels of this frame computed now (kept ones); ``produced_prev``: channels
    of the previous frame computed now because this frame reuses them; ``consumed``: input channels the
    consumers read (not skipped); ``f1``/``f1_prev``/``f2``: MACs of those producer/consumer calls.
    """

    name: str
    skip: int = 0
    reuse: int = 0
    keep: int = 0
    produced: int = 0
    produced_prev: int = 0
    consumed: int = 0
    f1: float = 0.0
    f1_prev: float = 0.0
    f2: float = 0.0


@dataclass
class StepReport:
    """Work of one step (one frame) of the executor. ``macs``/``flops``: see the module docstring;
    ``flops_prev``: the part of ``flops`` that belongs to the previous frame (lazy producer work)."""

    frame: int
    macs: float = 0.0
    flops: float = 0.0
    flops_prev: float = 0.0
    gates: list[GateStep] = field(default_factory=list)
    layers: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["layers"] is None:
            d.pop("layers")
        return d


class Meter:
    """Accumulates the work of the current step. ``by_layer=True`` also keeps MACs per conv name in
    ``report.layers`` (lazy work for the previous frame under ``"<name>@prev"``)."""

    def __init__(self, gate_names: Sequence[str], by_layer: bool = False) -> None:
        self.gate_names = list(gate_names)
        self.by_layer = by_layer
        self.report = StepReport(frame=0)

    def start(self, frame: int) -> None:
        self.report = StepReport(frame=frame, gates=[GateStep(n) for n in self.gate_names],
                                 layers={} if self.by_layer else None)

    def conv(self, macs: int, extra: int, role: tuple[int, str] | None, name: str = "") -> None:
        r = self.report
        r.macs += macs
        r.flops += macs + extra
        if role is not None:
            gate, kind = role
            g = r.gates[gate]
            setattr(g, kind, getattr(g, kind) + macs)
            if kind == "f1_prev":
                r.flops_prev += macs
        if r.layers is not None and name:
            key = name + "@prev" if role is not None and role[1] == "f1_prev" else name
            r.layers[key] = r.layers.get(key, 0.0) + macs

    def linear(self, macs: int, flops: int) -> None:
        self.report.macs += macs
        self.report.flops += flops

    def fixed(self, flops: float) -> None:
        """Nominal cost with no executed MACs (pooling, a BatchNorm the executor folded away)."""
        self.report.flops += flops


def frame_flops(reports: Sequence[StepReport]) -> list[float]:
    """Per-frame FLOPs of consecutive steps of one stream, with lazy producer work moved back to the frame
    it belongs to (the FLOPs engine's attribution). Same length as ``reports``."""
    out = [r.flops - r.flops_prev for r in reports]
    for i in range(1, len(reports)):
        out[i - 1] += reports[i].flops_prev
    return out
