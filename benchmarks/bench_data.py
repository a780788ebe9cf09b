"""Data-path throughput: decode + sample + transform, in clips/s, through the real DataLoader.

Sources are generated in a temporary directory: 320x240 videos (as JPEG frame folders and as H.264 mp4)
read with 224x224 training crops, and the 96x96 synthetic benchmark read with 96x96 crops; T=8 frames
per clip, TSN training sampling, 1 and 2 DataLoader workers. Also reports the single-process cost of
decoding and of transforming one clip. Writes JSON (default ``benchmarks/results/data.json``).

    python benchmarks/bench_data.py [--videos 24] [--epochs 3] [--out benchmarks/results/data.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adafuse.data import (
    EpochSampler,
    VideoDataset,
    build_loader,
    generate_synthetic,
    read_frame_folder,
    read_video_frames,
    render_clip,
    train_transform,
    tsn_train_indices,
)
from adafuse.data.lists import VideoRecord, write_list
from adafuse.data.synthetic import write_mp4

T = 8


def make_320x240(root: Path, videos: int, frames: int) -> tuple[Path, Path]:
    """``videos`` clips of ``frames`` frames at 320x240 (rendered synthetic scenes) as folders and mp4."""
    recs_f, recs_v = [], []
    for k in range(videos):
        clip = render_clip("move_right", [7, k], size=320, num_frames=frames)[:, 40:280]  # (T, 240, 320, 3)
        folder = root / "frames" / f"v{k:03d}"
        folder.mkdir(parents=True)
        for t, f in enumerate(clip):
            Image.fromarray(f).save(folder / f"{t + 1:05d}.jpg", quality=90)
        (root / "videos").mkdir(exist_ok=True)
        write_mp4(clip, root / "videos" / f"v{k:03d}.mp4", fps=30)
        recs_f.append(VideoRecord(f"frames/v{k:03d}", k % 5, frames))
        recs_v.append(VideoRecord(f"videos/v{k:03d}.mp4", k % 5, frames))
    return write_list(recs_f, root / "frames.txt"), write_list(recs_v, root / "videos.txt")


def loader_throughput(list_file: Path, size: int, workers: int, epochs: int, batch_size: int = 8) -> float:
    """Clips/s over ``epochs`` passes through the list (the first batch, worker start-up, excluded)."""
    ds = VideoDataset(list_file, num_frames=T, train=True, transform=train_transform(size))
    sampler = EpochSampler(len(ds), True, seed=0)
    loader = build_loader(ds, sampler, batch_size, workers, 0)
    clips, start = 0, None
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            clips += batch["video"].shape[0]
    elapsed = time.perf_counter() - start
    del loader
    return clips / elapsed


def single_process_costs(list_file: Path, root: Path, size: int, repeats: int = 20) -> dict[str, float]:
    """Milliseconds per clip for decoding (T frames) and for the training transform, one thread."""
    from adafuse.data.lists import read_list

    torch.set_num_threads(1)
    recs = read_list(list_file)
    rng = np.random.default_rng(0)
    tf = train_transform(size)
    decode_s, tf_s = [], []
    for i in range(-3, repeats):  # 3 warm-up rounds
        rec = recs[i % len(recs)]
        idx = tsn_train_indices(rec.num_frames, T, rng)
        t0 = time.perf_counter()
        path = rec.resolve(root)
        clip = read_video_frames(path, idx) if rec.is_video else read_frame_folder(path, idx)
        t1 = time.perf_counter()
        tf(clip, rng=rng)
        t2 = time.perf_counter()
        if i >= 0:
            decode_s.append(t1 - t0)
            tf_s.append(t2 - t1)
    return {"decode_ms": 1000 * float(np.median(decode_s)), "transform_ms": 1000 * float(np.median(tf_s))}


def seek_costs(root: Path, frames: int = 300, keyint: int = 30, repeats: int = 10) -> dict[str, float]:
    """Decode milliseconds per T-frame TSN clip from a long 320x240 mp4 with a keyframe every ``keyint``
    frames, decoding from the start (``seek="never"``) vs jumping to keyframes (``seek="auto"``)."""
    import av

    clip = render_clip("rotate_clockwise", [9, 0], size=320, num_frames=frames)[:, 40:280]
    path = root / "long.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width = clip.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "18", "preset": "veryfast", "threads": "1", "g": str(keyint)}
        for f in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    rng = np.random.default_rng(0)
    out = {}
    for mode in ("never", "auto"):
        times = []
        for i in range(-2, repeats):
            idx = tsn_train_indices(frames, T, rng)
            t0 = time.perf_counter()
            read_video_frames(path, idx, seek=mode)
            if i >= 0:
                times.append(time.perf_counter() - t0)
        out[f"decode_ms_seek_{mode}"] = 1000 * float(np.median(times))
    return {"source": f"mp4 320x240, {frames} frames, keyframe every {keyint}", **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24, help="320x240 videos to generate")
    parser.add_argument("--frames", type=int, default=90, help="frames per 320x240 video (30 fps)")
    parser.add_argument("--epochs", type=int, default=3, help="passes through each list per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader worker counts")
    parser.add_argument("--out", default="benchmarks/results/data.json", help="JSON output")
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        frames_list, videos_list = make_320x240(tmp / "hd", args.videos, args.frames)
        synth = generate_synthetic(tmp / "synth", videos_per_class=4, size=96, frames=(16, 48), val_per_class=1,
                                   progress=False)
        print(f"generated sources in {time.perf_counter() - t0:.1f} s")
        sources = [
            ("frames 320x240 -> 224", frames_list, tmp / "hd", 224),
            ("mp4 320x240 -> 224", videos_list, tmp / "hd", 224),
            ("frames synth 96 -> 96", Path(synth.train_frames), Path(synth.root), 96),
            ("mp4 synth 96 -> 96", Path(synth.train_videos), Path(synth.root), 96),
        ]
        for name, lst, root, size in sources:
            costs = single_process_costs(lst, root, size)
            row = {"source": name, "crop": size, "frames_per_clip": T, **costs}
            for w in args.workers:
                row[f"clips_per_s_{w}w"] = loader_throughput(lst, size, w, args.epochs)
            rows.append(row)
            print(row, flush=True)
        seek = seek_costs(tmp)
        print(seek, flush=True)

    header = f"{'source':<24}{'decode ms/clip':>16}{'transform ms/clip':>19}" + "".join(
        f"{f'clips/s {w} worker' + ('s' if w > 1 else ''):>20}" for w in args.workers)
    print("\n" + header)
    for r in rows:
        print(f"{r['source']:<24}{r['decode_ms']:>16.1f}{r['transform_ms']:>19.1f}"
              + "".join(f"{r[f'clips_per_s_{w}w']:>20.1f}" for w in args.workers))
    print(f"\n{seek['source']}: decode {seek['decode_ms_seek_never']:.1f} ms/clip from the start, "
          f"{seek['decode_ms_seek_auto']:.1f} ms/clip seeking to keyframes")
    result = {
        "benchmark": "data",
        "frames_per_clip": T,
        "sampling": "tsn train",
        "transform": "train_transform (multi-scale crop, imagenet normalisation)",
        "batch_size": 8,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),  # other processes on the machine skew the numbers
        "platform": platform.platform(),
        "torch": torch.__version__,
        "rows": rows,
        "seek": seek,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
