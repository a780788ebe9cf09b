"""Wall-clock of sparse AdaFuse execution against what a user would deploy instead: the dense TSN in ONNX Runtime
and in PyTorch (both layouts), at the same thread count, in one process, interleaved rounds.

For each thread count, depth (R50, R18) and policy, every round runs each variant once on one clip of
``--frames`` frames (``--size`` px), in turn, so slow phases of a shared machine hit every variant alike:

clip mode (the clip as one batch)
* ``tsn_ort``        TSN dense, ONNX Runtime (CPU provider, same intra-op threads)
* ``tsn_torch``      TSN dense, PyTorch NCHW
* ``tsn_torch_cl``   TSN dense, PyTorch channels_last
* ``ada_dense``      AdaFuse dense masked: the PyTorch model with the mask injected (every channel computed,
                     then masked); a pre-hook still runs each block's policy MLP, as a deployed model would
* ``ada_sparse``     AdaFuse sparse, clip mode (``StreamingRecognizer.recognize_clip``: layer by layer, only the
                     needed channels computed)
frame by frame (a live stream: one call per frame)
* ``tsn_ort_frame``, ``tsn_torch_frame``, ``tsn_torch_cl_frame``   TSN dense, batch 1
* ``ada_sparse_step`` AdaFuse sparse streaming (``StreamingRecognizer.step``; TSN models only)

Policies: ``iid`` random masks at the paper's mixes (skip/reuse/keep): SthV1 37/26/37, SthV2 60/17/23, Jester
71/10/18 -- the worst case for sparse execution (no channel keeps its action over time, savings spread evenly
into the late layers); ``structured`` the same mixes with the paper's structure (earlier blocks skip more,
later ones keep/reuse more; a channel keeps its action to the next frame with probability 0.8); or
``--checkpoint CKPT`` for a trained model's own policy (on random frames).

Reported per variant: ms per clip (minimum and median over the rounds), GFLOPs per clip (the executor's own
count for the sparse runs; paper convention), speedup against the fastest dense TSN runtime of the same mode
(clip vs clip, frame by frame vs frame by frame), the FLOPs ratio against it, and the per-FLOP efficiency
relative to it (1.0 = as many FLOPs per second as the best dense runtime). The CPU model, its vector
extensions, the kernels in use and the thread count are printed with every table and stored in the JSON.

    python benchmarks/bench_sparse.py --threads 1 2 --depths r50 r18 --rounds 7 --json bench_sparse.json

Extras: ``--rss`` peak RSS of the dense and sparse clip runs in separate processes; ``--soak S`` streams small
frames for S seconds and samples RSS and the executor's state size.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from adafuse.flops import static_cost
from adafuse.inference import StreamingRecognizer, kernels
from adafuse.models import build_model, fusion_modules, inject_policy, set_num_frames

MIXES = {"sthv1": (0.37, 0.26, 0.37), "sthv2": (0.60, 0.17, 0.23), "jester": (0.71, 0.10, 0.18)}
CLIP_BASELINES = ("tsn_ort", "tsn_torch", "tsn_torch_cl")
FRAME_BASELINES = ("tsn_ort_frame", "tsn_torch_frame", "tsn_torch_cl_frame")


def random_masks(model, frames: int, mix, seed: int = 0) -> list[torch.Tensor]:
    """i.i.d. one-hot (skip, reuse, keep) masks ``(frames, C, 3)`` per gate at ``mix``."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.tensor(mix, dtype=torch.float)
    out = []
    for f in fusion_modules(model):
        a = torch.multinomial(p / p.sum(), frames * f.channels, replacement=True, generator=gen)
        out.append(F.one_hot(a.view(frames, f.channels), 3).float())
    return out


def structured_masks(model, frames: int, mix, persist: float = 0.8, seed: int = 0) -> list[torch.Tensor]:
    """Masks with the structure the paper reports for learned policies: the skip share falls linearly from
    1.5x the mix's in the first gated block to 0.5x in the last (reuse and keep share the rest in the mix's
    proportion), and each channel keeps its previous action with probability ``persist``."""
    gen = torch.Generator().manual_seed(seed)
    gates = fusion_modules(model)
    out = []
    for b, f in enumerate(gates):
        scale = 1.5 - b / max(1, len(gates) - 1)
        skip = min(0.95, mix[0] * scale)
        rest = (1 - skip) / (mix[1] + mix[2])
        p = torch.tensor([skip, mix[1] * rest, mix[2] * rest])
        a = torch.multinomial(p, frames * f.channels, replacement=True, generator=gen).view(frames, f.channels)
        stay = torch.rand(frames, f.channels, generator=gen) < persist
        for t in range(1, frames):
            a[t] = torch.where(stay[t], a[t - 1], a[t])
        out.append(F.one_hot(a, 3).float())
    return out


def machine() -> dict:
    """CPU model, vector extensions, kernels in use, versions."""
    model, flags = platform.processor(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.processor()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    import onnxruntime

    vector = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16") if f in flags]
    return {"cpu": model, "vector_flags": vector, "logical_cpus": os.cpu_count(), "kernels": kernels.status(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "platform": platform.platform()}


def run_policies_too(model) -> None:
    """Forward pre-hooks that run every gate's policy MLP on its block input (result discarded): with an
    injected mask the PyTorch model skips its policy, the executor does not."""
    def hook(block, inputs) -> None:
        block.fusion.policy(inputs[0], block.fusion.num_frames)

    for m in model.modules():
        fusion = getattr(m, "fusion", None)
        if fusion is not None and hasattr(fusion.policy, "fc0"):
            m.register_forward_pre_hook(hook)


def ort_session(model, example: torch.Tensor, threads: int):
    import onnxruntime as ort

    buf = io.BytesIO()
    with torch.inference_mode():
        torch.onnx.export(model, (example,), buf, input_names=["x"], output_names=["logits"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


class Variant:
    def __init__(self, name: str, run: Callable[[], None], gflops: float, mode: str) -> None:
        self.name, self.run, self.gflops, self.mode = name, run, gflops, mode
        self.ms: list[float] = []


def make_variants(depth: str, size: int, frames: torch.Tensor, masks: list[torch.Tensor] | None, threads: int,
                  ada=None) -> list[Variant]:
    """Every variant for one depth and policy (``masks``: per-frame rows, or None for ``ada``'s own policy)."""
    t, k = frames.shape[0], 174
    tsn = build_model(f"tsn_{depth}", num_classes=k, num_frames=t).eval()
    tsn_cl = build_model(f"tsn_{depth}", num_classes=k, num_frames=t).eval().to(memory_format=torch.channels_last)
    tsn_cl.load_state_dict(tsn.state_dict())
    ada = (ada if ada is not None else build_model(f"adafuse_tsn_{depth}", num_classes=k, num_frames=t)).eval()
    set_num_frames(ada, t)
    tsn_gflops = static_cost(tsn, size).total * t / 1e9
    clip = frames.unsqueeze(0)
    clip_cl = frames.contiguous(memory_format=torch.channels_last).unsqueeze(0)
    one = [frames[i].view(1, 1, 3, size, size) for i in range(t)]
    one_cl = [frames[i:i + 1].contiguous(memory_format=torch.channels_last).unsqueeze(0) for i in range(t)]
    sess_clip = ort_session(tsn, clip, threads)
    tsn1 = build_model(f"tsn_{depth}", num_classes=k, num_frames=1).eval()
    tsn1.load_state_dict(tsn.state_dict())
    tsn1_cl = build_model(f"tsn_{depth}", num_classes=k, num_frames=1).eval().to(memory_format=torch.channels_last)
    tsn1_cl.load_state_dict(tsn.state_dict())
    sess_one = ort_session(tsn1, one[0], threads)
    clip_np, one_np = clip.numpy(), [o.numpy() for o in one]
    ada_dense = copy.deepcopy(ada)  # the hooks below must not reach the executor's model
    if masks is not None:
        run_policies_too(ada_dense)
    sparse = StreamingRecognizer(ada)
    stream = StreamingRecognizer(ada) if sparse.streamable else None

    def infer(fn):
        def run():
            with torch.inference_mode():
                fn()
        return run

    def run_ada_dense():
        inject_policy(ada_dense, masks)
        with torch.inference_mode():
            ada_dense(clip)
        inject_policy(ada_dense, None)

    def run_sparse():
        sparse.recognize_clip(clip, masks)

    def run_stream():
        stream.reset()
        for i in range(t):
            stream.step(frames[i], [m[i] for m in masks] if masks is not None else None)

    run_sparse()
    variants = [
        Variant("tsn_ort", lambda: sess_clip.run(None, {"x": clip_np}), tsn_gflops, "clip"),
        Variant("tsn_torch", infer(lambda: tsn(clip)), tsn_gflops, "clip"),
        Variant("tsn_torch_cl", infer(lambda: tsn_cl(clip_cl)), tsn_gflops, "clip"),
        Variant("ada_dense", run_ada_dense, static_cost(ada, size).total * t / 1e9, "clip"),
        Variant("ada_sparse", run_sparse, sparse.total_flops / 1e9, "clip"),
        Variant("tsn_ort_frame", lambda: [sess_one.run(None, {"x": x}) for x in one_np], tsn_gflops, "frame"),
        Variant("tsn_torch_frame", infer(lambda: [tsn1(x) for x in one]), tsn_gflops, "frame"),
        Variant("tsn_torch_cl_frame", infer(lambda: [tsn1_cl(x) for x in one_cl]), tsn_gflops, "frame"),
    ]
    if stream is not None:
        run_stream()
        variants.append(Variant("ada_sparse_step", run_stream, stream.total_flops / 1e9, "frame"))
    return variants


def time_interleaved(variants: list[Variant], rounds: int, warmup: int = 1) -> None:
    for r in range(warmup + rounds):
        for v in variants:
            start = time.perf_counter()
            v.run()
            if r >= warmup:
                v.ms.append((time.perf_counter() - start) * 1e3)


def summarize(variants: list[Variant], meta: dict) -> dict:
    rows, best = [], {}
    for mode, names in (("clip", CLIP_BASELINES), ("frame", FRAME_BASELINES)):
        base = [v for v in variants if v.name in names]
        best[mode] = min(base, key=lambda v: min(v.ms))
    for v in variants:
        b = best[v.mode]
        speedup = min(b.ms) / min(v.ms)
        flops_ratio = b.gflops / v.gflops
        rows.append({"variant": v.name, "mode": v.mode, "ms_min": min(v.ms), "ms_median": statistics.median(v.ms),
                     "gflops_per_clip": v.gflops, "baseline": b.name, "speedup_vs_best_dense": speedup,
                     "speedup_vs_best_dense_median": statistics.median(b.ms) / statistics.median(v.ms),
                     "flops_ratio_vs_best_dense": flops_ratio, "efficiency_per_flop": speedup / flops_ratio,
                     "rounds": len(v.ms)})
    return {**meta, "best_dense": {m: v.name for m, v in best.items()}, "rows": rows}


def print_table(result: dict, info: dict) -> None:
    print(f"\n{result['depth'].upper()}  policy {result['policy']}  {result['threads']} thread(s)  "
          f"{result['frames']} frames x {result['size']} px  |  {info['cpu']} [{' '.join(info['vector_flags'])}]  "
          f"kernels: {info['kernels']}")
    print(f"{'variant':20s} {'min ms':>8s} {'median':>8s} {'GFLOPs':>7s} {'vs best dense':>14s} {'FLOPs ratio':>12s} "
          f"{'eff/FLOP':>9s}")
    for r in result["rows"]:
        mark = " *" if r["variant"] == r["baseline"] else ""
        print(f"{r['variant']:20s} {r['ms_min']:8.1f} {r['ms_median']:8.1f} {r['gflops_per_clip']:7.2f} "
              f"{r['speedup_vs_best_dense']:13.2f}x {r['flops_ratio_vs_best_dense']:11.2f}x "
              f"{r['efficiency_per_flop']:9.2f}{mark}")
    print("(* = the fastest dense TSN runtime of that mode; speedups from the minima, same run)")


def peak_rss_mb() -> float:
    """Peak RSS (MB) since the last :func:`reset_peak_rss` (Linux VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0) so that the peak covers only the run."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss_child(mode: str, depth: str, size: int, frames: int) -> None:
    """Subprocess body: build, run one clip three times in one mode, print peak RSS (MB) as JSON: the peak
    of the runs and the RSS after building the model (weights, packed copies)."""
    ada = build_model(f"adafuse_tsn_{depth}", num_classes=174, num_frames=frames).eval()
    masks = random_masks(ada, frames, MIXES["sthv1"])
    x = torch.randn(1, frames, 3, size, size)
    rec = StreamingRecognizer(ada) if mode == "sparse" else None
    built = current_rss_mb()
    reset_peak_rss()
    for _ in range(3):
        if rec is None:
            inject_policy(ada, masks)
            with torch.inference_mode():
                ada(x)
        else:
            rec.recognize_clip(x, masks)
    print(json.dumps({"mode": mode, "peak_rss_mb": peak_rss_mb(), "rss_after_build_mb": built}))


def measure_rss(depth: str, size: int, frames: int, threads: int) -> list[dict]:
    out = []
    for mode in ("dense", "sparse"):
        cmd = [sys.executable, __file__, "--rss-child", mode, "--depths", depth, "--size", str(size),
               "--frames", str(frames), "--threads", str(threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(seconds: float, size: int = 64) -> dict:
    """Stream small frames through AdaFuse-R18 with a decisive random policy for ``seconds``; sample RSS and
    the executor's state size."""
    model = build_model("adafuse_tsn_r18", num_classes=174, num_frames=1).eval()
    for m in model.modules():  # a fresh policy is ~uniform; random biases make it decisive
        if hasattr(m, "fc1") and hasattr(m, "fc0"):
            m.fc1.bias.data.normal_(0, 1)
    rec = StreamingRecognizer(model)
    frames = torch.randn(32, 3, size, size)
    samples, step = [], 0
    start = last = time.perf_counter()
    while time.perf_counter() - start < seconds:
        rec.step(frames[step % 32])
        step += 1
        if time.perf_counter() - last >= seconds / 50:
            last = time.perf_counter()
            state = rec.state_tensors()
            samples.append({"step": step, "rss_mb": current_rss_mb(), "state_tensors": len(state),
                            "state_bytes": sum(t.numel() * t.element_size() for t in state)})
    first, end = samples[len(samples) // 10], samples[-1]
    return {"seconds": seconds, "steps": step, "size": size, "samples": samples,
            "rss_growth_mb": end["rss_mb"] - first["rss_mb"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", nargs="+", default=["r50", "r18"], choices=["r18", "r34", "r50", "r101"])
    p.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    p.add_argument("--policies", nargs="+", default=["iid"], choices=["iid", "structured"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (after one warm-up round)")
    p.add_argument("--checkpoint", default=None, help="also time a trained AdaFuse-TSN checkpoint's own policy")
    p.add_argument("--rss", action="store_true", help="peak RSS of dense vs sparse clip runs (subprocesses)")
    p.add_argument("--soak", type=float, default=0.0, metavar="S", help="memory soak: stream for S seconds")
    p.add_argument("--json", default="bench_sparse.json", help="output JSON file")
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child:
        torch.set_num_threads(args.threads[0])
        rss_child(args.rss_child, args.depths[0], args.size, args.frames)
        return 0
    info = machine()
    report = {"machine": info, "loadavg_start": os.getloadavg(), "results": [], "rss": {}}
    frames = torch.randn(args.frames, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for depth in args.depths:
            probe = build_model(f"adafuse_tsn_{depth}", num_classes=174, num_frames=args.frames)
            runs = [(f"{pol}:{mix}", (random_masks if pol == "iid" else structured_masks)(probe, args.frames,
                                                                                           MIXES[mix]), None)
                    for pol in args.policies for mix in args.mixes]
            if args.checkpoint:
                from adafuse.models.serialization import model_from_checkpoint

                model, _ = model_from_checkpoint(args.checkpoint)
                if model.arch == f"adafuse_tsn_{depth}":
                    runs.append((f"checkpoint:{os.path.basename(args.checkpoint)}", None, model))
            for name, masks, model in runs:
                variants = make_variants(depth, args.size, frames, masks, threads, model)
                time_interleaved(variants, args.rounds)
                meta = {"depth": depth, "policy": name, "threads": threads, "size": args.size, "frames": args.frames}
                result = summarize(variants, meta)
                report["results"].append(result)
                print_table(result, info)
            if args.rss:
                report["rss"][f"{depth}@{threads}"] = rss = measure_rss(depth, args.size, args.frames, threads)
                print(f"peak RSS {depth}, {threads} thread(s): " + ", ".join(f"{r['mode']} {r['peak_rss_mb']:.0f} MB"
                                                                           for r in rss))
    if args.soak > 0:
        report["soak"] = s = soak(args.soak)
        print(f"\nsoak: {s['steps']} steps in {s['seconds']:.0f} s, RSS growth {s['rss_growth_mb']:.1f} MB, "
              f"state tensors {sorted({x['state_tensors'] for x in s['samples']})}")
    report["loadavg_end"] = os.getloadavg()
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
