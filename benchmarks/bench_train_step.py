"""Training-step time of AdaFuse-TSN vs TSN on the same ResNet-18 (goal: ratio <= 1.15).

One step = forward of a ``(4, 8, 3, S, S)`` clip batch + cross-entropy (+ lambda x the FLOPs term for
AdaFuse, from ``adafuse.flops.loss_gflops``) + backward + gradient clipping + SGD step, in training mode
(hard Gumbel-softmax), on 2 CPU threads by default, at S = 112 and 224. Reports the median over the timed
steps and, for AdaFuse, where the extra time goes (torch profiler, self CPU time grouped into policy MLP,
Gumbel sampling, fusion, FLOPs term and the rest). Writes JSON (default ``benchmarks/results/train_step.json``).

    python benchmarks/bench_train_step.py [--sizes 112 224] [--steps 6] [--threads 2] [--no-profile]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from adafuse.config import OptimConfig
from adafuse.engine.optim import build_optimizer
from adafuse.flops import loss_gflops, static_cost
from adafuse.models import build_model, collect_masks, fusion_modules

BATCH, FRAMES, CLASSES = 4, 8, 174


def make_step(name: str, size: int):
    torch.manual_seed(0)
    model = build_model(name, num_classes=CLASSES, num_frames=FRAMES).train()
    cost = static_cost(model, size)
    gated = bool(fusion_modules(model))
    opt = build_optimizer(model, OptimConfig())
    x = torch.randn(BATCH, FRAMES, 3, size, size)
    y = torch.randint(0, CLASSES, (BATCH,))

    def step() -> None:
        with torch.profiler.record_function("forward"):
            loss = F.cross_entropy(model(x), y)
        if gated:
            with torch.profiler.record_function("flops_term"):
                loss = loss + 0.1 * loss_gflops(cost, collect_masks(model), FRAMES)
        opt.zero_grad(set_to_none=True)
        with torch.profiler.record_function("backward"):
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        opt.step()

    return model, step, cost


def time_steps(step, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return out


def profile_overhead(model, step) -> dict[str, float]:
    """Self CPU seconds of one AdaFuse step grouped by where they come from (forward ops by module)."""
    from adafuse.models.fusion import AdaptiveFusion, PolicyNet

    labels: dict[str, str] = {}
    for m in model.modules():
        if isinstance(m, PolicyNet):
            labels[f"policy::{id(m)}"] = "policy MLP"
        if isinstance(m, AdaptiveFusion):
            labels[f"fusion::{id(m)}"] = "gumbel + fusion"
    handles = []
    for m in model.modules():
        if isinstance(m, (PolicyNet, AdaptiveFusion)):
            tag = ("policy::" if isinstance(m, PolicyNet) else "fusion::") + str(id(m))

            def pre(mod, args, tag=tag):
                mod._rf = torch.profiler.record_function(tag)
                mod._rf.__enter__()

            def post(mod, args, out):
                mod._rf.__exit__(None, None, None)

            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
    finally:
        for h in handles:
            h.remove()
    groups: dict[str, float] = {}
    for evt in prof.events():
        if evt.name.startswith(("policy::", "fusion::")) or evt.name in ("forward", "backward", "flops_term"):
            continue
        # attribute each op to the innermost labelled range that contains it
        parent = evt.cpu_parent
        label = "backbone/other forward"
        while parent is not None:
            if parent.name in labels:
                label = labels[parent.name]
                break
            if parent.name in ("backward", "flops_term"):
                label = "backward" if parent.name == "backward" else "FLOPs term"
                break
            parent = parent.cpu_parent
        if evt.name.startswith("autograd::") or "Backward" in evt.name:
            label = "backward"
        groups[label] = groups.get(label, 0.0) + evt.self_cpu_time_total / 1e6
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model and size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: list[dict[str, Any]] = []
    print(f"train step, batch {BATCH} x {FRAMES} frames, {args.threads} threads, median of {args.steps} steps")
    print(f"{'size':>5} {'TSN-R18 s':>10} {'AdaFuse-R18 s':>14} {'ratio':>7} {'GFLOPs TSN/Ada (dense)':>24}")
    for size in args.sizes:
        result: dict[str, Any] = {"size": size}
        # interleave the two models so that load from other processes hits both alike
        tsn_model, tsn_step, tsn_cost = make_step("tsn_r18", size)
        ada_model, ada_step, ada_cost = make_step("adafuse_tsn_r18", size)
        tsn_t, ada_t = [], []
        time_steps(tsn_step, args.warmup, 0)
        time_steps(ada_step, args.warmup, 0)
        for _ in range(args.steps):
            tsn_t += time_steps(tsn_step, 0, 1)
            ada_t += time_steps(ada_step, 0, 1)
        result.update(tsn_seconds=statistics.median(tsn_t), adafuse_seconds=statistics.median(ada_t),
                      tsn_all=tsn_t, adafuse_all=ada_t, tsn_gflops_video=tsn_cost.gflops_per_video,
                      adafuse_gflops_video_dense=ada_cost.gflops_per_video)
        result["ratio"] = result["adafuse_seconds"] / result["tsn_seconds"]
        if not args.no_profile:
            result["adafuse_profile_seconds"] = profile_overhead(ada_model, ada_step)
            result["tsn_profile_seconds"] = profile_overhead(tsn_model, tsn_step)
        rows.append(result)
        print(f"{size:>5} {result['tsn_seconds']:>10.3f} {result['adafuse_seconds']:>14.3f} {result['ratio']:>7.3f} "
              f"{tsn_cost.gflops_per_video:>11.2f} / {ada_cost.gflops_per_video:<10.2f}")
        if not args.no_profile:
            ada_p, tsn_p = result["adafuse_profile_seconds"], result["tsn_profile_seconds"]
            print("      one profiled step, self CPU seconds (AdaFuse | TSN):")
            for key in sorted(set(ada_p) | set(tsn_p), key=lambda k: -ada_p.get(k, 0.0)):
                print(f"        {key:<24} {ada_p.get(key, 0.0):8.3f} | {tsn_p.get(key, 0.0):8.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "train_step", "batch": BATCH, "frames": FRAMES, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
        "goal_ratio": 1.15, "rows": rows,
    }, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
