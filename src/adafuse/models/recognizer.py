"""The video recognizer: a 2D backbone run frame by frame plus a clip head (TSN-style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor, nn

from adafuse.models.temporal import AverageConsensusHead
from adafuse.pixels import IMAGENET_MEAN, IMAGENET_STD


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DataParallel/DistributedDataParallel and/or ``torch.compile`` wrapper (else itself)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


@dataclass(frozen=True)
class InputSpec:
    """Preprocessing a model expects: ``(pixel / 255 * value_range - mean) / std`` per channel, in RGB
    order unless ``bgr``; ``size`` is the crop side in pixels."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False
    value_range: float = 1.0
    size: int = 224

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class ModelInfo:
    """What a checkpoint needs to rebuild the model: registry name and builder arguments."""

    arch: str
    build_config: dict[str, Any] = field(default_factory=dict)


class VideoRecognizer(nn.Module):
    """``backbone``: ``(N*T, 3, H, W) -> (N*T, D)``; ``head``: ``(N, T, D) -> (N, K)``.

    ``forward(x)`` takes a clip batch ``(N, T, 3, H, W)`` and returns clip logits ``(N, K)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        num_frames: int = 8,
        dropout: float = 0.5,
        head: nn.Module | None = None,
        input_spec: InputSpec | None = None,
        arch: str = "",
        build_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else AverageConsensusHead(feature_dim, num_classes, dropout)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.input_spec = input_spec or InputSpec()
        self.arch = arch
        self.build_config = dict(build_config or {})

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected a clip batch (N, T, 3, H, W), got shape {tuple(x.shape)}")
        n, t = x.shape[:2]
        if t != self.num_frames:
            raise ValueError(f"clip has {t} frames but the model is set up for {self.num_frames}; "
                             "call adafuse.models.set_num_frames(model, T) to change it")
        features = self.backbone(x.flatten(0, 1))
        return self.head(features.view(n, t, -1))
