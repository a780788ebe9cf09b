""""Synthetic something": a small time-directional video benchmark generated on the fly.

Like Something-Something, most classes come in **time-reversal pairs** (moving left / moving right, ...):
the partner of a forward class is *defined* as a forward clip played backwards (``render_clip`` draws
the forward clip and reverses it), so within a pair the set of frames has exactly the same distribution
and only the order of the frames tells the classes apart. A frame-order-agnostic model (TSN: per-frame
predictions averaged) is at chance within each pair; an order-aware model (TSM, AdaFuse) learns them.
Three static classes (one still object) are decided by appearance alone (square / circle / triangle).

Everything is random per video (background texture, colours, sizes, positions, speeds, timing, 0-2
small distractor shapes drifting in random directions, per-frame pixel noise, 16-48 frames), and every
nuisance factor has a time-symmetric distribution, so the direction of time is only visible in the
class's own motion. Each video is drawn from its own seed ``(seed, class, k)``: the same seed gives
identical frames and lists whatever the number of workers.

Output directory (list formats: :mod:`adafuse.data.lists`, paths relative to the directory)::

    OUT/classes.txt                    one class name per line
    OUT/synth.json                     generator settings, reversal pairs, flip pairs, counts
    OUT/frames/<id>/00001.jpg ...      frame folders (JPEG, 1-based)
    OUT/videos/<id>.mp4                the same videos encoded (H.264, else MPEG-4 part 2), 12 fps
    OUT/train_frames.txt, val_frames.txt   lines "frames/<id> <num_frames> <label>"
    OUT/train_videos.txt, val_videos.txt   lines "videos/<id>.mp4 <num_frames> <label>"
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

GENERATOR_VERSION = 1
FPS = 12
JPEG_QUALITY = 95

# forward member of each reversal pair first; the second is the first played backwards
SYNTH_CLASSES = (
    "move_right",
    "move_left",
    "move_down",
    "move_up",
    "grow",
    "shrink",
    "rotate_clockwise",
    "rotate_counterclockwise",
    "appear",  # fade in
    "disappear",  # fade out
    "approach",  # two objects come together
    "separate",  # two objects move apart
    "static_square",
    "static_circle",
    "static_triangle",
)
REVERSAL_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11))
STATIC_CLASSES = (12, 13, 14)
# a horizontal flip turns these into each other (use with HorizontalFlip(label_swap=...))
SYNTH_FLIP_PAIRS = ((0, 1), (6, 7))

SYNTH_PRESETS: dict[str, dict] = {
    # ~1,200 videos of 16-48 frames at 96 px: the demo's data set
    "default": {"videos_per_class": 80, "size": 96, "frames": (16, 48), "val_per_class": 16},
    # a few seconds: for tests and smoke runs
    "tiny": {"videos_per_class": 4, "size": 64, "frames": (16, 24), "val_per_class": 1},
    "small": {"videos_per_class": 24, "size": 64, "frames": (16, 32), "val_per_class": 6},
}

_BASE_SHAPES = ("square", "circle", "triangle")
_ROTATION_SHAPES = ("bar", "kite", "ell")  # no rotational symmetry below 180 degrees
_DISTRACTOR_SHAPES = ("diamond", "plus", "ring")


# ------------------------------------------------------------------------------------------ drawing


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Approximate signed distance (pixels, < 0 inside) of a shape of radius ``r`` centred at the origin,
    in its own (already rotated) coordinates ``u`` (right), ``v`` (down)."""
    if shape == "circle":
        return np.sqrt(u * u + v * v) - r
    if shape == "square":
        h = r * 0.85
        return np.maximum(np.abs(u), np.abs(v)) - h
    if shape == "diamond":
        return (np.abs(u) + np.abs(v)) / math.sqrt(2) - r * 0.7
    if shape == "triangle":  # equilateral, pointing up, centroid at the origin
        return _polygon_distance(u, v, [(0.0, -r), (0.866 * r, 0.5 * r), (-0.866 * r, 0.5 * r)])
    if shape == "kite":  # long isosceles triangle
        return _polygon_distance(u, v, [(0.0, -1.2 * r), (0.55 * r, 0.8 * r), (-0.55 * r, 0.8 * r)])
    if shape == "bar":
        return np.maximum(np.abs(u) - 0.35 * r, np.abs(v) - 1.15 * r)
    if shape == "ell":
        a = np.maximum(np.abs(u + 0.45 * r) - 0.3 * r, np.abs(v) - 1.0 * r)
        b = np.maximum(np.abs(u) - 0.75 * r, np.abs(v - 0.7 * r) - 0.3 * r)
        return np.minimum(a, b)
    if shape == "plus":
        a = np.maximum(np.abs(u) - 0.25 * r, np.abs(v) - r)
        b = np.maximum(np.abs(u) - r, np.abs(v) - 0.25 * r)
        return np.minimum(a, b)
    if shape == "ring":
        d = np.sqrt(u * u + v * v)
        return np.abs(d - 0.7 * r) - 0.3 * r
    raise ValueError(f"unknown shape {shape!r}")


def _polygon_distance(u: np.ndarray, v: np.ndarray, pts: Sequence[tuple[float, float]]) -> np.ndarray:
    """Max over the edges of the signed distance to each edge line (convex polygon, clockwise on screen)."""
    d = None
    for (x0, y0), (x1, y1) in zip(pts, [*pts[1:], pts[0]], strict=True):
        ex, ey = x1 - x0, y1 - y0
        norm = math.hypot(ex, ey)
        nx, ny = ey / norm, -ex / norm  # outward normal for clockwise-on-screen vertex order
        e = (u - x0) * nx + (v - y0) * ny
        d = e if d is None else np.maximum(d, e)
    return d


def _shape_mask(
    shape: str, cx: float, cy: float, r: float, angle: float, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Anti-aliased coverage ``(H, W)`` in [0, 1]; ``angle`` in radians, clockwise on screen."""
    xs, ys = grid
    dx, dy = xs - cx, ys - cy
    c, s = math.cos(angle), math.sin(angle)
    u = c * dx + s * dy  # rotate the point by -angle (screen y points down)
    v = -s * dx + c * dy
    return np.clip(0.5 - _signed_distance(shape, u, v, r), 0.0, 1.0)


@dataclass
class _Obj:
    """A shape whose state at time ``t`` (0..1 progress) is interpolated between two key states."""

    shape: str
    color: np.ndarray
    x: tuple[float, float]
    y: tuple[float, float]
    r: tuple[float, float]
    angle: tuple[float, float]
    alpha: tuple[float, float] = (1.0, 1.0)

    def at(self, p: float) -> tuple[float, float, float, float, float]:
        def lerp(a):
            return a[0] + (a[1] - a[0]) * p

        return lerp(self.x), lerp(self.y), lerp(self.r), lerp(self.angle), lerp(self.alpha)


def _random_color(rng: np.random.Generator, avoid: np.ndarray, min_dist: float = 110.0) -> np.ndarray:
    """A saturated colour at least ``min_dist`` (RGB Euclidean) away from ``avoid``."""
    for _ in range(100):
        h = rng.random()
        s = rng.uniform(0.55, 1.0)
        val = rng.uniform(0.55, 1.0)
        i = int(h * 6) % 6
        f = h * 6 - int(h * 6)
        p, q, t = val * (1 - s), val * (1 - f * s), val * (1 - (1 - f) * s)
        rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i]
        color = np.array(rgb, dtype=np.float32) * 255
        if np.linalg.norm(color - avoid) >= min_dist:
            return color
    return 255.0 - avoid


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background ``(H, W, 3)`` float32 (smooth blobs + fine grain) and its mean colour."""
    base = rng.uniform(40, 170, size=3).astype(np.float32)
    cells = int(rng.integers(3, 7))
    coarse = rng.normal(0, 30, size=(cells, cells, 3)).astype(np.float32)
    smooth = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
        dtype=np.float32,
    )
    grain = rng.normal(0, rng.uniform(2, 7), size=(size, size, 1)).astype(np.float32)
    bg = base + (smooth - 128) + grain
    return bg, base


def _progress(rng: np.random.Generator, n: int) -> np.ndarray:
    """Motion progress per frame ``(n,)`` rising 0 -> 1 over a window covering >= 50% of the clip, with
    still parts before/after (independent slack on each side, so reversing gives the same family)."""
    t = np.arange(n, dtype=np.float64)
    start = rng.uniform(0.0, 0.25) * (n - 1)
    end = (n - 1) - rng.uniform(0.0, 0.25) * (n - 1)
    p = np.clip((t - start) / max(end - start, 1e-6), 0.0, 1.0)
    if rng.random() < 0.5:
        p = p * p * (3 - 2 * p)  # smoothstep: symmetric under time reversal too
    return p


def _forward_objects(kind: str, rng: np.random.Generator, size: int, avoid: np.ndarray) -> list[_Obj]:
    """Main object(s) of a forward clip of kind ``kind`` (start state -> end state)."""
    S = float(size)
    ang = rng.uniform(0, 2 * math.pi)
    if kind in ("move_right", "move_down"):
        r = rng.uniform(0.13, 0.19) * S
        m = r * 1.05 + 1
        dist = rng.uniform(0.32, 0.52) * S
        a0 = rng.uniform(m, S - m - dist)
        b = rng.uniform(m, S - m)
        drift = rng.uniform(-0.05, 0.05) * S
        b1 = float(np.clip(b + drift, m, S - m))
        main = (a0, a0 + dist)
        xy = (main, (b, b1)) if kind == "move_right" else ((b, b1), main)
        shape = _BASE_SHAPES[int(rng.integers(3))]
        return [_Obj(shape, _random_color(rng, avoid), xy[0], xy[1], (r, r), (ang, ang))]
    if kind == "grow":
        r1 = rng.uniform(0.18, 0.24) * S
        r0 = r1 * rng.uniform(0.35, 0.55)
        m = r1 * 1.05 + 1
        x, y = rng.uniform(m, S - m, size=2)
        shape = _BASE_SHAPES[int(rng.integers(3))]
        return [_Obj(shape, _random_color(rng, avoid), (x, x), (y, y), (r0, r1), (ang, ang))]
    if kind == "rotate_clockwise":
        r = rng.uniform(0.15, 0.20) * S
        m = 1.25 * r + 1
        x, y = rng.uniform(m, S - m, size=2)
        turn = math.radians(rng.uniform(70, 150))
        shape = _ROTATION_SHAPES[int(rng.integers(3))]
        return [_Obj(shape, _random_color(rng, avoid), (x, x), (y, y), (r, r), (ang, ang + turn))]
    if kind == "appear":
        r = rng.uniform(0.13, 0.20) * S
        m = r * 1.05 + 1
        x, y = rng.uniform(m, S - m, size=2)
        shape = _BASE_SHAPES[int(rng.integers(3))]
        return [_Obj(shape, _random_color(rng, avoid), (x, x), (y, y), (r, r), (ang, ang), (0.0, 1.0))]
    if kind == "approach":
        r1, r2 = rng.uniform(0.10, 0.14, size=2) * S
        m = max(r1, r2) * 1.05 + 1
        for _ in range(200):
            theta = rng.uniform(0, 2 * math.pi)
            far = rng.uniform(0.55, 0.78) * S
            near = (r1 + r2) * rng.uniform(0.9, 1.15)
            cx, cy = rng.uniform(m, S - m, size=2)
            ux, uy = math.cos(theta), math.sin(theta)
            ends = [(cx - ux * far / 2, cy - uy * far / 2), (cx + ux * far / 2, cy + uy * far / 2)]
            if all(m <= px <= S - m and m <= py <= S - m for px, py in ends):
                break
        near_ends = [(cx - ux * near / 2, cy - uy * near / 2), (cx + ux * near / 2, cy + uy * near / 2)]
        objs = []
        for (fx, fy), (nx, ny), r in zip(ends, near_ends, (r1, r2), strict=True):
            shape = _BASE_SHAPES[int(rng.integers(3))]
            a = rng.uniform(0, 2 * math.pi)
            objs.append(_Obj(shape, _random_color(rng, avoid), (fx, nx), (fy, ny), (r, r), (a, a)))
        return objs
    if kind.startswith("static_"):
        r = rng.uniform(0.13, 0.20) * S
        m = r * 1.05 + 1
        x, y = rng.uniform(m, S - m, size=2)
        shape = kind[len("static_") :]
        return [_Obj(shape, _random_color(rng, avoid), (x, x), (y, y), (r, r), (ang, ang))]
    raise ValueError(f"unknown clip kind {kind!r}")


def _distractors(rng: np.random.Generator, size: int, avoid: np.ndarray) -> list[_Obj]:
    """0-2 small shapes, each still or drifting along a random direction (time-symmetric distribution)."""
    S = float(size)
    objs = []
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.045, 0.07) * S
        m = r + 1
        x0, y0 = rng.uniform(m, S - m, size=2)
        x1, y1 = x0, y0
        if rng.random() < 0.6:
            for _ in range(50):  # symmetric displacement, both ends inside the frame
                dx, dy = rng.uniform(-0.15, 0.15, size=2) * S
                if m <= x0 + dx <= S - m and m <= y0 + dy <= S - m:
                    x1, y1 = x0 + dx, y0 + dy
                    break
        shape = _DISTRACTOR_SHAPES[int(rng.integers(3))]
        a = rng.uniform(0, 2 * math.pi)
        objs.append(_Obj(shape, _random_color(rng, avoid, 80.0), (x0, x1), (y0, y1), (r, r), (a, a)))
    return objs


def _forward_kind(class_name: str) -> tuple[str, bool]:
    """``(forward kind, reversed?)`` for a class name."""
    for a, b in REVERSAL_PAIRS:
        if class_name == SYNTH_CLASSES[b]:
            return SYNTH_CLASSES[a], True
    if class_name not in SYNTH_CLASSES:
        raise ValueError(f"unknown synthetic class {class_name!r}; classes: {SYNTH_CLASSES}")
    return class_name, False


def render_clip(class_name: str, seed: int | Sequence[int] | np.random.Generator, size: int = 96,
                num_frames: int = 32) -> np.ndarray:
    """Draw one clip of ``class_name`` -> uint8 ``(num_frames, size, size, 3)`` RGB.

    The second class of each reversal pair is the first class's clip for the same seed, reversed:
    ``render_clip("move_left", s) == render_clip("move_right", s)[::-1]``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    kind, backwards = _forward_kind(class_name)
    n = int(num_frames)
    bg, base = _background(rng, size)
    distractors = _distractors(rng, size, base)
    mains = _forward_objects(kind, rng, size, base)
    static = kind.startswith("static_")
    progress = np.zeros(n) if static else _progress(rng, n)
    drift_progress = np.linspace(0.0, 1.0, n)
    noise_sigma = rng.uniform(2.0, 6.0)
    noise_scale = noise_sigma * math.sqrt(12.0) / 256.0
    gain = rng.uniform(0.85, 1.15)  # global contrast, applied to background and colours (compositing is linear)
    bg = (bg - 128) * gain + 128
    for obj in (*distractors, *mains):
        obj.color = (obj.color - 128) * gain + 128
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for t in range(n):
        frame = bg.copy()
        layers = [(o, drift_progress[t]) for o in distractors] + [(o, progress[t]) for o in mains]
        for obj, p in layers:
            x, y, r, a, alpha = obj.at(float(p))
            if alpha <= 0:
                continue
            # only the object's bounding box (shapes fit in a circle of 1.3 r) is touched
            reach = 1.3 * r + 2
            y0, y1 = max(0, int(y - reach)), min(size, int(y + reach) + 1)
            x0, x1 = max(0, int(x - reach)), min(size, int(x + reach) + 1)
            box = (xs[y0:y1, x0:x1], ys[y0:y1, x0:x1])
            cover = _shape_mask(obj.shape, x, y, r, a, box)[..., None] * alpha
            patch = frame[y0:y1, x0:x1]
            patch += cover * (obj.color - patch)
        # uniform pixel noise with standard deviation noise_sigma (random bytes: ~10x faster than normal)
        grain = np.frombuffer(rng.bytes(frame.size), dtype=np.uint8).reshape(frame.shape)
        frame += (grain.astype(np.float32) - 127.5) * noise_scale
        np.clip(frame + 0.5, 0, 255, out=frame)
        out[t] = frame
    return out[::-1].copy() if backwards else out


# ------------------------------------------------------------------------------------------ writing


def _video_codec() -> str:
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise RuntimeError("PyAV has neither an H.264 (libx264) nor an MPEG-4 encoder")


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: int = FPS, codec: str | None = None) -> None:
    """Encode uint8 ``(T, H, W, 3)`` RGB frames (even H, W) to an mp4 file (H.264 at constant QP 18,
    yuv420p, one thread, ``faststart``; deterministic: the same frames give the same decoded pixels)."""
    import av

    codec = codec or _video_codec()
    tmp = f"{os.fspath(path)}.tmp.mp4"
    with av.open(tmp, "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            # constant QP: x264's CRF rate control gave run-to-run differences here; QP is bit-exact
            stream.options = {"qp": "18", "preset": "veryfast", "threads": "1"}
        else:
            stream.codec_context.bit_rate = 4_000_000
            stream.options = {"qscale": "2"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def _write_video(job: tuple) -> tuple[int, int, int, str]:
    """Worker: render, write the frame folder (and the mp4 unless ``codec`` is None) of one video -> (class, k,
    frames, id)."""
    out_dir, seed, label, k, size, frames_range, codec = job
    class_name = SYNTH_CLASSES[label]
    rng = np.random.default_rng([seed, label, k])
    n = int(rng.integers(frames_range[0], frames_range[1] + 1))
    clip = render_clip(class_name, rng, size, n)
    vid = f"{class_name}_{k:04d}"
    folder = Path(out_dir, "frames", vid)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for t, frame in enumerate(clip):
        Image.fromarray(frame).save(folder / f"{t + 1:05d}.jpg", quality=JPEG_QUALITY)
    if codec is not None:
        write_mp4(clip, Path(out_dir, "videos", f"{vid}.mp4"), FPS, codec)
    return label, k, n, vid


@dataclass
class SynthDataset:
    """Paths and counts of a generated synthetic set (all paths absolute)."""

    root: str
    classes: str
    train_frames: str
    val_frames: str
    train_videos: str | None  # None when generated with videos=False (frame folders only)
    val_videos: str | None
    num_classes: int
    num_train: int
    num_val: int
    seconds: float
    reused: bool = False


def _settings(videos_per_class, size, frames, seed, val_per_class, videos=True) -> dict:
    return {
        "videos": videos,
        "version": GENERATOR_VERSION,
        "videos_per_class": videos_per_class,
        "size": size,
        "frames": list(frames),
        "seed": seed,
        "val_per_class": val_per_class,
        "fps": FPS,
    }


def generate_synthetic(
    out_dir: str | os.PathLike,
    videos_per_class: int = 80,
    size: int = 96,
    frames: tuple[int, int] | int = (16, 48),
    seed: int = 0,
    val_per_class: int | None = None,
    val_fraction: float = 0.2,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    videos: bool = True,
) -> SynthDataset:
    """Generate the synthetic benchmark into ``out_dir`` (layout in the module docstring).

    ``videos_per_class`` videos per class (``len(SYNTH_CLASSES)`` = 15 classes) of ``size x size`` pixels
    (even) and a frame count drawn in ``frames`` (inclusive range, or one int). The first
    ``val_per_class`` videos of each class (default ``round(val_fraction * videos_per_class)``, at least
    1) form the validation split. ``workers`` processes (default: all cores). ``videos=False`` writes the
    frame folders only (no mp4 files and video lists: 40% faster). If ``out_dir`` already holds a complete set
    made with the same settings it is reused (``overwrite=True`` regenerates).
    """
    t0 = time.perf_counter()
    if size % 2:
        raise ValueError(f"size must be even (yuv420p video), got {size}")
    lo, hi = (frames, frames) if isinstance(frames, int) else (int(frames[0]), int(frames[1]))
    if not 1 <= lo <= hi:
        raise ValueError(f"bad frame range {frames}")
    if val_per_class is None:
        val_per_class = max(1, round(val_fraction * videos_per_class))
    if not 0 <= val_per_class < videos_per_class:
        raise ValueError(f"val_per_class={val_per_class} must be in [0, videos_per_class={videos_per_class})")
    out = Path(out_dir).absolute()
    settings = _settings(videos_per_class, size, [lo, hi], seed, val_per_class, videos)
    kinds = ("frames", "videos") if videos else ("frames",)
    names = {f"{split}_{kind}": str(out / f"{split}_{kind}.txt") for kind in kinds for split in ("train", "val")}
    meta_path = out / "synth.json"
    num_classes = len(SYNTH_CLASSES)
    result = SynthDataset(
        root=str(out),
        classes=str(out / "classes.txt"),
        num_classes=num_classes,
        num_train=num_classes * (videos_per_class - val_per_class),
        num_val=num_classes * val_per_class,
        seconds=0.0,
        **{"train_videos": None, "val_videos": None, **names},
    )
    if not overwrite and meta_path.is_file():
        try:
            previous = json.loads(meta_path.read_text())
        except ValueError:
            previous = {}
        if previous.get("settings") == settings and _complete(out, names.values()):
            result.reused = True
            result.seconds = time.perf_counter() - t0
            return result

    for sub in kinds:
        (out / sub).mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    codec = _video_codec() if videos else None
    jobs = [
        (str(out), seed, label, k, size, (lo, hi), codec)
        for label in range(num_classes)
        for k in range(videos_per_class)
    ]
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    results = _run_jobs(jobs, workers, progress)

    results.sort(key=lambda x: (x[0], x[1]))
    lines: dict[str, list[str]] = {k: [] for k in names}
    for label, k, n, vid in results:
        split = "val" if k < val_per_class else "train"
        lines[f"{split}_frames"].append(f"frames/{vid} {n} {label}")
        if videos:
            lines[f"{split}_videos"].append(f"videos/{vid}.mp4 {n} {label}")
    for key, path in names.items():
        Path(path).write_text("".join(f"{x}\n" for x in lines[key]))
    Path(result.classes).write_text("".join(f"{c}\n" for c in SYNTH_CLASSES))
    meta = {
        "settings": settings,
        "classes": list(SYNTH_CLASSES),
        "reversal_pairs": [list(p) for p in REVERSAL_PAIRS],
        "static_classes": list(STATIC_CLASSES),
        "flip_pairs": [list(p) for p in SYNTH_FLIP_PAIRS],
        "codec": codec,
        "num_train": result.num_train,
        "num_val": result.num_val,
        "lists": {k: os.path.basename(v) for k, v in names.items()},
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    result.seconds = time.perf_counter() - t0
    return result


def _complete(out: Path, list_files) -> bool:
    """Every list exists and every video it names is on disk (a cheap check: no decoding)."""
    for lst in list_files:
        if not os.path.isfile(lst):
            return False
        with open(lst) as f:
            for line in f:
                if line.strip() and not (out / line.split()[0]).exists():
                    return False
    return True


def _run_jobs(jobs: list[tuple], workers: int, progress: bool) -> list[tuple[int, int, int, str]]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="synth videos", unit="video", disable=not progress)
    results = []
    try:
        if workers <= 1:
            for job in jobs:
                results.append(_write_video(job))
                bar.update()
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ctx.Pool(workers) as pool:
                for r in pool.imap_unordered(_write_video, jobs, chunksize=4):
                    results.append(r)
                    bar.update()
    finally:
        bar.close()
    return results


def synth_settings(preset: str = "default") -> dict:
    """A copy of one of :data:`SYNTH_PRESETS` (keyword arguments of :func:`generate_synthetic`)."""
    if preset not in SYNTH_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(SYNTH_PRESETS)}")
    return dict(SYNTH_PRESETS[preset])


__all__ = [
    "SYNTH_CLASSES",
    "REVERSAL_PAIRS",
    "STATIC_CLASSES",
    "SYNTH_FLIP_PAIRS",
    "SYNTH_PRESETS",
    "SynthDataset",
    "generate_synthetic",
    "render_clip",
    "synth_settings",
    "write_mp4",
]
