"""Synthetic run directories (the engine -> analysis contract of docs/ARCHITECTURE.md), made on the fly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASS_NAMES = [
    "Pushing something from left to right",
    "Pushing something from right to left",
    "Moving something up",
    "Moving something down",
    "Tearing something into two pieces",
    "Doing other things",
]


def _frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A frame with a moving red square on a graded background (so thumbnails differ visibly)."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 1] = np.linspace(40, 200, w, dtype=np.uint8)[None, :]
    img[..., 2] = 90
    x = (4 * i) % (w - 12)
    img[18:30, x:x + 12] = (230, 30, 30)
    return img


def make_frame_folder(folder: Path, num_frames: int = 12) -> Path:
    """``folder/00001.jpg ...`` (1-based, the default template)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(_frame(i)).save(folder / f"{i + 1:05d}.jpg", quality=90)
    return folder


def make_mp4(path: Path, num_frames: int = 12) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_run(
    run_dir: Path,
    predictions: list[dict],
    metrics: dict,
    config: dict | None = None,
) -> Path:
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    with (run_dir / "eval" / "predictions.jsonl").open("w") as fh:
        for p in predictions:
            fh.write(json.dumps(p) + "\n")
    (run_dir / "eval" / "metrics.json").write_text(json.dumps(metrics))
    if config is not None:
        import yaml

        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "loss": 1.0}) + "\n")
    return run_dir


def synthetic_run(
    run_dir: Path,
    sources: list[str],
    adaptive: bool = True,
    num_videos: int = 24,
    num_blocks: int = 16,
    frames: int = 8,
    seed: int = 0,
    arch: str = "adafuse_tsn_r50",
    params: int = 37_687_000,
    dense_per_frame: float = 4.11,
    class_names: list[str] = CLASS_NAMES,
    block_channels: bool = True,
) -> Path:
    """A plausible run: skip falls and reuse rises with depth, first frames cost most, ~60% correct.

    Gated blocks have 64, 128, 256, 512 channels by quarters of the depth (ResNet-50 widths); ``block_channels``
    False leaves their counts out of ``metrics.json`` (as evaluations before the channel-weighted mix did)."""
    rng = np.random.default_rng(seed)
    k = len(class_names)
    preds = []
    depth = np.linspace(0, 1, num_blocks)
    for v in range(num_videos):
        label = v % k
        correct = rng.random() < 0.6
        pred = label if correct else int((label + 1 + rng.integers(k - 1)) % k)
        others = [c for c in range(k) if c != pred]
        top5 = [pred, *rng.permutation(others)[:4].tolist()][: min(5, k)]
        scores = sorted(rng.dirichlet(np.ones(len(top5))).tolist(), reverse=True)
        rec = {
            "id": f"video_{v:03d}", "label": label, "pred": pred, "top5": top5, "scores": scores,
            "correct": label == pred, "source": sources[v % len(sources)],
            "frame_indices": [int(i) for i in np.linspace(0, 11, frames).round()],
        }
        if adaptive:
            skip = np.clip(0.55 - 0.35 * depth + 0.04 * label + rng.normal(0, 0.04, num_blocks), 0.02, 0.9)
            reuse = np.clip(0.12 + 0.25 * depth + rng.normal(0, 0.03, num_blocks), 0.01, 0.9)
            reuse = np.minimum(reuse, 0.98 - skip)
            keep = 1 - skip - reuse
            rec["block_ratios"] = np.stack([skip, reuse, keep], 1).round(6).tolist()
            rec["block_constant"] = np.clip(0.5 - 0.3 * depth + rng.normal(0, 0.03, num_blocks), 0, 1).tolist()
            rel = np.clip(0.55 + 0.05 * label + rng.normal(0, 0.05, frames), 0.3, 1.0)
            rel[0] = min(1.0, rel[0] + 0.25)
            rec["frame_gflops"] = (rel * dense_per_frame).tolist()
            rec["policy"] = True
        else:
            rec["block_ratios"] = []
            rec["block_constant"] = []
            rec["frame_gflops"] = [dense_per_frame] * frames
        rec.pop("policy", None)
        rec["gflops"] = float(sum(rec["frame_gflops"]))
        preds.append(rec)
    top1 = 100.0 * np.mean([p["correct"] for p in preds])
    channels = [64 * 2 ** min(3, 4 * b // num_blocks) for b in range(num_blocks)]
    ratios = None
    if adaptive:  # share of all channel decisions: per-block means weighted by the channel counts
        per_block = np.mean([p["block_ratios"] for p in preds], axis=0)
        ratios = (np.asarray(channels, dtype=float) @ per_block / sum(channels)).tolist()
    metrics = {
        "arch": arch, "run": run_dir.name, "num_videos": num_videos, "top1": top1,
        "top5": 100.0 * np.mean([p["label"] in p["top5"] for p in preds]),
        "gflops_per_video": float(np.mean([p["gflops"] for p in preds])),
        "gflops_static_per_video": dense_per_frame * frames, "params": params, "policy_ratios": ratios,
        "block_ratios": [] if not adaptive else np.mean([p["block_ratios"] for p in preds], axis=0).tolist(),
        "block_names": [f"layer{1 + b // 4}.{b % 4}" for b in range(num_blocks)] if adaptive else [],
        "class_names": class_names, "frames": frames, "input_size": 224,
    }
    if adaptive and block_channels:
        metrics["block_channels"] = channels
    return write_run(run_dir, preds, metrics, config={"model": {"arch": arch}, "data": {"frames": frames}})


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny frame folder and a tiny mp4 (12 frames each, 64x48)."""
    root = tmp_path_factory.mktemp("media")
    return {"folder": make_frame_folder(root / "clip_a"), "mp4": make_mp4(root / "clip_b.mp4"), "root": root}


@pytest.fixture(scope="session", name="synthetic_run")
def synthetic_run_fixture() -> Callable[..., Path]:
    """:func:`synthetic_run` (a fixture, so tests need not import this conftest by name)."""
    return synthetic_run
