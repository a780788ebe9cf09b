"""Per-frame latency of sparse AdaFuse execution against dense models (batch 1, one frame at a time).

For each depth (R50, R18) and policy mix, in one process and interleaved (round robin over the variants, one
frame each, many rounds; the median per variant is reported):

* ``tsn``           TSN dense, PyTorch model, NCHW
* ``tsn_cl``        TSN dense, PyTorch model, channels_last
* ``tsn_folded``    TSN dense on the executor (BN folded), for reference
* ``ada_dense``     AdaFuse dense masked: the PyTorch model, one frame per call, injected mask (computes every
                    channel, then masks); a pre-hook still runs each block's policy MLP on the block input, so
                    that both AdaFuse variants pay for their policy as a deployed model would
* ``ada_dense_ex``  AdaFuse dense masked on the executor (BN folded, policy MLP runs)
* ``ada_sparse``    AdaFuse sparse: ``StreamingRecognizer.step`` (BN folded, policy MLP runs, sliced convs)

Clip mode (all ``--frames`` frames of the stream in one call, time per frame = call time / frames; not the
per-frame latency of the goals, but the throughput of offline clip recognition):

* ``tsn_clip``      TSN dense, PyTorch model, the clip as one batch (NCHW)
* ``ada_sparse_clip`` AdaFuse sparse in clip mode: ``StreamingRecognizer.step_clip`` (layer by layer, the
                    policy MLPs and ungated convs batched over the frames, gated convs per frame)

Policies: i.i.d. random masks at the paper's mixes (skip/reuse/keep): SthV1 37/26/37, SthV2 60/17/23, Jester
71/10/18 (note: an i.i.d. policy rarely reuses a channel the previous frame kept, so conv1 does more work than
under a learned policy with the same mix), or ``--checkpoint CKPT`` to use a trained model's own policy on
random frames (or ``--video`` frames).

Reported per row: median wall ms/frame, median CPU ms/frame (``time.process_time``: on a shared machine it
excludes the time other jobs held the cores; with 2 threads it also counts OpenMP spin-waiting, so compare
CPU times at ``--threads 1``), minimum wall ms, FLOPs per frame (executor count, paper convention), speedup
and FLOPs ratio against ``ada_dense`` and against the best TSN layout. Goals of issue 6: sparse vs the same
model dense >= 0.9 x the FLOPs ratio; AdaFuse-R50 sparse vs TSN-R50 dense (best layout) >= 1.3x at the SthV1 mix.

Extras: ``--rss`` measures peak RSS of a dense and a sparse run in separate subprocesses; ``--soak S`` streams
small frames for S seconds and samples RSS and the state size; ``--profile`` prints a torch.profiler table of
the sparse step.

    python benchmarks/bench_sparse.py --depths r50 r18 --rounds 30 --json bench_sparse.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from adafuse.flops import static_cost
from adafuse.inference import StreamingRecognizer
from adafuse.models import build_model, fusion_modules, inject_policy, set_num_frames

MIXES = {"sthv1": (0.37, 0.26, 0.37), "sthv2": (0.60, 0.17, 0.23), "jester": (0.71, 0.10, 0.18)}


def random_masks(model, frames: int, mix, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    p = torch.tensor(mix, dtype=torch.float)
    out = []
    for f in fusion_modules(model):
        a = torch.multinomial(p / p.sum(), frames * f.channels, replacement=True, generator=gen)
        out.append(F.one_hot(a.view(frames, f.channels), 3).float())
    return out


def peak_rss_mb() -> float:
    """Peak RSS (MB) since the last :func:`reset_peak_rss` (Linux VmHWM; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark so that the run's peak excludes model building (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Variant:
    """A named per-frame callable ``run(i)`` (frame i of the stream) and its FLOPs per frame."""

    def __init__(self, name: str, run: Callable[[int], None], gflops: float, frames_per_call: int = 1) -> None:
        self.name, self.run, self.gflops = name, run, gflops
        self.frames_per_call = frames_per_call  # > 1: run(0) processes the whole stream (clip mode)
        self.times: list[float] = []  # wall seconds per frame
        self.cpu: list[float] = []  # process CPU seconds per frame (excludes time descheduled by other jobs)


def run_policies_too(model) -> None:
    """Forward pre-hooks that run every gate's policy MLP on its block input (result discarded): with an
    injected mask the PyTorch model skips its policy, the executor does not."""
    def hook(block, inputs) -> None:  # returns None: the block input is left unchanged
        block.fusion.policy(inputs[0], block.fusion.num_frames)

    for m in model.modules():
        fusion = getattr(m, "fusion", None)
        if fusion is not None and hasattr(fusion.policy, "fc0"):
            m.register_forward_pre_hook(hook)


def make_variants(depth: str, size: int, frames: torch.Tensor, masks: list[torch.Tensor] | None,
                  checkpoint_model=None) -> list[Variant]:
    """The six variants of one depth. ``masks`` (per-frame rows) or a trained ``checkpoint_model``."""
    k = 174
    tsn = build_model(f"tsn_{depth}", num_classes=k, num_frames=1).eval()
    tsn_cl = build_model(f"tsn_{depth}", num_classes=k, num_frames=1).eval().to(memory_format=torch.channels_last)
    tsn_cl.load_state_dict(tsn.state_dict())
    ada = checkpoint_model if checkpoint_model is not None else build_model(f"adafuse_tsn_{depth}", num_classes=k,
                                                                            num_frames=1)
    ada = ada.eval()
    set_num_frames(ada, 1)
    n = frames.shape[0]
    tsn_gflops = static_cost(tsn, size).total / 1e9
    ada_gflops = static_cost(ada, size).total / 1e9
    if masks is not None:
        run_policies_too(ada)
    tsn_folded = StreamingRecognizer(tsn)
    sparse = StreamingRecognizer(ada, sparse=True)
    dense_ex = StreamingRecognizer(ada, sparse=False)
    clip = frames.view(n, 1, 1, 3, size, size)
    clip_cl = [f[None].contiguous(memory_format=torch.channels_last).view(1, 1, 3, size, size) for f in frames]

    def frame_masks(i):
        return [m[i] for m in masks] if masks is not None else None

    def run_tsn(i):
        with torch.inference_mode():
            tsn(clip[i])

    def run_tsn_cl(i):
        with torch.inference_mode():
            tsn_cl(clip_cl[i])

    def run_ada_dense(i):
        inject_policy(ada, [m[i:i + 1] for m in masks] if masks is not None else None)
        with torch.inference_mode():
            ada(clip[i])

    def stepper(rec):
        gated = bool(rec.executor.gates)

        def run(i):
            if i == 0:
                rec.reset()
            rec.step(frames[i], frame_masks(i) if gated else None)
        return run

    # executor FLOPs per frame over one pass of the stream (paper convention)
    flops = {}
    for name, rec in (("tsn_folded", tsn_folded), ("ada_sparse", sparse), ("ada_dense_ex", dense_ex)):
        run = stepper(rec)
        for i in range(n):
            run(i)
        flops[name] = rec.total_flops / n / 1e9
    clip_all = frames.view(1, n, 3, size, size)
    tsn_clip = build_model(f"tsn_{depth}", num_classes=k, num_frames=n).eval()
    tsn_clip.load_state_dict(tsn.state_dict())

    def run_tsn_clip(i):
        with torch.inference_mode():
            tsn_clip(clip_all)

    def run_sparse_clip(i):
        sparse_clip.reset()
        sparse_clip.step_clip(frames, masks)

    sparse_clip = StreamingRecognizer(ada, sparse=True)
    run_sparse_clip(0)
    clip_gflops = sparse_clip.total_flops / n / 1e9
    if abs(clip_gflops - flops["ada_sparse"]) > 1e-9 * max(1.0, clip_gflops):
        raise AssertionError(f"clip mode counted {clip_gflops} GFLOPs/frame, frame-by-frame {flops['ada_sparse']}")
    return [
        Variant("tsn", run_tsn, tsn_gflops),
        Variant("tsn_cl", run_tsn_cl, tsn_gflops),
        Variant("tsn_folded", stepper(tsn_folded), flops["tsn_folded"]),
        Variant("ada_dense", run_ada_dense, ada_gflops),
        Variant("ada_dense_ex", stepper(dense_ex), flops["ada_dense_ex"]),
        Variant("ada_sparse", stepper(sparse), flops["ada_sparse"]),
        Variant("tsn_clip", run_tsn_clip, tsn_gflops, frames_per_call=n),
        Variant("ada_sparse_clip", run_sparse_clip, clip_gflops, frames_per_call=n),
    ]


def time_interleaved(variants: list[Variant], frames: int, rounds: int, warmup: int = 2) -> None:
    """Round robin: each round runs every variant on every frame of the stream in turn (frame-major), so slow
    phases of a shared machine hit all variants alike. Records seconds per frame."""
    for r in range(warmup + rounds):
        for i in range(frames):
            for v in variants:
                if v.frames_per_call > 1 and i != 0:
                    continue
                cpu = time.process_time()
                start = time.perf_counter()
                v.run(i)
                if r >= warmup:
                    v.times.append((time.perf_counter() - start) / v.frames_per_call)
                    v.cpu.append((time.process_time() - cpu) / v.frames_per_call)


def summarize(variants: list[Variant], depth: str, mix: str) -> dict:
    by = {v.name: v for v in variants}
    med = {v.name: statistics.median(v.times) * 1e3 for v in variants}
    q1 = {v.name: statistics.quantiles(v.times, n=4)[0] * 1e3 for v in variants}
    low = {v.name: min(v.times) * 1e3 for v in variants}
    cpu = {v.name: statistics.median(v.cpu) * 1e3 for v in variants}
    best_tsn = min(("tsn", "tsn_cl"), key=lambda k: med[k])
    rows = []
    for v in variants:
        rows.append({
            "variant": v.name, "ms_median": med[v.name], "ms_q1": q1[v.name], "ms_min": low[v.name],
            "cpu_ms_median": cpu[v.name],
            "samples": len(v.times),
            "gflops_per_frame": v.gflops,
            "speedup_vs_ada_dense": med["ada_dense"] / med[v.name],
            "flops_ratio_vs_ada_dense": by["ada_dense"].gflops / v.gflops,
            "speedup_vs_best_tsn": med[best_tsn] / med[v.name],
            "speedup_vs_ada_dense_min": low["ada_dense"] / low[v.name],
            "speedup_vs_ada_dense_cpu": cpu["ada_dense"] / cpu[v.name],
            "speedup_vs_best_tsn_cpu": min(cpu["tsn"], cpu["tsn_cl"]) / cpu[v.name],
            "speedup_vs_best_tsn_min": min(low["tsn"], low["tsn_cl"]) / low[v.name],
            "flops_ratio_vs_tsn": by["tsn"].gflops / v.gflops,
        })
    s = by["ada_sparse"]
    goal1 = (med["ada_dense"] / med["ada_sparse"]) / (by["ada_dense"].gflops / s.gflops)
    goal1_ex = (med["ada_dense_ex"] / med["ada_sparse"]) / (by["ada_dense_ex"].gflops / s.gflops)
    flops_ratio = by["ada_dense"].gflops / s.gflops
    clip = {"sparse_clip_vs_tsn_clip": med["tsn_clip"] / med["ada_sparse_clip"],
            "sparse_clip_vs_best_tsn": med[best_tsn] / med["ada_sparse_clip"],
            "sparse_clip_vs_sparse": med["ada_sparse"] / med["ada_sparse_clip"],
            "cpu": {"sparse_clip_vs_tsn_clip": cpu["tsn_clip"] / cpu["ada_sparse_clip"],
                    "sparse_clip_vs_best_tsn": min(cpu["tsn"], cpu["tsn_cl"]) / cpu["ada_sparse_clip"],
                    "sparse_clip_vs_sparse": cpu["ada_sparse"] / cpu["ada_sparse_clip"]}}
    return {"clip_mode": clip,"depth": depth, "mix": mix, "best_tsn_layout": best_tsn, "rows": rows,
            "sparse_speedup_over_flops_ratio": goal1, "sparse_speedup_over_flops_ratio_same_engine": goal1_ex,
            "sparse_vs_best_tsn": med[best_tsn] / med["ada_sparse"],
            "cpu": {"sparse_speedup_over_flops_ratio": cpu["ada_dense"] / cpu["ada_sparse"] / flops_ratio,
                    "sparse_speedup_over_flops_ratio_same_engine":
                        cpu["ada_dense_ex"] / cpu["ada_sparse"] / (by["ada_dense_ex"].gflops / s.gflops),
                    "sparse_vs_best_tsn": min(cpu["tsn"], cpu["tsn_cl"]) / cpu["ada_sparse"]}}


def print_table(result: dict) -> None:
    print(f"\n{result['depth'].upper()}  mix {result['mix']}  (best TSN layout: {result['best_tsn_layout']})")
    print(f"{'variant':14s} {'wall ms':>8s} {'cpu ms':>7s} {'min ms':>7s} {'GFLOPs':>7s} | {'speedup':>7s} "
          f"{'(cpu)':>6s} {'FLOPs x':>7s} | {'speedup':>7s} {'(cpu)':>6s} {'FLOPs x':>7s}")
    print(f"{'':14s} {'median':>8s} {'median':>7s} {'':>7s} {'/frame':>7s} | {'vs ada_dense':^22s} | "
          f"{'vs best TSN':^22s}")
    for r in result["rows"]:
        print(f"{r['variant']:14s} {r['ms_median']:8.1f} {r['cpu_ms_median']:7.1f} {r['ms_min']:7.1f} "
              f"{r['gflops_per_frame']:7.3f} | {r['speedup_vs_ada_dense']:7.2f} {r['speedup_vs_ada_dense_cpu']:6.2f} "
              f"{r['flops_ratio_vs_ada_dense']:7.2f} | {r['speedup_vs_best_tsn']:7.2f} "
              f"{r['speedup_vs_best_tsn_cpu']:6.2f} {r['flops_ratio_vs_tsn']:7.2f}")
    c = result["cpu"]
    print(f"goal 1 (sparse speedup / FLOPs ratio vs dense masked >= 0.9): wall "
          f"{result['sparse_speedup_over_flops_ratio']:.2f}, cpu {c['sparse_speedup_over_flops_ratio']:.2f}  "
          f"(vs dense on the same folded engine: wall {result['sparse_speedup_over_flops_ratio_same_engine']:.2f}, "
          f"cpu {c['sparse_speedup_over_flops_ratio_same_engine']:.2f})")
    print(f"goal 2 (AdaFuse sparse vs best TSN >= 1.3x at sthv1): wall {result['sparse_vs_best_tsn']:.2f}x, "
          f"cpu {c['sparse_vs_best_tsn']:.2f}x")
    k = result["clip_mode"]
    print(f"clip mode: sparse clip vs sparse step {k['sparse_clip_vs_sparse']:.2f}x (cpu "
          f"{k['cpu']['sparse_clip_vs_sparse']:.2f}x), vs TSN clip batch {k['sparse_clip_vs_tsn_clip']:.2f}x (cpu "
          f"{k['cpu']['sparse_clip_vs_tsn_clip']:.2f}x), vs best per-frame TSN {k['sparse_clip_vs_best_tsn']:.2f}x "
          f"(cpu {k['cpu']['sparse_clip_vs_best_tsn']:.2f}x)")


def rss_child(mode: str, depth: str, size: int, frames: int, mix) -> None:
    """Subprocess body: build, run ``frames`` frames in one mode, print peak RSS (MB) as JSON."""
    ada = build_model(f"adafuse_tsn_{depth}", num_classes=174, num_frames=1).eval()
    masks = random_masks(ada, frames, mix)
    x = torch.randn(frames, 3, size, size)
    rec = StreamingRecognizer(ada, sparse=mode == "sparse") if mode != "dense" else None
    base = current_rss_mb()
    reset_peak_rss()
    if mode == "dense":
        with torch.inference_mode():
            for i in range(frames):
                inject_policy(ada, [m[i:i + 1] for m in masks])
                ada(x[i].view(1, 1, 3, size, size))
    else:
        for i in range(frames):
            rec.step(x[i], [m[i] for m in masks])
    print(json.dumps({"mode": mode, "peak_rss_mb": peak_rss_mb(), "rss_before_run_mb": base}))


def measure_rss(depth: str, size: int, frames: int, mix) -> list[dict]:
    out = []
    for mode in ("dense", "dense_ex", "sparse"):
        cmd = [sys.executable, __file__, "--rss-child", mode, "--depths", depth, "--size", str(size),
               "--frames", str(frames)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def soak(seconds: float, size: int = 64) -> dict:
    """Stream small frames through AdaFuse-R18 with its own policy for ``seconds``; sample RSS and state size."""
    model = build_model("adafuse_tsn_r18", num_classes=174, num_frames=1).eval()
    for m in model.modules():  # a decisive random policy (a fresh one is ~uniform)
        if hasattr(m, "fc1") and hasattr(m, "fc0"):
            m.fc1.bias.data.normal_(0, 1)
    rec = StreamingRecognizer(model)
    frames = torch.randn(32, 3, size, size)
    samples = []
    start = last = time.perf_counter()
    step = 0
    while time.perf_counter() - start < seconds:
        rec.step(frames[step % 32])
        step += 1
        if time.perf_counter() - last >= seconds / 50:
            last = time.perf_counter()
            state = rec.state_tensors()
            samples.append({"step": step, "rss_mb": current_rss_mb(), "state_tensors": len(state),
                            "state_bytes": sum(t.numel() * t.element_size() for t in state)})
    first, last = samples[len(samples) // 10] if samples else {}, samples[-1] if samples else {}
    return {"seconds": seconds, "steps": step, "size": size, "samples": samples,
            "rss_growth_mb": (last.get("rss_mb", 0) - first.get("rss_mb", 0)) if samples else None}


def profile_sparse(depth: str, size: int, frames: torch.Tensor, masks) -> None:
    from torch.profiler import ProfilerActivity, profile

    ada = build_model(f"adafuse_tsn_{depth}", num_classes=174, num_frames=1).eval()
    rec = StreamingRecognizer(ada)
    for i in range(frames.shape[0]):
        rec.step(frames[i], [m[i] for m in masks])
    rec.reset()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(frames.shape[0]):
            rec.step(frames[i], [m[i] for m in masks])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", nargs="+", default=["r50", "r18"], choices=["r18", "r34", "r50", "r101"])
    p.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=8, help="frames per stream (policy masks differ per frame)")
    p.add_argument("--rounds", type=int, default=10, help="timed passes over the stream (after 2 warm-up passes)")
    p.add_argument("--checkpoint", default=None, help="also time a trained checkpoint's own policy")
    p.add_argument("--rss", action="store_true", help="peak RSS of dense vs sparse runs (subprocesses)")
    p.add_argument("--soak", type=float, default=0.0, metavar="S", help="memory soak: stream for S seconds")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of the sparse step")
    p.add_argument("--json", default="bench_sparse.json", help="output JSON file")
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args.depths[0], args.size, args.frames, MIXES["sthv1"])
        return 0

    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "torch": torch.__version__, "loadavg_start": os.getloadavg()},
              "size": args.size, "frames": args.frames, "rounds": args.rounds, "results": [], "rss": {}}
    frames = torch.randn(args.frames, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    for depth in args.depths:
        for mix_name in args.mixes:
            probe = build_model(f"adafuse_tsn_{depth}", num_classes=174, num_frames=1)
            masks = random_masks(probe, args.frames, MIXES[mix_name])
            variants = make_variants(depth, args.size, frames, masks)
            time_interleaved(variants, args.frames, args.rounds)
            result = summarize(variants, depth, mix_name)
            report["results"].append(result)
            print_table(result)
            if args.profile and mix_name == "sthv1":
                profile_sparse(depth, args.size, frames, masks)
        if args.checkpoint:
            from adafuse.models.serialization import model_from_checkpoint

            model, _ = model_from_checkpoint(args.checkpoint)
            if model.arch == f"adafuse_tsn_{depth}":
                variants = make_variants(depth, args.size, frames, None, checkpoint_model=model)
                time_interleaved(variants, args.frames, args.rounds)
                result = summarize(variants, depth, f"checkpoint:{os.path.basename(args.checkpoint)}")
                report["results"].append(result)
                print_table(result)
        if args.rss:
            report["rss"][depth] = measure_rss(depth, args.size, args.frames, MIXES["sthv1"])
            rss = ", ".join(f"{r['mode']} {r['peak_rss_mb']:.0f} MB (before run {r['rss_before_run_mb']:.0f})"
                            for r in report["rss"][depth])
            print(f"\npeak RSS {depth}: {rss}")
    if args.soak > 0:
        report["soak"] = soak(args.soak)
        s = report["soak"]
        print(f"\nsoak: {s['steps']} steps in {s['seconds']:.0f} s, RSS growth {s['rss_growth_mb']:.1f} MB, "
              f"state tensors {[x['state_tensors'] for x in s['samples'][-3:]]}")
    report["machine"]["loadavg_end"] = os.getloadavg()
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
