"""Three ways to get an accuracy/compute trade-off on the synthetic time-reversal benchmark (`adafuse demo`'s data
and recipe):

(a) post-hoc shift: one AdaFuse model trained at one lambda, evaluated at several budgets (`eval --budgets`);
(b) budget-conditioned training: one model trained with `train.budget_range`, evaluated at the same budgets;
(c) separately trained models at several lambdas (the paper's way), each at its own operating point.

Every model starts from the same TSN backbone (demo stage 1) and is fine-tuned with the demo's stage-2 recipe. Also
streams the validation videos one after another through (b) under the rate controller at each budget and reports
the achieved rate, its spread and the accuracy.

    adafuse demo --out runs/demo_s0 --seed 0 --threads 1          # data, backbone and the lambda-8 model
    nice -n 10 python benchmarks/budget_comparison.py --out runs/demo_s0 --seed 0 --threads 1

Pointed at a finished demo run of the same seed, recipe and thread count, it reuses its data, its backbone and its
AdaFuse-TSN model (the lambda of the recipe) and trains only the other lambdas and the conditioned model.

Writes OUT/comparison.json, OUT/comparison.md and OUT/report/ (`adafuse report` of every run: the curves of
(a) and (b) next to the (c) runs). Numbers depend on the seed, recipe and machine: state them as measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adafuse.engine.demo import (
    MAIN_METHODS,
    PRETRAIN_RUN,
    RECIPES,
    _slug,
    _train,
    demo_config,
    paired_val_list,
    pretrain_config,
)

log = logging.getLogger("adafuse")


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """Piecewise-linear top-1 of the (fraction, top1) points at fraction ``x`` (None outside their range)."""
    pts = sorted(points)
    xs = [p[0] for p in pts]
    if not pts or x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    return float(np.interp(x, xs, [p[1] for p in pts]))


def stream_with_rate_control(model: torch.nn.Module, val_list: Path, root: str, cfg: Any, fraction: float,
                             curve_clips: torch.Tensor, max_videos: int) -> dict[str, Any]:
    """Stream the validation videos one after another under the rate controller at ``fraction`` of the all-keep
    GFLOPs per frame; accuracy of each video's running prediction at its last frame."""
    from adafuse.engine.budget_eval import calibration_clips
    from adafuse.inference import StreamingRecognizer
    from adafuse.inference.budget import set_budget_shift
    from adafuse.inference.rate_control import RateController, rate_curve
    from adafuse.models.budget_conditioning import set_budget_target

    set_budget_target(model, fraction)
    curve = rate_curve(model, curve_clips)
    all_keep = curve[0][1]
    target = fraction * all_keep
    rc = RateController(StreamingRecognizer(model), max(target, curve[-1][1]), curve, window=32)
    clips, _ = calibration_clips(cfg, model.num_classes, None, model.input_spec, val_list, max_videos)
    labels = [int(line.rsplit(" ", 1)[1]) for line in Path(val_list).read_text().splitlines() if line.strip()]
    picks = np.unique(np.linspace(0, len(labels) - 1, min(max_videos, len(labels))).round().astype(int))
    correct = 0
    for clip, i in zip(clips, picks, strict=True):
        rc.new_video()
        for frame in clip:
            logits = rc.step(frame)
        correct += int(int(logits.argmax()) == labels[i])
    set_budget_shift(model, 0.0)
    s = rc.stats()
    return {"fraction": fraction, "target_gflops_per_frame": target, "mean_gflops_per_frame": s.mean,
            "std_gflops_per_frame": s.std, "window_mean_max": s.window_mean_max, "window_mean_min": s.window_mean_min,
            "within_5pct": s.within, "frames": s.frames, "videos": len(picks), "top1": 100.0 * correct / len(picks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/demo", help="the demo's output directory (reused) (default runs/demo)")
    ap.add_argument("--data", default=None, help="the demo's data directory (default OUT/data)")
    ap.add_argument("--recipe", default="full", choices=sorted(RECIPES), help="demo recipe (default full)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[2.0, 8.0, 24.0])
    ap.add_argument("--posthoc-lambda", type=float, default=None,
                    help="lambda of the model shifted post hoc (a) (default: the recipe's, the demo's model)")
    ap.add_argument("--budgets", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.4])
    ap.add_argument("--budget-weight", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1, help="as the demo run to reuse (part of its config)")
    ap.add_argument("--stream-videos", type=int, default=60)
    ap.add_argument("--sparse-timing", type=int, default=8, help="validation clips timed on the sparse executor")
    args = ap.parse_args()

    from adafuse.analysis.report import build_report
    from adafuse.data.synthetic import REVERSAL_PAIRS, generate_synthetic
    from adafuse.engine.budget_eval import calibration_clips, evaluate_budgets
    from adafuse.engine.trainer import evaluate_checkpoint, run_dir_of
    from adafuse.models.serialization import model_from_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    out = Path(args.out)
    rec = RECIPES[args.recipe]
    posthoc_lambda = rec.flops_weight if args.posthoc_lambda is None else args.posthoc_lambda
    data = generate_synthetic(args.data or out / "data", videos_per_class=rec.videos_per_class, size=rec.video_size,
                              frames=rec.video_frames, seed=args.seed, val_per_class=rec.val_per_class, progress=False,
                              videos=False)
    val_list = paired_val_list(data, [list(p) for p in REVERSAL_PAIRS])
    pre = pretrain_config(rec, data, out, args.seed, args.threads)
    _train(pre)
    backbone = str(out / PRETRAIN_RUN / "checkpoints" / "last.pt")
    timings: dict[str, float] = {"pretrain": time.time() - t0}

    def run_name(lam: float) -> str:  # the recipe's lambda is the demo's AdaFuse-TSN run
        return _slug("AdaFuse-TSN") if lam == rec.flops_weight else f"lambda_{lam:g}"

    def fine_tune(name: str, **train: Any) -> Path:
        cfg = demo_config(rec, MAIN_METHODS["AdaFuse-TSN"], data, val_list, out, name, args.seed, args.threads,
                          pretrained=backbone)
        d = cfg.to_dict()
        d["train"].update(train)
        from adafuse.config import Config

        cfg = Config.from_dict(d, source="<budget comparison>")
        t = time.time()
        _train(cfg)
        timings[name] = time.time() - t
        return run_dir_of(cfg)

    # (c) separately trained models at several lambdas, each at its own operating point
    separate = []
    for lam in args.lambdas:
        run = fine_tune(run_name(lam), flops_weight=lam)
        m = evaluate_checkpoint(run / "checkpoints" / "best.pt")
        separate.append({"lambda": lam, "run": str(run), "gflops_per_video": m["gflops_per_video"],
                         "fraction": m["gflops_per_video"] / m["gflops_static_per_video"], "top1": m["top1"],
                         "policy_ratios": m["policy_ratios"]})
    # (b) budget-conditioned training over the budgets' range
    lo = min(args.budgets)
    cond = fine_tune("conditioned", budget_range=[lo, 1.0], budget_weight=args.budget_weight,
                     flops_weight=rec.flops_weight)
    # (a) post hoc: the separate run at --posthoc-lambda, shifted
    posthoc = out / run_name(posthoc_lambda)
    curves = {}
    for name, run in (("posthoc", posthoc), ("conditioned", cond)):
        curves[name] = evaluate_budgets(run / "checkpoints" / "best.pt", budgets=args.budgets,
                                        out_dir=run / "eval", sparse_clips=args.sparse_timing)
    separate_pts = [(s["fraction"], s["top1"]) for s in separate]
    rows = []
    for b in args.budgets:
        row: dict[str, Any] = {"budget": b}
        for name, curve in curves.items():
            p = next(p for p in curve["points"] if p["budget"] == b)
            row[name] = {k: p.get(k) for k in ("fraction", "top1", "shift", "sparse_ms_per_clip")}
            row[f"separate_at_{name}"] = interpolate(separate_pts, p["fraction"])
        rows.append(row)
    # rate control: stream validation videos through the conditioned model
    model, payload = model_from_checkpoint(cond / "checkpoints" / "best.pt")
    torch.set_num_threads(args.threads)
    cfg = demo_config(rec, MAIN_METHODS["AdaFuse-TSN"], data, val_list, out, "conditioned", args.seed, args.threads)
    curve_clips, _ = calibration_clips(cfg, model.num_classes, None, model.input_spec, None, 16)
    streams = [stream_with_rate_control(model, val_list, data.root, cfg, b, curve_clips, args.stream_videos)
               for b in args.budgets if b < 1.0]
    result = {"seed": args.seed, "recipe": {k: getattr(rec, k) for k in ("videos_per_class", "val_per_class",
                                                                           "video_size", "width", "pretrain_epochs",
                                                                           "epochs", "batch_size")},
              "threads": args.threads, "separate": separate, "curves": curves, "rows": rows, "streams": streams,
              "timings": timings, "seconds": time.time() - t0}
    (out / "comparison.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "comparison.md").write_text(markdown(result))
    build_report([str(posthoc), str(cond), *[s["run"] for s in separate if s["run"] != str(posthoc)]],
                 out / "report", title="Budgets: post-hoc shift vs conditioned vs separate lambdas",
                 videos_per_extreme=0)
    print(markdown(result))


def _f(x: float | None, spec: str = "{:.1f}") -> str:
    return "-" if x is None else spec.format(x)


def markdown(r: dict[str, Any]) -> str:
    lines = [f"seed {r['seed']}, recipe {r['recipe']}, {r['threads']} threads, {r['seconds']:.0f} s", "",
             "(c) separately trained: " + ", ".join(f"lambda {s['lambda']:g}: {s['fraction']:.3f} of all-keep, "
                                                    f"top-1 {s['top1']:.1f}" for s in r["separate"]), "",
             "| budget | (a) post-hoc: fraction / top-1 / sparse ms | (b) conditioned: fraction / top-1 / sparse ms "
             "| (c) separate, interpolated at (a) / (b) |", "|---:|---|---|---|"]
    for row in r["rows"]:
        a, b = row["posthoc"], row["conditioned"]
        lines.append(f"| {row['budget']:.2f} | {a['fraction']:.3f} / {a['top1']:.1f} / {_f(a['sparse_ms_per_clip'])} "
                     f"| {b['fraction']:.3f} / {b['top1']:.1f} / {_f(b['sparse_ms_per_clip'])} "
                     f"| {_f(row['separate_at_posthoc'])} / {_f(row['separate_at_conditioned'])} |")
    lines += ["", "| stream budget | target GFLOPs/frame | achieved mean | std | window mean max / min | top-1 |",
              "|---:|---:|---:|---:|---|---:|"]
    for s in r["streams"]:
        lines.append(f"| {s['fraction']:.2f} | {s['target_gflops_per_frame']:.5f} | {s['mean_gflops_per_frame']:.5f} "
                     f"| {s['std_gflops_per_frame']:.5f} | {s['window_mean_max']:.5f} / {s['window_mean_min']:.5f} "
                     f"| {s['top1']:.1f} ({s['videos']} videos) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
