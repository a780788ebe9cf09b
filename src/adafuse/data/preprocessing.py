"""The one preprocessing of evaluation and inference: which frames of a video a clip takes, and how the
decoded frames become the network input.

A :class:`Preprocessing` holds

- frame sampling: ``num_frames`` frames by the evaluation rule of :mod:`adafuse.data.sampling` (``tsn``: the
  segment centres ``floor(n/T/2 + i*n/T)``; ``dense``: ``T`` frames ``dense_stride`` apart, centred);
- geometry: resize so the short side is ``resize_short`` pixels (bilinear, antialiased), then a centre crop of
  ``crop_size`` x ``crop_size``;
- pixel normalisation: ``(pixel / 255 * value_range - mean) / std`` per channel, channels reversed to BGR
  first when ``bgr`` (what the backbone's pretrained weights expect).

It is derived once from a training config (:meth:`Preprocessing.from_config`: ``model.num_frames``,
``data.sampling``, ``data.dense_stride``, ``data.scale_size``, ``data.input_size`` and the model's
``input_spec``), stored in every checkpoint the trainer writes (payload key ``"preprocessing"``, a plain
dict) and read back with :meth:`Preprocessing.of_checkpoint` (a checkpoint written before the key existed
derives it from its stored config the same way). ``adafuse eval`` (the validation dataset), ``adafuse predict``
(clip, stream), ``adafuse export`` (the ONNX metadata) and the report's frame strips all call it, so the same
video gives the same network input everywhere: :meth:`Preprocessing.indices` picks the frames,
:meth:`Preprocessing.__call__` turns them into the clip.

This module imports only :mod:`adafuse.data` and :mod:`adafuse.pixels` (never the models or the engine).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch

from adafuse.data.sampling import FrameSampler
from adafuse.data.transforms import CenterCrop, ClipLike, Compose, ResizeShort, eval_transform
from adafuse.pixels import IMAGENET_MEAN, IMAGENET_STD

PREPROCESSING_KEY = "preprocessing"  # the checkpoint payload key


def default_resize(crop_size: int) -> int:
    """Short side for a crop when nothing says otherwise: ``int(crop_size * 256 / 224)`` (256 for 224)."""
    return int(crop_size * 256 / 224)


@dataclass(frozen=True)
class Preprocessing:
    """Frames of a video -> the network input ``(T, 3, crop_size, crop_size)`` float32 (see the module
    docstring). Frozen; :meth:`to_dict`/:meth:`from_dict` (and the JSON forms) round-trip exactly."""

    num_frames: int = 8
    sampling: str = "tsn"
    dense_stride: int = 2
    resize_short: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    value_range: float = 1.0
    bgr: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        object.__setattr__(self, "value_range", float(self.value_range))
        object.__setattr__(self, "bgr", bool(self.bgr))
        for name in ("num_frames", "dense_stride", "resize_short", "crop_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"preprocessing: {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.sampling not in ("tsn", "dense"):
            raise ValueError(f"preprocessing: sampling must be 'tsn' or 'dense', got {self.sampling!r}")
        if self.resize_short < self.crop_size:
            raise ValueError(f"preprocessing: resize_short={self.resize_short} is smaller than the crop size "
                             f"{self.crop_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise ValueError(f"preprocessing: mean and std need 3 values (std non-zero), got {self.mean}, {self.std}")

    # ---------------------------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, cfg: Any, input_spec: Any) -> Preprocessing:
        """From a training config (a :class:`adafuse.config.Config` or its ``to_dict()``, possibly partial)
        and the model's ``input_spec`` (an object or dict with ``mean``, ``std``, ``value_range``, ``bgr``,
        ``size``). A key the config lacks falls back to: crop ``input_spec.size``, short side
        :func:`default_resize` of the crop, ``tsn`` sampling, stride 2, 8 frames."""
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {})
        data, model = d.get("data") or {}, d.get("model") or {}
        spec = _get(input_spec)
        crop = int(data.get("input_size") or spec("size", 224))
        return cls(
            num_frames=int(model.get("num_frames") or 8),
            sampling=str(data.get("sampling") or "tsn"),
            dense_stride=int(data.get("dense_stride") or 2),
            resize_short=int(data.get("scale_size") or default_resize(crop)),
            crop_size=crop,
            mean=tuple(spec("mean", IMAGENET_MEAN)),
            std=tuple(spec("std", IMAGENET_STD)),
            value_range=float(spec("value_range", 1.0)),
            bgr=bool(spec("bgr", False)),
        )

    @classmethod
    def for_model(cls, model: Any) -> Preprocessing:
        """For a model without a config: its ``num_frames`` and ``input_spec``, short side
        :func:`default_resize` of the crop, ``tsn`` sampling."""
        return cls.from_config({"model": {"num_frames": int(model.num_frames)}}, model.input_spec)

    @classmethod
    def of_checkpoint(cls, payload: Mapping[str, Any]) -> Preprocessing:
        """The preprocessing of a checkpoint payload: its ``"preprocessing"`` entry, else (a checkpoint
        written before it existed) :meth:`from_config` of its stored ``config`` and ``input_spec``, with
        the frame count of its ``build_config`` when the config does not give one."""
        stored = payload.get(PREPROCESSING_KEY)
        if stored:
            return cls.from_dict(stored)
        config = dict(payload.get("config") or {})
        model = dict(config.get("model") or {})
        if not model.get("num_frames"):
            model["num_frames"] = (payload.get("build_config") or {}).get("num_frames") or 8
        config["model"] = model
        return cls.from_config(config, payload.get("input_spec") or {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"preprocessing: unknown keys {unknown} (known: {', '.join(sorted(known))})")
        return cls(**dict(d))

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for mean/std): JSON- and ``torch.load(weights_only=True)``-safe."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_frames(self, num_frames: int | None) -> Preprocessing:
        """The same preprocessing with ``num_frames`` frames (None: unchanged)."""
        return self if num_frames in (None, self.num_frames) else replace(self, num_frames=int(num_frames))

    def with_crop(self, crop_size: int | None) -> Preprocessing:
        """The same preprocessing at another crop side, the short side scaled by the same ratio
        (``int(resize_short * crop_size / self.crop_size)``; None: unchanged)."""
        if crop_size in (None, self.crop_size):
            return self
        return replace(self, crop_size=int(crop_size),
                       resize_short=int(self.resize_short * int(crop_size) / self.crop_size))

    # ------------------------------------------------------------------------------------- use

    def sampler(self, num_clips: int = 1) -> FrameSampler:
        """The evaluation :class:`~adafuse.data.sampling.FrameSampler` (``num_clips`` temporal views)."""
        return FrameSampler(self.num_frames, self.sampling, False, num_clips, self.dense_stride)  # type: ignore[arg-type]

    def indices(self, n: int) -> np.ndarray:
        """The 0-based frames of an ``n``-frame video that make the clip, ``(T,)`` int64."""
        return self.sampler()(n)[0]

    def transform(self, three_crop: bool = False) -> Compose:
        """Resize short side -> centre crop (or three crops) -> normalise, as a clip transform
        (:func:`adafuse.data.transforms.eval_transform`)."""
        return eval_transform(self.crop_size, self.resize_short, three_crop=three_crop, normalize=self)

    @cached_property
    def _transform(self) -> Compose:
        return self.transform()

    def __call__(self, frames: ClipLike) -> torch.Tensor:
        """Decoded frames (uint8 ``(T, H, W, 3)`` RGB, or a list of PIL images) -> float32
        ``(T, 3, crop_size, crop_size)``, the network input of one clip."""
        return self._transform(frames)

    def crop_frames(self, frames: ClipLike) -> np.ndarray:
        """The pixels the network sees, before normalisation: uint8 ``(T, crop_size, crop_size, 3)`` RGB (the
        same resize and crop as :meth:`__call__`)."""
        geometry = Compose([ResizeShort(self.resize_short), CenterCrop(self.crop_size)])
        return geometry(frames).permute(0, 2, 3, 1).contiguous().numpy()


def _get(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return lambda key, default: obj[key] if obj.get(key) is not None else default
    return lambda key, default: v if (v := getattr(obj, key, None)) is not None else default
