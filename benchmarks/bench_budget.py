"""Sparse-executor latency at compute budgets: one model, several operating points.

    python benchmarks/bench_budget.py [--checkpoint CKPT | --model adafuse_tsn_r18] [--size 112] [--frames 8]
                                      [--budgets 1.0 0.8 0.6 0.4] [--threads 1] [--out FILE.json]

Without a checkpoint the model has random weights with randomized BatchNorm statistics and policies whose
decisions vary with the input (an untrained policy is nearly uniform), so the numbers show how latency follows
the budget, not a trained model's accuracy. Calibration and timing clips are synthetic benchmark clips
(``adafuse.data.synthetic.render_clip``). Per budget: the calibrated shift, the fraction spent on the timing
clips (counted by the executor), and the median ms per clip over interleaved rounds (every budget timed in
each round). Machine-dependent: report with the CPU and thread count.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from adafuse.data.synthetic import SYNTH_CLASSES, render_clip
from adafuse.flops import static_cost
from adafuse.inference import StreamingRecognizer
from adafuse.inference.budget import calibrate, set_budget_shift
from adafuse.models import build_model, fusion_modules


def clips(n: int, frames: int, size: int, seed: int) -> torch.Tensor:
    out = [render_clip(SYNTH_CLASSES[(seed + i) % len(SYNTH_CLASSES)], seed * 1000 + i, size=size, num_frames=frames)
           for i in range(n)]
    x = torch.from_numpy(np.stack(out)).float().permute(0, 1, 4, 2, 3) / 255
    return (x - 0.45) / 0.225


def randomize(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
    for f in fusion_modules(model):
        p = f.policy
        p.fc0.weight.data.copy_(torch.randn(p.fc0.weight.shape, generator=gen) / p.fc0.weight.shape[1] ** 0.5)
        p.fc1.weight.data.copy_(torch.randn(p.fc1.weight.shape, generator=gen) * 2.0 / p.fc1.weight.shape[1] ** 0.5)
        p.fc1.bias.data.copy_(torch.randn(p.fc1.bias.shape, generator=gen))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--model", default="adafuse_tsn_r18")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--budgets", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.4])
    ap.add_argument("--calib-clips", type=int, default=16)
    ap.add_argument("--timing-clips", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from adafuse.models.serialization import model_from_checkpoint

        model, _ = model_from_checkpoint(args.checkpoint)
        name = args.checkpoint
    else:
        torch.manual_seed(0)
        model = build_model(args.model, num_classes=174, num_frames=args.frames).eval()
        randomize(model, 0)
        name = f"{args.model} (random weights)"
    cost = static_cost(model, args.size)
    calib = clips(args.calib_clips, args.frames, args.size, seed=1)
    timing = clips(args.timing_clips, args.frames, args.size, seed=2)
    points = []
    for b in args.budgets:
        t0 = time.perf_counter()
        cal = calibrate(model, calib, b, cost=cost)
        points.append({"budget": b, "shift": cal.shift, "calibrated_fraction": cal.achieved,
                       "calibration_seconds": time.perf_counter() - t0, "ms": []})
    rec = StreamingRecognizer(model, sparse=True)
    with torch.inference_mode():
        rec.recognize_clip(timing[:1])  # warm-up
        for _ in range(args.rounds):
            for p in points:
                set_budget_shift(model, p["shift"])
                for i in range(timing.shape[0]):
                    t0 = time.perf_counter()
                    rec.recognize_clip(timing[i:i + 1])
                    p["ms"].append(1e3 * (time.perf_counter() - t0))
                    p["gflops"] = p.get("gflops", 0.0) + rec.total_flops / 1e9
    all_keep = cost.total * args.frames / 1e9
    print(f"{name}, {args.size}px, {args.frames} frames, {args.threads} thread(s), {platform.processor() or 'cpu'}; "
          f"all-keep {all_keep:.3f} GFLOPs/clip, floor {cost.floor / cost.total:.3f}")
    print("budget  shift      calib.frac  timed frac  ms/clip (median)")
    for p in points:
        p["timed_fraction"] = p.pop("gflops") / (args.rounds * timing.shape[0]) / all_keep
        p["ms_median"] = statistics.median(p["ms"])
        print(f"{p['budget']:.2f}    {p['shift']:+9.4g}  {p['calibrated_fraction']:.3f}       "
              f"{p['timed_fraction']:.3f}       {p['ms_median']:.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": name, "size": args.size, "frames": args.frames,
                                              "threads": args.threads, "all_keep_gflops": all_keep,
                                              "points": points}, indent=1) + "\n")


if __name__ == "__main__":
    main()
