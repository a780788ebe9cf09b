#!/usr/bin/env python3
"""Classify a video with an ONNX model written by ``adafuse export``, using only onnxruntime, NumPy and PyAV.

    python examples/onnx_predict.py model.onnx video.mp4 [--topk 5]

Everything the model needs comes from its metadata (``metadata_props``): ``preprocessing`` (JSON: frame count
and sampling rule, short side, crop, mean/std, value range, channel order) and ``class_names`` (JSON list).
The steps are those of ``adafuse predict --dense``:

1. frame count: the count the container declares (else its duration x frame rate);
2. frames: ``tsn`` -- segment centres ``floor(n * (2i + 1) / (2T))``; ``dense`` -- ``T`` frames ``dense_stride``
   apart, centred; a video shorter than the clip repeats its last frame;
3. each frame: resize so the short side is ``resize_short`` (bilinear with antialiasing, in the same
   fixed-point arithmetic as PyTorch's uint8 resize), centre crop ``crop_size``;
4. ``(pixel / 255 * value_range - mean) / std`` per channel (BGR first when ``bgr``), float32;
5. ``logits = model(clip[None])``; softmax for the probabilities.

Nothing here imports torch or adafuse: copy this file next to the ``.onnx`` file to deploy it.
"""

from __future__ import annotations

import argparse
import json
import sys

import av
import numpy as np
import onnxruntime as ort


def read_metadata(session: ort.InferenceSession) -> tuple[dict, list[str] | None]:
    """``(preprocessing dict, class names or None)`` from the model's metadata."""
    props = session.get_modelmeta().custom_metadata_map
    if "preprocessing" not in props:
        raise ValueError("the model has no 'preprocessing' metadata; export it with a current `adafuse export`")
    names = json.loads(props["class_names"]) if "class_names" in props else None
    return json.loads(props["preprocessing"]), names


def frame_count(container: av.container.InputContainer) -> int:
    """The frame count the container declares, else its duration x average frame rate (rounded)."""
    stream = container.streams.video[0]
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    else:
        duration = None
    if duration is None or not rate:
        raise ValueError("the video declares neither a frame count nor a duration and frame rate")
    return int(round(duration * float(rate)))


def sample_indices(n: int, pre: dict) -> np.ndarray:
    """The 0-based frames of an ``n``-frame video that make the clip, ``(T,)``."""
    t = int(pre["num_frames"])
    if pre["sampling"] == "tsn":
        if n < t:
            return np.minimum(np.arange(t), n - 1)
        return (n * (2 * np.arange(t) + 1)) // (2 * t)
    stride = int(pre["dense_stride"])
    free = max(0, n - ((t - 1) * stride + 1))
    return np.minimum(free // 2 + stride * np.arange(t), n - 1)


def decode(path: str, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` of the video, uint8 ``(T, H, W, 3)`` RGB (decoded from the start, in order)."""
    wanted = set(int(i) for i in indices)
    found: dict[int, np.ndarray] = {}
    with av.open(path) as container:
        n = frame_count(container)
        if max(wanted) >= n:
            raise ValueError(f"{path}: frame {max(wanted)} requested, the video has {n}")
        for pos, frame in enumerate(container.decode(video=0)):
            if pos in wanted:
                found[pos] = frame.to_ndarray(format="rgb24")
            if len(found) == len(wanted):
                break
    if len(found) < len(wanted):
        raise ValueError(f"{path}: only {len(found)} of the {len(wanted)} frames could be decoded")
    return np.stack([found[int(i)] for i in indices])


def _aa_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Antialiased bilinear weights of one axis: ``(first input index (out,), int weights (out, k),
    precision bits)`` -- the triangle filter widened by the downscale factor, weights normalised to sum 1, then
    rounded to fixed point with as many bits as int16 allows for the largest weight."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    k = int(np.ceil(support)) * 2 + 1
    starts = np.zeros(out_size, dtype=np.int64)
    weights = np.zeros((out_size, k), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        x = (np.arange(lo, hi) - center + 0.5) * inv
        w = np.clip(1.0 - np.abs(x), 0.0, None)
        total = w.sum()
        starts[i] = lo
        weights[i, : hi - lo] = w / total if total != 0 else w
    precision = 0
    w_max = weights.max()
    while precision < 22 and int(0.5 + w_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = weights * (1 << precision)
    ints = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int64)
    return starts, ints, precision


def _resample(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """Resample uint8 ``img`` along ``axis`` (0: rows, 1: columns) to ``out_size``; rounded to uint8."""
    in_size = img.shape[axis]
    if in_size == out_size:
        return img
    starts, w, precision = _aa_weights(in_size, out_size)
    src = np.moveaxis(img, axis, 0).astype(np.int64)
    padded = np.concatenate([src, np.zeros((w.shape[1], *src.shape[1:]), dtype=np.int64)])
    acc = np.full((out_size, *src.shape[1:]), 1 << (precision - 1), dtype=np.int64)
    for j in range(w.shape[1]):
        acc += w[:, j].reshape(-1, *([1] * (src.ndim - 1))) * padded[starts + j]
    out = np.clip(acc >> precision, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def resize_short(frame: np.ndarray, short: int) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 so the short side is ``short`` (long side ``int(short * long / short_in)``);
    columns first, then rows."""
    h, w = frame.shape[:2]
    oh, ow = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    return _resample(_resample(frame, ow, 1), oh, 0)


def center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if size > h or size > w:
        raise ValueError(f"crop {size} is larger than the resized frame {h}x{w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return frame[top : top + size, left : left + size]


def preprocess(frames: np.ndarray, pre: dict) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` RGB -> float32 ``(T, 3, S, S)``, the network input of one clip."""
    crops = np.stack([center_crop(resize_short(f, int(pre["resize_short"])), int(pre["crop_size"])) for f in frames])
    x = crops.transpose(0, 3, 1, 2)
    if pre["bgr"]:
        x = x[:, ::-1]
    scale = float(pre["value_range"]) / 255.0
    a = np.array([scale / s for s in pre["std"]], dtype=np.float32).reshape(3, 1, 1)
    b = np.array([m / s for m, s in zip(pre["mean"], pre["std"], strict=True)], dtype=np.float32).reshape(3, 1, 1)
    return x.astype(np.float32) * a - b


def predict(model_path: str, video_path: str, topk: int = 5) -> dict:
    """Run the exported model on a video: ``{"frame_indices", "logits", "top": [(class, name, prob)]}``."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    pre, names = read_metadata(session)
    with av.open(video_path) as container:
        n = frame_count(container)
    indices = sample_indices(n, pre)
    clip = preprocess(decode(video_path, indices), pre)
    logits = session.run(None, {session.get_inputs()[0].name: clip[None]})[0][0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")[:topk]
    top = [(int(c), names[c] if names and c < len(names) else f"class {c}", float(probs[c])) for c in order]
    return {"frame_indices": [int(i) for i in indices], "logits": logits.tolist(), "top": top}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="classify a video with an ONNX model from `adafuse export`")
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("video", help="a video file (anything PyAV/FFmpeg decodes)")
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        result = predict(args.model, args.video, args.topk)
    except (ValueError, OSError, av.error.FFmpegError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.video}: frames {result['frame_indices']}")
    for rank, (c, name, p) in enumerate(result["top"], start=1):
        print(f"  {rank}. {p:.4f}  {name}  [{c}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
