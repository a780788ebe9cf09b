"""Cost of the FLOPs engine itself: static counting per model, and the mask-driven cost term of a training
step (forward + backward through the straight-through masks).

    python benchmarks/bench_flops.py [--models adafuse_tsn_r18 adafuse_tsn_r50] [--batch 8] [--frames 8]
                                     [--out benchmarks/results/bench_flops.json]

Prints a table and writes JSON (one record per model). Times are wall-clock seconds/milliseconds on the
current device (median of ``--repeats`` runs); they are noisy on a shared CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from adafuse.flops import dynamic_gflops, static_cost
from adafuse.models import build_model, fusion_modules


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, batch: int, frames: int, size: int | None, repeats: int, device: str) -> dict:
    model = build_model(name, num_frames=frames).to(device)
    count_s = _median_time(lambda: static_cost(model, size), repeats)
    cost = static_cost(model, size)
    logits = [torch.randn(batch * frames, f.channels, 3, device=device, requires_grad=True)
              for f in fusion_modules(model)]

    def step() -> None:
        masks = [torch.nn.functional.gumbel_softmax(x, tau=0.67, hard=True) for x in logits]
        dynamic_gflops(cost, masks, frames, batch_size=batch).mean().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    step_ms = _median_time(step, repeats) * 1e3
    return {
        "arch": name,
        "device": device,
        "size": cost.size,
        "frames": frames,
        "batch": batch,
        "gated_blocks": len(cost.blocks),
        "gflops_per_video": cost.gflops_per_video,
        "static_count_s": count_s,
        "dynamic_cost_step_ms": step_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["adafuse_tsn_r18", "adafuse_tsn_r50"])
    parser.add_argument("--batch", type=int, default=8, help="videos per batch for the dynamic cost")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="frame side (default: model crop size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_flops.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = [bench_model(m, args.batch, args.frames, args.size, args.repeats, args.device) for m in args.models]
    print("GFLOPs/video: dense count, exact convention")
    print(f"{'model':<24} {'blocks':>6} {'GFLOPs/video':>12} {'static count (s)':>16} "
          f"{'dynamic fwd+bwd (ms)':>20}")
    for r in rows:
        print(f"{r['arch']:<24} {r['gated_blocks']:>6} {r['gflops_per_video']:>12.2f} {r['static_count_s']:>16.3f} "
              f"{r['dynamic_cost_step_ms']:>20.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"torch": torch.__version__, "platform": platform.platform(), "threads": torch.get_num_threads(),
              "results": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
